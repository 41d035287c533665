"""One toolkit for every list: paging (``$top``, ``$skip``, ``$continuationToken``), ``$orderBy`` and
``$search``, parsed and applied the same way everywhere. ``api.http.collection`` renders the answer.

- ``parse_paging`` reads ``$top``/``$skip``/``$continuationToken`` into a ``Paging``; problems are
  appended as ``InvalidValue`` details so the caller reports them in its API's 422 shape.
- A continuation token is opaque to clients: the URL-safe base64 of ``{"skip": n}`` with a check
  digest, so a made-up or damaged token is told apart from a real one. A list that pages by keyset adds
  ``"after"``: the sort key of the last row handed out (``Page.after``), from which the next page is
  read by index whatever ``n`` (``Paging.after``); ``skip`` still says where that is, for ``prev``
  links and for lists that cannot use it. It carries nothing a client could not find out by listing,
  so it needs no secret.
- ``parse_order_by`` accepts ``property [asc|desc]`` terms, comma-separated, from a per-list
  allow-list of properties.
- ``like_contains`` is the one case-insensitive substring match; ``%``, ``_`` and ``\\`` in the
  searched text match literally.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import orjson
from sqlalchemy import Connection, Select, func, literal, tuple_
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from twinbase.errors import ErrorDetail, invalid_value

RowT = TypeVar("RowT")

TOP = "$top"
SKIP = "$skip"
CONTINUATION = "$continuationToken"
_TOKEN_CHECK = b"twinbase-continuation-v1"
# The longest token read: a key of up to three 255-character strings (a name order's, the users list's
# given name, surname and id), each character up to 6 bytes as JSON, in base64.
MAX_TOKEN = 8192


@dataclass(frozen=True)
class Paging:
    """Which slice of a list was asked for: ``top`` rows from row ``skip``; ``after``: the sort key of
    the row before it, when a continuation token carried one (a keyset list starts after it)."""

    top: int
    skip: int
    after: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Page(Generic[RowT]):
    """One page of a list: its rows, the slice asked for, and whether rows follow it. ``after``: the
    sort key of its last row, for a keyset list's next continuation token."""

    rows: list[RowT]
    paging: Paging
    more: bool
    after: tuple[str, ...] | None = None

    @property
    def top(self) -> int:
        return self.paging.top

    @property
    def skip(self) -> int:
        return self.paging.skip


# ------------------------------------------------------------------------------------------- paging


# The largest value any integer parameter takes: an offset or index past two billion is a mistake
# rather than a page, and PostgreSQL's integer columns stop there.
MAX_INT = 2**31 - 1


def bounded_int(
    params: Mapping[str, str], name: str, low: int, high: int | None, default: int, details: list[ErrorDetail]
) -> int:
    """``params[name]`` as an integer in ``low..high`` (``high`` None: up to ``MAX_INT``).

    Absent or empty gives ``default``. A bad value appends an ``InvalidValue`` detail naming the
    parameter and gives ``default``, so the caller can report every problem in one 422.
    """
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        details.append(invalid_value(name, f"'{name}' must be an integer."))
        return default
    high = MAX_INT if high is None else high
    if value < low or value > high:
        span = f"between {low} and {high}"
        details.append(invalid_value(name, f"'{name}' must be {span}."))
        return default
    return value


def continuation_token(skip: int, after: Sequence[str] | None = None) -> str:
    """The token that resumes a list at row ``skip`` (after the row whose sort key is ``after``)."""
    body = orjson.dumps({"skip": skip} if after is None else {"skip": skip, "after": list(after)})
    check = hashlib.blake2b(body, key=_TOKEN_CHECK, digest_size=6).digest()
    return base64.urlsafe_b64encode(check + body).decode("ascii").rstrip("=")


def read_continuation(token: str) -> tuple[int, tuple[str, ...] | None] | None:
    """The row a token resumes at and the sort key it resumes after; ``None`` when the token is not one
    twinbase handed out."""
    if not token or len(token) > MAX_TOKEN:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    check, body = raw[:6], raw[6:]
    if hashlib.blake2b(body, key=_TOKEN_CHECK, digest_size=6).digest() != check:
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    skip = data.get("skip") if isinstance(data, dict) else None
    if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
        return None
    after = data.get("after")
    if after is None:
        return skip, None
    if not isinstance(after, list) or not after or not all(isinstance(v, str) for v in after):
        return None
    return skip, tuple(after)


