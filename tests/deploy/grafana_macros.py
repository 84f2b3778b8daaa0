"""The Grafana ClickHouse plugin's macros and Grafana's template variables, expanded
the way the plugin documents them, so the tests can run a panel's SQL as Grafana
would send it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

ALL = "$__all"
"""A variable's value when "All" is selected."""


@dataclass(frozen=True)
class Context:
    """The dashboard state a query is expanded in: time range (epoch seconds), interval, variables."""

    start: float
    end: float
    interval_s: int = 60
    variables: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """name → selected values; ``[ALL]`` when All is selected."""
    options: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """name → every value the variable offers (what All stands for)."""

    def values(self, name: str) -> list[str]:
        """The variable's values, All resolved to every option."""
        selected = list(self.variables.get(name, ()))
        if selected == [ALL]:
            return list(self.options.get(name, ()))
        return selected

    def is_all(self, name: str) -> bool:
        """Whether the variable selects everything (All, or nothing)."""
        selected = list(self.variables.get(name, ()))
        return not selected or selected == [ALL] or selected == [""]


def _args(sql: str, open_at: int) -> tuple[list[str], int]:
    """The comma-separated top-level arguments of the call whose ``(`` is at ``open_at``; and its end."""
    depth, start, args = 0, open_at + 1, []
    quote = ""
    for index in range(open_at, len(sql)):
        char = sql[index]
        if quote:
            if char == quote and sql[index - 1] != "\\":
                quote = ""
            continue
        if char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:index].strip())
                return args, index + 1
        elif char == "," and depth == 1:
            args.append(sql[start:index].strip())
            start = index + 1
    raise ValueError(f"unbalanced macro call at {sql[open_at - 20 : open_at + 40]!r}")


def _calls(sql: str, name: str, replace: object) -> str:
    """Replace every ``$__name(...)`` with ``replace(args)``."""
    assert callable(replace)
    pattern = f"$__{name}("
    while (at := sql.find(pattern)) >= 0:
        args, end = _args(sql, at + len(pattern) - 1)
        sql = sql[:at] + str(replace(args)) + sql[end:]
    return sql


def _singlequote(values: Sequence[str]) -> str:
    return ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)


def expand_variables(sql: str, ctx: Context) -> str:
    """``${name:format}``, ``${name}`` and ``$name`` (Grafana's variable syntax)."""

    def braced(match: re.Match[str]) -> str:
        name, fmt = match["name"], match["fmt"]
        values = ctx.values(name)
        if fmt == "singlequote":
            return _singlequote(values)
        if fmt in (None, "raw", "text"):
            return ",".join(values) if len(values) != 1 else values[0]
        raise ValueError(f"unsupported variable format {fmt!r} in ${{{name}:{fmt}}}")

    sql = re.sub(r"\$\{(?P<name>[A-Za-z_]\w*)(?::(?P<fmt>\w+))?\}", braced, sql)
    return re.sub(
        r"\$(?!__)(?P<name>[A-Za-z_]\w*)",
        lambda m: ",".join(ctx.values(m["name"])) if m["name"] in ctx.variables else m[0],
        sql,
    )


def expand(sql: str, ctx: Context) -> str:
    """The SQL the plugin sends for ``sql`` in ``ctx`` (macros as documented by the plugin)."""
    start, end = int(ctx.start), int(ctx.end)
    start_ms, end_ms = int(ctx.start * 1000), int(ctx.end * 1000)

    def conditional_all(args: list[str]) -> str:
        condition, variable = args
        name = variable.strip().lstrip("$").strip("{}").split(":")[0]
        return "1=1" if ctx.is_all(name) else condition

    sql = _calls(sql, "conditionalAll", conditional_all)
    sql = expand_variables(sql, ctx)
    sql = _calls(
        sql,
        "timeFilter_ms",
        lambda a: (
            f"{a[0]} >= fromUnixTimestamp64Milli({start_ms}) AND {a[0]} <= fromUnixTimestamp64Milli({end_ms})"
        ),
    )
    sql = _calls(
        sql, "timeFilter", lambda a: f"{a[0]} >= toDateTime({start}) AND {a[0]} <= toDateTime({end})"
    )
    sql = _calls(
        sql,
        "dateFilter",
        lambda a: f"{a[0]} >= toDate(toDateTime({start})) AND {a[0]} <= toDate(toDateTime({end}))",
    )
    sql = _calls(
        sql,
        "timeInterval_ms",
        lambda a: f"toStartOfInterval(toDateTime64({a[0]}, 3), INTERVAL {ctx.interval_s * 1000} millisecond)",
    )
    sql = _calls(
        sql,
        "timeInterval",
        lambda a: f"toStartOfInterval(toDateTime({a[0]}), INTERVAL {ctx.interval_s} second)",
    )
    sql = sql.replace("$__fromTime_ms", f"fromUnixTimestamp64Milli({start_ms})")
    sql = sql.replace("$__toTime_ms", f"fromUnixTimestamp64Milli({end_ms})")
    sql = sql.replace("$__fromTime", f"toDateTime({start})").replace("$__toTime", f"toDateTime({end})")
    sql = sql.replace("$__interval_s", str(ctx.interval_s))
    left = re.findall(r"\$__\w+|\$\{?[A-Za-z_]\w*", sql)
    if left:
        raise ValueError(f"unexpanded macros or variables: {sorted(set(left))}")
    return sql
