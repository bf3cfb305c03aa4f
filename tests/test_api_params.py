"""What the API and the CLI take from a client, checked before it reaches the index: date ranges of the
query (`published:..` is a 400 that says the accepted forms, never a 500), and the bool and enum query
parameters of every endpoint (a typo such as `facets=2` is a 400, as `updated:x` in the query is)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.settings import FALSE_WORDS, TRUE_WORDS
from newsflow.search.backend import SEARCH_PARAMS
from newsflow.search.query import DATE_FIELDS, Bool, DateRange, Node, Not, QueryError, date_range, parse
from tests.conftest import TEST_ENV, run_cli, suite_settings
from tests.test_api import get
from tests.test_search import sample_data_dir, sample_docs
from workers.api import ApiServer

BOUNDED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DATES = ["2020", "2020-05", "2020-05-17", "2020-05-17T10:30:00Z", "2261-12-31", "1678", ""]
SIDES = st.one_of(st.sampled_from(DATES), st.text(alphabet="0123456789-.:<>=TZ", max_size=12))


# --- date ranges in the query --------------------------------------------------------------------
def _ranges(node: Node | None) -> Iterator[DateRange]:
    if isinstance(node, DateRange):
        yield node
    elif isinstance(node, Not):
        yield from _ranges(node.child)
    elif isinstance(node, Bool):
        for child in node.children:
            yield from _ranges(child)


@BOUNDED
@given(st.sampled_from(sorted(DATE_FIELDS)), SIDES, st.sampled_from(["..", ">=", "<=", ">", "<", ""]), SIDES)
def test_a_date_range_is_bounded_and_in_order_or_a_query_error(name: str, lo: str, op: str, hi: str) -> None:
    """Whatever the dates and operator: a range the index can search (one bound at least, the start
    before the end), or a QueryError that names the field — never a range the index refuses."""
    value = f"{lo}..{hi}" if op == ".." else f"{op}{hi}" if op else lo
    query = f"{name}:{value}"
    try:
        node = parse(query)
    except QueryError as exc:
        assert f"{name}:" in str(exc) or "needs a value" in str(exc)
        assert exc.column is not None and 1 <= exc.column <= len(query) + 1
        return
    for rng in _ranges(node):
        assert rng.start is not None or rng.end is not None
        assert rng.start is None or rng.end is None or rng.start < rng.end


@pytest.mark.parametrize("name", ["published", "date"])
def test_an_open_range_needs_one_side(name: str) -> None:
    with pytest.raises(QueryError) as err:
        parse(f"nato {name}:..")
    message = str(err.value)
    assert f"{name}:.. needs a date on at least one side" in message and err.value.column == len(name) + 7
    assert f"{name}:2024.. (from)" in message and f"{name}:..2024 (until)" in message  # the accepted forms
    assert date_range(name, "..2020") == DateRange(None, date_range(name, "2020").end)
    assert date_range(name, "2020..") == DateRange(date_range(name, "2020").start, None)


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("published:2024..2020", "ends before it starts — put the earlier date first"),
        ("date:2024-05-02..2024-05-01", "ends before it starts"),
        ("published:2020-01-01T10:00:01..2020-01-01T10:00", "ends before it starts"),
        ("published:>=", "bad date '>=' in published:"),
        ("published:...", "bad date"),
        ("published:", "needs a value right after the colon"),
        ("since:..", "bad date '..' in since: — use since:2024-01-01"),
        ("until:2020..2021", "use until:2024-01-01"),
        ("since:", "needs a value"),
    ],
)
def test_holes_in_date_values_are_query_errors(query: str, fragment: str) -> None:
    with pytest.raises(QueryError) as err:
        parse(query)
    assert fragment in str(err.value)


def test_ranges_of_one_period_and_edges_still_parse() -> None:
    for query in ("published:2020..2020", "published:2024-05-04..2024-05-04", "published:>2261-12-31",
                  "published:<1678", "date:..2261-12-31", "published:2020-01-01T10:00..2020-01-01T10:00"):  # fmt: skip
        assert isinstance(parse(query), DateRange), query


# --- the API ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_data_dir(tmp_path_factory.mktemp("api-params"))


@pytest.fixture(scope="module")
def api(data_dir: Path) -> Iterator[str]:
    settings = suite_settings(data_dir=str(data_dir), api_rate_limit_per_min=6000, api_rate_burst=500)
    with ApiServer(settings, "127.0.0.1", 0) as server:
        yield server.base_url


@pytest.mark.parametrize("q", ["published:..", "date:..", "nato published:2024..2020", "published:>="])
def test_bad_date_ranges_are_400s_not_500s(api: str, q: str) -> None:
    status, _h, body = get(f"{api}/search?q={quote(q)}")
    assert status == 400, body
    assert body["error"] == "bad_query" and body["column"] and body["help"]
    assert "2024-01-01..2024-03-31" in body["message"] or "earlier date first" in body["message"]


@pytest.mark.parametrize(
    ("q", "total"),
    [("published:..2023", 1), ("published:2024..", len(sample_docs()) - 1), ("published:2024-06..", 12),
     ("date:..2024-02-01", 2), ("published:2024-05-04..2024-05-05", 2)],
)  # fmt: skip
def test_half_open_ranges_search(api: str, q: str, total: int) -> None:
    status, _h, body = get(f"{api}/search?q={quote(q)}&expand_clusters=1")
    assert status == 200, body
    assert body["total"] == total


BOOLS = [p.name for p in SEARCH_PARAMS if p.kind == "bool"]


@pytest.mark.parametrize("name", BOOLS)
@pytest.mark.parametrize("value", ["maybe", "2", "-1", "ture", "yes please", " 1"])
def test_bool_parameters_refuse_what_is_neither(api: str, name: str, value: str) -> None:
    status, _h, body = get(f"{api}/search?q=drills&{name}={quote(value)}")
    assert status == 400, body
    assert body["error"] == "bad_parameter" and body["parameter"] == name
    assert f"{name} must be true or false" in body["message"] and repr(value) in body["message"]


@pytest.mark.parametrize("name", BOOLS)
def test_bool_parameters_take_every_spelling_of_true_and_false(api: str, name: str) -> None:
    for value in (*TRUE_WORDS, *FALSE_WORDS, "TRUE", "No"):
        status, _h, body = get(f"{api}/search?q=drills&{name}={value}")
        assert status == 200, (value, body)
    _s, _h, on = get(f"{api}/search?q=drills&facets=TRUE")
    _s, _h, off = get(f"{api}/search?q=drills&facets=off")
    assert on.get("facets") and not off.get("facets")


@pytest.mark.parametrize(
    "query",
    ["sort=popular", "sort=", "sort=Date", "sort=popular&sort=date", "facets=maybe&facets=1", "updated=1&updated=x"],
)
def test_every_value_of_a_repeated_choice_is_checked(api: str, query: str) -> None:
    """The last value counts, but a bad earlier one is a mistake too: the answer is the same 400."""
    status, _h, body = get(f"{api}/search?q=drills&{query}")
    assert status == 400 and body["error"] == "bad_parameter", body
    assert body["parameter"] == query.split("=")[0]


def test_the_query_form_and_the_parameter_agree(api: str) -> None:
    for q, param in (("updated:maybe", "updated=maybe"), ("updated:yes", "updated=yes")):
        s_query, _h, _b = get(f"{api}/search?q={quote(q)}")
        s_param, _h, _b = get(f"{api}/search?q=&{param}")
        assert s_query == s_param, (q, param)


def test_articles_endpoint_unchanged(api: str) -> None:
    doc = sample_docs()[0]
    status, _h, body = get(f"{api}/articles?url={quote(doc['url'])}")
    assert status == 200 and body["id"] == doc["id"]
    status, _h, body = get(f"{api}/articles?url=")
    assert status == 400 and body["error"] == "bad_parameter"


# --- the CLI ---------------------------------------------------------------------------------------
def test_cli_prints_the_query_error(data_dir: Path) -> None:
    proc = run_cli("search", "published:..", env={**TEST_ENV, "NEWSFLOW_DATA_DIR": str(data_dir)}, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "published:.. needs a date on at least one side" in proc.stderr
    assert "lower_bound" not in proc.stderr and "Traceback" not in proc.stderr
