"""Roles, local accounts and sign-in: who may see payloads, who may act."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from dashboard import auth
from dashboard.auth import AuthMode, Permission, Role
from dashboard.errors import UsersFileError
from revtrace.cli import cli
from tests.dashboard.apptest import APP, TIMEOUT, texts
from tests.dashboard.conftest import Filled

PASSWORD = "correct horse battery"


def test_permission_matrix() -> None:
    def can(role: Role) -> set[Permission]:
        return {p for p in Permission if auth.User("u", role, AuthMode.LOCAL).can(p)}

    assert can(Role.VIEWER) == {Permission.VIEW}
    assert can(Role.OPERATOR) == {Permission.VIEW, Permission.ACT}
    assert can(Role.AUDITOR) == {Permission.VIEW, Permission.SEE_PAYLOADS, Permission.EXPORT}
    assert can(Role.ADMIN) == set(Permission)


def test_users_file_holds_bcrypt_hashes_only(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    auth.add_user(path, "ana", Role.AUDITOR, PASSWORD)
    text = path.read_text()
    assert PASSWORD not in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    accounts = auth.load_accounts(path)
    assert accounts["ana"].password_hash.startswith("$2")
    user = auth.authenticate(accounts, "ana", PASSWORD)
    assert user == auth.User("ana", Role.AUDITOR, AuthMode.LOCAL)
    assert auth.authenticate(accounts, "ana", PASSWORD + "!") is None
    assert auth.authenticate(accounts, "nobody", PASSWORD) is None


def test_add_user_refuses_weak_or_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    with pytest.raises(UsersFileError, match="at least 12"):
        auth.add_user(path, "ana", Role.VIEWER, "short")
    with pytest.raises(UsersFileError, match="name"):
        auth.add_user(path, "../etc", Role.VIEWER, PASSWORD)
    auth.add_user(path, "ana", Role.VIEWER, PASSWORD)
    with pytest.raises(UsersFileError, match="exists"):
        auth.add_user(path, "ana", Role.ADMIN, PASSWORD)
    auth.add_user(path, "ana", Role.ADMIN, PASSWORD, replace=True)
    assert auth.load_accounts(path)["ana"].role == Role.ADMIN


def test_invalid_users_file_reports_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text(
        json.dumps(
            {
                "version": "v0",
                "users": [
                    {"name": "ok", "role": "root", "password_hash": "$2b$x"},
                    {"name": "b", "role": "viewer", "password_hash": "plain"},
                    {"name": "c", "role": "viewer", "password_hash": "$2b$y", "extra": 1},
                ],
            }
        )
    )
    with pytest.raises(UsersFileError) as error:
        auth.load_accounts(path)
    message = str(error.value)
    assert "version: must be 'revtrace/v1'" in message
    assert "users[0].role" in message
    assert "users[1].password_hash" in message
    assert "users[2]: unknown keys ['extra']" in message


def test_cli_users_add(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "accounts.json"
    monkeypatch.setenv("REVTRACE_USERS_FILE", str(path))
    result = CliRunner().invoke(
        cli, ["users", "add", "olga", "--role", "operator", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    assert "added olga (operator)" in result.output
    assert PASSWORD not in result.output
    assert auth.authenticate(auth.load_accounts(path), "olga", PASSWORD) is not None
    again = CliRunner().invoke(
        cli, ["users", "add", "olga", "--role", "viewer", "--password-stdin"], input=PASSWORD
    )
    assert again.exit_code == 1
    assert "exists" in again.output


def test_cli_users_list_and_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "accounts.json"
    monkeypatch.setenv("REVTRACE_USERS_FILE", str(path))
    assert "no accounts" in CliRunner().invoke(cli, ["users", "list"]).output
    auth.add_user(path, "olga", Role.OPERATOR, PASSWORD)
    auth.add_user(path, "vera", Role.VIEWER, PASSWORD)
    listed = CliRunner().invoke(cli, ["users", "list"])
    assert listed.exit_code == 0
    assert [line.split()[:2] for line in listed.output.splitlines()] == [
        ["olga", "operator"],
        ["vera", "viewer"],
    ]
    assert "$2b$" not in listed.output  # never a hash
    removed = CliRunner().invoke(cli, ["users", "remove", "olga"])
    assert removed.exit_code == 0 and "removed olga (operator)" in removed.output
    assert list(auth.load_accounts(path)) == ["vera"]
    assert auth.authenticate(auth.load_accounts(path), "olga", PASSWORD) is None
    assert path.stat().st_mode & 0o077 == 0
    missing = CliRunner().invoke(cli, ["users", "remove", "olga"])
    assert missing.exit_code == 1 and "no user 'olga'" in missing.output


# --- sign-in through the app -------------------------------------------------------------------


@pytest.fixture
def accounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "users.json"
    for name, role in (("vera", Role.VIEWER), ("otto", Role.OPERATOR), ("aude", Role.AUDITOR)):
        auth.add_user(path, name, role, PASSWORD)
    monkeypatch.setenv("REVTRACE_USERS_FILE", str(path))
    return path


def _signed_in(name: str, password: str = PASSWORD) -> object:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert at.title[0].value == "revtrace — sign in"
    at.text_input(key="sign_in_name").input(name)
    at.text_input(key="sign_in_password").input(password)
    at.button[0].click().run()
    return at


@pytest.mark.usefixtures("use_filled")
def test_sign_in_required_when_accounts_exist(accounts: Path) -> None:
    at = _signed_in("vera", PASSWORD + "?")
    assert "Unknown user name or wrong password." in texts(at.error)
    assert not at.metric  # nothing of the store is shown
    assert "revtrace_user" not in at.session_state


@pytest.mark.usefixtures("use_filled")
def test_a_removed_account_is_signed_out_and_a_new_role_applies(accounts: Path) -> None:
    at = _signed_in("otto")
    assert any("Signed in as **otto** (operator)" in c for c in texts(at.sidebar.caption))
    auth.add_user(accounts, "otto", Role.VIEWER, PASSWORD, replace=True)
    at.run()
    assert any("Signed in as **otto** (viewer)" in c for c in texts(at.sidebar.caption))
    auth.remove_user(accounts, "otto")
    at.run()
    assert at.title[0].value == "revtrace — sign in"
    assert not at.metric


@pytest.mark.usefixtures("use_filled")
def test_viewer_sees_no_payloads_and_cannot_export_or_act(accounts: Path) -> None:
    at = _signed_in("vera")
    assert any("Signed in as **vera** (viewer)" in c for c in texts(at.sidebar.caption))
    at.switch_page("views/trace.py")
    at.query_params["correlation_id"] = "q2c-ok-0"
    at.run()
    assert not at.exception
    assert any("Payload snapshots are shown to auditors and admins" in t for t in texts(at.info))
    assert not at.code  # no payload body anywhere
    assert not list(at.get("download_button"))
    at.switch_page("views/workbench.py").run()
    assert any("are for operators and admins" in t for t in texts(at.info))
    assert all(b.key not in {"wb_replay", "wb_resolve", "wb_assign"} for b in at.button)


@pytest.mark.usefixtures("use_filled")
def test_auditor_sees_payloads_and_exports(accounts: Path) -> None:
    at = _signed_in("aude")
    at.switch_page("views/trace.py")
    at.query_params["correlation_id"] = "q2c-ok-0"
    at.run()
    assert at.code
    assert {b.label for b in at.get("download_button")} == {"Download JSON", "Download CSV", "Download HTML"}


@pytest.mark.usefixtures("use_filled")
def test_operator_may_act_but_not_see_payloads(accounts: Path) -> None:
    at = _signed_in("otto")
    at.switch_page("views/workbench.py").run()
    assert {b.key for b in at.button} >= {"wb_replay", "wb_resolve", "wb_assign"}
    at.switch_page("views/trace.py")
    at.query_params["correlation_id"] = "q2c-ok-0"
    at.run()
    assert not at.code


def test_closed_without_accounts_on_a_public_address(monkeypatch: pytest.MonkeyPatch, filled: Filled) -> None:
    from streamlit.testing.v1 import AppTest

    from dashboard import data

    monkeypatch.setenv("REVTRACE_DASHBOARD_HOST", "0.0.0.0")
    data.use_store(filled.store)
    try:
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    finally:
        data.use_store(None)
    assert any("stays closed" in t for t in texts(at.error))
    assert not at.metric


@pytest.mark.usefixtures("use_filled")
def test_open_on_loopback_says_so() -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert any("Open access on localhost" in w for w in texts(at.sidebar.warning))
