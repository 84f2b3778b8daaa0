"""revtrace dashboard: the Streamlit + Plotly face of the product.

``dashboard/app.py`` is the router (``st.navigation``); ``dashboard/views/`` holds
the UI-only pages (not ``pages/``: beside the main script that name switches
Streamlit to its older directory-based multipage mode, which bypasses the router); :mod:`dashboard.data` is the one module that reaches the store.
:mod:`dashboard.server` serves it inside ``revtrace up`` (or alone with
``revtrace dashboard``); :mod:`dashboard.commands` holds ``revtrace trace`` and
``revtrace audit verify``. Roles and local accounts are in :mod:`dashboard.auth`,
the hash-chained audit log in :mod:`dashboard.audit`. Errors::

    DashboardError (dashboard.errors)
     ├── UsersFileError
     ├── PermissionDenied
     └── ReplayError
"""

from __future__ import annotations

__all__: list[str] = []
