"""The spool: an append-only, checksummed log of accepted rows on disk.

A request is answered 2xx only after its rows are appended here, so what was
accepted survives a crash of the collector (kill -9) and an outage of the store.
The writer reads the log in order and moves a *committed* position forward once
rows are in the store.

Layout under ``<dir>``::

    00000000000000000000.seg   records, the name is the segment's start position
    state.json                 {"committed": N, "pending": [A, B] | null}

Positions are global byte offsets across segments. A record is
``RTS1 | u32 length | u32 crc32 | payload`` where the payload holds one or more
``(table, rows)`` blocks. A torn tail (crash mid-append) fails its checksum and
is cut off on open: it was never acknowledged.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from collector import pidlock

__all__ = ["Record", "Spool", "SpoolFullError", "SpoolLockedError", "decode_payload", "encode_payload"]

log = logging.getLogger(__name__)

_MAGIC: Final = b"RTS1"
_HEADER: Final = struct.Struct("<4sII")
# state.json is padded to this size, so it can be rewritten in place on a full disk.
_STATE_BYTES: Final = 256
_BLOCK: Final = struct.Struct("<HII")  # table name length, row count, rows byte length
SEGMENT_BYTES: Final = 64 * 1024 * 1024


class SpoolFullError(OSError):
    """The spool cannot take more now (backlog over its limit, or the disk is full)."""


class SpoolLockedError(OSError):
    """Another process holds the spool directory."""


@dataclass(frozen=True)
class Record:
    """One spooled record: where it starts and ends, and its blocks."""

    start: int
    end: int
    blocks: list[tuple[str, int, bytes]]


def encode_payload(blocks: list[tuple[str, int, bytes]]) -> bytes:
    """``[(table, row count, JSONEachRow bytes), …]`` → record payload."""
    parts: list[bytes] = []
    for table, count, rows in blocks:
        name = table.encode("utf-8")
        parts.append(_BLOCK.pack(len(name), count, len(rows)))
        parts.append(name)
        parts.append(rows)
    return b"".join(parts)


def decode_payload(payload: bytes) -> list[tuple[str, int, bytes]]:
    """Inverse of :func:`encode_payload`."""
    blocks: list[tuple[str, int, bytes]] = []
    offset = 0
    view = memoryview(payload)
    while offset < len(payload):
        name_len, count, rows_len = _BLOCK.unpack_from(payload, offset)
        offset += _BLOCK.size
        table = bytes(view[offset : offset + name_len]).decode("utf-8")
        offset += name_len
        rows = bytes(view[offset : offset + rows_len])
        offset += rows_len
        blocks.append((table, count, rows))
    return blocks


class Spool:
    """Append-only record log with a persisted committed position.

    ``append`` is called by request handlers (any thread); ``read_from`` and
    ``commit`` by the single writer thread.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_backlog_bytes: int,
        fsync: bool = False,
        segment_bytes: int = SEGMENT_BYTES,
        recycle_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.directory = directory
        self.max_backlog_bytes = max_backlog_bytes
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        # A segment that is entirely in the store and at least this big is
        # replaced by a fresh one, so a quiet spool gives its disk back
        # instead of waiting to reach ``segment_bytes``.
        self.recycle_bytes = recycle_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._dir_lock = _lock_directory(directory)
        self._lock = threading.Lock()
        self._appended = threading.Condition(self._lock)
        state = self._load_state()
        self.committed: int = int(state.get("committed") or 0)
        pending = state.get("pending")
        self.pending: tuple[int, int] | None = (
            (int(pending[0]), int(pending[1])) if isinstance(pending, list) and len(pending) == 2 else None
        )
        self._segments: list[int] = sorted(int(p.stem) for p in directory.glob("*.seg"))
        if not self._segments:
            self._segments = [self.committed]
            (directory / _segment_name(self.committed)).touch()
        self.end = self._recover_tail()
        if self.committed > self.end:
            log.warning(
                "spool state ahead of its data (%d > %d); resetting to the data's end",
                self.committed,
                self.end,
            )
            self.committed = self.end
            self.pending = None
            self._save_state()
        self._file: BinaryIO = _open_segment(self._segment_path(self._segments[-1]))

    # --- state ---------------------------------------------------------------------

    def _load_state(self) -> dict[str, Any]:
        path = self.directory / "state.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error(
                "spool state %s unreadable (%s); replaying the whole spool (duplicates are removed)",
                path,
                exc,
            )
            return {}
        return data if isinstance(data, dict) else {}

    def _save_state(self) -> None:
        path = self.directory / "state.json"
        tmp = path.with_suffix(".tmp")
        payload = json.dumps(
            {"committed": self.committed, "pending": list(self.pending) if self.pending else None}
        ).ljust(_STATE_BYTES)
        try:
            with open(tmp, "w") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            if exc.errno != errno.ENOSPC or len(payload) > _STATE_BYTES or not path.exists():
                raise
            # The disk is full, and committing is what frees it (a committed
            # segment is recycled): overwrite the state in place — it always
            # takes _STATE_BYTES, so this needs no new block, and one sector's
            # write does not tear.
            with contextlib.suppress(OSError):
                tmp.unlink()
            with open(path, "r+") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())

    def _segment_path(self, start: int) -> Path:
        return self.directory / _segment_name(start)

    def _recover_tail(self) -> int:
        """Scan the last segment; cut a torn record off its end. Returns the end position."""
        start = self._segments[-1]
        path = self._segment_path(start)
        good = 0
        with open(path, "rb") as handle:
            data = handle.read()
        while good + _HEADER.size <= len(data):
            magic, length, crc = _HEADER.unpack_from(data, good)
            body_start = good + _HEADER.size
            if magic != _MAGIC or body_start + length > len(data):
                break
            if zlib.crc32(data[body_start : body_start + length]) != crc:
                break
            good = body_start + length
        if good != len(data):
            log.warning("spool: cutting %d bytes of a torn record off %s", len(data) - good, path.name)
            with open(path, "r+b") as handle:
                handle.truncate(good)
        return start + good

    # --- writing -------------------------------------------------------------------

    @property
    def first_position(self) -> int:
        """The oldest position still on disk."""
        with self._lock:
            return self._segments[0]

    @property
    def backlog_bytes(self) -> int:
        """Bytes appended but not yet committed to the store."""
        return self.end - self.committed

    def append(self, blocks: list[tuple[str, int, bytes]]) -> int:
        """Append one record; return its end position. Raises :class:`SpoolFullError`."""
        payload = encode_payload(blocks)
        record = _HEADER.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            backlog = self.end - self.committed
            # Refuse only while something is waiting for the store: a record
            # bigger than the whole limit is taken into an empty spool, else
            # it would be refused (503, retryable) forever.
            if backlog and backlog + len(record) > self.max_backlog_bytes:
                raise SpoolFullError(
                    f"spool backlog {self.end - self.committed} bytes is at its limit {self.max_backlog_bytes}"
                )
            if self.end - self._segments[-1] >= self.segment_bytes:
                self._roll()
            try:
                _write_all(self._file, record)
                if self.fsync:
                    os.fsync(self._file.fileno())
            except OSError as exc:
                # A partial write (disk full) leaves a torn tail: cut it so the
                # next append starts on a record boundary.
                with contextlib.suppress(OSError):
                    self._file.truncate(self.end - self._segments[-1])
                    self._file.seek(0, os.SEEK_END)
                raise SpoolFullError(f"spool write failed: {exc}") from exc
            self.end += len(record)
            self._appended.notify_all()
            return self.end

    def _roll(self) -> None:
        self._file.close()
        self._segments.append(self.end)
        self._file = _open_segment(self._segment_path(self.end))

    def wait_for_data(self, position: int, timeout: float) -> bool:
        """Block until the spool has data beyond ``position`` (or timeout)."""
        with self._lock:
            if self.end > position:
                return True
            self._appended.wait(timeout)
            return self.end > position

    # --- reading -------------------------------------------------------------------

    def read_from(self, position: int, max_bytes: int) -> Iterator[Record]:
        """Records starting at ``position`` (a record boundary), up to about ``max_bytes``."""
        with self._lock:
            end = self.end
            segments = list(self._segments)
        read = 0
        while position < end and read < max_bytes:
            seg_start = max(s for s in segments if s <= position)
            seg_index = segments.index(seg_start)
            seg_end = segments[seg_index + 1] if seg_index + 1 < len(segments) else end
            if position >= seg_end:
                # position is exactly at a segment boundary
                position = seg_end
                continue
            with open(self._segment_path(seg_start), "rb") as handle:
                handle.seek(position - seg_start)
                while position < min(seg_end, end) and read < max_bytes:
                    header = handle.read(_HEADER.size)
                    if len(header) < _HEADER.size:
                        return
                    magic, length, crc = _HEADER.unpack(header)
                    payload = handle.read(length)
                    if magic != _MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
                        raise OSError(f"spool corrupt at position {position}")
                    record_end = position + _HEADER.size + length
                    yield Record(position, record_end, decode_payload(payload))
                    read += record_end - position
                    position = record_end

    # --- committing ----------------------------------------------------------------

    def set_pending(self, start: int, end: int) -> None:
        """Persist the batch about to be written, so a restart redoes exactly it."""
        self.pending = (start, end)
        self._save_state()

    def commit(self, position: int) -> None:
        """Everything before ``position`` is in the store; drop finished segments."""
        with self._lock:
            self.committed = position
            self.pending = None
            self._save_state()
            if position == self.end and self.end - self._segments[-1] >= self.recycle_bytes:
                self._roll()
            while len(self._segments) > 1 and self._segments[1] <= position:
                old = self._segments.pop(0)
                with contextlib.suppress(FileNotFoundError):
                    self._segment_path(old).unlink()

    def close(self) -> None:
        """Close the open segment and release the directory."""
        with self._lock:
            with contextlib.suppress(OSError):
                self._file.flush()
                os.fsync(self._file.fileno())
            self._file.close()
            self._dir_lock.close()


def _open_segment(path: Path) -> BinaryIO:
    # Unbuffered: a record goes to the kernel in the append that answers for
    # it, and a write that fails (disk full) leaves nothing behind in a buffer
    # to be flushed later, after the record was refused.
    return open(path, "ab", buffering=0)


def _write_all(file: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = file.write(view)
        if not written:
            raise OSError(errno.ENOSPC, "short write to the spool")
        view = view[written:]


def _lock_directory(directory: Path) -> Any:
    """One spool per directory: two writers appending to the same segments
    would interleave records and both advance the committed position."""
    try:
        return pidlock.hold(directory / ".lock")
    except pidlock.HeldElsewhere as exc:
        raise SpoolLockedError(
            f"the spool directory {directory} is in use by another collector (pid {exc.holder}); "
            "give every collector its own REVTRACE_DATA_DIR"
        ) from None


def _segment_name(start: int) -> str:
    return f"{start:020d}.seg"
