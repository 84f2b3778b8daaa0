"""Running the dashboard under Streamlit's AppTest: through the router, like a browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest

import dashboard

APP = Path(dashboard.__file__).parent / "app.py"
TIMEOUT = 60


def open_page(view: str, **params: str) -> AppTest:
    """The app opened on ``views/<view>.py`` with these URL query parameters."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.switch_page(f"views/{view}.py")
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    """Every st.metric on the page: label → displayed value."""
    return {m.label: str(m.value) for m in at.metric}


def texts(elements: Any) -> list[str]:
    """The text of info/error/success/caption/markdown elements."""
    return [str(e.value) for e in elements]


def charts(at: AppTest) -> list[Any]:
    """The Plotly charts on the page (their protos hold the figure JSON in ``spec``)."""
    return list(at.get("plotly_chart"))
