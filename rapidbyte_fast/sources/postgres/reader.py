"""Postgres source: ``COPY (SELECT ...) TO STDOUT (FORMAT binary)`` decoded to Arrow batches.

libpq delivers COPY data one message per row; the reader kernel drains many messages per
call into one chunk (GIL released in the compiled twin), the decoder kernel appends the
complete tuples of a chunk to the column sinks, and a batch is cut when the sinks hold
``max_batch_bytes`` or ``max_batch_rows``.
"""
from __future__ import annotations

import re
import time
from typing import Iterator

import psycopg
from psycopg import pq

from ..._impl import copy_decode
from ...column_plan import ColumnSinks
from ... import load_errors
from ...errors import DataError, SourceError
from ...pgconn import connect, wait_result
from ...connector import CursorPlan, KeyRange
from ...pgtypes import PgTable, check_type_sql, qualified, quote_ident
from ...deferred import deferred

pa = deferred("pyarrow")

#: Bytes drained from libpq per read call. 1 MB amortises the per-call overhead to noise
#: while keeping the decode working set in L2/L3 (bench.micro copy_decode, narrow case).
READ_CHUNK_BYTES = 1 << 20


class PostgresReader:
    """Reads one planned stream (table) of a Postgres database, whole or range by range,
    as Arrow batches or (``raw_chunks``) as the raw COPY binary stream."""

    def __init__(self, conninfo: str, table: PgTable, stream_name: str,
                 cursor: CursorPlan | None = None, snapshot: str | None = None,
                 hold_snapshot: bool = False) -> None:
        self.conninfo = conninfo
        self.table = table
        self.stream_name = stream_name
        #: an exported snapshot to read in, or (``hold_snapshot``) one of our own across
        #: every range this reader reads
        self.snapshot, self.hold_snapshot = snapshot, hold_snapshot
        self.where, self.order_by = _cursor_filter(table, cursor)
        self.conn: psycopg.Connection | None = None
        self.timings = {"source_connect_secs": 0.0, "source_query_secs": 0.0,
                        "source_fetch_secs": 0.0, "source_decode_secs": 0.0}
        self.bytes_read = 0

    def open(self) -> pa.Schema:
        """Connect (and enter the snapshot); returns the Arrow schema of the batches."""
        t0 = time.perf_counter()
        self.conn = connect(self.conninfo, f"source stream {self.stream_name}")
        self.timings["source_connect_secs"] += time.perf_counter() - t0
        if self.snapshot:
            if not re.fullmatch(r"[0-9A-Fa-f-]+", self.snapshot):
                raise SourceError(f"stream {self.stream_name}: invalid snapshot id")
            # every worker reads the coordinator's exported snapshot: one consistent copy
            self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self.conn.execute(f"SET TRANSACTION SNAPSHOT '{self.snapshot}'")
        elif self.hold_snapshot:  # one consistent read across this reader's ranges
            self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return self.table.lazy_schema()

    def copy_sql(self, raw: bool = False, key_range: KeyRange | None = None) -> str:
        """The COPY statement for this stream (projection pushed down); ``raw`` selects every
        column in its own binary form (passthrough), else text-carried types as ``::text``."""
        cols = ", ".join(
            quote_ident(c.name) if raw else c.select_sql() for c in self.table.columns)
        rel = qualified(self.table.schema, self.table.name)
        conds = " AND ".join(c for c in (self.where, key_range and key_range.predicate) if c)
        where = f" WHERE {conds}" if conds else ""
        # ORDER BY t.col: the table's column, not a ::text output column of the same name
        order = (" ORDER BY " + ", ".join(f"t.{quote_ident(c)}" for c in self.order_by)
                 if self.order_by else "")
        return f"COPY (SELECT {cols} FROM {rel} AS t{where}{order}) TO STDOUT (FORMAT binary)"

    def _start_copy(self, raw: bool, key_range: KeyRange | None) -> pq.PGconn:
        assert self.conn is not None
        pgconn = self.conn.pgconn
        t0 = time.perf_counter()
        try:
            pgconn.send_query(self.copy_sql(raw, key_range).encode())
            res = wait_result(pgconn)
        except psycopg.OperationalError as exc:  # the connection died between two ranges
            raise SourceError(f"stream {self.stream_name}: {' '.join(str(exc).split())}",
                              sqlstate="08006") from None
        if res is None or res.status != pq.ExecStatus.COPY_OUT:
            raise _source_error(self.stream_name, pgconn, res)
        self.timings["source_query_secs"] += time.perf_counter() - t0
        return pgconn

    def raw_chunks(self, key_range: KeyRange | None = None,
                   chunk_bytes: int = READ_CHUNK_BYTES) -> Iterator[bytearray]:
        """The COPY binary stream as it comes (header, tuples, trailer), in whole-message
        chunks of about ``chunk_bytes``; for passthrough."""
        pgconn = self._start_copy(True, key_range)
        done = False
        while not done:
            buf = bytearray()
            t0 = time.perf_counter()
            n, done = self._read(pgconn, buf, chunk_bytes)
            self.timings["source_fetch_secs"] += time.perf_counter() - t0
            self.bytes_read += n
            if n:
                yield buf
        self._finish_copy(pgconn)

    def batches(self, max_batch_bytes: int, max_batch_rows: int,
                key_range: KeyRange | None = None) -> Iterator[pa.RecordBatch]:
        """Record batches of the stream (or of ``key_range``), each within both caps."""
        assert self.conn is not None
        schema = self.table.arrow_schema()
        plan = self.table.column_plan()
        sinks = ColumnSinks(plan)
        pgconn = self._start_copy(False, key_range)

        buf = bytearray()
        pos = yielded = 0
        header_done = False
        done = trailer = False
        chunk = min(READ_CHUNK_BYTES, max(64 * 1024, max_batch_bytes // 4))
        while not trailer:
            if not done:
                t0 = time.perf_counter()
                n, done = self._read(pgconn, buf, chunk)
                self.timings["source_fetch_secs"] += time.perf_counter() - t0
                self.bytes_read += n
            if not header_done:
                hlen = copy_decode.parse_header(buf)
                if hlen == 0:
                    if done:
                        self._finish_copy(pgconn)
                        raise SourceError(f"stream {self.stream_name}: truncated COPY header")
                    continue
                pos, header_done = hlen, True
            t0 = time.perf_counter()
            while True:
                try:
                    pos, trailer = copy_decode.decode(
                        plan, buf, pos, len(buf), sinks, max_batch_rows - sinks.rows)
                except DataError as exc:
                    raise load_errors.in_stream(exc, f"stream {self.stream_name}: ",
                                                yielded) from None
                full = sinks.rows >= max_batch_rows or sinks.nbytes() >= max_batch_bytes
                if full:
                    yielded += sinks.rows
                    arrays = sinks.finish()
                    self.timings["source_decode_secs"] += time.perf_counter() - t0
                    yield pa.RecordBatch.from_arrays(arrays, schema=schema)
                    t0 = time.perf_counter()
                if trailer or not full:
                    break
            self.timings["source_decode_secs"] += time.perf_counter() - t0
            del buf[:pos]
            pos = 0
            if done and not trailer:
                self._finish_copy(pgconn)  # a server error mid-COPY surfaces here
                raise SourceError(f"stream {self.stream_name}: COPY ended without a trailer")
        if not done:  # drain the end-of-copy marker
            self._read(pgconn, buf, 1)
        self._finish_copy(pgconn)
        if sinks.rows:
            yield pa.RecordBatch.from_arrays(sinks.finish(), schema=schema)

    def _read(self, pgconn: pq.PGconn, buf: bytearray, target: int) -> tuple[int, bool]:
        try:
            return copy_decode.read_copy(pgconn, buf, target)
        except SourceError as exc:
            lost = pgconn.status == pq.ConnStatus.BAD
            raise SourceError(f"stream {self.stream_name}: {exc}",
                              sqlstate="08006" if lost else None) from None

    def _finish_copy(self, pgconn: pq.PGconn) -> None:
        while (res := pgconn.get_result()) is not None:
            if res.status != pq.ExecStatus.COMMAND_OK:
                raise _source_error(self.stream_name, pgconn, res)

    def cancel(self) -> None:
        """Ask the server to stop the running COPY (called from another thread)."""
        if self.conn is not None and not self.conn.closed:
            try:
                self.conn.cancel_safe(timeout=2.0)
            except (psycopg.Error, AttributeError):
                pass

    def close(self) -> None:
        """Close the connection."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _cursor_filter(table: PgTable, cursor: CursorPlan | None
                   ) -> tuple[str | None, tuple[str, ...]]:
    """The predicate (``cursor > last``) and the order of an incremental read."""
    if cursor is None:
        return None, ()
    tie = cursor.tie_breaker
    order = (cursor.field,) + ((tie,) if tie else ())
    if cursor.value is None:  # the first run reads everything
        return None, order
    # bound with the columns' real types, so numbers never compare as strings
    types = {c.name: c.pg_type for c in table.columns}

    def bound(column: str, value: str) -> str:
        lit = psycopg.sql.Literal(value).as_string(None)
        return f"{lit}::{check_type_sql(types[column], table.name)}"

    if tie is not None and cursor.tie is not None:
        return (f"({quote_ident(cursor.field)}, {quote_ident(tie)}) > "
                f"({bound(cursor.field, cursor.value)}, {bound(tie, cursor.tie)})"), order
    return f"{quote_ident(cursor.field)} > {bound(cursor.field, cursor.value)}", order


def _source_error(stream: str, pgconn: pq.PGconn, res: pq.PGresult | None) -> SourceError:
    state = res.error_field(pq.DiagnosticField.SQLSTATE) if res is not None else None
    if state is None and pgconn.status == pq.ConnStatus.BAD:
        state = b"08006"  # the connection is gone: connection_failure
    return SourceError(f"stream {stream}: {_error_text(pgconn, res)}",
                       sqlstate=state.decode() if state else None)


def _error_text(pgconn: pq.PGconn, res: pq.PGresult | None) -> str:
    raw = b""
    if res is not None:
        raw = res.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or res.error_message
    raw = raw or pgconn.error_message
    return " ".join(raw.decode("utf-8", "replace").split()) or "COPY failed"
