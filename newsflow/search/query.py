"""The query language: words, "phrases", AND / OR / NOT, parentheses, field:value and date ranges.

Parsed here rather than by tantivy's parser because fields are virtual (`title:` means the title
field of every language in the index, analysed by that language's rules), dates accept partial
forms (`published:2024-05`), and a bad query must say where it is wrong, column and all.

Grammar (terms are ANDed unless OR is written; operators are upper case):
    query   := or_expr
    or_expr := and_expr ("OR" and_expr)*
    and_expr:= unary (["AND"] unary)*
    unary   := ("NOT" | "-") unary | primary
    primary := "(" or_expr ")" | FIELD ":" value | '"phrase"' | word
    value   := word | '"phrase"' | "(" or_expr ")" | date range (published:, since:, until:)

The work is bounded before anything reaches the index: at most MAX_QUERY_CHARS characters,
MAX_DEPTH levels of parentheses and NOT, MAX_CLAUSES words/phrases/fields, dates within what the
index can store (DATE_MIN..DATE_MAX); beyond a limit the QueryError names it and the column.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from newsflow.urls import normalize_url

# Public field names → what they search. Text fields are analysed, keyword fields match exactly.
TEXT_ALIASES: dict[str, tuple[str, ...]] = {
    "title": ("title",),
    "body": ("body",),
    "description": ("description",),
    "text": ("title", "body", "description"),
}
PLAIN_FIELDS = {"author": "author", "entity": "entity", "keyword": "keyword"}
EXACT_FIELDS = {"site": "site", "lang": "language", "language": "language", "id": "id", "url": "url_key",
                "cluster": "cluster_key", "updated": "updated"}  # fmt: skip
DATE_FIELDS = {"published", "date", "since", "until"}
KNOWN_FIELDS = sorted({*TEXT_ALIASES, *PLAIN_FIELDS, *EXACT_FIELDS, *DATE_FIELDS})
HELP = (
    'Use words, "exact phrases", AND / OR / NOT (upper case), parentheses, and fields: '
    + ", ".join(f"{f}:" for f in KNOWN_FIELDS)
    + "; dates as published:2024-05, published:2024-01-01..2024-03-31, since:2024-01-01."
)
MAX_QUERY_CHARS = 2000  # longer queries are refused before they are lexed
MAX_DEPTH = 32  # nested parentheses and NOT / - prefixes, together
MAX_CLAUSES = 256  # words, phrases, field:value and dates in one query
# The index stores dates as nanoseconds since 1970 in 64 bits (1677-09-21..2262-04-11): whole years inside.
DATE_MIN = datetime(1678, 1, 1, tzinfo=UTC)
DATE_MAX = datetime(2262, 1, 1, tzinfo=UTC)  # exclusive


class QueryError(ValueError):
    """The query cannot be parsed; the message says what and where (1-based column)."""

    def __init__(self, message: str, query: str = "", column: int | None = None) -> None:
        self.reason = message
        self.query = query
        self.column = column
        where = f" at column {column}" if column else ""
        super().__init__(f"{message}{where}")

    def pointer(self) -> str:
        """The query with a caret under the problem, for terminals."""
        if not self.column or not self.query:
            return ""
        return f"  {self.query}\n  {' ' * (self.column - 1)}^"

    def to_dict(self) -> dict[str, object]:
        return {"error": "bad_query", "message": str(self), "column": self.column, "help": HELP}


# --- AST --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Text:
    """A word or phrase in the default fields, or in the named text/plain/exact field."""

    text: str
    phrase: bool
    field: str | None = None


@dataclass(frozen=True)
class DateRange:
    start: datetime | None  # inclusive
    end: datetime | None  # exclusive


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class Bool:
    op: str  # "AND" | "OR"
    children: tuple[Node, ...] = field(default_factory=tuple)


Node = Text | DateRange | Not | Bool


# --- lexer ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tok:
    kind: str  # WORD PHRASE LPAREN RPAREN AND OR NOT FIELD
    value: str
    col: int


_FIELD_RE = re.compile(r"^([A-Za-z_]+):(.*)$", re.S)
_OPS = {"AND": "AND", "&&": "AND", "OR": "OR", "||": "OR", "NOT": "NOT"}


def _show(value: str, most: int = 40) -> str:
    """repr() of a piece of the query for an error message, cut short."""
    return repr(value if len(value) <= most else value[:most] + "…")


def check_text(q: str) -> None:
    """QueryError unless the query is short enough and valid text (no undecodable bytes)."""
    if len(q) > MAX_QUERY_CHARS:
        raise QueryError(f"the query is too long: at most {MAX_QUERY_CHARS} characters", q, MAX_QUERY_CHARS + 1)
    try:
        q.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise QueryError("the query is not valid text (an undecodable byte)", q, exc.start + 1) from None


def lex(q: str) -> list[Tok]:
    check_text(q)
    toks: list[Tok] = []
    i, n = 0, len(q)
    while i < n:
        c = q[i]
        if c.isspace():
            i += 1
        elif c in "()":
            toks.append(Tok("LPAREN" if c == "(" else "RPAREN", c, i + 1))
            i += 1
        elif c == '"':
            end = q.find('"', i + 1)
            if end < 0:
                raise QueryError('unterminated quote: add the closing "', q, i + 1)
            toks.append(Tok("PHRASE", q[i + 1 : end], i + 1))
            i = end + 1
        else:
            j = i
            while j < n and not q[j].isspace() and q[j] not in '()"':
                j += 1
            _word(q, q[i:j], i + 1, toks)
            i = j
    return toks


def _word(q: str, word: str, col: int, toks: list[Tok]) -> None:
    # "-word" excludes, "+word" means required (already the default): a loop, as "-----x" may be long.
    while word not in _OPS and len(word) > 1 and word[0] in "-+":
        if word[0] == "-":
            toks.append(Tok("NOT", "-", col))
        word, col = word[1:], col + 1
    if word in _OPS:
        toks.append(Tok(_OPS[word], word, col))
        return
    m = _FIELD_RE.match(word)
    if m and not m.group(1).startswith("_"):
        name = m.group(1).lower()
        if name not in KNOWN_FIELDS:
            raise QueryError(
                f"unknown field {_show(m.group(1))}: known fields are {', '.join(KNOWN_FIELDS)}"
                ' (quote the word, "like:this", to search it as text)',
                q,
                col,
            )
        toks.append(Tok("FIELD", name, col))
        if m.group(2):
            toks.append(Tok("WORD", m.group(2), col + len(m.group(1)) + 1))
        return
    toks.append(Tok("WORD", word, col))


# --- parser -----------------------------------------------------------------------------------
class _Parser:
    def __init__(self, q: str) -> None:
        self.q = q
        self.toks = lex(q)
        self.i = 0
        self.depth = 0  # open parentheses and NOTs around the current token
        self.clauses = 0

    def enter(self, tok: Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"the query nests too deeply: at most {MAX_DEPTH} levels of parentheses and NOT", tok)

    def clause(self, tok: Tok) -> None:
        self.clauses += 1
        if self.clauses > MAX_CLAUSES:
            raise self.error(f"the query has too many terms: at most {MAX_CLAUSES} words, phrases and fields", tok)

    def peek(self) -> Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def error(self, message: str, tok: Tok | None) -> QueryError:
        return QueryError(message, self.q, tok.col if tok else len(self.q) + 1)

    def parse(self) -> Node | None:
        if not self.toks:
            return None
        node = self.or_expr(None)
        tok = self.peek()
        if tok is not None:
            if tok.kind == "RPAREN":
                raise self.error("unbalanced ')': no '(' opens it", tok)
            raise self.error(f"unexpected {_show(tok.value)}", tok)
        return node

    def or_expr(self, fld: str | None) -> Node:
        children = [self.and_expr(fld)]
        while (tok := self.peek()) is not None and tok.kind == "OR":
            self.take()
            if self.peek() is None or self.peek().kind in ("OR", "AND", "RPAREN"):  # type: ignore[union-attr]
                raise self.error("OR needs something on its right", tok)
            children.append(self.and_expr(fld))
        return children[0] if len(children) == 1 else Bool("OR", tuple(children))

    def and_expr(self, fld: str | None) -> Node:
        tok = self.peek()
        if tok is not None and tok.kind in ("OR", "AND"):
            raise self.error(f"{tok.value} needs something on its left", tok)
        children = [self.unary(fld)]
        while (tok := self.peek()) is not None and tok.kind not in ("OR", "RPAREN"):
            if tok.kind == "AND":
                self.take()
                nxt = self.peek()
                if nxt is None or nxt.kind in ("OR", "AND", "RPAREN"):
                    raise self.error("AND needs something on its right", tok)
            children.append(self.unary(fld))
        return children[0] if len(children) == 1 else Bool("AND", tuple(children))

    def unary(self, fld: str | None) -> Node:
        tok = self.peek()
        if tok is not None and tok.kind == "NOT":
            self.take()
            nxt = self.peek()
            if nxt is None or nxt.kind in ("OR", "AND", "RPAREN"):
                raise self.error("NOT needs a word, phrase or group after it", tok)
            self.enter(tok)
            node = Not(self.unary(fld))
            self.depth -= 1
            return node
        return self.primary(fld)

    def primary(self, fld: str | None) -> Node:
        tok = self.peek()
        if tok is None:
            raise self.error("the query ends where a word was expected", None)
        self.take()
        if tok.kind == "LPAREN":
            if (nxt := self.peek()) is not None and nxt.kind == "RPAREN":
                raise self.error("empty parentheses", tok)
            self.enter(tok)
            node = self.or_expr(fld)
            close = self.peek()
            if close is None or close.kind != "RPAREN":
                raise self.error("'(' is never closed: add ')'", tok)
            self.take()
            self.depth -= 1
            return node
        if tok.kind == "RPAREN":
            raise self.error("unbalanced ')': no '(' opens it", tok)
        if tok.kind in ("PHRASE", "WORD"):
            self.clause(tok)
            if fld is not None and EXACT_FIELDS.get(fld) == "url_key":
                try:
                    normalize_url(tok.value)
                except ValueError as exc:  # InvalidURL, or urlsplit's own ("Invalid IPv6 URL")
                    raise self.error(f"url: {str(exc)[:200]}", tok) from None
            return Text(tok.value, tok.kind == "PHRASE", fld)
        if tok.kind == "FIELD":
            if fld is not None:
                raise self.error(f"field {tok.value}: inside {fld}:( ... ) is not allowed", tok)
            value = self.peek()
            if value is None or value.kind not in ("WORD", "PHRASE", "LPAREN"):
                raise self.error(f"{tok.value}: needs a value right after the colon, e.g. {tok.value}:word", tok)
            if tok.value in DATE_FIELDS:
                self.take()
                self.clause(value)
                return date_range(tok.value, value.value, self.q, value.col)
            return self.primary(tok.value)
        raise self.error(f"unexpected {_show(tok.value)}", tok)


def parse(q: str) -> Node | None:
    """The query's syntax tree; None for an empty query (everything matches)."""
    return _Parser(q).parse()


