"""Postgres destination: COPY FROM STDIN (binary, or text when a target type needs Postgres
to parse text) or multi-row INSERT, with append and replace semantics.

Each stream is loaded in one transaction. ``replace`` loads a staging table, builds the
primary key on it, then drops the old table and renames the staging table in the same
transaction, so a failed run leaves the old table untouched.
"""
from __future__ import annotations

import time
import uuid

import psycopg
import pyarrow as pa

from .._impl import copy_decode, copy_encode, copy_scan, insert_sql
from ..column_plan import COPY_BINARY_HEADER, COPY_BINARY_TRAILER, column_inputs
from ..errors import DataError, DestinationError
from ..pgtypes import (
    PRIMARY_KEY_KEY, WritePlan, conform, derived_name, describe_table, field_pg_type,
    qualified, quote_ident, split_table, table_exists, write_plan,
)
from ..sources.postgres import connect
from .copy_sender import CopySender


def adaptive_flush_bytes(avg_row_bytes: float) -> int:
    """COPY flush threshold by average row size (the seed's sweep: 128-256 KB flushes are
    catastrophic, 1 MB best for narrow rows, 4-16 MB for 8 KB+ rows)."""
    if avg_row_bytes < 8 * 1024:
        return 1 << 20
    if avg_row_bytes < 64 * 1024:
        return 4 << 20
    return 16 << 20


