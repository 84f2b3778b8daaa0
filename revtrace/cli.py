"""The ``revtrace`` command line: a thin layer over the service objects.

Long-running roles (``up``, ``collector``, …) build their service object and
wait for a signal. Store commands (``db migrate``, ``trace``, ``sla check``, …)
go through :func:`revtrace.runtime.run_store_command`, which works whether or
not ``revtrace up`` holds the embedded store.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

from collector import settings
from revtrace.logs import setup_logging
from revtrace.runtime import run_store_command

__all__ = ["main"]


def _emit(name: str, args: dict[str, Any]) -> None:
    output = run_store_command(name, args)
    if output.text:
        click.echo(output.text)
    if output.note:
        click.echo(output.note, err=True)
    sys.exit(output.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
@click.option("--log-format", default="text", show_default=True, type=click.Choice(["text", "json"]))
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="REVTRACE_DATA_DIR",
    help="Local state directory (embedded store, spool). [env REVTRACE_DATA_DIR; default .revtrace]",
)
def cli(log_level: str, log_format: str, data_dir: Path | None) -> None:
    """revtrace: business transaction tracing for CRM, billing and ERP integrations."""
    setup_logging(log_level, log_format)
    if data_dir is not None:
        import os

        os.environ["REVTRACE_DATA_DIR"] = str(data_dir)


def _collector_options(func: Any) -> Any:
    options = [
        click.option("--host", envvar="REVTRACE_HTTP_HOST", default=None, help="Bind address. [127.0.0.1]"),
        click.option(
            "--http-port", envvar="REVTRACE_HTTP_PORT", type=int, default=None, help="OTLP/HTTP port. [4318]"
        ),
        click.option(
            "--grpc-port",
            envvar="REVTRACE_GRPC_PORT",
            type=int,
            default=None,
            help="OTLP/gRPC port, -1 disables. [4317]",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@cli.command()
@_collector_options
@click.option(
    "--dashboard-port",
    envvar="REVTRACE_DASHBOARD_PORT",
    type=int,
    default=None,
    help="Dashboard port. [8501]",
)
@click.option(
    "--clickhouse-http-port",
    envvar="REVTRACE_CLICKHOUSE_HTTP_PORT",
    type=click.IntRange(1, 65535),
    default=None,
    help="Also serve the embedded store over the ClickHouse HTTP interface on this port, for Grafana "
    "(read-only user; its password from REVTRACE_CLICKHOUSE_HTTP_READONLY_PASSWORD). [off]",
)
@click.option(
    "--clickhouse-http-host",
    envvar="REVTRACE_CLICKHOUSE_HTTP_HOST",
    default="127.0.0.1",
    show_default=True,
    help="Bind address of that interface.",
)
@click.option(
    "--clickhouse-http-allow-from",
    envvar="REVTRACE_CLICKHOUSE_HTTP_ALLOW_FROM",
    multiple=True,
    help="Networks (CIDR) the read-only user may connect from; repeat. [loopback]",
)
def up(
    host: str | None,
    http_port: int | None,
    grpc_port: int | None,
    dashboard_port: int | None,
    clickhouse_http_port: int | None,
    clickhouse_http_host: str,
    clickhouse_http_allow_from: tuple[str, ...],
) -> None:
    """Run the sidecar in one process on the embedded store: collector, evaluator, dashboard."""
    import os

    from collector.service import CollectorConfig
    from collector.store import StoreError
    from revtrace.sidecar import Sidecar, StoreListener

    config = CollectorConfig.from_env(host=host, http_port=http_port, grpc_port=grpc_port)
    listener = None
    if clickhouse_http_port is not None:
        password = os.environ.get("REVTRACE_CLICKHOUSE_HTTP_READONLY_PASSWORD", "")
        if not password:
            raise click.UsageError(
                "--clickhouse-http-port needs REVTRACE_CLICKHOUSE_HTTP_READONLY_PASSWORD "
                "(the read-only user's password) in the environment"
            )
        listener = StoreListener(
            clickhouse_http_port,
            password,
            host=clickhouse_http_host,
            allow_from=tuple(clickhouse_http_allow_from) or ("127.0.0.1", "::1"),
        )
    try:
        sidecar = Sidecar(config, roles=_roles(dashboard_port), listener=listener)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None

    def ready() -> None:
        c = sidecar.collector
        click.echo(
            f"revtrace up: OTLP/HTTP {c.http_endpoint}  OTLP/gRPC {config.host}:{c.grpc_port}", err=True
        )
        click.echo(f"store: {sidecar.store.config.describe()}", err=True)
        if listener is not None:
            click.echo(f"ClickHouse HTTP (read-only, for Grafana): {listener.reader_url}", err=True)
        for role in sidecar.roles:
            where = getattr(role, "url", "")
            click.echo(f"{role.name}: {where}", err=True)
        click.echo("Ctrl-C stops (the spool is flushed first).", err=True)

    sidecar.run_until_signal(on_ready=ready)


@cli.command()
@_collector_options
@click.option(
    "--dashboard-port",
    envvar="REVTRACE_DASHBOARD_PORT",
    type=int,
    default=None,
    help="Dashboard port. [8501]",
)
@click.option(
    "--rate", type=float, default=3.0, show_default=True, help="Business scenarios started per second."
)
@click.option(
    "--profile", default="default", show_default=True, help="Fault profile of the simulated systems."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same traffic).")
@click.option("--duration", type=float, default=None, help="Seconds of traffic, then a summary and exit.")
@click.option("--headless", is_flag=True, help="No dashboard (for scripts; use with --duration).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary of a bounded run as JSON.")
def demo(
    host: str | None,
    http_port: int | None,
    grpc_port: int | None,
    dashboard_port: int | None,
    rate: float,
    profile: str,
    seed: int,
    duration: float | None,
    headless: bool,
    as_json: bool,
) -> None:
    """revtrace up plus the reference sync engine with simulated CRM, billing and ERP and injected faults."""
    import json

    from collector.service import CollectorConfig
    from revtrace.demo import DEMO_DASHBOARD_QUERY, DemoOptions, run_demo

    config = CollectorConfig.from_env(host=host, http_port=http_port, grpc_port=grpc_port)
    options = DemoOptions(rate_per_s=rate, profile=profile, seed=seed, duration_s=duration, headless=headless)

    def ready(sidecar: Any, workload: Any) -> None:
        c = sidecar.collector
        click.echo(
            f"revtrace demo: OTLP/HTTP {c.http_endpoint}  OTLP/gRPC {config.host}:{c.grpc_port}", err=True
        )
        for role in sidecar.roles:
            url = getattr(role, "url", "")
            if role.name == "dashboard":
                url = f"{url.rstrip('/')}/{DEMO_DASHBOARD_QUERY}"
            click.echo(f"{role.name}: {url}", err=True)
        click.echo(f"sync engine: {workload.engine_url} (profile {profile}, {rate:g} scenarios/s)", err=True)
        if duration is None:
            click.echo("Open the dashboard; Ctrl-C stops.", err=True)
        else:
            click.echo(f"running for {duration:g} s…", err=True)

    result = run_demo(config, options, _roles(dashboard_port, dashboard=not headless), on_ready=ready)
    if result is None:
        return
    if as_json:
        click.echo(json.dumps(result.summary, indent=2, default=str))
        return
    summary = result.summary
    click.echo(
        f"transactions: {summary.get('transactions', '?')}  spans stored: {summary.get('spans_stored', 0)}"
    )
    click.echo(f"ground truth: {result.ground_truth}")
    if summary.get("cut_short"):
        click.echo(f"({summary['cut_short']} transactions cut short by the end of the run are not scored)")
    if summary.get("stuck_not_yet_due"):
        click.echo(
            f"({summary['stuck_not_yet_due']} stuck transactions whose completeness window had not passed "
            "by the end of the run are not scored; run longer to see them found)"
        )
    click.echo("what was injected vs what revtrace reported, per category:")
    click.echo(result.score_table)


def _roles(dashboard_port: int | None, *, dashboard: bool = True) -> list[Any]:
    """The roles that run beside the collector in ``up``."""
    from dashboard.server import role_factory as dashboard_role

    roles: list[Any] = []
    from sla_rules import EvaluatorRole

    roles.append(EvaluatorRole)
    if dashboard:
        roles.append(dashboard_role(port=dashboard_port))
    return roles


@cli.command()
@_collector_options
def collector(host: str | None, http_port: int | None, grpc_port: int | None) -> None:
    """Run the collector role alone (for a ClickHouse server deployment)."""
    from collector.service import CollectorConfig
    from revtrace.sidecar import Sidecar

    config = CollectorConfig.from_env(host=host, http_port=http_port, grpc_port=grpc_port)
    sidecar = Sidecar(config)

    def ready() -> None:
        c = sidecar.collector
        click.echo(f"collector: OTLP/HTTP {c.http_endpoint}  OTLP/gRPC {config.host}:{c.grpc_port}", err=True)
        click.echo(f"store: {sidecar.store.config.describe()}", err=True)

    sidecar.run_until_signal(on_ready=ready)


@cli.command()
def evaluator() -> None:
    """Run the evaluator role alone (for a ClickHouse server deployment): SLA rules,
    alerts and notifications on a schedule. Rules from REVTRACE_RULES."""
    import threading

    from collector.migrations import RenderOptions, migrate
    from collector.settings import env_int
    from collector.store import open_store
    from sla_rules import EvaluatorRole

    store = open_store()
    migrate(store, RenderOptions(ttl_days=env_int("REVTRACE_TTL_DAYS")))
    role = EvaluatorRole(store)
    done = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: done.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        role.start()
        click.echo(f"evaluator: {role.description}", err=True)
        click.echo(f"store: {store.config.describe()}", err=True)
        while not done.wait(0.5):
            pass
    finally:
        role.stop()
        store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@cli.group()
def sla() -> None:
    """SLA rules: validate files, evaluate now."""


@sla.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path())
def sla_validate(files: tuple[str, ...]) -> None:
    """Validate rules files or directories (no store needed); every problem is reported."""
    from sla_rules.commands import validate

    output = validate(files)
    click.echo(output.text)
    sys.exit(output.exit_code)


_RULES_HELP = "Rules file or directory. [env REVTRACE_RULES; default the built-in quote-to-cash pack]"


@sla.command("check")
@click.option(
    "--at", "at", default=None, help="Evaluate as of this time (RFC 3339), for reproducible answers."
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--rules", type=click.Path(exists=True, resolve_path=True), default=None, help=_RULES_HELP)
def sla_check(at: str | None, fmt: str, rules: str | None) -> None:
    """Evaluate every rule now and print categorized findings (exit 1 when something fires)."""
    _emit("sla.check", {"at": at, "format": fmt, "rules": rules})


@cli.command("reconcile")
@click.option("--at", "at", default=None, help="Reconcile as of this time (RFC 3339).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--rules", type=click.Path(exists=True, resolve_path=True), default=None, help=_RULES_HELP)
def reconcile_cmd(at: str | None, fmt: str, rules: str | None) -> None:
    """Compare counts, amounts and statuses across systems now; record the run (exit 1 on exceptions)."""
    _emit("reconcile", {"at": at, "format": fmt, "rules": rules})


@cli.group()
def silence() -> None:
    """Silences: mute the alerts whose labels match, for a while (as Alertmanager's amtool)."""


@silence.command("add")
@click.argument("matchers", nargs=-1, required=True)
@click.option("--duration", default="2h", show_default=True, help="How long, e.g. 30m, 2h, 1d.")
@click.option("--comment", required=True, help="Why (shown beside the silence).")
@click.option(
    "--author",
    envvar="USER",
    default="",
    help="Who (recorded with the silence). [env USER]",
)
@click.option("--start", default=None, help="When it starts (RFC 3339). [now]")
def silence_add(
    matchers: tuple[str, ...], duration: str, comment: str, author: str, start: str | None
) -> None:
    """Silence alerts matching every MATCHER: name=value or name=~regex (e.g. alertname=erp-outage legal_entity=~DE.*)."""
    _emit(
        "silence.add",
        {
            "matchers": list(matchers),
            "duration": duration,
            "comment": comment,
            "created_by": author,
            "start": start,
        },
    )


@silence.command("list")
@click.option("--expired", is_flag=True, help="Also the silences that ended.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def silence_list(expired: bool, fmt: str) -> None:
    """Silences in force or pending, newest first."""
    _emit("silence.list", {"expired": expired, "format": fmt})


@silence.command("expire")
@click.argument("silence_id")
def silence_expire(silence_id: str) -> None:
    """End a silence now (exit 1 when there is no such silence in force)."""
    _emit("silence.expire", {"silence_id": silence_id})


@cli.group()
def db() -> None:
    """The schema: migrations and status."""


@db.command("migrate")
@click.option("--ttl-days", type=int, default=None, help="Retention for new tables. [env REVTRACE_TTL_DAYS]")
def db_migrate(ttl_days: int | None) -> None:
    """Apply pending schema migrations (idempotent; a failed one can be re-run)."""
    _emit("db.migrate", {"ttl_days": ttl_days})


@db.command("status")
def db_status() -> None:
    """Show applied and pending migrations and table sizes (exit 1 if any is pending)."""
    _emit("db.status", {})


@cli.command("trace")
@click.argument("correlation_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", "html"]),
    default="table",
    show_default=True,
    help="A waterfall table in the terminal, or an export (html is a self-contained report).",
)
@click.option("--no-payloads", is_flag=True, help="Leave payload snapshots out.")
def trace_cmd(correlation_id: str, fmt: str, no_payloads: bool) -> None:
    """One transaction end to end: every system, payload, retry and operator action."""
    _emit("trace", {"correlation_id": correlation_id, "format": fmt, "payloads": not no_payloads})


