"""The workbench on the evaluator's verdicts: filter, resolve, assign, replay — each
action in the audit log."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from collector.store import Store
from dashboard import actions, data
from dashboard.audit import AuditAction
from dashboard.auth import AuthMode, Role, User
from dashboard.errors import PermissionDenied, ReplayError
from tests.dashboard import evaluator_rows as ev
from tests.dashboard.apptest import metrics, open_page, texts

ADMIN = User("local", Role.ADMIN, AuthMode.OPEN)


@pytest.fixture
def verdicts(use_empty: Store) -> Store:
    ev.verdict(
        use_empty, "tx-md", "failed", "master_data", entity="DE01", reason="INVALID_COST_CENTER", age_s=7200
    )
    ev.verdict(
        use_empty, "tx-stuck", "stuck", "stuck", entity="US01", reason="no erp.invoice.post", age_s=90000
    )
    ev.verdict(use_empty, "tx-ok", "ok", entity="US01")
    return use_empty


class _SyncEngine(BaseHTTPRequestHandler):
    """The sync engine's replay endpoint as the dashboard sees it: answers ``status``."""

    status = 202
    requests: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.server.requests.append(  # type: ignore[attr-defined]
            {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
        )
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.end_headers()
        self.wfile.write(b'{"status": "queued"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", 0), _SyncEngine)
    server.requests = []  # type: ignore[attr-defined]
    server.status = 202  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("REVTRACE_REPLAY_URL", f"http://127.0.0.1:{server.server_port}/")
    monkeypatch.setenv("REVTRACE_REPLAY_TOKEN", "s3cret-token")
    yield server
    server.shutdown()
    server.server_close()


def test_lists_failed_and_stuck_from_the_evaluator(verdicts: Store) -> None:
    at = open_page("workbench")
    table = at.dataframe[0].value
    assert list(table["correlation_id"]) == ["tx-stuck", "tx-md"]  # oldest first
    assert "evaluator's verdicts" in texts(at.caption)[0]
    stuck = open_page("workbench", status="stuck", entity="US01")
    assert list(stuck.dataframe[0].value["correlation_id"]) == ["tx-stuck"]
    old = open_page("workbench", age="86400")
    assert list(old.dataframe[0].value["correlation_id"]) == ["tx-stuck"]


def test_resolve_with_a_note_hides_it_and_is_audited(verdicts: Store) -> None:
    at = open_page("workbench")
    at.multiselect(key="wb_selected").set_value(["tx-md"]).run()
    at.button(key="wb_resolve").click().run()
    assert any("needs a note" in e for e in texts(at.error))
    at.multiselect(key="wb_selected").set_value(["tx-md"]).run()
    at.text_area(key="wb_note").input("cost center 4711 created for DE01")
    at.button(key="wb_resolve").click().run()
    assert any("resolved 1 transaction(s)" in s for s in texts(at.success))
    assert list(at.dataframe[0].value["correlation_id"]) == ["tx-stuck"]
    at.toggle(key="wb_resolved").set_value(True).run()
    table = at.dataframe[0].value.set_index("correlation_id")
    assert bool(table.loc["tx-md", "resolved"]) is True
    assert table.loc["tx-md", "last_note"] == "cost center 4711 created for DE01"
    entries = list(data.audit_entries(verdicts))
    assert [(e.action, e.correlation_id, e.actor) for e in entries] == [("resolve", "tx-md", "local")]
    assert data.verify_audit_log(verdicts).ok


def test_assign(verdicts: Store) -> None:
    at = open_page("workbench")
    at.multiselect(key="wb_selected").set_value(["tx-stuck", "tx-md"]).run()
    at.text_input(key="wb_assignee").input("finance-de")
    at.button(key="wb_assign").click().run()
    table = at.dataframe[0].value.set_index("correlation_id")
    assert set(table["assignee"]) == {"finance-de"}
    assert metrics(at)["Assigned"] == "2"


def test_replay_posts_to_the_sync_engine_with_the_transactions_key(
    verdicts: Store, engine: HTTPServer
) -> None:
    verdicts.insert_rows(
        "revtrace_spans",
        [["tx-md", "erp.invoice.post", "failed", "tx-md-post", ev.now()]],
        ["CorrelationId", "Stage", "Outcome", "IdempotencyKey", "Timestamp"],
    )
    at = open_page("workbench")
    at.multiselect(key="wb_selected").set_value(["tx-md"]).run()
    at.text_area(key="wb_note").input("retry after the fix")
    at.button(key="wb_replay").click().run()
    assert any("replay requested for 1" in s for s in texts(at.success))
    (request,) = engine.requests  # type: ignore[attr-defined]
    assert request["path"] == "/api/v1/transactions/tx-md/replay"
    assert request["headers"]["Authorization"] == "Bearer s3cret-token"
    assert request["headers"]["Idempotency-Key"] == "tx-md-post"
    assert request["body"] == {
        "correlation_id": "tx-md",
        "idempotency_key": "tx-md-post",
        "requested_by": "local",
        "note": "retry after the fix",
    }
    (entry,) = data.audit_entries(verdicts)
    assert entry.action == AuditAction.REPLAY
    assert json.loads(entry.details)["status_code"] == 202
    assert metrics(at)["Replayed"] == "1"


def test_a_refused_replay_is_reported_and_recorded(verdicts: Store, engine: HTTPServer) -> None:
    engine.status = 503  # type: ignore[attr-defined]
    with pytest.raises(ReplayError) as error:
        actions.replay(verdicts, ADMIN, "tx-stuck/../x?y", "")
    assert error.value.retryable
    assert engine.requests[0]["path"] == "/api/v1/transactions/tx-stuck%2F..%2Fx%3Fy/replay"  # type: ignore[attr-defined]
    (entry,) = data.audit_entries(verdicts)
    assert json.loads(entry.details)["accepted"] is False


def test_replay_needs_a_configured_endpoint(verdicts: Store) -> None:
    with pytest.raises(ReplayError, match="REVTRACE_REPLAY_URL"):
        actions.replay(verdicts, ADMIN, "tx-md")
    assert not list(data.audit_entries(verdicts))


def test_actions_check_the_role_themselves(verdicts: Store) -> None:
    viewer = User("vera", Role.VIEWER, AuthMode.LOCAL)
    with pytest.raises(PermissionDenied):
        actions.resolve(verdicts, viewer, "tx-md", "note")
    with pytest.raises(PermissionDenied):
        actions.record_export(verdicts, User("otto", Role.OPERATOR, AuthMode.LOCAL), "tx-md", "json")
    assert not list(data.audit_entries(verdicts))