def parse_paging(
    params: Mapping[str, str],
    details: list[ErrorDetail],
    *,
    default_top: int = 100,
    max_top: int = 1000,
    min_top: int = 1,
) -> Paging:
    """``$top``, ``$skip`` and ``$continuationToken``; each problem appends one detail."""
    top = bounded_int(params, TOP, min_top, max_top, default_top, details)
    skip = bounded_int(params, SKIP, 0, None, 0, details)
    token = params.get(CONTINUATION)
    after: tuple[str, ...] | None = None
    if token:
        resumed = read_continuation(token)
        if resumed is None:
            details.append(
                invalid_value(CONTINUATION, f"'{CONTINUATION}' is not a valid continuation token.")
            )
        elif params.get(SKIP):
            details.append(
                ErrorDetail(
                    "MutuallyExclusiveParametersProvided",
                    f"Parameters '{SKIP}' and '{CONTINUATION}' cannot be used together.",
                    CONTINUATION,
                )
            )
        else:
            skip, after = resumed
    return Paging(top, skip, after)


def paging_or_raise(
    params: Mapping[str, str],
    invalid: Callable[[list[ErrorDetail]], Exception],
    *,
    default_top: int = 100,
    max_top: int = 1000,
    min_top: int = 1,
) -> Paging:
    """``parse_paging`` for lists with no other parameters to report alongside."""
    details: list[ErrorDetail] = []
    paging = parse_paging(params, details, default_top=default_top, max_top=max_top, min_top=min_top)
    if details:
        raise invalid(details)
    return paging


def fetch_page(session: Session, stmt: Select[Any], paging: Paging) -> Page[Any]:
    """Run an ordered ``SELECT`` for one page; one extra row tells whether more follow."""
    rows = list(session.scalars(stmt.offset(paging.skip).limit(paging.top + 1)))
    return Page(rows[: paging.top], paging, len(rows) > paging.top)


def fetch_keyset_page(
    session: Session | Connection,
    stmt: Select[Any],
    paging: Paging,
    keys: Sequence[Any],
    *,
    descending: bool,
    rows_of: Callable[[Select[Any]], list[Any]] | None = None,
    key_of: Callable[[Any], Sequence[Any]] | None = None,
) -> Page[Any]:
    """One page of ``stmt`` (unordered: this orders it) by ``keys`` (non-null columns, unique together,
    all in one direction): after the key a continuation token carries, by index whatever the depth; from
    row ``skip`` otherwise. The page carries its last row's key for the next token (``Page.after``),
    tagged with the order it belongs to. ``rows_of`` runs the statement (default: its first column's
    objects); ``key_of`` reads a row's key (default: the keys' attributes of the row)."""
    run = rows_of or (lambda q: list(session.scalars(q)))
    ordered = stmt.order_by(*(k.desc() if descending else k.asc() for k in keys))
    tag = order_tag(keys, descending)
    after = _typed_key(paging.after, keys, tag)
    if after is not None:
        # Each value bound with its column's type (a datetime as the column stores it).
        values = tuple_(*(literal(v, type_=k.type) for v, k in zip(after, keys, strict=True)))
        bound = tuple_(*keys) < values if descending else tuple_(*keys) > values
        rows = run(ordered.where(bound).limit(paging.top + 1))
    else:
        rows = run(ordered.offset(paging.skip).limit(paging.top + 1))
    page = Page(rows[: paging.top], paging, len(rows) > paging.top)
    if page.more and page.rows:
        last = page.rows[-1]
        key = key_of(last) if key_of is not None else [getattr(last, k.key) for k in keys]
        return Page(page.rows, paging, True, (*(_key_text(v) for v in key), tag))
    return page


def order_tag(keys: Sequence[Any], descending: bool) -> str:
    """A short name of a keyset order (its columns and direction), carried as the last item of the key
    in a token: a token of another order (the same list sorted by another column of the same type)
    must not be read as a key of this one, it resumes by its row number."""
    spec = ",".join(str(getattr(k, "expression", k)) for k in keys) + (" desc" if descending else " asc")
    return hashlib.blake2b(spec.encode(), digest_size=4).hexdigest()


