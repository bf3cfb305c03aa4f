"""robots.txt rules judge the URL the fetcher requests, not the spelling it was submitted in: a
path with dot-segments or escaped unreserved characters cannot walk past a Disallow line."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.sites.newsite import Route, SiteServer, article_html

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("spelling", ["/news/../private/a.html", "/%70rivate/b.html", "/./private/c.html"])
def test_a_disallowed_path_in_another_spelling_is_not_fetched(deployment: Any, spelling: str) -> None:
    routes = {
        "/robots.txt": Route(b"User-agent: *\nDisallow: /private/\n", "text/plain"),
        "/private/a.html": Route(article_html(1, "secret a")),
        "/private/b.html": Route(article_html(2, "secret b")),
        "/private/c.html": Route(article_html(3, "secret c")),
    }
    with SiteServer(routes) as site:
        proc = run_cli("ingest", site.base_url + spelling, "--wait", "--json", "--timeout", "60")
        [outcome] = json.loads(proc.stdout)
        assert (outcome["state"], outcome["reason"]) == ("dead", "robots_disallowed"), outcome
        assert not [h for h in site.hits() if h.path.startswith("/private/")]
