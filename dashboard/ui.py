"""What every page shares: sign-in, the filters in the sidebar and the URL, auto-refresh,
empty states and formatting. UI only: the store is reached through :mod:`dashboard.data`.

Filters come from the URL so that a link opens the right view:
``?range=24h`` (or ``?from=2026-12-01T00:00&to=2026-12-02T00:00``), ``?entity=DE01``,
plus each page's own (``?correlation_id=…`` on the trace page).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Final
from urllib.parse import quote, urlencode

import streamlit as st

from dashboard import auth, data, settings
from dashboard.auth import AuthMode, Permission, Role, User

__all__ = [
    "DEFAULT_RANGE",
    "NO_SPANS",
    "RANGES",
    "auth_mode",
    "current_user",
    "empty",
    "filters",
    "fmt_seconds",
    "page_link",
    "query_param",
    "render_sidebar",
    "require",
    "set_query_params",
    "sign_in",
    "sign_out",
    "trace_url",
    "url_selectbox",
    "url_text",
]

NO_SPANS: Final = (
    "No spans yet. Run `make demo` for a realistic workload, or point your OTLP exporter at "
    "http://127.0.0.1:4318 (`OTEL_EXPORTER_OTLP_ENDPOINT`) and instrument your adapters with "
    "`tracer.business_span(...)`."
)
"""What a page says when the store holds no business spans in the window."""

RANGES: Final[dict[str, tuple[str, dt.timedelta]]] = {
    "15m": ("Last 15 minutes", dt.timedelta(minutes=15)),
    "1h": ("Last hour", dt.timedelta(hours=1)),
    "6h": ("Last 6 hours", dt.timedelta(hours=6)),
    "24h": ("Last 24 hours", dt.timedelta(hours=24)),
    "7d": ("Last 7 days", dt.timedelta(days=7)),
    "30d": ("Last 30 days", dt.timedelta(days=30)),
    "custom": ("Custom…", dt.timedelta(0)),
}
DEFAULT_RANGE: Final = "24h"
_SKEW: Final = dt.timedelta(minutes=1)  # spans from clocks a little ahead still show
_USER_KEY: Final = "revtrace_user"
_FILTERS_KEY: Final = "revtrace_filters"
_WRITTEN_KEY: Final = "revtrace_url_written"
_FAILED_KEY: Final = "revtrace_failed_sign_ins"
_TICKS_KEY: Final = "revtrace_ticks"


# --- URL ---------------------------------------------------------------------------


def query_param(name: str, default: str = "") -> str:
    """A query parameter of the URL (the last one when repeated)."""
    value = st.query_params.get(name)
    return str(value) if value is not None else default


def set_query_params(**values: str | None) -> None:
    """Write these parameters into the URL (``None`` or ``''`` removes one)."""
    for name, value in values.items():
        if value:
            if st.query_params.get(name) != value:
                st.query_params[name] = value
        elif name in st.query_params:
            del st.query_params[name]


def _url_wins(param: str, key: str) -> None:
    """Let the URL set widget ``key`` when it says something we did not write there
    (a deep link, or a link followed inside the session)."""
    written: dict[str, str] = st.session_state.setdefault(_WRITTEN_KEY, {})
    value = st.query_params.get(param)
    if value is not None and written.get(param) != value:
        st.session_state[key] = value
        written[param] = value


def _remember_written(**values: str) -> None:
    written: dict[str, str] = st.session_state.setdefault(_WRITTEN_KEY, {})
    written.update(values)
    set_query_params(**values)


def url_selectbox(
    label: str,
    options: list[str],
    param: str,
    *,
    format_func: Any = str,
    container: Any = None,
    help: str | None = None,
) -> str:
    """A selectbox whose value lives in the URL as ``?param=`` (the first option is the
    default and leaves the URL without it)."""
    key = f"p_{param}"
    _url_wins(param, key)
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0]
    value = str((container or st).selectbox(label, options, format_func=format_func, key=key, help=help))
    _remember_written(**{param: "" if value == options[0] else value})
    return value


def url_text(label: str, param: str, *, placeholder: str = "", container: Any = None) -> str:
    """A text input whose value lives in the URL as ``?param=``."""
    key = f"p_{param}"
    _url_wins(param, key)
    value = str((container or st).text_input(label, key=key, placeholder=placeholder)).strip()
    _remember_written(**{param: value})
    return value


def trace_url(correlation_id: str) -> str:
    """The trace page's link for a correlation id."""
    return "/trace?" + urlencode({"correlation_id": correlation_id}, quote_via=quote)


def page_link(page: str, **params: str) -> str:
    """A link to a page with query parameters."""
    return f"/{page}?" + urlencode({k: v for k, v in params.items() if v}, quote_via=quote)


