"""The resilience suite's runner and report (``make resilience``).

``python -m resilience`` runs the suite (``tests/resilience`` plus the durability
and bad-input tests of the collector) with pytest, records each test's outcome
and measured figures in ``resilience/results.json`` and regenerates
``docs/resilience.md`` from them; ``--soak`` adds the long runs. Nothing in the
report is typed by hand: every number comes from a run, with the commit and the
machine it ran on.

- :mod:`resilience.plugin` — the pytest plugin that records outcomes and figures.
- :mod:`resilience.report` — merging runs into the results file and rendering it.
"""

from __future__ import annotations

__all__: list[str] = []
