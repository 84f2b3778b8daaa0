"""The dashboard's router: page setup, sign-in, the shared sidebar, then the page.

Run inside ``revtrace up`` (served in-process by :mod:`dashboard.server`), alone
with ``revtrace dashboard``, or with ``streamlit run dashboard/app.py``. Pages
live in ``dashboard/views/`` (a directory named ``pages`` beside this script would
switch Streamlit to its directory-based multipage mode, which never runs this
router) and are UI only; the store is reached through
:mod:`dashboard.data`.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import ui

_VIEWS = Path(__file__).parent / "views"


def _pages() -> list[st.Page]:
    def page(
        file: str, title: str, icon: str, url: str, default: bool = False, hidden: bool = False
    ) -> st.Page:
        return st.Page(
            _VIEWS / file,
            title=title,
            icon=icon,
            url_path=url,
            default=default,
            visibility="hidden" if hidden else "visible",
        )

    return [
        page("overview.py", "Overview", ":material/dashboard:", "home", default=True),
        # The default page lives at "/"; this hidden twin makes "/overview" links work too.
        page("overview.py", "Overview", ":material/dashboard:", "overview", hidden=True),
        page("objects.py", "Business objects", ":material/inventory_2:", "objects"),
        page("latency.py", "Latency", ":material/timer:", "latency"),
        page("alerts.py", "Alerts", ":material/notifications:", "alerts"),
        page("sync_engine.py", "Sync engine", ":material/sync:", "sync"),
        page("trace.py", "Trace", ":material/timeline:", "trace"),
        page("workbench.py", "Workbench", ":material/build:", "workbench"),
        page("reconciliation.py", "Reconciliation", ":material/balance:", "reconciliation"),
    ]


def main() -> None:
    """Route one run of the app."""
    st.set_page_config(page_title="revtrace", page_icon=":material/timeline:", layout="wide")
    user = ui.sign_in()
    if user is None:
        st.stop()
    navigation = st.navigation(_pages())
    ui.render_sidebar(user)
    navigation.run()


main()
