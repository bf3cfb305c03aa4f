"""Which of newsflow's layers import which: `python bench/import_graph.py` (run from a checkout).

Prints one line per pair of top-level packages, with how many module-level imports go that way,
and marks those against the intended direction config <- newsflow <- tasks <- workers.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import grimp

LAYERS = ("config", "newsflow", "tasks", "workers")  # each may import only those before it


def main() -> int:
    sys.path.insert(0, str(Path.cwd()))
    graph = grimp.build_graph(*LAYERS)
    edges: Counter[tuple[str, str]] = Counter()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = module.split(".")[0], imported.split(".")[0]
            if a != b:
                edges[(a, b)] += 1
    against = 0
    for (a, b), n in sorted(edges.items(), key=lambda e: (LAYERS.index(e[0][0]), LAYERS.index(e[0][1]))):
        wrong = LAYERS.index(b) > LAYERS.index(a)
        against += wrong
        print(f"{a:9} -> {b:9} {n:4} module imports{'   AGAINST the layers' if wrong else ''}")
    print(f"{against} layer pair(s) imported against the direction {' <- '.join(LAYERS)}")
    return 1 if against else 0


if __name__ == "__main__":
    raise SystemExit(main())
