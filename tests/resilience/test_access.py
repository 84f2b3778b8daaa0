"""Access: who may send, who may run commands, what the audit log notices, and
what never reaches a log — against ``revtrace up`` in its own process with
ingest tokens, an audit key, a replay token, OIDC secrets and receiver secrets
set, logging at debug level.

The collector's own token checks (missing and wrong tokens over HTTP and gRPC)
are in ``tests/collector/test_receivers.py``; dashboard roles in
``test_dashboard.py`` and ``tests/dashboard/test_auth.py``; audit-log edits,
rewrites, deletions and the key in ``tests/dashboard/test_audit.py``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from collector.store import Store
from dashboard import data
from dashboard.audit import AuditEntry, chain_hash
from revtrace.cli import cli
from tests.collector.helpers import body_of, make_spans
from tests.resilience import spans
from tests.resilience.conftest import CliStore, Figures
from tests.resilience.harness import EXPORTER_ENV, Producers, Server, free_port

PB = {"content-type": "application/x-protobuf"}


def _canary(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex}"


SECRETS: dict[str, str] = {
    "ingest token A": _canary("ingest-tok-a"),
    "ingest token B": _canary("ingest-tok-b"),
    "ClickHouse password": _canary("ch-pass"),
    "audit key": _canary("audit-key"),
    "replay token": _canary("replay-tok"),
    "OIDC client secret": _canary("oidc-secret"),
    "OIDC cookie secret": _canary("oidc-cookie"),
    "webhook URL token": _canary("hook-path"),
    "Slack URL token": _canary("slack-path"),
    "PagerDuty routing key": _canary("pd-key"),
    "a token someone presented": _canary("presented"),
}

RULES = """
version: revtrace/v1
name: access
evaluator: {{lookback: 1d, lateness: 5s, interval: 2s, alert_horizon: 1h}}
rules:
  - name: stuck-order
    kind: completeness
    after: crm.order.approve
    expect: billing.invoice.create
    within: 1s
alerting:
  route: {{receiver: oncall, group_by: [alertname], group_wait: 0s, group_interval: 1s, repeat_interval: 1h}}
  receivers:
    - name: oncall
      webhook: [{{url: "${{REVTRACE_ALERT_WEBHOOK_URL}}"}}]
      slack: [{{url: "${{REVTRACE_SLACK_WEBHOOK_URL}}"}}]
      pagerduty: [{{routing_key: "${{REVTRACE_PAGERDUTY_ROUTING_KEY}}", url: "http://127.0.0.1:{closed}/v2/enqueue"}}]
"""


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``revtrace up`` with every kind of secret set and debug logs; its receivers
    are down (a closed port), so delivery failures get logged too."""
    base = tmp_path_factory.mktemp("secured")
    closed = free_port()
    rules = base / "rules.yaml"
    rules.write_text(RULES.format(closed=closed))
    env = {
        "REVTRACE_INGEST_TOKENS": f"{SECRETS['ingest token A']},{SECRETS['ingest token B']}",
        "REVTRACE_CLICKHOUSE_PASSWORD": SECRETS["ClickHouse password"],
        "REVTRACE_AUDIT_KEY": SECRETS["audit key"],
        "REVTRACE_REPLAY_URL": f"http://127.0.0.1:{closed}",
        "REVTRACE_REPLAY_TOKEN": SECRETS["replay token"],
        "REVTRACE_OIDC_CLIENT_SECRET": SECRETS["OIDC client secret"],
        "REVTRACE_OIDC_COOKIE_SECRET": SECRETS["OIDC cookie secret"],
        "REVTRACE_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{closed}/hooks/{SECRETS['webhook URL token']}",
        "REVTRACE_SLACK_WEBHOOK_URL": f"http://127.0.0.1:{closed}/services/{SECRETS['Slack URL token']}",
        "REVTRACE_PAGERDUTY_ROUTING_KEY": SECRETS["PagerDuty routing key"],
        "REVTRACE_RULES": str(rules),
    }
    server = Server(base / "up", env=env, log_level="debug")
    with server:
        yield server


def _accepted(server: Server) -> int:
    return int(server.status()["ingest"]["accepted"].get("traces", 0))


