"""Plotly figures built from the data module's DataFrames (no I/O, no Streamlit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import pandas as pd
import plotly.graph_objects as go

__all__ = [
    "SYSTEM_COLORS",
    "bars",
    "histogram",
    "lines",
    "percentile_bands",
    "timeline",
    "trend",
    "waterfall",
]

SYSTEM_COLORS: Final = {
    "crm": "#1f77b4",
    "billing": "#9467bd",
    "erp": "#2ca02c",
    "middleware": "#ff7f0e",
    "provisioning": "#8c564b",
}
_BREACH: Final = "#d62728"
_LAYOUT: Final[dict[str, Any]] = {
    "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
    "height": 300,
    "legend": {"orientation": "h", "y": -0.2},
}


def _figure(title: str, **layout: Any) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title={"text": title}, **{**_LAYOUT, **layout})
    return fig


def trend(
    df: pd.DataFrame, x: str, y: str, title: str, sla: float | None = None, unit: str = ""
) -> go.Figure:
    """One KPI over time with its objective as a dashed line."""
    fig = _figure(title)
    fig.add_trace(go.Scatter(x=list(df[x]), y=list(df[y]), mode="lines+markers", name=title))
    if sla is not None:
        fig.add_hline(y=sla, line_dash="dash", line_color=_BREACH, annotation_text=f"SLA {sla:g}{unit}")
    fig.update_yaxes(ticksuffix=unit)
    return fig


def lines(df: pd.DataFrame, x: str, y: str, color: str, title: str, step: bool = False) -> go.Figure:
    """One line per value of ``color``."""
    fig = _figure(title)
    for key, part in df.groupby(color, sort=True):
        fig.add_trace(
            go.Scatter(
                x=list(part[x]),
                y=list(part[y]),
                mode="lines+markers",
                name=str(key) or "(all)",
                line_shape="hv" if step else "linear",
            )
        )
    return fig


def bars(
    df: pd.DataFrame, x: str, y: str, title: str, color: str | None = None, horizontal: bool = False
) -> go.Figure:
    """Bars, stacked by ``color`` when given."""
    fig = _figure(title, barmode="stack")
    groups: Sequence[tuple[Any, pd.DataFrame]] = list(df.groupby(color, sort=True)) if color else [("", df)]
    for key, part in groups:
        xs, ys = list(part[x]), list(part[y])
        fig.add_trace(
            go.Bar(
                x=ys if horizontal else xs,
                y=xs if horizontal else ys,
                name=str(key) or y,
                orientation="h" if horizontal else "v",
                marker_color=SYSTEM_COLORS.get(str(key)),
            )
        )
    return fig


def percentile_bands(df: pd.DataFrame, title: str, sla: float) -> go.Figure:
    """p50 line inside a p50–p99 band, p95 line, the SLA, and breaches as bars."""
    fig = _figure(title, height=360)
    x = list(df["bucket"])
    fig.add_trace(go.Scatter(x=x, y=list(df["p99"]), mode="lines", name="p99", line={"width": 0.5}))
    fig.add_trace(
        go.Scatter(x=x, y=list(df["p50"]), mode="lines", name="p50", fill="tonexty", line={"width": 2})
    )
    fig.add_trace(go.Scatter(x=x, y=list(df["p95"]), mode="lines", name="p95", line={"dash": "dot"}))
    fig.add_trace(
        go.Bar(x=x, y=list(df["breaches"]), name="breaches", yaxis="y2", marker_color=_BREACH, opacity=0.4)
    )
    fig.add_hline(y=sla, line_dash="dash", line_color=_BREACH, annotation_text=f"SLA {sla:g} s")
    fig.update_layout(
        yaxis={"title": "seconds"},
        yaxis2={"title": "breaches", "overlaying": "y", "side": "right", "showgrid": False},
    )
    return fig


def histogram(df: pd.DataFrame, title: str, sla: float, bin_s: float, last_bin: int) -> go.Figure:
    """Counts per latency bin (from SQL); bins past the SLA in red, the last one open-ended."""
    fig = _figure(title)
    labels = [
        f"≥ {row.lower_s:g} s" if int(row.bin) >= last_bin else f"{row.lower_s:g}–{row.lower_s + bin_s:g} s"
        for row in df.itertuples(index=False)
    ]
    colors = [_BREACH if float(v) >= sla else "#1f77b4" for v in df["lower_s"]]
    fig.add_trace(go.Bar(x=labels, y=list(df["completed"]), marker_color=colors, name="transactions"))
    fig.update_xaxes(type="category")
    return fig


def waterfall(spans: pd.DataFrame, title: str) -> go.Figure:
    """The transaction's spans as bars on a shared time axis, one row per span, by system."""
    fig = _figure(title, height=max(240, 32 * len(spans) + 80), barmode="overlay")
    labels = [
        f"{i + 1:>3} {row.stage}" + (f" #{row.attempt}" if int(row.attempt) > 1 else "")
        for i, row in enumerate(spans.itertuples(index=False))
    ]
    for system, part in spans.groupby("system", sort=False):
        idx = list(part.index)
        fig.add_trace(
            go.Bar(
                y=[labels[spans.index.get_loc(i)] for i in idx],
                x=[max(float(d), 0.5) for d in part["duration_ms"]],
                base=list(part["offset_ms"]),
                orientation="h",
                name=str(system),
                marker_color=[
                    _BREACH if o in ("failed", "dead_lettered") else SYSTEM_COLORS.get(str(system), "#7f7f7f")
                    for o in part["outcome"]
                ],
                hovertext=[
                    f"{r.stage} · {r.outcome}" + (f" · {r.category}" if r.category else "")
                    for r in part.itertuples(index=False)
                ],
            )
        )
    fig.update_yaxes(autorange="reversed", type="category", categoryorder="array", categoryarray=labels)
    fig.update_xaxes(title="ms since the first span")
    return fig


def timeline(df: pd.DataFrame, title: str, now: Any) -> go.Figure:
    """Alerts as bars from start to end (or now, while firing), one row per alert, by category."""
    fig = _figure(title, height=max(240, 26 * len(df) + 100), barmode="overlay")
    rows = df.copy()
    rows["end"] = rows["ends_at"].where(rows["ends_at"].notna(), now)
    rows["label"] = rows["alert"].astype(str) + " · " + rows["fingerprint"].astype(str).str[:8]
    for category, part in rows.groupby("category", sort=True):
        starts = pd.to_datetime(part["starts_at"])
        ends = pd.to_datetime(part["end"])
        fig.add_trace(
            go.Bar(
                y=list(part["label"]),
                x=[(e - s).total_seconds() * 1000 for s, e in zip(starts, ends, strict=True)],
                base=list(starts),
                orientation="h",
                name=str(category),
                hovertext=list(part["status"]),
            )
        )
    fig.update_xaxes(type="date")
    fig.update_yaxes(autorange="reversed")
    return fig
