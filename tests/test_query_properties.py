"""The query parser under any input (Hypothesis): it parses or raises its own QueryError, in bounded
time, never another exception; and its limits (length, depth, clauses, dates) with clear messages."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsflow.search.query import (
    DATE_MAX,
    DATE_MIN,
    MAX_CLAUSES,
    MAX_DEPTH,
    MAX_QUERY_CHARS,
    QueryError,
    date_range,
    parse,
    period,
)

PIECES = ["(", ")", '"', " ", "-", "+", ":", "AND", "OR", "NOT", "&&", "||", "a", "nato", "title:", "url:",
          "site:", "published:", "since:", "until:", "2024", "-05", "-30", "..", ">=", "<", "0001", "9999",
          "http://", "[", "]", "\x00", "é", "\t", "x" * 50]  # fmt: skip
QUERIES = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(PIECES), max_size=400).map("".join),
    st.integers(0, 3000).map(lambda n: "(" * n + "a" + ")" * n),
    st.integers(0, 3000).map(lambda n: "NOT " * n + "a"),
)
BOUNDED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@BOUNDED
@given(QUERIES)
def test_parse_raises_only_its_own_error_in_bounded_time(q: str) -> None:
    t0 = time.perf_counter()
    try:
        parse(q)
    except QueryError as exc:
        assert str(exc) and len(str(exc)) < 1000
        assert exc.column is None or 1 <= exc.column <= len(q) + 1
    assert time.perf_counter() - t0 < 1.0


@BOUNDED
@given(st.sampled_from(["published", "date", "since", "until"]),
       st.one_of(st.text(max_size=40), st.lists(st.sampled_from(PIECES[15:]), max_size=8).map("".join),
                 st.dates().map(str), st.datetimes().map(lambda d: d.isoformat())))  # fmt: skip
def test_dates_parse_inside_the_range_or_raise_query_error(name: str, value: str) -> None:
    try:
        r = date_range(name, value)
    except QueryError:
        return
    for bound in (r.start, r.end):
        assert bound is None or DATE_MIN <= bound <= DATE_MAX


@pytest.mark.parametrize(
    ("query", "fragment", "column"),
    [
        ("(" * 300 + "a" + ")" * 300, f"at most {MAX_DEPTH} levels", MAX_DEPTH + 1),
        ("NOT " * 30 + "(((a)))", f"at most {MAX_DEPTH} levels", None),
        ("-" * 1500 + "a", f"at most {MAX_DEPTH} levels", MAX_DEPTH + 1),
        ("NOT " * 3000 + "a", f"at most {MAX_QUERY_CHARS} characters", MAX_QUERY_CHARS + 1),
        ("a " * (MAX_CLAUSES + 1), f"at most {MAX_CLAUSES} words", 2 * MAX_CLAUSES + 1),
        ("published:0001", "out of range", 11),
        ("published:9999", "out of range", 11),
        ("published:>9999-12-31", "out of range", 11),
        ("published:0001-01-01..2024", "out of range", 11),
        ("published:99999", "bad date", 11),
        ("published:2024-02-30", "bad date", 11),
        ("url:http://[x", "url: Invalid IPv6 URL", 5),
        ("url:[", "not an absolute http(s) URL", 5),
        ("nato \udcff", "not valid text", 6),
    ],
)
def test_limits_and_bad_values_name_the_problem_and_column(query: str, fragment: str, column: int | None) -> None:
    with pytest.raises(QueryError) as err:
        parse(query)
    assert fragment in str(err.value)
    if column is not None:
        assert err.value.column == column


def test_limits_allow_what_they_promise() -> None:
    assert parse("(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH) is not None
    assert parse("-" * (MAX_DEPTH - 1) + "a") is not None
    assert parse(" ".join(["a"] * MAX_CLAUSES)) is not None
    assert parse("published:1678 OR published:2261-12-31") is not None
    assert period("2261-12")[1] == DATE_MAX and period("1678")[0] == DATE_MIN
