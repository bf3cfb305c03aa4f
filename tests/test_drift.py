"""The drift watch (newsflow/drift.py): a source whose template changes is flagged within one
window; a stable source, or one that always lacked what it lacks, is not.

Unit tests of the judgement on made-up observations, then the whole thing for real: two sources
on a local site crawled by the session's workers; after a first crawl, one site switches to a new
template (same kind of articles, but the date and byline are gone and the story is cut into a
teaser) and both are crawled again.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from newsflow.drift import DriftStore, Observation, Thresholds, assess, drift_key, z_two_proportions
from newsflow.stores import Stores
from tests.conftest import run_cli, suite_settings
from tests.sites.newsite import WORDS, Route, SiteServer, _urlset

T = Thresholds()
GOOD = Observation(has_date=True, has_author=True, body_chars=2400)
NO_DATE = Observation(has_date=False, has_author=True, body_chars=2400)


def test_a_stable_source_is_not_flagged() -> None:
    report = assess("source:s", [GOOD] * 300, T)
    assert report.judged and not report.flagged


def test_a_new_template_losing_dates_is_flagged_within_one_window() -> None:
    baseline = [GOOD] * 200
    first = None
    for k in range(1, T.window + 1):
        if assess("source:s", [NO_DATE] * k + baseline, T).flagged:
            first = k
            break
    assert first is not None and first <= T.window // 2
    report = assess("source:s", [NO_DATE] * T.window + baseline, T)
    assert [m.metric for m in report.moved] == ["no_date"]
    assert report.moved[0].window == 1.0 and report.moved[0].baseline == 0.0


def test_a_source_that_never_had_dates_is_judged_against_itself() -> None:
    assert not assess("site:x", [NO_DATE] * 300, T).flagged


def test_small_samples_never_flag() -> None:
    few = assess("source:s", [NO_DATE] * (T.min_window - 1), T)  # a new source: no baseline yet
    assert not few.judged and not few.flagged
    new_source = assess("source:s", [NO_DATE] * 50 + [GOOD] * (T.min_baseline - 1), T)
    assert not new_source.judged


def test_noise_within_chance_is_not_flagged() -> None:
    # 10% of pages lack a byline, in the baseline and in the window alike (shuffled differently).
    baseline = [GOOD if i % 10 else Observation(has_date=True, body_chars=2400) for i in range(400)]
    window = [GOOD if i % 10 != 3 else Observation(has_date=True, body_chars=2400) for i in range(50)]
    assert not assess("source:s", window + baseline, T).flagged


def test_bodies_shrunk_to_teasers_and_more_no_article_pages_are_flagged() -> None:
    teaser = Observation(has_date=True, has_author=True, body_chars=600)
    report = assess("source:s", [teaser] * 50 + [GOOD] * 200, T)
    assert [m.metric for m in report.moved] == ["median_body"]
    empty = Observation(no_article=True)
    report = assess("source:s", [empty] * 25 + [GOOD] * 25 + [GOOD] * 200, T)
    assert "no_article" in [m.metric for m in report.moved]


def test_observations_round_trip_and_junk_is_ignored() -> None:
    obs = Observation(no_article=False, has_date=True, has_author=False, fallback_body=True, body_chars=1234)
    assert Observation.decode(obs.encode()) == obs
    assert Observation.decode(b"garbage") is None and Observation.decode("10:x") is None
    assert z_two_proportions(0, 50, 0, 200) == 0.0
    assert drift_key("wire", "example.com") == "source:wire" and drift_key(None, "example.com") == "site:example.com"


# --- for real --------------------------------------------------------------------------------------


def _paras(n: int) -> list[str]:
    out = []
    for p in range(6):
        words = [WORDS[(n * 5 + p * 7 + i) % len(WORDS)] for i in range(45)]
        out.append(f"Report {n} part {p}: " + " ".join(words) + ".")
    return out


def old_template(n: int, site: str) -> bytes:
    published = (datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=n)).isoformat()
    body = "".join(f"<p>{p}</p>" for p in _paras(n))
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{site} report {n}</title>"
        f"<meta property='article:published_time' content='{published}'>"
        f"<meta name='author' content='Maria Gonzalez'></head><body><nav><a href='/'>Home</a></nav>"
        f"<article><h1>{site} report {n}</h1><p class='byline'>By Maria Gonzalez</p>{body}</article>"
        f"<footer>{site} News Ltd</footer></body></html>"
    ).encode()


def new_template(n: int, site: str) -> bytes:
    """The redesign: date and byline now drawn by a script, the story cut to a teaser beside
    a wall of links; what extraction gets from it is worse, as after a real template change."""
    teaser = _paras(n)[0]
    links = "".join(f"<li><a href='/more/{n}-{i}'>More {site} coverage number {i}</a></li>" for i in range(30))
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{site} report {n}</title>"
        f'<script>window.meta={{"d":"x"}}</script></head><body><div class=\'app\'>'
        f"<div class='h'>{site} report {n}</div><div class='t'>{teaser}</div>"
        f"<div class='t'>{_paras(n)[1]}</div><ul class='more'>{links}</ul></div></body></html>"
    ).encode()


class TwoSites:
    """Two sources' pages on one local server; `switch()` gives one of them a new template."""

    def __init__(self, per_crawl: tuple[int, int]) -> None:
        self.first, self.second = per_crawl
        self.routes: dict[str, Route] = {}
        self.published = 0
        self.server = SiteServer(self.routes)

    def publish(self, name: str, numbers: range, template: Any) -> None:
        for n in numbers:
            self.routes[f"/{name}/{n}.html"] = Route(template(n, name))
        paths = sorted(p for p in self.routes if p.startswith(f"/{name}/"))
        self.published += 1
        self.routes[f"/{name}/sitemap.xml"] = Route(
            _urlset(self.server.base_url, paths), "application/xml", last_modified=f"edition {self.published}"
        )


