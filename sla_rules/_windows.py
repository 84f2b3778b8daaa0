"""Multi-window, multi-burn-rate alerting windows, as data.

Source: Google, *The Site Reliability Workbook*, chapter 5 "Alerting on SLOs",
section "6: Multiwindow, Multi-Burn-Rate Alerts" (table 5-8). For a 30-day SLO,
each row pages or tickets when both the long window and its short window (1/12
of the long one) burn the error budget faster than ``factor`` times the rate
that would spend it exactly over the period:

======  =======  ===========  ===================================
long    short    burn factor  meaning
======  =======  ===========  ===================================
1 h     5 min    14.4         2 % of a 30-day budget in 1 hour: page
6 h     30 min   6            5 % of the budget in 6 hours: page
1 d     2 h      3            10 % of the budget in a day: ticket
3 d     6 h      1            10 % of the budget in 3 days: ticket
======  =======  ===========  ===================================

The short window makes the alert stop soon after the burning stops. A rules
file may give its own windows; these are the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["GOOGLE_SRE_WORKBOOK", "GOOGLE_SRE_WORKBOOK_SOURCE", "BurnWindow"]


@dataclass(frozen=True)
class BurnWindow:
    """One alerting condition: both windows burn faster than ``factor``."""

    long: float
    """The long window, seconds."""
    short: float
    """The short (reset) window, seconds."""
    factor: float
    """The burn rate (multiple of the budget-neutral rate) that fires."""
    severity: str
    """``critical`` pages, ``warning`` tickets."""


GOOGLE_SRE_WORKBOOK_SOURCE: Final = (
    "Google SRE workbook, ch. 5 'Alerting on SLOs', multiwindow multi-burn-rate alerts (table 5-8)"
)
"""Where :data:`GOOGLE_SRE_WORKBOOK` comes from."""

GOOGLE_SRE_WORKBOOK: Final = (
    BurnWindow(long=3600.0, short=300.0, factor=14.4, severity="critical"),
    BurnWindow(long=6 * 3600.0, short=1800.0, factor=6.0, severity="critical"),
    BurnWindow(long=86400.0, short=7200.0, factor=3.0, severity="warning"),
    BurnWindow(long=3 * 86400.0, short=6 * 3600.0, factor=1.0, severity="warning"),
)
"""The workbook's recommended windows for a 30-day SLO period."""
