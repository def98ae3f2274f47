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
import pyarrow as pa
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

from .._impl import copy_decode
from ..column_plan import ColumnSinks
from .. import faults, load_errors
from ..errors import ConnectionFailed, DataError, SourceError
from ..pgtypes import PgTable, describe_table, project, qualified, quote_ident, split_table

#: Bytes drained from libpq per read call. 1 MB amortises the per-call overhead to noise
#: while keeping the decode working set in L2/L3 (bench.micro copy_decode, narrow case).
READ_CHUNK_BYTES = 1 << 20


#: Session settings every statement and literal of ours relies on, sent in the startup
#: packet (no extra round trip) after the user's own ``options``, so a role or database
#: default can't change them: with ``standard_conforming_strings = off`` a text ending in a
#: backslash would let the next INSERT literal be parsed as SQL.
SESSION_OPTIONS = ("-c standard_conforming_strings=on -c DateStyle=ISO,MDY "
                   "-c IntervalStyle=postgres -c TimeZone=UTC -c extra_float_digits=3")

_PERMANENT_CONNECT_ERRORS = ("password authentication failed", "no pg_hba.conf entry",
                             "does not exist", "permission denied",
                             "invalid connection option", "invalid URI")


def connect(conninfo: str, what: str) -> psycopg.Connection:
    """A psycopg connection, or ConnectionFailed with a redacted one-line reason."""
    from ..redact import redact

    # named in pg_stat_activity (unless the user named the session in the URL)
    extra = ({} if "application_name" in conninfo
             else {"application_name": faults.app_name(what)})
    try:
        user_options = conninfo_to_dict(conninfo).get("options") or ""
    except psycopg.ProgrammingError:
        user_options = ""  # psycopg.connect below reports the malformed conninfo
    try:
        # text is carried as UTF-8 bytes as sent, so the session encoding must be UTF8
        return psycopg.connect(conninfo, autocommit=True, client_encoding="UTF8",
                               options=f"{user_options} {SESSION_OPTIONS}".strip(), **extra)
    except psycopg.OperationalError as exc:
        msg = " ".join(str(exc).split())
        err = ConnectionFailed(f"{what}: cannot connect: {redact(msg)}")
        # a refused login or a missing database does not get better by retrying
        err.retryable = not any(m in msg for m in _PERMANENT_CONNECT_ERRORS)
        raise err from None


class PostgresSource:
    """Reads one stream (table) of a Postgres database."""

    def __init__(self, conninfo: str, default_schema: str, stream_name: str,
                 columns: tuple[str, ...] | None = None, where: str | None = None,
                 snapshot: str | None = None) -> None:
        self.conninfo = conninfo
        self.where = where
        self.snapshot = snapshot
        #: the key range being read, in a ranged load (ANDed with ``where``)
        self.range_where: str | None = None
        #: columns the COPY query orders by (incremental reads)
        self.order_by: tuple[str, ...] = ()
        self.stream_name = stream_name
        self.schema_name, self.table_name = split_table(stream_name, default_schema)
        self.columns = columns
        self.conn: psycopg.Connection | None = None
        self.table: PgTable | None = None
        self.timings = {"source_connect_secs": 0.0, "source_query_secs": 0.0,
                        "source_fetch_secs": 0.0, "source_decode_secs": 0.0}
        self.bytes_read = 0

    def open(self) -> pa.Schema:
        """Connect and resolve the table's columns; returns the Arrow schema of the stream."""
        t0 = time.perf_counter()
        self.conn = connect(self.conninfo, f"source stream {self.stream_name}")
        self.timings["source_connect_secs"] += time.perf_counter() - t0
        if self.snapshot:
            if not re.fullmatch(r"[0-9A-Fa-f-]+", self.snapshot):
                raise SourceError(f"stream {self.stream_name}: invalid snapshot id")
            # every shard reads the coordinator's exported snapshot: one consistent copy
            self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self.conn.execute(f"SET TRANSACTION SNAPSHOT '{self.snapshot}'")
        try:
            full = describe_table(self.conn, self.schema_name, self.table_name)
        except psycopg.Error as exc:
            raise SourceError(f"stream {self.stream_name}: {' '.join(str(exc).split())}"
                              ).with_sqlstate(exc.sqlstate) from None
        self.table = project(full, self.columns, self.stream_name)
        return self.table.arrow_schema()

    def hold_snapshot(self) -> None:
        """Read every later COPY in one repeatable-read snapshot (ranged loads)."""
        assert self.conn is not None
        if not self.snapshot:
            self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def copy_sql(self, raw: bool = False) -> str:
        """The COPY statement for this stream (projection pushed down); ``raw`` selects every
        column in its own binary form (passthrough), else text-carried types as ``::text``."""
        assert self.table is not None
        cols = ", ".join(
            quote_ident(c.name) if raw else c.select_sql() for c in self.table.columns)
        rel = qualified(self.schema_name, self.table_name)
        conds = " AND ".join(c for c in (self.where, self.range_where) if c)
        where = f" WHERE {conds}" if conds else ""
        # ORDER BY t.col: the table's column, not a ::text output column of the same name
        order = (" ORDER BY " + ", ".join(f"t.{quote_ident(c)}" for c in self.order_by)
                 if self.order_by else "")
        return f"COPY (SELECT {cols} FROM {rel} AS t{where}{order}) TO STDOUT (FORMAT binary)"

    def _start_copy(self, raw: bool) -> pq.PGconn:
        assert self.conn is not None
        pgconn = self.conn.pgconn
        t0 = time.perf_counter()
        pgconn.send_query(self.copy_sql(raw).encode())
        res = pgconn.get_result()
        if res is None or res.status != pq.ExecStatus.COPY_OUT:
            raise _source_error(self.stream_name, pgconn, res)
        self.timings["source_query_secs"] += time.perf_counter() - t0
        return pgconn

    def raw_chunks(self, chunk_bytes: int = READ_CHUNK_BYTES) -> Iterator[bytearray]:
        """The COPY binary stream as it comes (header, tuples, trailer), in whole-message
        chunks of about ``chunk_bytes``; for passthrough."""
        pgconn = self._start_copy(raw=True)
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

    def batches(self, max_batch_bytes: int, max_batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Record batches of the stream, each within the byte and row caps."""
        assert self.conn is not None and self.table is not None
        schema = self.table.arrow_schema()
        plan = self.table.plan()
        sinks = ColumnSinks(plan)
        pgconn = self._start_copy(raw=False)

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
            raise SourceError(f"stream {self.stream_name}: {exc}").with_sqlstate(
                "08006" if lost else None) from None

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


def _source_error(stream: str, pgconn: pq.PGconn, res: pq.PGresult | None) -> SourceError:
    state = res.error_field(pq.DiagnosticField.SQLSTATE) if res is not None else None
    if state is None and pgconn.status == pq.ConnStatus.BAD:
        state = b"08006"  # the connection is gone: connection_failure
    return SourceError(f"stream {stream}: {_error_text(pgconn, res)}").with_sqlstate(
        state.decode() if state else None)


def _error_text(pgconn: pq.PGconn, res: pq.PGresult | None) -> str:
    raw = b""
    if res is not None:
        raw = res.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or res.error_message
    raw = raw or pgconn.error_message
    return " ".join(raw.decode("utf-8", "replace").split()) or "COPY failed"
