"""Running commands against the store, whether or not ``revtrace up`` holds it.

The embedded store (chDB) can be opened by one process at a time. While
``revtrace up`` runs, it writes a *run file* (``<data dir>/run/up.json``, mode
0600: pid, admin URL, a random token) and serves a local admin API on its
OTLP/HTTP port, loopback only. Commands that read or change the store —
``revtrace trace``, ``sla check``, ``db migrate``, … — are plain functions
``fn(store, **args) -> CommandOutput``; :func:`run_store_command` runs such a
function here when the store is free, or asks the running process to run it
there, and says which it did.

Only functions listed in :data:`DELEGABLE` can be run through the admin API.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from collector import settings
from collector.store import Store, open_store, parse_store_url

__all__ = [
    "DELEGABLE",
    "CommandOutput",
    "RunFile",
    "admin_route",
    "read_run_file",
    "run_store_command",
    "write_run_file",
]

log = logging.getLogger(__name__)

ADMIN_PATH = "/api/v1/admin/run"


@dataclass(frozen=True)
class CommandOutput:
    """What a store command prints and its exit status."""

    text: str
    exit_code: int = 0
    note: str = ""


# name → "module:function". Each function is ``fn(store: Store, **args) -> CommandOutput``.
DELEGABLE: dict[str, str] = {
    "db.migrate": "revtrace.commands:db_migrate",
    "db.status": "revtrace.commands:db_status",
    "trace": "dashboard.commands:trace",
    "audit.verify": "dashboard.commands:audit_verify",
    "audit.head": "dashboard.commands:audit_head",
    "sla.check": "sla_rules.commands:check",
    "reconcile": "sla_rules.commands:reconcile",
    "silence.add": "sla_rules.commands:silence_add",
    "silence.list": "sla_rules.commands:silence_list",
    "silence.expire": "sla_rules.commands:silence_expire",
}


def _resolve(name: str) -> Callable[..., CommandOutput]:
    target = DELEGABLE.get(name)
    if target is None:
        raise KeyError(f"unknown store command {name!r}")
    module_name, _, func_name = target.partition(":")
    func: Callable[..., CommandOutput] = getattr(importlib.import_module(module_name), func_name)
    return func


@dataclass(frozen=True)
class RunFile:
    """How to reach a running ``revtrace up``."""

    pid: int
    admin_url: str
    token: str
    store: str


def _run_file_path(data_dir: Path | None = None) -> Path:
    return (data_dir or settings.data_dir()) / "run" / "up.json"


def write_run_file(admin_url: str, store: Store, data_dir: Path | None = None) -> tuple[Path, str]:
    """Advertise this process (0600); returns the path and the admin token."""
    path = _run_file_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    payload = {"pid": os.getpid(), "admin_url": admin_url, "token": token, "store": store.config.describe()}
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle)
    os.replace(path.with_suffix(".tmp"), path)
    return path, token


def read_run_file(data_dir: Path | None = None) -> RunFile | None:
    """The running ``revtrace up`` for this data directory, if its process is alive."""
    path = _run_file_path(data_dir)
    try:
        data = json.loads(path.read_text())
        run = RunFile(
            int(data["pid"]), str(data["admin_url"]), str(data["token"]), str(data.get("store", ""))
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if run.pid == os.getpid():
        return None
    try:
        os.kill(run.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return run


def remove_run_file(data_dir: Path | None = None) -> None:
    """Forget the run file (on shutdown)."""
    with contextlib.suppress(FileNotFoundError):
        _run_file_path(data_dir).unlink()


def admin_route(store: Store, token: str) -> Callable[..., Any]:
    """The admin API handler ``revtrace up`` mounts: loopback clients with the token only."""

    async def handle(
        scope: dict[str, Any], body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        import asyncio

        client = scope.get("client") or ("", 0)
        if client[0] not in ("127.0.0.1", "::1", "localhost"):
            return 403, {}, b'{"error": "the admin API answers loopback clients only"}'
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip(), token):
            return 401, {}, b'{"error": "invalid admin token"}'
        try:
            request = json.loads(body or b"{}")
            name = str(request["command"])
            args = dict(request.get("args") or {})
            func = _resolve(name)
        except (ValueError, KeyError, TypeError) as exc:
            return 400, {}, json.dumps({"error": f"bad admin request: {exc}"}).encode()
        try:
            output = await asyncio.get_running_loop().run_in_executor(None, lambda: func(store, **args))
        except Exception as exc:
            log.exception("admin command %s failed", name)
            return 200, {}, json.dumps({"text": f"error: {exc}", "exit_code": 1}).encode()
        return (
            200,
            {},
            json.dumps({"text": output.text, "exit_code": output.exit_code, "note": output.note}).encode(),
        )

    return handle


def run_store_command(name: str, args: Mapping[str, Any], *, quiet: bool = False) -> CommandOutput:
    """Run a store command here, or through the running ``revtrace up`` that holds the store.

    Says on stderr which way it went (unless ``quiet``).
    """
    config = parse_store_url()
    if config.kind == "embedded":
        run = read_run_file()
        if run is not None:
            if not quiet:
                print(
                    f"(via the running revtrace up, pid {run.pid}, which holds {run.store})", file=sys.stderr
                )
            try:
                response = httpx.post(
                    run.admin_url + ADMIN_PATH,
                    json={"command": name, "args": dict(args)},
                    headers={"authorization": f"Bearer {run.token}"},
                    timeout=300,
                )
            except httpx.HTTPError as exc:
                return CommandOutput(
                    f"error: cannot reach the running revtrace up at {run.admin_url}: {exc}", 2
                )
            if response.status_code != 200:
                return CommandOutput(
                    f"error: revtrace up refused the command ({response.status_code}): {response.text}", 2
                )
            data = response.json()
            return CommandOutput(
                str(data.get("text", "")), int(data.get("exit_code", 1)), str(data.get("note", ""))
            )
    func = _resolve(name)
    store = open_store()
    if not quiet:
        print(f"({store.config.describe()})", file=sys.stderr)
    try:
        return func(store, **dict(args))
    finally:
        store.close()
