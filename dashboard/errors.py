"""The dashboard's exceptions, one hierarchy::

DashboardError
 ├── UsersFileError     the users file cannot be read or is invalid
 ├── PermissionDenied   the signed-in role may not do this
 └── ReplayError        the sync engine refused the replay or cannot be reached
                        (``retryable`` says whether trying again may help)
"""

from __future__ import annotations

__all__ = ["DashboardError", "PermissionDenied", "ReplayError", "UsersFileError"]


class DashboardError(Exception):
    """Anything the dashboard reports to its user."""


class UsersFileError(DashboardError):
    """The users file cannot be read or written, or an entry is invalid."""


class PermissionDenied(DashboardError):
    """The signed-in role may not do this."""


class ReplayError(DashboardError):
    """The sync engine did not accept the replay."""

    def __init__(self, message: str, *, retryable: bool, status_code: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code