@pytest.mark.integration
def test_a_source_that_changes_template_is_flagged_and_its_neighbour_is_not(deployment: Any, tmp_path: Path) -> None:
    first, second = 150, 50  # a baseline of more than drift_min_baseline, then one window
    sites = TwoSites((first, second))
    with sites.server:
        base = sites.server.base_url
        sources = tmp_path / "sources.toml"
        sources.write_text(
            "".join(
                f'[[source]]\nname = "{name}"\nkind = "sitemap"\nlocation = "{base}/{name}/sitemap.xml"\n'
                for name in ("drift-stable", "drift-switch")
            )
        )
        for name in ("drift-stable", "drift-switch"):
            sites.publish(name, range(first), old_template)
        crawl = run_cli("crawl", "--sources", str(sources), "--all", "--wait", "--json", timeout=600)
        assert crawl.returncode == 0, crawl.stderr[-3000:]
        store: DriftStore = Stores.from_settings(suite_settings()).drift
        before = {r.key: r for r in store.reports(["source:drift-stable", "source:drift-switch"])}
        assert not any(r.flagged for r in before.values()), before

        sites.publish("drift-stable", range(first, first + second), old_template)
        sites.publish("drift-switch", range(first, first + second), new_template)
        crawl = run_cli("crawl", "--sources", str(sources), "--all", "--wait", "--json", timeout=600)
        assert crawl.returncode == 0, crawl.stderr[-3000:]

        after = {r.key: r for r in store.reports(["source:drift-stable", "source:drift-switch"])}
        switched, stable = after["source:drift-switch"], after["source:drift-stable"]
        assert switched.flagged and not stable.flagged, (switched, stable)
        moved = {m.metric for m in switched.moved}
        assert {"no_date", "no_author"} <= moved, switched.moved
        # When it would have been flagged: the first k new-template articles that flag it.
        obs = store.observations("source:drift-switch")
        first_flag = next(k for k in range(1, second + 1) if assess("x", obs[second - k :], T).flagged)
        assert first_flag <= T.window

        cli = run_cli("status", "--drift", "--json")
        assert cli.returncode == 1, cli.stderr[-2000:]  # exit 1: something is flagged
        flagged = {r["key"] for r in json.loads(cli.stdout)["flagged"]}
        assert "source:drift-switch" in flagged and "source:drift-stable" not in flagged
        print(
            "drift:",
            json.dumps(
                {
                    "before": before["source:drift-switch"].window.__dict__,
                    "after": switched.window.__dict__,
                    "baseline": switched.baseline.__dict__ if switched.baseline else None,
                    "moved": [m.__dict__ for m in switched.moved],
                    "flagged_after_new_articles": first_flag,
                }
            ),
        )