REFUSED_AUTHORIZATIONS: dict[str, dict[str, str]] = {
    "no header": {},
    "empty bearer": {"authorization": "Bearer"},
    "wrong token": {"authorization": f"Bearer {SECRETS['a token someone presented']}"},
    "Basic scheme": {"authorization": f"Basic {SECRETS['ingest token A']}"},
    "token without a scheme": {"authorization": SECRETS["ingest token A"]},
    "token plus a suffix": {"authorization": f"Bearer {SECRETS['ingest token A']}x"},
    "a prefix of the token": {"authorization": f"Bearer {SECRETS['ingest token A'][:-1]}"},
    "token in upper case": {"authorization": f"Bearer {SECRETS['ingest token A'].upper()}"},
    "both tokens, comma-joined": {
        "authorization": f"Bearer {SECRETS['ingest token A']},{SECRETS['ingest token B']}"
    },
    "token in another header": {"x-api-key": SECRETS["ingest token A"]},
    "token as a cookie": {"cookie": f"token={SECRETS['ingest token A']}"},
}


def test_ingest_without_a_valid_token_is_refused(secured: Server, figures: Figures) -> None:
    """Eleven ways of not presenting a valid ingest token (none, empty, wrong,
    another scheme, no scheme, a suffix, a prefix, upper case, both tokens joined,
    another header, a cookie) and the token in the query string, on traces and
    metrics: every one 401 with ``WWW-Authenticate``, nothing accepted. Both
    configured tokens work, with the scheme in any case."""
    before = _accepted(secured)
    refused_before = sum(secured.status()["ingest"]["refused"].values())
    body = body_of(make_spans(3, "token"))
    for name, headers in REFUSED_AUTHORIZATIONS.items():
        for signal in ("traces", "metrics"):
            response = httpx.post(f"{secured.endpoint}/v1/{signal}", content=body, headers={**PB, **headers})
            figures.add("refused requests")
            assert response.status_code == 401, (name, signal, response.status_code)
            assert response.headers["www-authenticate"].startswith("Bearer"), name
    in_query = httpx.post(
        f"{secured.endpoint}/v1/traces", params={"token": SECRETS["ingest token A"]}, content=body, headers=PB
    )
    figures.add("refused requests")
    assert in_query.status_code == 401
    assert _accepted(secured) == before
    # Every refusal shows in the collector's counters (and its metrics).
    assert sum(secured.status()["ingest"]["refused"].values()) - refused_before == figures["refused requests"]
    for token, scheme in ((SECRETS["ingest token A"], "Bearer"), (SECRETS["ingest token B"], "bearer")):
        ok = httpx.post(
            f"{secured.endpoint}/v1/traces",
            content=body_of(make_spans(3, f"ok-{scheme}")),
            headers={**PB, "authorization": f"{scheme} {token}"},
        )
        assert ok.status_code == 200, scheme
    assert _accepted(secured) == before + 6
    figures["accepted_with_valid_tokens"] = 6


def test_tracer_with_a_wrong_token_loses_nothing_silently(
    secured: Server, tmp_path: Path, figures: Figures
) -> None:
    """Two adapters send 1,000 spans each through the real tracer, one with a
    valid token, one with a wrong one. The valid one's spans are all accepted;
    the other's are all refused and every one is counted as dropped by its
    tracer (export failed) — not retried forever, not lost unnoticed."""
    before = _accepted(secured)
    producers = Producers(
        secured.endpoint,
        ["with-token", "wrong-token"],
        "200x5",
        env=EXPORTER_ENV,
        per_service_args={
            "with-token": ["--token", SECRETS["ingest token B"], "--log-level", "DEBUG"],
            "wrong-token": ["--token", SECRETS["a token someone presented"], "--log-level", "DEBUG"],
        },
        log_dir=tmp_path,
    ).start()
    try:
        results = producers.wait(timeout=300)
    finally:
        producers.kill()
    good, bad = results["with-token"], results["wrong-token"]
    figures.update(
        sent=good["produced"] + bad["produced"],
        accepted=_accepted(secured) - before,
        refused_and_counted=bad["dropped_export_failed"],
    )
    assert good["dropped"] == 0 and _accepted(secured) - before == good["produced"]
    assert bad["exported"] == 0 and bad["dropped_export_failed"] == bad["produced"]
    for service in ("with-token", "wrong-token"):  # the adapters' own logs hold no token either
        log = producers.log(service)
        assert SECRETS["ingest token B"] not in log and SECRETS["a token someone presented"] not in log