class PostgresDestination:
    """Loads one stream into ``schema.table`` of a Postgres database."""

    def __init__(self, conninfo: str, dest_cfg, stream_name: str) -> None:
        self.conninfo = conninfo
        self.cfg = dest_cfg
        self.pg = dest_cfg.config
        self.stream_name = stream_name
        self.schema_name = self.pg.schema_name
        self.table_name = split_table(stream_name, self.schema_name)[1]
        self.conn: psycopg.Connection | None = None
        self.timings = {"dest_connect_secs": 0.0, "dest_encode_secs": 0.0,
                        "dest_flush_secs": 0.0, "dest_commit_secs": 0.0, "dest_ddl_secs": 0.0}
        self.rows_written = 0
        self.bytes_written = 0
        self.load_method = self.pg.load_method
        self.copy_format = "binary"
        self._wp: WritePlan | None = None
        self._copy_cm = None
        self._copy = None
        self._sender: CopySender | None = None
        self._buf: bytearray | None = None
        self._flush_bytes = 0
        self._load_table = ""
        self._created = False
        self._primary_key: tuple[str, ...] = ()
        self._insert_prefix = b""
        self.passthrough = False
        self._raw_tail = b""
        self._raw_header_done = False
        self._raw_trailer = False

    def existing_column_types(self) -> dict[str, tuple[str, bool]] | None:
        """Column types of the target table, or None when it does not exist yet (connects
        on a short-lived connection: called before ``open``)."""
        from .. import passthrough

        conn = connect(self.conninfo, f"destination for stream {self.stream_name}")
        with conn:
            if not table_exists(conn, self.schema_name, self.table_name):
                return None
            return passthrough.column_types(conn, self.schema_name, self.table_name)

    # -- setup ---------------------------------------------------------------------------
    def open(self, schema: pa.Schema, passthrough: bool = False) -> None:
        """Connect, prepare the table to load into and start the load. With ``passthrough``
        the load takes raw COPY binary streams (``write_raw``) instead of Arrow batches."""
        self.passthrough = passthrough
        t0 = time.perf_counter()
        self.conn = connect(self.conninfo, f"destination for stream {self.stream_name}")
        self.conn.autocommit = False
        self.timings["dest_connect_secs"] += time.perf_counter() - t0
        self._primary_key = self._pk_from(schema)
        t0 = time.perf_counter()
        try:
            self._prepare(schema)
        except psycopg.Error as exc:
            raise DestinationError(self._where() + _pg_message(exc)) from None
        self.timings["dest_ddl_secs"] += time.perf_counter() - t0

    def _pk_from(self, schema: pa.Schema) -> tuple[str, ...]:
        if self.cfg.primary_key:
            return tuple(self.cfg.primary_key)
        raw = (schema.metadata or {}).get(PRIMARY_KEY_KEY)
        if raw:
            pk = tuple(raw.decode().split(","))
            return pk if all(k in schema.names for k in pk) else ()
        return ()

    def _prepare(self, schema: pa.Schema) -> None:
        conn = self.conn
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.schema_name)}")
        exists = table_exists(conn, self.schema_name, self.table_name)
        if self.cfg.write_mode == "replace":
            self._load_table = derived_name(self.table_name, f"__rbf_stage_{uuid.uuid4().hex[:8]}")
            self._create_table(self._load_table, schema)
            target_types = None
        else:
            self._load_table = self.table_name
            if not exists:
                self._create_table(self.table_name, schema)
                target_types = None
            else:
                target_types = self._existing_types(schema)
        self._wp = write_plan(schema, target_types)
        cols = ", ".join(quote_ident(n) for n in schema.names)
        rel = qualified(self.schema_name, self._load_table)
        if self.passthrough:
            self.load_method = "copy"
        if self.load_method == "copy":
            self.copy_format = "binary" if self.passthrough or (
                self._wp.binary_ok and self.pg.copy_format == "binary") else "text"
            cur = conn.cursor()
            self._copy_cm = cur.copy(
                f"COPY {rel} ({cols}) FROM STDIN (FORMAT {self.copy_format})")
            self._copy = self._copy_cm.__enter__()
            if self.passthrough:
                return
            self._sender = CopySender(self._copy)
            self._buf = self._sender.take()
            if self.copy_format == "binary":
                self._buf += COPY_BINARY_HEADER
        else:
            self._insert_prefix = f"INSERT INTO {rel} ({cols}) VALUES ".encode()

    def _create_table(self, name: str, schema: pa.Schema) -> None:
        defs = ", ".join(f"{quote_ident(f.name)} {field_pg_type(f)}" for f in schema)
        self.conn.execute(f"CREATE TABLE {qualified(self.schema_name, name)} ({defs})")
        self._created = True

    def _existing_types(self, schema: pa.Schema) -> dict[str, str]:
        table = describe_table(self.conn, self.schema_name, self.table_name)
        have = {c.name: c for c in table.columns}
        missing = [n for n in schema.names if n not in have]
        if missing:
            raise DestinationError(
                f"{self._where()}table {self.schema_name}.{self.table_name} has no column "
                f"{', '.join(missing)}"
            )
        return {n: ("text" if have[n].typtype == "e" else have[n].base_type)
                for n in schema.names}

    # -- load ----------------------------------------------------------------------------
    def write(self, batch: pa.RecordBatch) -> None:
        """Encode and send one batch."""
        wp = self._wp
        batch = conform(batch, wp)
        cols = column_inputs(batch, wp.plan)
        n = batch.num_rows
        if self.load_method == "copy":
            self._write_copy(wp, cols, n, batch.nbytes)
        else:
            self._write_insert(wp, cols, n)
        self.rows_written += n

    def write_raw(self, chunk: bytearray) -> None:
        """Send a chunk of a source's COPY binary stream as it is, counting its tuples."""
        t0 = time.perf_counter()
        data = self._raw_tail + chunk if self._raw_tail else chunk
        pos = 0
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
            raise DestinationError(self._where() + _pg_message(exc)) from None
        self.timings["dest_flush_secs"] += time.perf_counter() - t1
        self.bytes_written += len(chunk)

    def _write_copy(self, wp: WritePlan, cols: list, n: int, arrow_bytes: int) -> None:
        encode = copy_encode.encode_binary if self.copy_format == "binary" else copy_encode.encode_text
        if not self._flush_bytes:
            self._flush_bytes = self.pg.copy_flush_bytes or adaptive_flush_bytes(
                arrow_bytes / max(n, 1))
        row = 0
        avg = max(arrow_bytes / max(n, 1), 1.0)
        while row < n:
            room = self._flush_bytes - len(self._buf)
            step = max(1, min(n - row, int(room / avg) + 1))
            t0 = time.perf_counter()
            try:
                encode(wp.plan, cols, row, row + step, self._buf)
            except DataError as exc:
                raise DataError(f"stream {self.stream_name}: {exc}") from None
            self.timings["dest_encode_secs"] += time.perf_counter() - t0
            row += step
            if len(self._buf) >= self._flush_bytes:
                self._flush()

    def _flush(self) -> None:
        self.bytes_written += len(self._buf)
        self._sender.send(self._buf)
        self._buf = self._sender.take()

    def _write_insert(self, wp: WritePlan, cols: list, n: int) -> None:
        buf = bytearray()
        row = 0
        cur = self.conn.cursor()
        while row < n:
            buf.clear()
            t0 = time.perf_counter()
            try:
                used, _ = insert_sql.build_insert(
                    wp.plan, cols, row, n, buf, self._insert_prefix, b"",
                    self.pg.insert_batch_rows, self.pg.insert_batch_bytes)
            except DataError as exc:
                raise DataError(f"stream {self.stream_name}: {exc}") from None
            t1 = time.perf_counter()
            self.timings["dest_encode_secs"] += t1 - t0
            try:
                cur.execute(bytes(buf))
            except psycopg.Error as exc:
                raise DestinationError(self._where() + _pg_message(exc)) from None
            self.timings["dest_flush_secs"] += time.perf_counter() - t1
            self.bytes_written += len(buf)
            row += used

    # -- finish --------------------------------------------------------------------------
    def commit(self) -> None:
        """Finish the load, swap in the staging table for replace, and commit."""
        conn = self.conn
        try:
            if self.passthrough and not self._raw_trailer:
                raise DestinationError(f"{self._where()}the source's COPY stream ended early")
            if self._sender is not None:
                if self.copy_format == "binary":
                    self._buf += COPY_BINARY_TRAILER
                self._flush()
                self._sender.close()
                self.timings["dest_flush_secs"] += self._sender.flush_secs
            if self._copy is not None:
                t0 = time.perf_counter()
                self._copy_cm.__exit__(None, None, None)
                self._copy = None
                self.timings["dest_flush_secs"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            if self.cfg.write_mode == "replace":
                self._swap()
            elif self._created and self._primary_key:
                self._add_primary_key(self.table_name, self.table_name)
            self.timings["dest_ddl_secs"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            conn.commit()
            self.timings["dest_commit_secs"] += time.perf_counter() - t0
        except psycopg.Error as exc:
            raise DestinationError(self._where() + _pg_message(exc)) from None

    def _add_primary_key(self, table: str, constraint_base: str) -> None:
        cols = ", ".join(quote_ident(c) for c in self._primary_key)
        name = quote_ident(derived_name(constraint_base, "_pkey"))
        self.conn.execute(
            f"ALTER TABLE {qualified(self.schema_name, table)} ADD CONSTRAINT {name} "
            f"PRIMARY KEY ({cols})")

    def _swap(self) -> None:
        conn = self.conn
        stage = qualified(self.schema_name, self._load_table)
        target = qualified(self.schema_name, self.table_name)
        exists = table_exists(conn, self.schema_name, self.table_name)
        if exists and self.rows_written == 0 and not self.cfg.allow_empty_replace:
            has_rows = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {target})").fetchone()[0]
            if has_rows:
                raise DestinationError(
                    f"{self._where()}the source returned no rows; refusing to replace the "
                    f"non-empty table {self.schema_name}.{self.table_name} "
                    "(set destination.allow_empty_replace: true to allow it)")
        if self._primary_key:
            self._add_primary_key(self._load_table, self._load_table)
        if exists:
            conn.execute(f"DROP TABLE {target}")
        conn.execute(f"ALTER TABLE {stage} RENAME TO {quote_ident(self.table_name)}")
        if self._primary_key:
            old = quote_ident(derived_name(self._load_table, "_pkey"))
            new = quote_ident(derived_name(self.table_name, "_pkey"))
            conn.execute(f"ALTER TABLE {target} RENAME CONSTRAINT {old} TO {new}")

    def abort(self) -> None:
        """Roll back everything this stream did (staging tables vanish with it)."""
        if self._sender is not None:
            try:
                self._sender.close()
            except BaseException:  # the load failed already; rollback is what matters now
                pass
            self._sender = None
        if self._copy_cm is not None and self._copy is not None:
            try:
                self._copy_cm.__exit__(DestinationError, DestinationError("aborted"), None)
            except BaseException:  # the server already knows the COPY failed
                pass
            self._copy = None
        if self.conn is not None and not self.conn.closed:
            try:
                self.conn.rollback()
            except psycopg.Error:
                pass

    def close(self) -> None:
        """Close the connection."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _where(self) -> str:
        return f"stream {self.stream_name} → {self.schema_name}.{self.table_name}: "


def _pg_message(exc: psycopg.Error) -> str:
    diag = exc.diag
    msg = diag.message_primary or str(exc)
    if diag.message_detail:
        msg += f" ({diag.message_detail})"
    return " ".join(msg.split())