@cli.group()
def audit() -> None:
    """The workbench's hash-chained audit log."""


@audit.command("verify")
@click.option(
    "--head",
    envvar="REVTRACE_AUDIT_HEAD",
    default=None,
    help="SEQ:HASH recorded earlier (`revtrace audit head`, or the log's `audit head` lines): "
    "also detects removed newest entries.",
)
def audit_verify(head: str | None) -> None:
    """Check the audit log's hash chain; exit 1 naming the first broken link."""
    _emit("audit.verify", {"head": head})


@audit.command("head")
def audit_head() -> None:
    """Print the chain's head (SEQ:HASH) to keep outside the store for `verify --head`."""
    _emit("audit.head", {})


@cli.command()
@click.option("--host", envvar="REVTRACE_DASHBOARD_HOST", default=None, help="Bind address. [127.0.0.1]")
@click.option("--port", envvar="REVTRACE_DASHBOARD_PORT", type=int, default=None, help="Port. [8501]")
def dashboard(host: str | None, port: int | None) -> None:
    """Run the dashboard role alone (for a ClickHouse server deployment)."""
    from dashboard.server import run_alone

    run_alone(host, port, on_ready=lambda role: click.echo(f"dashboard: {role.url}", err=True))


@cli.group()
def users() -> None:
    """Local dashboard accounts (bcrypt hashes in REVTRACE_USERS_FILE)."""