# --- dates ------------------------------------------------------------------------------------
_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")


class DateOutOfRange(ValueError):
    """A valid date the index cannot store (before DATE_MIN or from DATE_MAX on)."""


_RANGE_HINT = f"dates must be from {DATE_MIN:%Y-%m-%d} to {DATE_MAX - timedelta(days=1):%Y-%m-%d}"


def period(text: str) -> tuple[datetime, datetime]:
    """'2024' / '2024-05' / '2024-05-17' / an ISO datetime → [start, end) in UTC. ValueError if bad,
    DateOutOfRange (a ValueError) outside DATE_MIN..DATE_MAX."""
    try:
        start, end = _period(text.strip())
    except OverflowError:
        raise DateOutOfRange(_RANGE_HINT) from None
    if start < DATE_MIN or end > DATE_MAX:
        raise DateOutOfRange(_RANGE_HINT)
    return start, end


def _period(text: str) -> tuple[datetime, datetime]:
    m = _DATE_RE.match(text)
    if m:
        y = int(m.group(1))
        if not DATE_MIN.year <= y < DATE_MAX.year:
            raise DateOutOfRange(_RANGE_HINT)
        if m.group(3):
            start = datetime(y, int(m.group(2)), int(m.group(3)), tzinfo=UTC)
            return start, start + timedelta(days=1)
        if m.group(2):
            mo = int(m.group(2))
            start = datetime(y, mo, 1, tzinfo=UTC)
            return start, start + timedelta(days=calendar.monthrange(y, mo)[1])
        return datetime(y, 1, 1, tzinfo=UTC), datetime(y + 1, 1, 1, tzinfo=UTC)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    dt = dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)
    return dt, dt + timedelta(microseconds=1)


