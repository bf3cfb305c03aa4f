"""Test sets and scores for enrichment, shared by `bench/enrich.py` and the tests.

Not used by the pipeline. The cluster test set is built from the extraction-benchmark bodies: each
source article gets wire-style copies with controlled edits (its true cluster), and every other
article — including the benchmark's several reports of one event by different outlets — is a
different story.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

BENCHMARK = Path("tests") / "fixtures" / "extraction-benchmark" / "ground-truth.json"

_CLUTTER_TOP = ["Advertisement", "Share this article", "Listen to this story", "Skip to content"]
_CLUTTER_BOTTOM = [
    "Sign up for our daily newsletter to get the latest headlines in your inbox.",
    "Copyright 2019 The Daily Courier. All rights reserved. This material may not be redistributed.",
    "Follow us on Twitter and Facebook for more local news.",
    "Have a news tip? Email our newsroom.",
]
_ADDED_PARAGRAPH = (
    "The story has been shared widely on social media since it was first reported, and local officials said "
    "they expected to release more details later in the week after consulting with the people involved."
)


@dataclass(frozen=True)
class ClusterItem:
    article_id: str
    text: str
    story: str  # ground truth: items of one story share it
    edit: str  # how the copy was made ("original", "clutter", ...)


def load_benchmark(root: Path | None = None) -> dict[str, str]:
    """{article id: articleBody} of the extraction benchmark (relative to the project root by default)."""
    path = (root or Path.cwd()) / BENCHMARK
    data = json.loads(path.read_text(encoding="utf-8"))
    return {key: value["articleBody"] for key, value in data.items()}


def _paragraphs(text: str) -> list[str]:
    return [p for p in (part.strip() for part in text.split("\n")) if p]


def _clutter(paras: list[str], rng: random.Random, other_headline: str) -> list[str]:
    top = rng.sample(_CLUTTER_TOP, 2)
    bottom = [f"Read more: {other_headline}", *rng.sample(_CLUTTER_BOTTOM, 2)]
    middle = len(paras) // 2
    return top + paras[:middle] + ["Advertisement"] + paras[middle:] + bottom


def _tweak_lead(paras: list[str], rng: random.Random) -> list[str]:
    """A site's own dateline and a reworded first sentence."""
    words = paras[0].split()
    if len(words) > 6:
        i = rng.randrange(1, len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
        del words[rng.randrange(1, len(words))]
    return ["LONDON (Reuters) - " + " ".join(words), *paras[1:]]


def _cut_paragraph(paras: list[str], rng: random.Random) -> list[str]:
    if len(paras) < 3:
        return [*paras[:-1], paras[-1][: len(paras[-1]) * 2 // 3]]
    drop = rng.randrange(1, len(paras))
    return paras[:drop] + paras[drop + 1 :]


def _add_paragraph(paras: list[str], rng: random.Random) -> list[str]:
    at = rng.randrange(1, len(paras) + 1)
    return [*paras[:at], _ADDED_PARAGRAPH, *paras[at:]]


def _revise(paras: list[str], rng: random.Random) -> list[str]:
    """A later version: a figure changed, a sentence reworded, an update appended."""
    revised = [p.replace("1", "2", 1) if rng.random() < 0.5 else p for p in paras]
    last = revised[-1].split()
    revised[-1] = " ".join(last[: max(1, len(last) - 5)]) + " officials said on Wednesday."
    return [*revised, "UPDATE: This story has been updated with new figures released by the authorities."]


def _truncate(paras: list[str], rng: random.Random) -> list[str]:
    """A site that runs only the first part of the wire story."""
    words = sum(len(p.split()) for p in paras)
    kept: list[str] = []
    for p in paras:
        kept.append(p)
        if sum(len(k.split()) for k in kept) >= words * 0.4:
            break
    return kept


def _heavy(paras: list[str], rng: random.Random) -> list[str]:
    """All at once: own lead, a paragraph cut, one added, revised figures."""
    return _revise(_add_paragraph(_cut_paragraph(_tweak_lead(paras, rng), rng), rng), rng)


EDITS: dict[str, Callable[[list[str], random.Random], list[str]]] = {
    "lead": _tweak_lead,
    "cut": _cut_paragraph,
    "add": _add_paragraph,
    "revision": _revise,
    "truncated": _truncate,
    "heavy": _heavy,
}


def cluster_test_set(bodies: Mapping[str, str], sources: int = 30, seed: int = 7) -> list[ClusterItem]:
    """Every benchmark body as its own story, plus 7 edited copies of each of `sources` of them."""
    rng = random.Random(seed)
    ids = sorted(k for k, text in bodies.items() if len(text.split()) >= 80)
    chosen = set(rng.sample(ids, min(sources, len(ids))))
    items: list[ClusterItem] = []
    for key in sorted(bodies):
        items.append(ClusterItem(key, bodies[key], key, "original"))
        if key not in chosen:
            continue
        paras = _paragraphs(bodies[key])
        other = bodies[rng.choice(ids)].split(".")[0][:90]
        items.append(ClusterItem(f"{key}~clutter", "\n".join(_clutter(paras, rng, other)), key, "clutter"))
        for name, edit in EDITS.items():
            items.append(ClusterItem(f"{key}~{name}", "\n".join(edit(list(paras), rng)), key, name))
    rng.shuffle(items)  # arrival order must not matter
    return items


def pair_scores(truth: Mapping[str, str], predicted: Mapping[str, str]) -> tuple[float, float]:
    """Pairwise precision and recall: a pair counts when both items share a cluster."""
    keys = sorted(truth)
    tp = fp = fn = 0
    for a, b in itertools.combinations(keys, 2):
        same_true, same_pred = truth[a] == truth[b], predicted[a] == predicted[b]
        tp += same_true and same_pred
        fp += same_pred and not same_true
        fn += same_true and not same_pred
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return precision, recall


def _norm(name: str) -> str:
    name = name.lower().strip()
    return name[4:] if name.startswith("the ") else name


def entity_scores(
    gold: Iterable[Mapping[str, list[str]]],
    predicted: Iterable[Mapping[str, list[str]]],
    kinds: tuple[str, ...] = ("person", "organization", "place"),
) -> dict[str, tuple[float, float]]:
    """Micro precision/recall per kind and overall ("all"); a gold entry 'A|B' accepts either form."""
    counts = {kind: [0, 0, 0] for kind in (*kinds, "all")}  # tp, fp, fn
    for gold_doc, pred_doc in zip(gold, predicted, strict=True):
        for kind in kinds:
            alternatives = [{_norm(x) for x in entry.split("|")} for entry in gold_doc.get(kind, [])]
            matched: set[int] = set()
            for name in pred_doc.get(kind, []):
                hit = next((i for i, alts in enumerate(alternatives) if _norm(name) in alts and i not in matched), None)
                slot = 0 if hit is not None else 1
                if hit is not None:
                    matched.add(hit)
                counts[kind][slot] += 1
                counts["all"][slot] += 1
            missed = len(alternatives) - len(matched)
            counts[kind][2] += missed
            counts["all"][2] += missed
    return {
        k: (tp / (tp + fp) if tp + fp else 1.0, tp / (tp + fn) if tp + fn else 1.0)
        for k, (tp, fp, fn) in counts.items()
    }