@users.command("add")
@click.argument("name")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["viewer", "operator", "auditor", "admin"]),
    help="Dashboard role.",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin instead of prompting.")
@click.option("--replace", is_flag=True, help="Change an existing account's role and password.")
def users_add(name: str, role: str, password_stdin: bool, replace: bool) -> None:
    """Create a dashboard account (the password is hashed with bcrypt, never stored)."""
    from dashboard.auth import Role, add_user
    from dashboard.errors import UsersFileError
    from dashboard.settings import users_file

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    path = users_file()
    try:
        add_user(path, name, Role(role), password, replace=replace)
    except UsersFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{'updated' if replace else 'added'} {name} ({role}) in {path}")


@users.command("list")
def users_list() -> None:
    """The dashboard accounts: name, role, created (never a hash)."""
    from dashboard.auth import load_accounts
    from dashboard.errors import UsersFileError
    from dashboard.settings import users_file

    path = users_file()
    try:
        accounts = load_accounts(path)
    except UsersFileError as exc:
        raise click.ClickException(str(exc)) from None
    if not accounts:
        click.echo(f"no accounts in {path}")
        return
    for account in accounts.values():
        click.echo(f"{account.name:<32} {account.role!s:<9} {account.created_at}")


@users.command("remove")
@click.argument("name")
def users_remove(name: str) -> None:
    """Remove a dashboard account (exit 1 when there is none by that name)."""
    from dashboard.auth import remove_user
    from dashboard.errors import UsersFileError
    from dashboard.settings import users_file

    path = users_file()
    try:
        removed = remove_user(path, name)
    except UsersFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"removed {removed.name} ({removed.role}) from {path}")


@cli.command("config")
def config_cmd() -> None:
    """List the environment variables revtrace reads, with their defaults."""
    import dashboard.settings  # noqa: F401 - registers the dashboard's settings
    import sla_rules  # noqa: F401 - registers the evaluator's settings

    for s in settings.ENV.values():
        click.echo(f"{s.name}={s.default!r}\n    {s.help}")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="revtrace")


if __name__ == "__main__":
    main()