_DATE_FORMS = "YYYY, YYYY-MM, YYYY-MM-DD or an ISO time"


def _range_forms(name: str) -> str:
    """The forms a date field accepts, for its error messages."""
    if name in ("since", "until"):
        return f"{name}:2024-01-01 ({_DATE_FORMS})"
    return (
        f"{name}:2024-05, {name}:2024-01-01..2024-03-31, {name}:2024.. (from), {name}:..2024 (until)"
        f" or {name}:>=2024-01 ({_DATE_FORMS})"
    )


def date_range(name: str, value: str, q: str = "", col: int | None = None) -> DateRange:
    """published:2024-05, published:2024-01-01..2024-03-31, published:>=2024-01, since:/until:X.

    The range has at least one bound and, with both, starts before it ends: the index cannot
    search an unbounded range, and an empty one is a typing mistake (dates swapped), not a filter."""
    try:
        rng = _date_range(name, value)
    except DateOutOfRange as exc:
        raise QueryError(f"date {_show(value)} in {name}: is out of range: {exc}", q, col) from None
    except ValueError:
        raise QueryError(f"bad date {_show(value)} in {name}: — use {_range_forms(name)}", q, col) from None
    if rng.start is None and rng.end is None:
        raise QueryError(f"{name}:{value} needs a date on at least one side of '..' — use {_range_forms(name)}", q, col)
    if rng.start is not None and rng.end is not None and rng.start >= rng.end:
        raise QueryError(
            f"the range {_show(value)} in {name}: ends before it starts — put the earlier date first", q, col
        )
    return rng


def _date_range(name: str, value: str) -> DateRange:
    """The range `value` means in field `name`, unchecked; ValueError (DateOutOfRange) if a date is bad."""
    if name == "since":
        return DateRange(period(value)[0], None)
    if name == "until":
        return DateRange(None, period(value)[1])
    if ".." in value:
        lo, hi = value.split("..", 1)
        return DateRange(period(lo)[0] if lo else None, period(hi)[1] if hi else None)
    for op in (">=", "<=", ">", "<"):
        if value.startswith(op):
            start, end = period(value[len(op) :])
            return {
                ">=": DateRange(start, None), ">": DateRange(end, None),
                "<=": DateRange(None, end), "<": DateRange(None, start),
            }[op]  # fmt: skip
    return DateRange(*period(value))
