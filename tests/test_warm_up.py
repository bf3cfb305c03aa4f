"""A worker's warm-up leaves nothing for its first pages to load: after it, extracting and enriching
real pages imports no module and fills no lazily built table.

Each check runs in a fresh interpreter (a test process has long since loaded everything).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import BENCH_DIR

ROOT = Path(__file__).resolve().parents[1]

_CHECK = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from types import SimpleNamespace
    from htmldate.extractors import month_words
    import tasks.clean, tasks.enrich
    from newsflow.enrich import enrich_article
    from newsflow.enrich.minhash import shingle_hashes, signature
    from newsflow.extract.evaluate import load_benchmark

    worker = SimpleNamespace(app=SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(
        consume_from={"clean": None, "enrich": None}))))
    tasks.clean._warm_up_extractor("test", worker)  # the worker's own hooks, as Celery calls them
    tasks.enrich._warm_up_models("test", worker)
    assert month_words.cache_info().currsize == 1, "htmldate's month names were not loaded"
    before = set(sys.modules)
    for n, page in enumerate(load_benchmark(Path(__BENCH__))):
        if n == 20:
            break
        doc = tasks.clean.build_doc(
            tasks.clean.Message.new(f"https://example.com/{n}", f"{n:032d}").forward(blob="-", fetch={}),
            page.html(), 1 << 22, 0,
        )
        enrich_article(doc)
        signature(shingle_hashes(doc["body"]))
    print(sorted(set(sys.modules) - before))
    """
)


def test_first_pages_load_nothing_after_the_warm_up() -> None:
    code = _CHECK.replace("__BENCH__", repr(str(BENCH_DIR)))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = done.stdout.strip().splitlines()[-1]
    assert loaded == "[]", f"modules imported by the first pages after the warm-up: {loaded}"
