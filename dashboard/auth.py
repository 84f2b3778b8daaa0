"""Who may see what: roles, permissions and local accounts.

Roles and what they may do (:data:`PERMISSIONS`):

============  ====  =====================  ========================  ======
role          view  act (replay, resolve,  see payload snapshots     export
                    assign)
============  ====  =====================  ========================  ======
viewer        yes   no                     no                        no
operator      yes   yes                    no                        no
auditor       yes   no                     yes                       yes
admin         yes   yes                    yes                       yes
============  ====  =====================  ========================  ======

Local accounts live in a JSON users file (``REVTRACE_USERS_FILE``, mode 0600)
holding bcrypt hashes, never passwords; ``revtrace users add NAME --role R``
writes it. Sign-in itself (the form, ``st.login`` for OIDC) is in
:mod:`dashboard.ui`; this module has no Streamlit in it.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import bcrypt

from dashboard.errors import UsersFileError

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "PERMISSIONS",
    "USERS_FILE_VERSION",
    "Account",
    "AuthMode",
    "Permission",
    "Role",
    "User",
    "add_user",
    "authenticate",
    "load_accounts",
    "remove_user",
]

USERS_FILE_VERSION: Final = "revtrace/v1"
"""The ``version`` a users file must declare."""
MIN_PASSWORD_LENGTH: Final = 12
"""Shortest password ``revtrace users add`` accepts."""
_MAX_PASSWORD_BYTES: Final = 72  # bcrypt uses the first 72 bytes only; refuse rather than truncate
_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")


class Role(StrEnum):
    """Dashboard roles."""

    VIEWER = "viewer"
    """Sees every view, no payloads, no actions."""
    OPERATOR = "operator"
    """Exception handler: workbench actions (replay, resolve, assign)."""
    AUDITOR = "auditor"
    """Sees payload snapshots and exports audit trails."""
    ADMIN = "admin"
    """Everything."""


class Permission(StrEnum):
    """What a role may do."""

    VIEW = "view"
    ACT = "act"
    SEE_PAYLOADS = "see_payloads"
    EXPORT = "export"


PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    Role.VIEWER: frozenset({Permission.VIEW}),
    Role.OPERATOR: frozenset({Permission.VIEW, Permission.ACT}),
    Role.AUDITOR: frozenset({Permission.VIEW, Permission.SEE_PAYLOADS, Permission.EXPORT}),
    Role.ADMIN: frozenset(Permission),
}
"""The permission matrix drawn in the module docstring."""


class AuthMode(StrEnum):
    """How the dashboard signs people in."""

    OIDC = "oidc"
    """OpenID Connect through ``st.login``."""
    LOCAL = "local"
    """Local accounts from the users file."""
    OPEN = "open"
    """Nobody signs in; everyone is admin. Only on a loopback address (the embedded demo)."""
    LOCKED = "locked"
    """No sign-in configured on a non-loopback address: nobody gets in."""


@dataclass(frozen=True)
class User:
    """The signed-in person and their role."""

    name: str
    role: Role
    mode: AuthMode

    def can(self, permission: Permission) -> bool:
        """Whether this user's role grants ``permission``."""
        return permission in PERMISSIONS[self.role]


@dataclass(frozen=True)
class Account:
    """One entry of the users file."""

    name: str
    role: Role
    password_hash: str
    created_at: str

    def as_dict(self) -> dict[str, str]:
        """The JSON form of the entry."""
        return {
            "name": self.name,
            "role": str(self.role),
            "password_hash": self.password_hash,
            "created_at": self.created_at,
        }