def fetch_entities_by_key(
    session: Session, stmt: Select[Any], paging: Paging, keys: Sequence[Any], *, descending: bool
) -> Page[Any]:
    """``fetch_keyset_page`` of a statement selecting ``(entity, sort value)`` (a join's column, e.g. when
    a favorite was made), keyed by ``keys`` = [that column, the entity's id column]; the page holds the
    entities."""
    page = fetch_keyset_page(
        session,
        stmt,
        paging,
        keys,
        descending=descending,
        rows_of=lambda ordered: list(session.execute(ordered).all()),
        key_of=lambda row: (row[1], row[0].id),
    )
    return Page([row[0] for row in page.rows], page.paging, page.more, page.after)


def _key_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    # repr: the shortest text that reads back as the same float.
    return repr(value) if isinstance(value, float) else str(value)


def _typed_key(after: tuple[str, ...] | None, keys: Sequence[Any], tag: str) -> list[Any] | None:
    """A token's key as the columns' values; None when it is not this order's (another order's token
    resumes by its row number)."""
    if after is None or len(after) != len(keys) + 1 or after[-1] != tag:
        return None
    values: list[Any] = []
    for text, key in zip(after[:-1], keys, strict=True):
        kind = _python_type(key)
        try:
            if kind is datetime:
                stamp = datetime.fromisoformat(text)
                values.append(stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC))
            elif kind is int:
                values.append(int(text))
            elif kind is float:
                values.append(float(text))
            else:
                values.append(text)
        except ValueError:
            return None
    return values


def _python_type(key: Any) -> type | None:
    kind = getattr(key.type, "impl", key.type)  # a TypeDecorator says ``object``: ask what it stores as
    try:
        found = kind.python_type
    except NotImplementedError:
        return None
    return found if isinstance(found, type) else None


def page_of(rows: Sequence[RowT], paging: Paging) -> Page[RowT]:
    """A page from up to ``top + 1`` rows already fetched at ``skip``."""
    return Page(list(rows[: paging.top]), paging, len(rows) > paging.top)


# ------------------------------------------------------------------------------------------ ordering


class BadOrderBy(ValueError):
    """``$orderBy`` names a property the list does not sort by, or a direction other than asc/desc."""


def parse_order_by(
    raw: str | None,
    columns: Mapping[str, Any],
    *,
    case_insensitive: bool = False,
) -> list[Any] | None:
    """``"name desc,createdDateTime"`` -> ORDER BY clauses; ``None`` when absent; ``BadOrderBy``."""
    if raw is None or not raw.strip():
        return None
    allowed = {k.lower(): v for k, v in columns.items()} if case_insensitive else columns
    clauses = []
    for part in raw.split(","):
        words = part.split()
        if not words or len(words) > 2:
            raise BadOrderBy(part)
        column = allowed.get(words[0].lower() if case_insensitive else words[0])
        direction = words[1].lower() if len(words) == 2 else "asc"
        if column is None or direction not in ("asc", "desc"):
            raise BadOrderBy(part)
        clauses.append(column.desc() if direction == "desc" else column.asc())
    return clauses


def single_order(
    raw: str | None, columns: Mapping[str, Any], *, case_insensitive: bool = False
) -> tuple[Any, bool] | None:
    """A one-term ``$orderBy`` as (column, descending) for ``fetch_keyset_page``; None when absent or of
    several terms (those page by offset); ``BadOrderBy`` as ``parse_order_by``."""
    clauses = parse_order_by(raw, columns, case_insensitive=case_insensitive)
    if clauses is None or len(clauses) != 1:
        return None
    words = raw.split() if raw else []
    descending = len(words) == 2 and words[1].lower() == "desc"
    if case_insensitive:
        return {k.lower(): v for k, v in columns.items()}[words[0].lower()], descending
    return columns[words[0]], descending


def order_by_param(params: Mapping[str, str]) -> str | None:
    """``$orderBy`` as the clients spell it (the 1.x clients and the iTwins docs say ``$orderby``)."""
    return params.get("$orderBy") or params.get("$orderby") or None


# ------------------------------------------------------------------------------------------- search


def escape_like(text: str) -> str:
    """``text`` for a LIKE pattern with ``\\`` as the escape: its ``%``, ``_`` and ``\\`` are literal."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def like_contains(column: Any, text: str) -> ColumnElement[bool]:
    """Case-insensitive: ``column`` contains ``text``, wildcards in ``text`` taken literally."""
    return func.lower(column).like(f"%{escape_like(text.lower())}%", escape="\\")
