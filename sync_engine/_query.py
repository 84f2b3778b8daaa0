"""A tiny subset of SOQL / SuiteQL, enough for reconciliation queries::

    SELECT Id, Amount, CurrencyIsoCode FROM Opportunity
    WHERE CloseDate >= 2026-12-01 AND StageName = 'Closed Won' LIMIT 200

``SELECT <fields> FROM <table> [WHERE <field> <op> <literal> [AND …]] [LIMIT n]``
with ``= != < <= > >=``, literals quoted strings, numbers, dates, TRUE/FALSE/NULL.
Field names match case-insensitively. Anything else is a :class:`QueryError`
(the simulators answer it as the vendor's malformed-query error).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

__all__ = ["Condition", "Query", "QueryError", "parse_query", "run_query"]

_QUERY: Final = re.compile(
    r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<table>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$",
    re.I | re.S,
)
_CONDITION: Final = re.compile(
    r"^\s*(?P<field>\w+(?:\.\w+)?)\s*(?P<op>!=|<=|>=|=|<|>)\s*(?P<value>.+?)\s*$", re.S
)
_OPS: Final = ("=", "!=", "<", "<=", ">", ">=")


class QueryError(ValueError):
    """The query is outside the supported subset."""


@dataclass(frozen=True)
class Condition:
    """``field op value``."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class Query:
    """A parsed query."""

    fields: tuple[str, ...]
    table: str
    conditions: tuple[Condition, ...]
    limit: int | None


def _literal(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("\\'", "'")
    upper = text.upper()
    if upper in ("TRUE", "FALSE"):
        return upper == "TRUE"
    if upper == "NULL":
        return None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}(T[\d:.]+Z?)?", text):
        return text
    try:
        return Decimal(text)
    except InvalidOperation:
        raise QueryError(f"unexpected literal {text!r}") from None


def parse_query(text: str) -> Query:
    """Parse a query; raises :class:`QueryError`."""
    match = _QUERY.match(text)
    if match is None:
        raise QueryError(f"not a supported query: {text[:120]!r}")
    fields = tuple(f.strip() for f in match["fields"].split(","))
    if not all(re.fullmatch(r"\w+(\.\w+)?", f) for f in fields):
        raise QueryError(f"unsupported select list {match['fields']!r}")
    conditions: list[Condition] = []
    if match["where"]:
        for part in re.split(r"\s+AND\s+", match["where"], flags=re.I):
            cond = _CONDITION.match(part)
            if cond is None:
                raise QueryError(f"unsupported condition {part.strip()!r}")
            conditions.append(Condition(cond["field"], cond["op"], _literal(cond["value"])))
    limit = int(match["limit"]) if match["limit"] else None
    return Query(fields, match["table"], tuple(conditions), limit)


def _get(record: Mapping[str, Any], name: str) -> Any:
    lowered = name.lower()
    for key, value in record.items():
        if key.lower() == lowered:
            return value
    return None


def _compare(left: Any, op: str, right: Any) -> bool:
    if right is None or left is None:
        return (left is right) if op == "=" else (left is not right) if op == "!=" else False
    if isinstance(right, Decimal):
        try:
            left = Decimal(str(left))
        except InvalidOperation:
            return False
    elif isinstance(right, bool):
        left = bool(left)
    else:
        left = str(left)
    if op == "=":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)


def run_query(query: Query, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The selected fields of the records matching every condition."""
    out: list[dict[str, Any]] = []
    for record in records:
        if all(_compare(_get(record, c.field), c.op, c.value) for c in query.conditions):
            out.append({f: _get(record, f) for f in query.fields})
            if query.limit is not None and len(out) >= query.limit:
                break
    return out