# --- sign-in -------------------------------------------------------------------------


def _auth_secrets_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def auth_mode() -> AuthMode:
    """How this dashboard signs people in (OIDC, local accounts, open on loopback, or locked)."""
    if _auth_secrets_configured():
        return AuthMode.OIDC
    try:
        accounts = auth.load_accounts(settings.users_file())
    except Exception:
        return AuthMode.LOCKED
    if accounts:
        return AuthMode.LOCAL
    address = str(st.get_option("server.address") or settings.env_str("REVTRACE_DASHBOARD_HOST"))
    return AuthMode.OPEN if address in settings.LOOPBACK_HOSTS else AuthMode.LOCKED


def current_user() -> User | None:
    """The signed-in user of this session."""
    user = st.session_state.get(_USER_KEY)
    return user if isinstance(user, User) else None


def sign_in() -> User | None:
    """Sign the session in, or draw the sign-in form and return ``None``."""
    mode = auth_mode()
    if mode == AuthMode.OPEN:
        user = User("local", Role.ADMIN, AuthMode.OPEN)
        st.session_state[_USER_KEY] = user
        return user
    if mode == AuthMode.OIDC:
        return _oidc_user()
    existing = current_user()
    if existing is not None and existing.mode == mode:
        if mode == AuthMode.LOCAL:
            existing = _still_valid(existing)
        if existing is not None:
            return existing
    if mode == AuthMode.LOCKED:
        st.title("revtrace")
        st.error(
            "Sign-in is not configured, and this dashboard is not bound to a loopback address, so it "
            "stays closed. Create an account with `revtrace users add NAME --role admin` (users file: "
            f"`{settings.users_file()}`), configure OIDC (REVTRACE_OIDC_*), or bind to 127.0.0.1."
        )
        return None
    return _local_sign_in()


def _still_valid(user: User) -> User | None:
    """The session's local user as the users file says now: removed accounts are
    signed out on their next interaction, a changed role applies at once."""
    try:
        account = auth.load_accounts(settings.users_file()).get(user.name)
    except Exception:  # an unreadable users file signs nobody in (fail closed)
        account = None
    if account is None:
        st.session_state.pop(_USER_KEY, None)
        return None
    if account.role != user.role:
        user = User(user.name, account.role, user.mode)
        st.session_state[_USER_KEY] = user
    return user


def _local_sign_in() -> User | None:
    st.title("revtrace — sign in")
    failures: list[float] = st.session_state.setdefault(_FAILED_KEY, [])
    recent = [t for t in failures if time.monotonic() - t < 300]
    st.session_state[_FAILED_KEY] = recent
    with st.form("sign-in", clear_on_submit=True):
        name = st.text_input("User name", key="sign_in_name")
        password = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in")
    if not submitted:
        return None
    if len(recent) >= 5:
        st.error("Too many failed sign-ins from this session; wait five minutes.")
        return None
    user = auth.authenticate(auth.load_accounts(settings.users_file()), name, password)
    if user is None:
        recent.append(time.monotonic())
        st.error("Unknown user name or wrong password.")
        return None
    st.session_state[_USER_KEY] = user
    st.rerun()
    return user  # pragma: no cover - st.rerun does not return


def _oidc_user() -> User | None:
    if not st.user.is_logged_in:
        st.title("revtrace — sign in")
        st.write("This dashboard signs you in with your organization's identity provider.")
        if st.button("Sign in"):
            try:
                st.login()
            except Exception as exc:  # e.g. Authlib is not installed
                st.error(f"Sign-in through OIDC failed: {exc}")
        return None
    name = str(st.user.get("email") or st.user.get("name") or st.user.get("sub") or "unknown")
    try:
        accounts = auth.load_accounts(settings.users_file())
    except Exception:
        accounts = {}
    account = accounts.get(name)
    role = account.role if account else Role(settings.env_str("REVTRACE_OIDC_DEFAULT_ROLE"))
    user = User(name, role, AuthMode.OIDC)
    st.session_state[_USER_KEY] = user
    return user


def sign_out() -> None:
    """Forget the session's user (and end the OIDC session)."""
    user = current_user()
    st.session_state.pop(_USER_KEY, None)
    if user is not None and user.mode == AuthMode.OIDC:
        st.logout()


def require(permission: Permission) -> bool:
    """Whether the signed-in user may ``permission``."""
    user = current_user()
    return user is not None and user.can(permission)


# --- filters --------------------------------------------------------------------------


