"""Scoring the evaluator against ground truth: precision and recall per category.

The reference sync engine writes one JSON line per correlation id saying what
a perfect observer should conclude (``docs/ground-truth.md``):
``{"correlation_id", "expected": {"outcome", "category", "absorbed"}, …}``.
:func:`score` compares those with the evaluator's verdicts
(``revtrace_transactions``): for each category, a transaction is a true
positive when both say that category, a false positive when only the verdict
does, a false negative when only the ground truth does. A transaction with no
verdict counts as "no category".
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector.store import Store

__all__ = ["CategoryScore", "Score", "load_ground_truth", "score", "store_verdicts"]


@dataclass(frozen=True)
class CategoryScore:
    """Counts and ratios for one category."""

    category: str
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float | None:
        """tp / (tp + fp); None when nothing was predicted."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        """tp / (tp + fn); None when nothing was expected."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


@dataclass(frozen=True)
class Score:
    """Per-category scores and the confusion counts behind them."""

    categories: Mapping[str, CategoryScore]
    transactions: int
    missing: int
    """Ground-truth transactions with no verdict at all."""
    confusion: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """(expected category, verdict category) → transactions ("" = none)."""
    examples: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)

    @property
    def precision(self) -> float | None:
        """Micro-averaged over categories."""
        tp = sum(c.tp for c in self.categories.values())
        fp = sum(c.fp for c in self.categories.values())
        return tp / (tp + fp) if tp + fp else None

    @property
    def recall(self) -> float | None:
        """Micro-averaged over categories."""
        tp = sum(c.tp for c in self.categories.values())
        fn = sum(c.fn for c in self.categories.values())
        return tp / (tp + fn) if tp + fn else None

    def table(self) -> str:
        """A plain-text table for reports."""

        def pct(x: float | None) -> str:
            return "   -  " if x is None else f"{x:6.3f}"

        lines = ["category        tp    fp    fn  precision  recall"]
        for name in sorted(self.categories):
            c = self.categories[name]
            lines.append(
                f"{name:<14} {c.tp:>4}  {c.fp:>4}  {c.fn:>4}  {pct(c.precision):>9}  {pct(c.recall):>6}"
            )
        lines.append(
            f"{'(all)':<14} {'':>4}  {'':>4}  {'':>4}  {pct(self.precision):>9}  {pct(self.recall):>6}"
            f"   {self.transactions} transactions, {self.missing} without a verdict"
        )
        wrong = [(k, n) for k, n in self.confusion.items() if k[0] != k[1]]
        if wrong:
            lines.append("confusions (expected → verdict: count, examples):")
            for (exp, got), n in sorted(wrong, key=lambda kv: -kv[1]):
                ex = ", ".join(self.examples.get((exp, got), ())[:3])
                lines.append(f"  {exp or '(none)'} → {got or '(none)'}: {n}  {ex}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "transactions": self.transactions,
            "missing": self.missing,
            "precision": self.precision,
            "recall": self.recall,
            "categories": {
                k: {"tp": c.tp, "fp": c.fp, "fn": c.fn, "precision": c.precision, "recall": c.recall}
                for k, c in sorted(self.categories.items())
            },
        }


def load_ground_truth(path: str | Path) -> dict[str, dict[str, Any]]:
    """correlation id → ground-truth line (the last line wins)."""
    out: dict[str, dict[str, Any]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            doc = json.loads(line)
            out[str(doc["correlation_id"])] = doc
    return out


def store_verdicts(store: Store) -> dict[str, tuple[str, str]]:
    """correlation id → (status, category) of every verdict in the store."""
    rows = store.query("SELECT CorrelationId, Status, Category FROM revtrace_transactions FINAL")
    return {str(cid): (str(status), str(category)) for cid, status, category in rows}


def score(
    truth: Mapping[str, Mapping[str, Any]],
    verdicts: Mapping[str, tuple[str, str]],
    *,
    skip: Iterable[str] = (),
) -> Score:
    """Precision and recall per category of ``verdicts`` against ``truth``."""
    skipped = set(skip)
    pairs: list[tuple[str, str, str]] = []
    missing = 0
    for cid, line in truth.items():
        if cid in skipped:
            continue
        expected = str((line.get("expected") or {}).get("category") or "")
        got = verdicts.get(cid)
        if got is None:
            missing += 1
        pairs.append((cid, expected, got[1] if got else ""))
    confusion = Counter((e, g) for _, e, g in pairs)
    examples: dict[tuple[str, str], list[str]] = {}
    for cid, e, g in pairs:
        if e != g:
            examples.setdefault((e, g), []).append(cid)
    names = sorted({e for _, e, _ in pairs} | {g for _, _, g in pairs} - {""})
    categories = {
        name: CategoryScore(
            name,
            tp=confusion.get((name, name), 0),
            fp=sum(n for (e, g), n in confusion.items() if g == name and e != name),
            fn=sum(n for (e, g), n in confusion.items() if e == name and g != name),
        )
        for name in names
        if name
    }
    return Score(
        categories=categories,
        transactions=len(pairs),
        missing=missing,
        confusion=dict(confusion),
        examples={k: tuple(v[:10]) for k, v in examples.items()},
    )