def test_admin_api_needs_its_own_token_from_loopback(secured: Server, figures: Figures) -> None:
    """The local admin API (store commands for the CLI) refuses a request without
    a token, with a wrong one and with an ingest token; the token from the run
    file (mode 0600) works; the CLI uses it."""
    url = f"{secured.endpoint}/api/v1/admin/run"
    command = {"command": "db.status", "args": {}}
    run_file = secured.data_dir / "run" / "up.json"
    assert oct(run_file.stat().st_mode & 0o777) == "0o600"
    admin_token = json.loads(run_file.read_text())["token"]
    for name, headers in {
        "no token": {},
        "wrong token": {"authorization": "Bearer nope"},
        "an ingest token": {"authorization": f"Bearer {SECRETS['ingest token A']}"},
        "admin token, Basic scheme": {"authorization": f"Basic {admin_token}"},
    }.items():
        response = httpx.post(url, json=command, headers=headers)
        figures.add("requests")
        figures.add("refused")
        assert response.status_code == 401, name
    ok = httpx.post(url, json=command, headers={"authorization": f"Bearer {admin_token}"})
    assert ok.status_code == 200 and "version" in ok.json()["text"]
    unknown = httpx.post(
        url, json={"command": "os.system", "args": {}}, headers={"authorization": f"Bearer {admin_token}"}
    )
    assert unknown.status_code == 400 and "unknown store command" in unknown.text
    figures.add("requests", 2)
    figures["allowed"] = 1


