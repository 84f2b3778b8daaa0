"""The dashboard under attack and under each role, through the router with
Streamlit's AppTest: hostile URL filters on every page; every role on every page
with a payload canary (payloads only for auditors and admins, actions only for
operators and admins); and every workbench action under every role.

The sign-in form, the permission matrix and the trace/workbench pages per role
are tested in ``tests/dashboard/test_auth.py``; tampering with the audit log in
``tests/dashboard/test_audit.py`` (and through the CLI in ``test_access.py``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

import dashboard
from collector.store import Store
from dashboard import actions, auth, data
from dashboard import settings as dashboard_settings
from dashboard.auth import AuthMode, Permission, Role, User
from dashboard.errors import PermissionDenied
from sla_rules import Evaluator, builtin_pack
from tests.resilience import spans
from tests.resilience.conftest import Figures
from tests.resilience.harness import WebhookReceiver
from tests.resilience.test_hostile_input import HOSTILE_IDS, MISSING_IDS
from tracer import semconv

APP = Path(dashboard.__file__).parent / "app.py"
VIEWS = ("overview", "objects", "latency", "alerts", "sync_engine", "trace", "workbench", "reconciliation")
PASSWORD = "a long enough password"
CANARY = f"PAYLOAD-CANARY-{uuid.uuid4().hex[:12]}"
CANARY_TX = "q2c-payload-1"
URL_FILTERS = ("correlation_id", "entity", "range", "from", "to")
ACT_KEYS = {"wb_replay", "wb_resolve", "wb_assign"}
PAGE_SAMPLE = ("SQL quote", "bound-parameter syntax", "HTML", "NUL byte", "30,000 characters")


def _payload(kind: str) -> tuple[str, dict[str, Any]]:
    body = f'{{"invoice":"INV-1","note":"{CANARY}","iban":"[REDACTED]"}}'
    return (
        semconv.EVENT_PAYLOAD,
        {semconv.PAYLOAD_KIND: kind, semconv.PAYLOAD_BODY: body, semconv.PAYLOAD_TRUNCATED: False},
    )


@pytest.fixture
def dashboard_store(store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Store]:
    """A store with a failed transaction carrying payload snapshots (the canary),
    the hostile-id transactions and the evaluator's verdicts, handed to the dashboard."""
    for name in dashboard_settings.ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REVTRACE_USERS_FILE", str(tmp_path / "no-users.json"))
    now = time.time_ns()
    steps = [
        spans.Step("crm.order.approve", CANARY_TX, at_ns=now - 600 * 10**9, events=[_payload("canonical")]),
        spans.Step(
            "billing.customer.upsert",
            CANARY_TX,
            outcome="failed",
            at_ns=now - 590 * 10**9,
            attributes={semconv.BIZ_ERROR_CATEGORY: "mapping", semconv.BIZ_IDEMPOTENCY_KEY: "k-1"},
            events=[_payload("target_request")],
        ),
    ]
    for cid in HOSTILE_IDS.values():
        steps += [
            spans.Step("billing.invoice.create", cid, at_ns=now - 300 * 10**9),
            spans.Step("erp.invoice.post", cid, outcome="failed", at_ns=now - 290 * 10**9),
        ]
    spans.insert(store, steps)
    Evaluator(store, builtin_pack()).cycle(time.time() + 1)
    data.use_store(store)
    data.clear_caches()
    yield store
    data.use_store(None)


def _text(at: AppTest) -> str:
    """Everything the page rendered (every element's protobuf, dataframes included)."""
    return "\n".join(str(getattr(node, "proto", "")) for node in at._tree)


def _reopen(at: AppTest, view: str, **params: str) -> AppTest:
    """The same session on ``view`` with exactly these URL parameters."""
    at.switch_page(f"views/{view}.py")
    at.query_params.clear()
    for name, value in params.items():
        at.query_params[name] = value
    return at.run()


def test_hostile_url_filters_on_every_page(dashboard_store: Store, figures: Figures) -> None:
    """Every page opened with hostile values (SQL, bound-parameter syntax, markup,
    NUL, 30,000 characters, a million characters, ``%``, ``*``, …) in every
    free-text URL filter (correlation id, entity, range, from, to): no page
    raises, nothing in the store changes, and the trace page, given each of the
    nineteen values alone, shows exactly the hostile transaction asked for, or
    none when it does not exist."""
    before = dashboard_store.query("SELECT count() FROM otel_traces").scalar()
    # Every page with a sample of the values in every filter; the trace page with all.
    values = {**{f"stored {k}": v for k, v in HOSTILE_IDS.items()}, **MISSING_IDS}
    sample = [f"stored {k}" for k in PAGE_SAMPLE] + list(MISSING_IDS)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    for view in VIEWS:
        for name in sample:
            value = values[name]
            at.switch_page(f"views/{view}.py")
            for param in URL_FILTERS:
                at.query_params[param] = value
            at.run()
            figures.add("page loads")
            assert not at.exception, (view, name, [e.value for e in at.exception][:1])
    # The trace page itself, with only the correlation id set. (Its search box trims
    # surrounding whitespace, so an id ending in a line break is not found there.)
    for name, value in HOSTILE_IDS.items():
        page = _reopen(at, "trace", correlation_id=value)
        shown = _text(page)
        assert not page.exception, name
        found = "erp.invoice.post" in shown and "billing.invoice.create" in shown
        assert found == (value == value.strip()), name
        assert CANARY_TX not in shown  # never another transaction
        figures.add("trace lookups")
    for name, value in MISSING_IDS.items():
        page = _reopen(at, "trace", correlation_id=value)
        assert not page.exception, name
        assert "erp.invoice.post" not in _text(page), name
    figures.update(pages=len(VIEWS), values=len(values), filters=len(URL_FILTERS), exceptions=0)
    figures["inputs"] = figures["page loads"] + figures["trace lookups"] + len(MISSING_IDS)
    assert dashboard_store.query("SELECT count() FROM otel_traces").scalar() == before


