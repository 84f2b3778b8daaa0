"""``python -m sync_engine`` (see :mod:`sync_engine._cli`)."""

import sys

from sync_engine._cli import main

sys.exit(main())