def load_accounts(path: Path) -> dict[str, Account]:
    """The accounts of ``path`` by name; ``{}`` when the file does not exist.

    Every problem of the file is reported at once, naming the entry and field.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsersFileError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise UsersFileError(f"{path}: not JSON: {exc}") from None
    problems: list[str] = []
    if not isinstance(data, dict):
        raise UsersFileError(f"{path}: must be a JSON object with version and users")
    unknown = sorted(set(data) - {"version", "users"})
    if unknown:
        problems.append(f"unknown keys {unknown}")
    if data.get("version") != USERS_FILE_VERSION:
        problems.append(f"version: must be {USERS_FILE_VERSION!r}, got {data.get('version')!r}")
    users = data.get("users", [])
    if not isinstance(users, list):
        problems.append(f"users: must be a list, got {type(users).__name__}")
        users = []
    accounts: dict[str, Account] = {}
    for index, entry in enumerate(users):
        where = f"users[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be an object")
            continue
        extra = sorted(set(entry) - {"name", "role", "password_hash", "created_at"})
        if extra:
            problems.append(f"{where}: unknown keys {extra}")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(f"{where}.name: must match {_NAME.pattern}, got {name!r}")
            continue
        role = entry.get("role")
        if role not in {r.value for r in Role}:
            problems.append(f"{where}.role: must be one of {[r.value for r in Role]}, got {role!r}")
            continue
        hashed = entry.get("password_hash")
        if not isinstance(hashed, str) or not hashed.startswith("$2"):
            problems.append(f"{where}.password_hash: must be a bcrypt hash")
            continue
        if name in accounts:
            problems.append(f"{where}.name: duplicate {name!r}")
            continue
        accounts[name] = Account(name, Role(role), hashed, str(entry.get("created_at", "")))
    if problems:
        raise UsersFileError(f"{path}: " + "; ".join(problems))
    return accounts


def add_user(path: Path, name: str, role: Role, password: str, *, replace: bool = False) -> Account:
    """Add (or with ``replace``, update) an account; the file is written atomically, mode 0600.

    The password is hashed with bcrypt here and never stored or logged.
    """
    if not _NAME.match(name):
        raise UsersFileError(f"name: must match {_NAME.pattern}, got {name!r}")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsersFileError(f"password: must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password.encode()) > _MAX_PASSWORD_BYTES:
        raise UsersFileError(f"password: must be at most {_MAX_PASSWORD_BYTES} bytes (a bcrypt limit)")
    accounts = load_accounts(path)
    if name in accounts and not replace:
        raise UsersFileError(f"{path}: user {name!r} exists (use --replace to change it)")
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=12)).decode()
    account = Account(name, role, hashed, dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    accounts[name] = account
    _write_accounts(path, accounts)
    return account


def remove_user(path: Path, name: str) -> Account:
    """Remove an account (the file is rewritten atomically, mode 0600); returns what was removed.

    A signed-in session of the account is signed out on its next interaction
    (the dashboard checks the file on every run).
    """
    accounts = load_accounts(path)
    if name not in accounts:
        raise UsersFileError(f"{path}: no user {name!r}")
    removed = accounts.pop(name)
    _write_accounts(path, accounts)
    return removed


def _write_accounts(path: Path, accounts: dict[str, Account]) -> None:
    body = {"version": USERS_FILE_VERSION, "users": [a.as_dict() for a in accounts.values()]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(body, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


# A real bcrypt hash to check against when the name is unknown, so that a wrong
# name costs the same time as a wrong password (no user enumeration by timing).
@functools.cache
def _dummy_hash() -> bytes:
    return bcrypt.hashpw(b"revtrace-no-such-user", bcrypt.gensalt(rounds=12))


def authenticate(accounts: dict[str, Account], name: str, password: str) -> User | None:
    """The user when ``password`` matches the account's bcrypt hash, else ``None``."""
    account = accounts.get(name)
    candidate = password.encode()[:_MAX_PASSWORD_BYTES]
    if account is None:
        bcrypt.checkpw(candidate, _dummy_hash())
        return None
    try:
        ok = bcrypt.checkpw(candidate, account.password_hash.encode())
    except ValueError:
        return None
    return User(account.name, account.role, AuthMode.LOCAL) if ok else None
