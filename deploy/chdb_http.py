#!/usr/bin/env python3
"""Serve a chDB data directory over the ClickHouse HTTP interface.

The implementation is :mod:`collector.chdb_http` (``revtrace up
--clickhouse-http-port`` uses it in-process); this script is its command line::

    REVTRACE_CHDB_HTTP_PASSWORD=… python deploy/chdb_http.py --data .revtrace/store --port 8123
"""

import sys

from collector.chdb_http import main

if __name__ == "__main__":
    sys.exit(main())
