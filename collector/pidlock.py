"""A directory held by one process: an exclusive ``flock`` on a file holding its pid.

The embedded store, the spool and the chDB HTTP server each take one; the lock
goes with the process (also on a crash), and the file says who holds it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

__all__ = ["HeldElsewhere", "hold"]


class HeldElsewhere(OSError):
    """Another process holds the lock; ``holder`` is its pid as the file says (or ``unknown``)."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is held by pid {holder}")
        self.path = path
        self.holder = holder


def hold(lock_file: Path) -> IO[str]:
    """Take the lock without waiting and write this pid into the file; closing the handle releases it.

    Raises :class:`HeldElsewhere` when another process holds it.
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_file, "a+")  # noqa: SIM115 - the caller holds it
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise HeldElsewhere(lock_file, holder) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