def _sign_in(name: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.text_input(key="sign_in_name").input(name)
    at.text_input(key="sign_in_password").input(PASSWORD)
    at.button[0].click().run()
    assert "revtrace_user" in at.session_state, f"{name} could not sign in"
    return at


@pytest.fixture
def accounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[Role, str]:
    """One local account per role."""
    path = tmp_path / "users.json"
    names = {role: f"{role.value}-user" for role in Role}
    for role, name in names.items():
        auth.add_user(path, name, role, PASSWORD)
    monkeypatch.setenv("REVTRACE_USERS_FILE", str(path))
    return names


def test_every_role_on_every_page(
    dashboard_store: Store, accounts: dict[Role, str], figures: Figures
) -> None:
    """Each role signs in and opens every page at the failed transaction that
    carries payload snapshots. The payload canary appears only to auditors and
    admins (on the trace page) and nowhere else, on no page, for viewers and
    operators; workbench actions are offered only to operators and admins;
    exports only to auditors and admins."""
    leaks = 0
    for role, name in accounts.items():
        at = _sign_in(name)
        seen: dict[str, str] = {}
        buttons: set[str] = set()
        downloads = 0
        for view in VIEWS:
            at.switch_page(f"views/{view}.py")
            at.query_params["correlation_id"] = CANARY_TX
            at.run()
            figures.add("page loads")
            assert not at.exception, (role, view, [e.value for e in at.exception][:1])
            seen[view] = _text(at)
            buttons |= {str(b.key) for b in at.button if b.key}
            downloads += len(list(at.get("download_button")))
        may_see = Permission.SEE_PAYLOADS in auth.PERMISSIONS[role]
        showing = sorted(view for view, text in seen.items() if CANARY in text)
        if may_see:
            assert showing == ["trace"], (role, showing)
        else:
            leaks += len(showing)
            assert showing == [], (role, showing)
        may_act = Permission.ACT in auth.PERMISSIONS[role]
        assert (buttons >= ACT_KEYS) if may_act else not (ACT_KEYS & buttons), (role, sorted(buttons))
        may_export = Permission.EXPORT in auth.PERMISSIONS[role]
        assert (downloads > 0) if may_export else downloads == 0, (role, downloads)
    figures.update(roles=len(accounts), pages=len(VIEWS), payload_leaks=leaks, actions_offered_wrongly=0)


def test_every_action_under_every_role(
    dashboard_store: Store, monkeypatch: pytest.MonkeyPatch, figures: Figures
) -> None:
    """Replay, resolve, assign and export called directly (whatever a page
    shows) under each role: refused with PermissionDenied exactly where the
    permission matrix says so, and a refused action leaves no audit entry."""
    with WebhookReceiver(status_up=202) as engine:
        monkeypatch.setenv("REVTRACE_REPLAY_URL", engine.url.rsplit("/", 1)[0])
        calls: dict[str, tuple[Permission, Callable[[User], object]]] = {
            "replay": (Permission.ACT, lambda u: actions.replay(dashboard_store, u, CANARY_TX, "retry")),
            "resolve": (Permission.ACT, lambda u: actions.resolve(dashboard_store, u, CANARY_TX, "fixed")),
            "assign": (Permission.ACT, lambda u: actions.assign(dashboard_store, u, CANARY_TX, "otto")),
            "export": (
                Permission.EXPORT,
                lambda u: actions.record_export(dashboard_store, u, CANARY_TX, "json"),
            ),
        }
        refused = allowed = 0
        for role in Role:
            user = User(f"{role.value}-user", role, AuthMode.LOCAL)
            for name, (permission, call) in calls.items():
                entries = len(list(data.audit_entries(dashboard_store)))
                if permission in auth.PERMISSIONS[role]:
                    call(user)
                    allowed += 1
                    assert len(list(data.audit_entries(dashboard_store))) == entries + 1, (role, name)
                else:
                    with pytest.raises(PermissionDenied):
                        call(user)
                    refused += 1
                    assert len(list(data.audit_entries(dashboard_store))) == entries, (role, name)
        assert len(engine.received) == sum(Permission.ACT in auth.PERMISSIONS[r] for r in Role)
    assert data.verify_audit_log(dashboard_store).ok
    figures.update(calls=refused + allowed, refused=refused, allowed=allowed, audit_entries=allowed)
