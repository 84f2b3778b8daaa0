"""revtrace reference quote-to-cash sync engine (work in progress)."""
