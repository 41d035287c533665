"""A small OData ``$filter`` parser, compiled to SQLAlchemy expressions.

Grammar (what the iTwins API accepts)::

    expr    := or
    or      := and ("or" and)*
    and     := unary ("and" unary)*
    unary   := "not" unary | primary
    primary := "(" expr ")" | func "(" prop "," literal ")" | prop op literal
             | prop "in" ("(" | "[") literal ("," literal)* (")" | "]")
    op      := eq | ne | gt | ge | lt | le
    func    := contains | startswith | endswith   (the arguments may come in either order)
    literal := 'string' ('' escapes a quote) | number | true | false | null
             | date-time (2024-05-01, 2024-05-01T10:00:00Z, ...)

A syntax error raises ``FilterSyntaxError`` with the position just past the offending token,
which the API reports as
``Syntax error at position N in '<filter>'.``
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, not_, or_

from twinbase.domain.listing import escape_like

_TOKEN = re.compile(
    r"\s*(?:(?P<lp>[(\[])|(?P<rp>[)\]])|(?P<comma>,)|(?P<str>'(?:[^']|'')*')"
    r"|(?P<date>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?)"
    r"|(?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<word>[A-Za-z_][A-Za-z0-9_./]*))"
)


class FilterSyntaxError(ValueError):
    def __init__(self, position: int, text: str) -> None:
        self.position = position
        self.text = text
        super().__init__(f"Syntax error at position {position} in '{text}'.")


class UnknownProperty(ValueError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"The $filter string contains an unknown property '{name}'.")


@dataclass(frozen=True)
class Tok:
    kind: str
    value: str
    pos: int  # 1-based position of the token's first character


def tokenize(text: str) -> list[Tok]:
    out: list[Tok] = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        m = _TOKEN.match(text, i)
        if not m or m.end() == i:
            raise FilterSyntaxError(i, text)
        kind = m.lastgroup or ""
        value = m.group(kind)
        out.append(Tok(kind, value, m.start(kind) + 1))
        i = m.end()
    return out


Compiled = ColumnElement[bool]
_OPS = {"eq", "ne", "gt", "ge", "lt", "le"}
_FUNCS = {"contains", "startswith", "endswith"}


class _Parser:
    def __init__(self, text: str, columns: Mapping[str, Any]) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.columns = {k.lower(): v for k, v in columns.items()}

    def fail(self) -> FilterSyntaxError:
        # Like the platform's OData parser: the position just past the offending token, counted from 0.
        if self.i < len(self.toks):
            tok = self.toks[self.i]
            return FilterSyntaxError(tok.pos - 1 + len(tok.value), self.text)
        return FilterSyntaxError(len(self.text), self.text)

    def peek(self) -> Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, kind: str | None = None, word: str | None = None) -> Tok:
        tok = self.peek()
        if tok is None or (kind and tok.kind != kind) or (word and tok.value.lower() != word):
            raise self.fail()
        self.i += 1
        return tok

    def at_word(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "word" and tok.value.lower() in words

    def parse(self) -> Compiled:
        expr = self.or_()
        if self.peek() is not None:
            raise self.fail()
        return expr

    def or_(self) -> Compiled:
        parts = [self.and_()]
        while self.at_word("or"):
            self.i += 1
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else or_(*parts)

    def and_(self) -> Compiled:
        parts = [self.unary()]
        while self.at_word("and"):
            self.i += 1
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else and_(*parts)

    def unary(self) -> Compiled:
        if self.at_word("not"):
            self.i += 1
            return not_(self.unary())
        return self.primary()

    def column(self, tok: Tok) -> Any:
        col = self.columns.get(tok.value.lower())
        if col is None:
            raise UnknownProperty(tok.value)
        return col

    def literal(self) -> Any:
        tok = self.peek()
        if tok is None:
            raise self.fail()
        self.i += 1
        if tok.kind == "str":
            return tok.value[1:-1].replace("''", "'")
        if tok.kind == "date":
            try:
                value = datetime.fromisoformat(tok.value.replace("Z", "+00:00"))
            except ValueError:
                self.i -= 1
                raise self.fail() from None
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if tok.kind == "num":
            return float(tok.value) if any(c in tok.value for c in ".eE") else int(tok.value)
        if tok.kind == "word" and tok.value.lower() in ("true", "false"):
            return tok.value.lower() == "true"
        if tok.kind == "word" and tok.value.lower() == "null":
            return None
        self.i -= 1
        raise self.fail()

    def primary(self) -> Compiled:
        tok = self.peek()
        if tok is None:
            raise self.fail()
        if tok.kind == "lp":
            self.i += 1
            expr = self.or_()
            self.take("rp")
            return expr
        if tok.kind != "word":
            raise self.fail()
        if tok.value.lower() in _FUNCS and self.i + 1 < len(self.toks) and self.toks[self.i + 1].kind == "lp":
            self.i += 2
            first = self.peek()
            if first is not None and first.kind == "str":
                # contains('text', prop): the argument order some documentation examples use.
                value = self.literal()
                self.take("comma")
                col = self.column(self.take("word"))
            else:
                col = self.column(self.take("word"))
                self.take("comma")
                value = self.literal()
            self.take("rp")
            if not isinstance(value, str):
                raise self.fail()
            pattern = escape_like(value.lower())
            lowered = func.lower(col)
            name = tok.value.lower()
            if name == "contains":
                return lowered.like(f"%{pattern}%", escape="\\")
            if name == "startswith":
                return lowered.like(f"{pattern}%", escape="\\")
            return lowered.like(f"%{pattern}", escape="\\")
        self.i += 1
        op_tok = self.peek()
        if op_tok is not None and op_tok.kind == "word" and op_tok.value.lower() == "in":
            col = self.column(tok)
            self.i += 1
            self.take("lp")
            values = [self.literal()]
            while self.peek() is not None and self.peek().kind == "comma":  # type: ignore[union-attr]
                self.i += 1
                values.append(self.literal())
            self.take("rp")
            return or_(*(_compare(col, "eq", v) for v in values))
        if op_tok is None or op_tok.kind != "word" or op_tok.value.lower() not in _OPS:
            raise self.fail()
        col = self.column(tok)
        self.i += 1
        value = self.literal()
        return _compare(col, op_tok.value.lower(), value)


def _compare(col: Any, op: str, value: Any) -> Compiled:
    if value is None:
        if op == "eq":
            return col.is_(None)  # type: ignore[no-any-return]
        if op == "ne":
            return col.is_not(None)  # type: ignore[no-any-return]
    if isinstance(value, str):
        # The platform compares strings case-insensitively.
        col, value = func.lower(col), value.lower()
    ops: dict[str, Callable[[Any, Any], Compiled]] = {
        "eq": lambda c, v: c == v,
        "ne": lambda c, v: c != v,
        "gt": lambda c, v: c > v,
        "ge": lambda c, v: c >= v,
        "lt": lambda c, v: c < v,
        "le": lambda c, v: c <= v,
    }
    return ops[op](col, value)


def compile_filter(text: str, columns: Mapping[str, Any]) -> Compiled:
    """Parse ``text`` and return a boolean SQL expression over ``columns`` (property name to column)."""
    return _Parser(text, columns).parse()
