"""Diffs between payload snapshots (source → canonical → target), pure functions."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["FieldChange", "field_diff", "pretty", "unified_diff"]


def _parse(body: str) -> Any:
    try:
        return json.loads(body)
    except (TypeError, ValueError):
        return body


def pretty(body: str) -> str:
    """The body as indented JSON (as is when it is not JSON)."""
    value = _parse(body)
    if isinstance(value, str) and value == body:
        return body
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, dict) and value:
        for key in value:
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            _flatten(item, f"{prefix}[{index}]", out)
    else:
        out[prefix or "$"] = json.dumps(value, ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True)
class FieldChange:
    """One field that differs between two snapshots."""

    path: str
    change: str
    """``added``, ``removed`` or ``changed``."""
    before: str
    after: str


def field_diff(before: str, after: str) -> list[FieldChange]:
    """Field by field (``a.b[0].c``), what was added, removed or changed."""
    left: dict[str, str] = {}
    right: dict[str, str] = {}
    _flatten(_parse(before), "", left)
    _flatten(_parse(after), "", right)
    changes: list[FieldChange] = []
    for path in sorted(left.keys() | right.keys()):
        if path not in right:
            changes.append(FieldChange(path, "removed", left[path], ""))
        elif path not in left:
            changes.append(FieldChange(path, "added", "", right[path]))
        elif left[path] != right[path]:
            changes.append(FieldChange(path, "changed", left[path], right[path]))
    return changes


def unified_diff(before: str, after: str, from_name: str, to_name: str) -> str:
    """A unified diff of the two bodies pretty-printed."""
    return "\n".join(
        difflib.unified_diff(
            pretty(before).splitlines(), pretty(after).splitlines(), from_name, to_name, lineterm=""
        )
    )
