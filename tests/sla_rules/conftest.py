"""Shared helpers of the sla_rules tests: golden files and span fixtures.

Golden files are regenerated with ``REVTRACE_REGEN_GOLDEN=1 pytest tests/sla_rules``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

TESTDATA = Path(__file__).parent / "testdata"
REGEN = os.environ.get("REVTRACE_REGEN_GOLDEN", "") == "1"


def plain(value: Any) -> Any:
    """Dataclasses, enums, tuples and mappings → JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(plain(k)): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


def check_golden(path: Path, actual: Any) -> None:
    """Compare ``actual`` with the golden JSON at ``path`` (or rewrite it)."""
    # Paths inside the repository are written relative to it, so the files
    # compare equal wherever the checkout lives.
    root = str(Path(__file__).resolve().parents[2])
    text = json.dumps(plain(actual), indent=2, sort_keys=True).replace(root, "<repo>") + "\n"
    if REGEN or not path.exists():
        if not REGEN:
            pytest.fail(f"{path.name} is missing; run with REVTRACE_REGEN_GOLDEN=1 to create it")
        path.write_text(text)
        return
    expected = path.read_text()
    assert json.loads(text) == json.loads(expected), (
        f"{path.name} differs (REVTRACE_REGEN_GOLDEN=1 rewrites it)"
    )