def _parse_time(text: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def _filters_from(range_key: str, entity: str, start_text: str, end_text: str) -> data.Filters:
    now = data.utcnow()
    if range_key == "custom":
        start, end = _parse_time(start_text), _parse_time(end_text)
        if start is not None and end is not None and start < end:
            return data.Filters(start, end, entity)
        range_key = DEFAULT_RANGE
    window = RANGES.get(range_key, RANGES[DEFAULT_RANGE])[1]
    return data.Filters(now - window, now + _SKEW, entity)


def filters() -> data.Filters:
    """This run's filters (set by the sidebar; from the URL when a page runs alone)."""
    found = st.session_state.get(_FILTERS_KEY)
    if isinstance(found, data.Filters):
        return found
    return _filters_from(
        query_param("range", DEFAULT_RANGE), query_param("entity"), query_param("from"), query_param("to")
    )


def render_sidebar(user: User) -> data.Filters:
    """The time range, entity and refresh pickers, synchronized with the URL."""
    sidebar = st.sidebar
    _url_wins("range", "f_range")
    _url_wins("entity", "f_entity")
    _url_wins("from", "f_from")
    _url_wins("to", "f_to")
    if st.session_state.get("f_range") not in RANGES:
        st.session_state["f_range"] = DEFAULT_RANGE
    range_key = sidebar.selectbox(
        "Time range", list(RANGES), format_func=lambda k: RANGES[k][0], key="f_range"
    )
    start_text = end_text = ""
    if range_key == "custom":
        now = data.utcnow().replace(second=0, microsecond=0)
        st.session_state.setdefault("f_from", (now - dt.timedelta(days=1)).isoformat(timespec="minutes"))
        st.session_state.setdefault("f_to", now.isoformat(timespec="minutes"))
        start_text = sidebar.text_input("From (UTC, ISO 8601)", key="f_from")
        end_text = sidebar.text_input("To (UTC, ISO 8601)", key="f_to")
    base = _filters_from(range_key, "", start_text, end_text)
    try:
        known = data.entities(data.get_store(), base)
    except data.StoreError as exc:
        st.error(f"The store cannot be read: {exc}")
        known = []
    wanted = str(st.session_state.get("f_entity") or "")
    options = ["", *sorted({*known, wanted} - {""})]
    if wanted not in options:
        st.session_state["f_entity"] = ""
    entity = sidebar.selectbox(
        "Legal entity", options, format_func=lambda e: e or "All entities", key="f_entity"
    )
    refresh_default = max(settings.env_int("REVTRACE_DASHBOARD_REFRESH_S"), 0)
    refresh_options = sorted({0, 10, 30, 60, 300, refresh_default})
    st.session_state.setdefault("f_refresh", refresh_default)
    refresh = sidebar.selectbox(
        "Auto-refresh",
        refresh_options,
        format_func=lambda s: "off" if s == 0 else f"every {s} s",
        key="f_refresh",
    )
    _remember_written(
        range=range_key,
        entity=entity,
        **({"from": start_text, "to": end_text} if range_key == "custom" else {"from": "", "to": ""}),
    )
    result = data.Filters(base.start, base.end, entity)
    st.session_state[_FILTERS_KEY] = result
    sidebar.caption(
        f"{result.start:%Y-%m-%d %H:%M} → {result.end:%Y-%m-%d %H:%M} UTC · buckets of {fmt_seconds(result.step)}"
    )
    _account_box(user)
    if refresh:
        _auto_refresh(int(refresh))
    return result


def _account_box(user: User) -> None:
    sidebar = st.sidebar
    sidebar.divider()
    if user.mode == AuthMode.OPEN:
        sidebar.warning(
            "Open access on localhost: no sign-in, everyone here is admin. Add accounts with "
            "`revtrace users add NAME --role R` to require sign-in."
        )
        return
    sidebar.caption(f"Signed in as **{user.name}** ({user.role})")
    if sidebar.button("Sign out"):
        sign_out()
        st.rerun()


def _auto_refresh(seconds: int) -> None:
    @st.fragment(run_every=seconds)
    def ticker() -> None:
        # A full run of the app resets the counter just before this fragment runs
        # as part of it; only a timed run of the fragment alone finds it set, and
        # then reruns the whole app (whose queries' cache has expired by then).
        if st.session_state.get(_TICKS_KEY, 0) > 0:
            st.session_state[_TICKS_KEY] = 0
            st.rerun(scope="app")
        st.session_state[_TICKS_KEY] = 1

    st.session_state[_TICKS_KEY] = 0
    with st.sidebar:
        ticker()


# --- formatting ---------------------------------------------------------------------------


def fmt_seconds(seconds: Any) -> str:
    """``75`` → ``1m 15s``; ``None``/NaN → ``—``."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        return "—"
    if value != value:  # NaN
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24}h"


def empty(message: str) -> None:
    """An empty state that tells a new user what to do."""
    st.info(message)