def test_secrets_never_logged(secured: Server, figures: Figures) -> None:
    """Ten secrets set (two ingest tokens, the ClickHouse password, the audit key,
    the replay token, two OIDC secrets, webhook and Slack URL tokens, a PagerDuty
    key), plus the admin token and a token someone presented: the sidecar runs at
    debug level through ingest, refusals, an alert whose three receivers are down
    (so delivery errors are logged), admin commands and its status pages, and none
    of the twelve values appears in its log, its status JSON or its metrics."""
    ingest = {**PB, "authorization": f"Bearer {SECRETS['ingest token A']}"}
    # A transaction that goes stuck: the evaluator alerts and tries every receiver.
    stuck = body_of(spans.make([spans.Step("crm.order.approve", "stuck-secret-1")]))
    assert httpx.post(f"{secured.endpoint}/v1/traces", content=stuck, headers=ingest).status_code == 200
    httpx.post(
        f"{secured.endpoint}/v1/traces",
        content=body_of(make_spans(1)),
        headers={**PB, "authorization": f"Bearer {SECRETS['a token someone presented']}"},
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        log = secured.log()
        if all(f"{kind}[0] failed" in log for kind in ("webhook", "slack", "pagerduty")):
            break
        time.sleep(1)
    else:
        raise AssertionError(f"no delivery failures logged:\n{secured.log()[-3000:]}")
    pages = {
        path: httpx.get(f"{secured.endpoint}{path}").text
        for path in ("/api/v1/status", "/metrics", "/healthz", "/readyz")
    }
    log = secured.log()
    places = {"log": log, **pages}
    secrets = {
        **SECRETS,
        "admin token": json.loads((secured.data_dir / "run" / "up.json").read_text())["token"],
    }
    leaks = [
        (secret, where)
        for secret, value in secrets.items()
        for where, text in places.items()
        if value in text
    ]
    figures.update(
        secrets=len(secrets),
        log_lines=log.count("\n"),
        log_bytes=len(log),
        places_scanned=len(places),
        leaks=len(leaks),
    )
    assert "webhook[0] failed" in log and "127.0.0.1" in log  # the failures were logged, sanitized
    assert leaks == [], leaks


# --- tampering with the audit log, through the CLI ----------------------------------------------


def _chain(store: Store, entries: int = 4) -> None:
    for i in range(1, entries + 1):
        data.append_audit(
            store,
            actor=f"operator{i}",
            role="operator",
            action="resolve",
            correlation_id=f"tx-{i}",
            note=f"fixed {i}",
            details={"i": i},
        )


def _mutate(store: Store, sql: str, params: dict[str, Any] | None = None) -> None:
    store.command(sql, params or {}, settings={"mutations_sync": 2})


def _rows(store: Store) -> list[list[Any]]:
    return [list(r) for r in store.query("SELECT * FROM revtrace_audit_log ORDER BY Seq").rows]


def _append_forged(store: Store) -> None:
    """An attacker without the key appends an entry chained with plain SHA-256."""
    head = _rows(store)[-1]
    seq, prev = int(head[0]) + 1, str(head[10])
    entry = AuditEntry(
        seq, head[1].replace(tzinfo=None), "mallory", "admin", "resolve", "tx-9", "all fine", {}
    )
    record = entry.record()
    store.insert_rows(
        "revtrace_audit_log",
        [
            [
                seq,
                entry.at,
                "mallory",
                "admin",
                "resolve",
                "tx-9",
                "all fine",
                "{}",
                record,
                prev,
                chain_hash(prev, record),
            ]
        ],
        (
            "Seq",
            "At",
            "Actor",
            "Role",
            "Action",
            "CorrelationId",
            "Note",
            "Details",
            "Record",
            "PrevHash",
            "Hash",
        ),
    )


def _swap(store: Store) -> None:
    """Entries 2 and 3 change places (their sequence numbers swapped)."""
    rows = _rows(store)
    second, third = rows[1], rows[2]
    _mutate(store, "ALTER TABLE revtrace_audit_log DELETE WHERE Seq IN (2, 3)")
    second[0], third[0] = 3, 2
    store.insert_rows("revtrace_audit_log", [third, second], _COLUMNS)


def _duplicate(store: Store) -> None:
    """Entry 2 is written twice."""
    store.insert_rows("revtrace_audit_log", [_rows(store)[1]], _COLUMNS)


def _retime(store: Store) -> None:
    """Entry 3's time is moved an hour back (the column, not the hashed record)."""
    _mutate(store, "ALTER TABLE revtrace_audit_log UPDATE At = At - INTERVAL 1 HOUR WHERE Seq = 3")


def _reattribute(store: Store) -> None:
    """Entry 1's details column says someone else was assigned."""
    _mutate(store, "ALTER TABLE revtrace_audit_log UPDATE Details = '{\"i\": 99}' WHERE Seq = 1")


_COLUMNS = (
    "Seq",
    "At",
    "Actor",
    "Role",
    "Action",
    "CorrelationId",
    "Note",
    "Details",
    "Record",
    "PrevHash",
    "Hash",
)
TAMPERING = {
    "a forged entry appended without the key": (_append_forged, 5),
    "two entries swapped": (_swap, 2),
    "an entry duplicated": (_duplicate, 2),
    "an entry's time column moved": (_retime, 3),
    "an entry's details column changed": (_reattribute, 1),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_revtrace_audit_verify_detects_tampering(
    cli_store: CliStore, monkeypatch: pytest.MonkeyPatch, figures: Figures, case: str
) -> None:
    """Four operator actions are chained with an audit key; then the log is
    tampered with directly in the store. ``revtrace audit verify`` exits 1 and
    names the first broken entry (it exits 0 before the tampering)."""
    monkeypatch.setenv("REVTRACE_AUDIT_KEY", "the-audit-key")
    tamper, broken_at = TAMPERING[case]
    _chain(cli_store.open())
    runner = CliRunner()
    intact = runner.invoke(cli, ["audit", "verify"])
    assert intact.exit_code == 0 and "intact: 4 entries" in intact.stdout, intact.output
    tamper(cli_store.open())
    result = runner.invoke(cli, ["audit", "verify"])
    figures.update(tamperings=1, entries=4, detected=int(result.exit_code == 1), broken_at=broken_at)
    assert result.exit_code == 1, result.output
    assert f"BROKEN at entry {broken_at}" in result.stdout, result.stdout


def test_revtrace_audit_verify_detects_a_removed_tail(
    cli_store: CliStore, monkeypatch: pytest.MonkeyPatch, figures: Figures
) -> None:
    """Deleting the last entries leaves a shorter chain that is intact on its
    own; against the head recorded before (``revtrace audit head``, kept outside
    the store) ``revtrace audit verify --head`` exits 1 naming the missing entries."""
    monkeypatch.setenv("REVTRACE_AUDIT_KEY", "the-audit-key")
    _chain(cli_store.open())
    runner = CliRunner()
    head = runner.invoke(cli, ["audit", "head"])
    assert head.exit_code == 0, head.output
    recorded = head.stdout.strip()
    _mutate(cli_store.open(), "ALTER TABLE revtrace_audit_log DELETE WHERE Seq >= 3")
    alone = runner.invoke(cli, ["audit", "verify"])
    result = runner.invoke(cli, ["audit", "verify", "--head", recorded])
    figures.update(tamperings=1, entries=4, removed=2, detected=int(result.exit_code == 1))
    assert alone.exit_code == 0  # the chain alone cannot tell
    assert result.exit_code == 1, result.stdout
    assert "BROKEN at entry 3: entries 3..4 are missing" in result.stdout, result.stdout
