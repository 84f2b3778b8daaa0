"""A pytest plugin that records, for every test it sees, what the report needs:
its outcome and duration, its docstring, and the ``figures`` it recorded (see
``tests/resilience/conftest.py``). ``python -m resilience`` loads it with
``-p resilience.plugin`` and reads the JSON it writes at the end of the session
(``--resilience-raw PATH``).
"""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import Any

import pytest

__all__ = ["Recorder"]


def _first_paragraph(doc: str | None) -> str:
    text = inspect.cleandoc(doc or "")
    return " ".join(text.split("\n\n", 1)[0].split())


class Recorder:
    """Collects one entry per test id; writes them to ``path`` at session end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self.started = time.time()

    def _entry(self, nodeid: str) -> dict[str, Any]:
        return self.entries.setdefault(
            nodeid,
            {"id": nodeid, "outcome": "", "seconds": 0.0, "figures": {}, "doc": "", "module_doc": ""},
        )

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for index, item in enumerate(items):
            entry = self._entry(item.nodeid)
            entry["index"] = index
            function = getattr(item, "function", None)
            entry["doc"] = _first_paragraph(getattr(function, "__doc__", None))
            module = getattr(item, "module", None)
            entry["module_doc"] = _first_paragraph(getattr(module, "__doc__", None))
            entry["file"] = item.nodeid.split("::", 1)[0]
            entry["name"] = item.name
            entry["soak"] = item.get_closest_marker("soak") is not None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self._entry(report.nodeid)
        entry["seconds"] = round(entry["seconds"] + report.duration, 2)
        for name, value in report.user_properties:
            if name == "figures" and isinstance(value, dict):
                entry["figures"].update(value)
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            entry["outcome"] = report.outcome
            if hasattr(report, "wasxfail"):
                entry["outcome"] = "xfailed" if report.skipped else "xpassed"
                entry["reason"] = str(report.wasxfail)
            elif report.skipped and isinstance(report.longrepr, tuple):
                entry["reason"] = str(report.longrepr[2])
            elif report.failed:
                entry["reason"] = str(getattr(report, "longreprtext", ""))[-2000:]
        elif report.when == "teardown" and report.failed and entry["outcome"] == "passed":
            entry["outcome"] = "failed"
            entry["reason"] = str(getattr(report, "longreprtext", ""))[-2000:]

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "started": self.started,
            "finished": time.time(),
            "tests": [e for e in self.entries.values() if e["outcome"]],
        }
        self.path.write_text(json.dumps(document, indent=1, default=str))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--resilience-raw", default="", help="write the resilience report's raw JSON here")


def pytest_configure(config: pytest.Config) -> None:
    raw = str(config.getoption("--resilience-raw") or "")
    if raw:
        config.pluginmanager.register(Recorder(Path(raw)), "resilience-recorder")
