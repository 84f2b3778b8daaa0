"""The writer: moves spooled rows into the store in batches, exactly once.

One thread reads the spool in order, gathers records until ``batch_rows`` rows
or ``batch_ms`` of age, then inserts each table's rows with an
``insert_deduplication_token`` derived from the spool positions of the batch.
Before inserting it persists the batch bounds as *pending*; after a crash the
same bounds are re-read and re-inserted with the same tokens, and ClickHouse's
insert deduplication (``non_replicated_deduplication_window`` on the tables,
``deduplicate_blocks_in_dependent_materialized_views`` for the business views)
drops what was already written. A client retry of a request that was answered
is a different story: OTLP clients only retry failures, which were never
spooled.

Store unavailable: the batch is retried with backoff; the spool keeps growing up
to its limit, after which ingest answers 503 (backpressure, not memory growth).
A record whose data the store refuses (a parse error, not an outage) is set aside in
``<spool>/rejected/`` with the reason, so one bad record cannot block the rest.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector import engine_flatten
from collector.otlp import TRACES_PROTOBUF, TRACES_TABLE
from collector.spool import Record, Spool
from collector.store import Store, StoreDataError, StoreError

__all__ = ["Writer", "WriterStats", "write_blocks"]

log = logging.getLogger(__name__)

# Below this many spans a batch is converted in Python (see write_blocks).
ENGINE_MIN_SPANS = 6_000
# Each concurrent engine statement gets at least this many spans.
PART_MIN_SPANS = 20_000


@dataclass
class WriterStats:
    """Counters the collector reports about its writer."""

    batches: int = 0
    rows_written: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    insert_errors: int = 0
    records_rejected: int = 0
    last_error: str = ""
    last_write_at: float = 0.0
    healthy: bool = True


class Writer:
    """Drains a :class:`Spool` into a :class:`Store`."""

    def __init__(
        self,
        store: Store,
        spool: Spool,
        *,
        batch_rows: int = 50_000,
        batch_ms: int = 1000,
        max_batch_bytes: int = 64 * 1024 * 1024,
        max_backoff_s: float = 30.0,
        insert_threads: int = 2,
        engine_min_spans: int = ENGINE_MIN_SPANS,
        part_min_spans: int = PART_MIN_SPANS,
    ) -> None:
        self.store = store
        self.spool = spool
        self.batch_rows = batch_rows
        self.batch_ms = batch_ms
        self.max_batch_bytes = max_batch_bytes
        self.max_backoff_s = max_backoff_s
        self.insert_threads = max(1, insert_threads)
        self.engine_min_spans = engine_min_spans
        self.part_min_spans = part_min_spans
        self.stats = WriterStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self.rejected_dir = spool.directory / "rejected"

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (after finishing a pending batch, if any)."""
        # The spool directory is this collector's alone (it is locked): a batch
        # file there is left from a writer killed mid-insert.
        engine_flatten.remove_batch_files(self.spool.directory)
        self._thread = threading.Thread(target=self._run, name="revtrace-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Flush what is spooled (up to ``timeout``), then stop. True when drained."""
        drained = self.flush(timeout)
        self._stop.set()
        with self.spool._appended:
            self.spool._appended.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return drained

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything spooled so far is in the store."""
        target = self.spool.end
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.spool.committed < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.2))
        return True

    # --- the loop ------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                progressed = self._cycle()
                backoff = 0.5
                if not self.stats.healthy:
                    log.info("store reachable again; writing resumed")
                self.stats.healthy = True
                if not progressed:
                    self.spool.wait_for_data(self.spool.committed, timeout=0.5)
            except StoreError as exc:
                self.stats.insert_errors += 1
                self.stats.last_error = str(exc)[:500]
                if self.stats.healthy:
                    log.warning("store write failed (%s); retrying with backoff, spool keeps the data", exc)
                self.stats.healthy = False
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
            except Exception:
                log.exception("writer cycle failed; retrying")
                self.stats.healthy = False
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    def _cycle(self) -> bool:
        """Write one batch. Returns False when there was nothing to write."""
        spool = self.spool
        if spool.pending is not None:
            start, end = spool.pending
            redo = [r for r in spool.read_from(start, end - start) if r.end <= end]
            self._write(redo, start, end)
            return True
        start = spool.committed
        if spool.end <= start:
            return False
        # Wait for the batch to fill or age, whichever first.
        deadline = time.monotonic() + self.batch_ms / 1000
        records: list[Record] = []
        rows = 0
        position = start
        while True:
            for record in spool.read_from(position, self.max_batch_bytes):
                records.append(record)
                rows += sum(count for _, count, _ in record.blocks)
                position = record.end
                if rows >= self.batch_rows or position - start >= self.max_batch_bytes:
                    break
            if rows >= self.batch_rows or position - start >= self.max_batch_bytes or self._stop.is_set():
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            spool.wait_for_data(position, timeout=min(remaining, 0.1))
        if not records:
            return False
        spool.set_pending(start, position)
        self._write(records, start, position)
        return True

    def _write(self, records: list[Record], start: int, end: int) -> None:
        try:
            counts = write_blocks(
                self.store,
                (block for record in records for block in record.blocks),
                f"{start}-{end}",
                self.spool.directory,
                self.insert_threads,
                engine_min_spans=self.engine_min_spans,
                part_min_spans=self.part_min_spans,
            )
        except StoreDataError as exc:
            # Only a refusal of the data itself sets records aside; any other
            # error (outage, missing table, permissions) is retried, because
            # the data is fine and the store will be fixed.
            if not records:
                raise
            if len(records) == 1:
                self._set_aside(records[0], str(exc))
            else:
                # Not an outage: some record is bad. Write record by record so
                # only the bad one is set aside.
                log.warning(
                    "batch %d-%d rejected by the store (%s); writing record by record", start, end, exc
                )
                for record in records:
                    self.spool.set_pending(record.start, record.end)
                    self._write([record], record.start, record.end)
                self._done(end, {})
                return
        self._done(end, counts)

    def _done(self, end: int, counts: dict[str, int]) -> None:
        self.spool.commit(end)
        self.stats.batches += 1
        self.stats.last_write_at = time.time()
        for table, count in counts.items():
            self.stats.rows_written[table] += count
        with self._idle:
            self._idle.notify_all()

    def _set_aside(self, record: Record, reason: str) -> None:
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        path: Path = self.rejected_dir / f"{record.start:020d}.jsonl"
        with open(path, "wb") as handle:
            handle.write(f"# rejected by the store: {reason[:2000]}\n".encode())
            for table, _, rows in record.blocks:
                if table == TRACES_PROTOBUF:
                    try:
                        rows, _ = engine_flatten.python_rows([rows])
                        table = TRACES_TABLE
                    except Exception:  # keep the bytes, whatever they are
                        handle.write(f"# {table} (base64, not decodable)\n".encode())
                        handle.write(base64.b64encode(rows) + b"\n")
                        continue
                handle.write(f"# table {table}\n".encode())
                handle.write(rows + b"\n")
        self.stats.records_rejected += 1
        log.error(
            "record at spool position %d rejected by the store, set aside in %s: %s",
            record.start,
            path,
            reason,
        )


def write_blocks(
    store: Store,
    blocks: Iterable[tuple[str, int, bytes]],
    token: str | None,
    workdir: Path,
    parallel: int = 1,
    *,
    engine_min_spans: int = ENGINE_MIN_SPANS,
    part_min_spans: int = PART_MIN_SPANS,
) -> dict[str, int]:
    """Insert spool blocks — JSON rows per table, traces as protobuf requests —
    into the store; returns the rows written per table.

    ``token`` makes each table's insert idempotent (ClickHouse insert
    deduplication, business views included): writing the same blocks again
    with the same token (and the same arguments) stores nothing twice.

    Traces of ``engine_min_spans`` spans or more are flattened by the engine,
    as up to ``parallel`` statements at once with at least ``part_min_spans``
    spans each; smaller batches are converted in Python, because the engine
    statement's fixed cost (about a quarter of a second) would dominate a
    quiet collector's once-a-second batch. Both choices depend only on the
    batch, so a replay splits and writes it the same way.
    """
    tables: dict[str, list[bytes]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    protobuf_spans = 0
    for table, count, data in blocks:
        tables[table].append(data)
        if table == TRACES_PROTOBUF:
            protobuf_spans += count
        counts[TRACES_TABLE if table == TRACES_PROTOBUF else table] += count
    for table in sorted(tables):
        settings: dict[str, Any] = {
            "insert_deduplicate": 1,
            "deduplicate_blocks_in_dependent_materialized_views": 1,
            "input_format_skip_unknown_fields": 1,
        }
        if token is not None:
            settings["insert_deduplication_token"] = f"{token}:{table}"
        if table == TRACES_PROTOBUF:
            spans = protobuf_spans
            if spans < engine_min_spans:
                engine_flatten.insert_traces(store, tables[table], settings, workdir, engine=False)
            else:
                parts = max(1, min(parallel, spans // max(1, part_min_spans)))
                _insert_traces_in_parts(store, tables[table], settings, workdir, parts)
        else:
            store.insert_raw(table, b"\n".join(tables[table]), fmt="JSONEachRow", settings=settings)
    return dict(counts)


# The engine runs one INSERT … SELECT on one core; parts of a batch in
# threads (chDB releases the GIL while it works) use more.
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _insert_traces_in_parts(
    store: Store, messages: list[bytes], settings: dict[str, Any], workdir: Path, parallel: int
) -> None:
    """Insert ``messages`` as up to ``parallel`` concurrent statements, each with its
    own deduplication token derived from the batch's (a replay of the batch splits
    it the same way, so every part is deduplicated on its own)."""
    parts = max(1, min(parallel, len(messages)))
    if parts == 1:
        engine_flatten.insert_traces(store, messages, settings, workdir)
        return
    global _pool, _pool_size
    with _pool_lock:
        # One pool for the process, kept: each of its threads keeps its store client.
        if _pool is None or _pool_size < parts:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=parts, thread_name_prefix="revtrace-insert")
            _pool_size = parts
        pool = _pool
    token = settings.get("insert_deduplication_token")
    size = -(-len(messages) // parts)
    futures = []
    for i in range(parts):
        part_settings = dict(settings)
        if token is not None:
            part_settings["insert_deduplication_token"] = f"{token}:{i}"
        chunk = messages[i * size : (i + 1) * size]
        if chunk:
            futures.append(pool.submit(engine_flatten.insert_traces, store, chunk, part_settings, workdir))
    errors = [exc for exc in (f.exception() for f in futures) if exc is not None]
    if errors:
        raise errors[0]
