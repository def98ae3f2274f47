"""Writes rows into one table over one connection, inside that connection's transaction:
COPY FROM STDIN (binary, or text when a target type needs Postgres to parse text; raw COPY
binary chunks on passthrough), or INSERT (columns as binary arrays that the server unnests,
or multi-row VALUES literals: ``insert_statements``). With ``rejects`` (on_data_error
skip|dlq) each batch goes in its own savepoint and statements, so that refused rows can be
dropped (``row_guard``), their dead letters written in the same transaction."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

import psycopg

from ... import _impl
from ..._impl import copy_decode, copy_scan
from ...column_plan import COPY_BINARY_HEADER, COPY_BINARY_TRAILER, column_inputs
from ...errors import DataError, DestinationError
from ...pgtypes import TargetEncoding, conform
from ... import load_errors
from .insert_statements import ArrayInsert, ValuesInsert, insert_statements
from .copy_sender import CopySender
from ...row_guard import Refusal, Rejects, load_guarded

if TYPE_CHECKING:
    import pyarrow as pa


#: The savepoint a guarded batch is loaded in.
_SAVEPOINT = "rbf_rows"


def adaptive_flush_bytes(avg_row_bytes: float) -> int:
    """COPY flush threshold by average row size (the seed's sweep: 128-256 KB flushes are
    catastrophic, 1 MB best for narrow rows, 4-16 MB for 8 KB+ rows)."""
    if avg_row_bytes < 8 * 1024:
        return 1 << 20
    if avg_row_bytes < 64 * 1024:
        return 4 << 20
    return 16 << 20


def dest_error(prefix: str, exc: psycopg.Error) -> DestinationError:
    """A DestinationError for a failed statement, ``prefix`` (stream and target) in front."""
    # a dropped connection has no SQLSTATE: give it connection_failure so it is retried
    state = exc.sqlstate or ("08006" if isinstance(exc, psycopg.OperationalError) else None)
    return DestinationError(prefix + load_errors.pg_message(exc), sqlstate=state)


class Loader:
    """Writes one stream's rows (or raw COPY binary streams) into one table over one
    connection, inside that connection's transaction."""

    def __init__(self, conn: psycopg.Connection, prefix: str, pg_cfg, rel: str, cols: str,
                 wp: TargetEncoding, passthrough: bool, continuation: bool = False,
                 pg_types: list[str] | None = None, rejects: Rejects | None = None) -> None:
        self.conn = conn
        #: where refused rows go; None: the first refused value fails the load (a raw COPY
        #: stream cannot be cut by row: the engine falls back to the Arrow path instead)
        self.rejects = None if passthrough else rejects
        #: the target columns' types in plan order (to name a value an INSERT refused)
        self.pg_types = pg_types or []
        self.prefix = prefix
        self.pg = pg_cfg
        self.wp = wp
        self.passthrough = passthrough
        self.load_method = "copy" if passthrough else pg_cfg.load_method
        self.copy_format = ""
        self.timings = {"dest_encode_secs": 0.0, "dest_flush_secs": 0.0}
        self.rows_written = 0
        self.bytes_written = 0
        self._copy_cm = self._copy = None
        self._sender: CopySender | None = None
        self._buf: bytearray | None = None
        self._flush_bytes = 0
        self._inserts: ArrayInsert | ValuesInsert | None = None
        self._row_bytes = 0.0  # Arrow bytes per row of the batch being written
        self._raw_tail = b""
        self._raw_header_done = self._raw_trailer = False
        try:
            if self.load_method == "copy":
                self.copy_format = "binary" if passthrough or (
                    wp.binary_ok and pg_cfg.copy_format == "binary") else "text"
                self._copy_sql = f"COPY {rel} ({cols}) FROM STDIN (FORMAT {self.copy_format})"
                if self.rejects is not None:  # a COPY per guarded attempt
                    return
                self._copy_cm = conn.cursor().copy(self._copy_sql)
                self._copy = self._copy_cm.__enter__()
                if passthrough and continuation:
                    # after a checkpoint the source stream goes on mid-way: a new header here
                    self._copy.write(COPY_BINARY_HEADER)
                    self._raw_header_done = True
                if not passthrough:
                    self._sender = CopySender(self._copy)
                    self._buf = self._sender.take()
                    if self.copy_format == "binary":
                        self._buf += COPY_BINARY_HEADER
            else:
                self._inserts = insert_statements(conn, rel, cols, wp, self.pg_types, pg_cfg)
        except psycopg.Error as exc:
            raise dest_error(self.prefix, exc) from None

    @property
    def stream_ended(self) -> bool:
        """A passthrough source's COPY stream has ended (its trailer went by)."""
        return self._raw_trailer

    def write(self, batch: pa.RecordBatch) -> None:
        """Encode and send one batch."""
        if batch.schema.names != list(self.wp.plan.names):  # columns dropped by evolution
            batch = batch.select(list(self.wp.plan.names))
        batch = conform(batch, self.wp)
        cols = column_inputs(batch, self.wp.plan)
        n = batch.num_rows
        self._row_bytes = batch.nbytes / max(n, 1)
        if self.rejects is not None:
            attempt = self._copy_attempt if self.load_method == "copy" else self._insert_attempt
            loaded, letters = load_guarded(batch, lambda lo, hi: attempt(cols, lo, hi),
                                           self.rejects)
            if letters:
                try:
                    self.rejects.letters.write(self.conn, letters)
                except psycopg.Error as exc:
                    raise dest_error(self.prefix, exc) from None
            self.rows_written += loaded
            return
        if self.load_method == "insert":
            self._write_insert(cols, n)  # (its errors name stream rows already)
            self.rows_written += n
            return
        try:
            self._write_copy(cols, n, batch.nbytes)
        except DataError as exc:
            raise load_errors.in_stream(exc, self.prefix, self.rows_written) from None
        except psycopg.Error as exc:  # a COPY refused by the server, surfacing at a flush
            raise (load_errors.copy_error(exc, self.prefix) or dest_error(self.prefix, exc)
                   ) from None
        self.rows_written += n

    def write_raw(self, chunk: bytearray) -> int:
        """Send a chunk of a source's COPY binary stream as it is; returns its tuples."""
        t0 = time.perf_counter()
        data = self._raw_tail + chunk if self._raw_tail else chunk
        pos = rows = 0
        if not self._raw_header_done:
            pos = copy_decode.parse_header(data)
            self._raw_header_done = pos > 0
        if self._raw_header_done and not self._raw_trailer:
            pos, rows, self._raw_trailer = copy_scan.scan(data, pos, len(data))
            self.rows_written += rows
        self._raw_tail = bytes(data[pos:]) if not self._raw_trailer else b""
        t1 = time.perf_counter()
        self.timings["dest_scan_secs"] = self.timings.get("dest_scan_secs", 0.0) + t1 - t0
        try:
            self._copy.write(chunk)
        except psycopg.Error as exc:
            raise dest_error(self.prefix, exc) from None
        self.timings["dest_flush_secs"] += time.perf_counter() - t1
        self.bytes_written += len(chunk)
        return rows

    def _write_copy(self, cols: list, n: int, arrow_bytes: int) -> None:
        encode = (_impl.copy_encode.encode_binary if self.copy_format == "binary"
                  else _impl.copy_encode.encode_text)
        avg = max(arrow_bytes / max(n, 1), 1.0)
        if not self._flush_bytes:
            self._flush_bytes = self.pg.copy_flush_bytes or adaptive_flush_bytes(avg)
        row = 0
        while row < n:
            room = self._flush_bytes - len(self._buf)
            step = max(1, min(n - row, int(room / avg) + 1))
            t0 = time.perf_counter()
            encode(self.wp.plan, cols, row, row + step, self._buf)
            self.timings["dest_encode_secs"] += time.perf_counter() - t0
            row += step
            if len(self._buf) >= self._flush_bytes:
                self._flush()

    def _flush(self) -> None:
        self.bytes_written += len(self._buf)
        self._sender.send(self._buf)
        self._buf = self._sender.take()

    def _write_insert(self, cols: list, n: int) -> None:
        row = 0
        while row < n:
            t0 = time.perf_counter()
            try:
                end, statement, size = self._inserts.encode(cols, row, n, self._row_bytes)
            except DataError as exc:
                raise load_errors.in_stream(exc, self.prefix, self.rows_written) from None
            t1 = time.perf_counter()
            self.timings["dest_encode_secs"] += t1 - t0
            try:
                self._inserts.execute(statement)
            except psycopg.Error as exc:
                raise (load_errors.insert_error(
                    self.conn, exc, self.prefix, self.wp.plan, cols, row, end,
                    self.pg_types, self.rows_written) or dest_error(self.prefix, exc)) from None
            self.timings["dest_flush_secs"] += time.perf_counter() - t1
            self.bytes_written += size
            row = end

    def _copy_attempt(self, cols: list, lo: int, hi: int) -> Refusal | None:
        """Rows [lo, hi) in one COPY in a savepoint (encoded first: the encoder's refusals
        never reach the server)."""
        binary = self.copy_format == "binary"
        buf = bytearray(COPY_BINARY_HEADER if binary else b"")
        t0 = time.perf_counter()
        try:
            (_impl.copy_encode.encode_binary if binary else _impl.copy_encode.encode_text)(
                self.wp.plan, cols, lo, hi, buf)
        except DataError as exc:
            return self._encoder_refusal(exc)
        if binary:
            buf += COPY_BINARY_TRAILER
        t1 = time.perf_counter()
        self.timings["dest_encode_secs"] += t1 - t0
        refusal = self._in_savepoint(lambda cur: _copy_all(cur, self._copy_sql, buf), lo)
        self.timings["dest_flush_secs"] += time.perf_counter() - t1
        self.bytes_written += len(buf) if refusal is None else 0
        return refusal

    def _insert_attempt(self, cols: list, lo: int, hi: int) -> Refusal | None:
        """Rows [lo, hi) as INSERTs in a savepoint (all encoded first: the encoder's
        refusals never reach the server)."""
        statements = []
        size = 0
        row = lo
        t0 = time.perf_counter()
        try:
            while row < hi:
                row, statement, nbytes = self._inserts.encode(cols, row, hi, self._row_bytes)
                statements.append(statement)
                size += nbytes
        except DataError as exc:
            return self._encoder_refusal(exc)
        t1 = time.perf_counter()
        self.timings["dest_encode_secs"] += t1 - t0

        def execute(_cur: psycopg.Cursor) -> None:
            for statement in statements:
                self._inserts.execute(statement)

        refusal = self._in_savepoint(execute, None)
        self.timings["dest_flush_secs"] += time.perf_counter() - t1
        self.bytes_written += size if refusal is None else 0
        return refusal

    def _encoder_refusal(self, exc: DataError) -> Refusal:
        """A value our encoder cannot write, as a refusal of its row (data_exception)."""
        if exc.row is None:  # not about one value (e.g. a batch over 2 GiB): the load fails
            raise load_errors.in_stream(exc, self.prefix, self.rows_written) from None
        return Refusal(f"column {exc.column!r}{exc.detail}", "22000", exc.row)

    def _in_savepoint(self, send: Callable[[psycopg.Cursor], None],
                      copy_lo: int | None) -> Refusal | None:
        """Run ``send`` in a savepoint; a refused value rolls the savepoint back and is
        returned (with its row when a COPY starting at row ``copy_lo`` names the line)."""
        try:
            with self.conn.cursor() as cur:
                cur.execute(f"SAVEPOINT {_SAVEPOINT}")
                try:
                    send(cur)
                except psycopg.Error as exc:
                    if not load_errors.is_refusal(exc.sqlstate):
                        raise
                    cur.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
                    line, column = load_errors.copy_position(exc)
                    reason = load_errors.pg_message(exc)
                    column = column or exc.diag.column_name
                    return Refusal(f"column {column!r}: {reason}" if column else reason,
                                   exc.sqlstate or "",
                                   None if line is None or copy_lo is None
                                   else copy_lo + line - 1)
                cur.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        except psycopg.Error as exc:
            raise dest_error(self.prefix, exc) from None
        return None

    def finish(self, checkpoint: bool = False) -> None:
        """End the COPY (the transaction stays open). At a ``checkpoint`` a passthrough
        stream is cut after its last complete tuple and closed with a trailer of ours."""
        if self.passthrough and not self._raw_trailer:
            if not checkpoint or self._raw_tail:
                raise DestinationError(f"{self.prefix}the source's COPY stream ended early")
            self._copy.write(COPY_BINARY_TRAILER)
        try:
            if self._sender is not None:
                if self.copy_format == "binary":
                    self._buf += COPY_BINARY_TRAILER
                self._flush()
                self._sender.close()
                self.timings["dest_flush_secs"] += self._sender.flush_secs
                self._sender = None
            if self._copy is not None:
                t0 = time.perf_counter()
                self._copy_cm.__exit__(None, None, None)
                self._copy = None
                self.timings["dest_flush_secs"] += time.perf_counter() - t0
        except psycopg.Error as exc:
            raise (load_errors.copy_error(exc, self.prefix) or dest_error(self.prefix, exc)
                   ) from None

    def abort(self) -> None:
        """Stop sending and end the COPY with an error (the caller rolls back)."""
        if self._sender is not None:
            try:
                self._sender.close()
            except BaseException:  # the load failed already; rollback is what matters now
                pass
            self._sender = None
        if self._copy is not None:
            try:
                self._copy_cm.__exit__(DestinationError, DestinationError("aborted"), None)
            except BaseException:  # the server already knows the COPY failed
                pass
            self._copy = None


def _copy_all(cur: psycopg.Cursor, statement: str, data: bytearray) -> None:
    with cur.copy(statement) as copy:
        copy.write(data)
