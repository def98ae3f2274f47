"""Postgres destination: COPY FROM STDIN (binary, or text when a target type needs Postgres
to parse text) or multi-row INSERT, with append and replace semantics.

``PostgresDestination`` owns the table (DDL, staging, the final swap); ``Loader`` writes rows
over one connection. Unsharded, one loader shares the destination's connection and the
whole stream is one transaction (or one per checkpoint). Sharded, every shard has its own
loader and connection committing into a staging table, and ``commit`` then swaps (replace)
or moves (append) the staging table into place in one transaction; a failure drops the
staging table, so the target is never left half-loaded. Ranged (``resume``), each worker's
``RangeWriter`` commits range by range with a progress mark, into the target (append) or a
staging table kept for the next attempt (replace). ``replace`` builds the primary key
after the load.
"""
from __future__ import annotations

import logging
import re
import time
import uuid

import psycopg
import pyarrow as pa

from .._impl import copy_decode, copy_encode, copy_scan, insert_sql
from ..column_plan import COPY_BINARY_HEADER, COPY_BINARY_TRAILER, column_inputs
from ..errors import DataError, DestinationError
from ..pgtypes import (
    WritePlan, conform, derived_name, describe_table, field_pg_type, primary_key_of,
    qualified, quote_ident, split_table, table_exists, write_plan,
)
from .. import faults, load_errors, resume
from ..pgddl import ensure_types
from ..sources.postgres import connect
from ..resume import columns_fingerprint
from ..state import cursors
from .copy_sender import CopySender

_log = logging.getLogger("rapidbyte_fast")
#: Arrival-order column of upsert staging tables.
_SEQ_COLUMN = "__rbf_seq"
#: The upsert target's alias (a bare name that a column name would shadow)
_TARGET_ALIAS = '"__rbf_target"'


def adaptive_flush_bytes(avg_row_bytes: float) -> int:
    """COPY flush threshold by average row size (the seed's sweep: 128-256 KB flushes are
    catastrophic, 1 MB best for narrow rows, 4-16 MB for 8 KB+ rows)."""
    if avg_row_bytes < 8 * 1024:
        return 1 << 20
    if avg_row_bytes < 64 * 1024:
        return 4 << 20
    return 16 << 20


def _dest_error(where: str, exc: psycopg.Error) -> DestinationError:
    # a dropped connection has no SQLSTATE: give it connection_failure so it is retried
    state = exc.sqlstate or ("08006" if isinstance(exc, psycopg.OperationalError) else None)
    return DestinationError(where + load_errors.pg_message(exc)).with_sqlstate(state)


class Loader:
    """Writes one stream's rows (or raw COPY binary streams) into one table over one
    connection, inside that connection's transaction."""

    def __init__(self, conn: psycopg.Connection, where: str, pg_cfg, rel: str, cols: str,
                 wp: WritePlan, passthrough: bool, continuation: bool = False,
                 pg_types: list[str] | None = None) -> None:
        self.conn = conn
        #: the target columns' types in plan order (to name a value an INSERT refused)
        self.pg_types = pg_types or []
        self.where = where
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
        self._insert_prefix = b""
        self._raw_tail = b""
        self._raw_header_done = self._raw_trailer = False
        try:
            if self.load_method == "copy":
                self.copy_format = "binary" if passthrough or (
                    wp.binary_ok and pg_cfg.copy_format == "binary") else "text"
                self._copy_cm = conn.cursor().copy(
                    f"COPY {rel} ({cols}) FROM STDIN (FORMAT {self.copy_format})")
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
                self._insert_prefix = f"INSERT INTO {rel} ({cols}) VALUES ".encode()
        except psycopg.Error as exc:
            raise _dest_error(self.where, exc) from None

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
        try:
            if self.load_method == "copy":
                self._write_copy(cols, n, batch.nbytes)
            else:
                self._write_insert(cols, n)
        except DataError as exc:
            raise load_errors.in_stream(exc, self.where, self.rows_written) from None
        except psycopg.Error as exc:  # a COPY refused by the server, surfacing at a flush
            raise (load_errors.copy_error(exc, self.where) or _dest_error(self.where, exc)
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
            raise _dest_error(self.where, exc) from None
        self.timings["dest_flush_secs"] += time.perf_counter() - t1
        self.bytes_written += len(chunk)
        return rows

    def _write_copy(self, cols: list, n: int, arrow_bytes: int) -> None:
        encode = (copy_encode.encode_binary if self.copy_format == "binary"
                  else copy_encode.encode_text)
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
        buf = bytearray()
        row = 0
        cur = self.conn.cursor()
        while row < n:
            buf.clear()
            t0 = time.perf_counter()
            used, _ = insert_sql.build_insert(
                self.wp.plan, cols, row, n, buf, self._insert_prefix, b"",
                self.pg.insert_batch_rows, self.pg.insert_batch_bytes)
            t1 = time.perf_counter()
            self.timings["dest_encode_secs"] += t1 - t0
            try:
                cur.execute(bytes(buf))
            except psycopg.Error as exc:
                raise (load_errors.insert_error(
                    self.conn, exc, self.where, self.wp.plan, cols, row, row + used,
                    self.pg_types, self.rows_written) or _dest_error(self.where, exc)) from None
            self.timings["dest_flush_secs"] += time.perf_counter() - t1
            self.bytes_written += len(buf)
            row += used

    def finish(self, checkpoint: bool = False) -> None:
        """End the COPY (the transaction stays open). At a ``checkpoint`` a passthrough
        stream is cut after its last complete tuple and closed with a trailer of ours."""
        if self.passthrough and not self._raw_trailer:
            if not checkpoint or self._raw_tail:
                raise DestinationError(f"{self.where}the source's COPY stream ended early")
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
            raise (load_errors.copy_error(exc, self.where) or _dest_error(self.where, exc)
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


class PostgresDestination:
    """Loads one stream into ``schema.table`` of a Postgres database."""

    def __init__(self, conninfo: str, dest_cfg, stream_name: str, pipeline: str = "") -> None:
        self.conninfo = conninfo
        self.pipeline = pipeline
        self.cfg = dest_cfg
        self.pg = dest_cfg.config
        self.stream_name = stream_name
        self.schema_name = self.pg.schema_name
        self.table_name = split_table(stream_name, self.schema_name)[1]
        self.conn: psycopg.Connection | None = None
        self.timings = {"dest_connect_secs": 0.0, "dest_commit_secs": 0.0, "dest_ddl_secs": 0.0}
        self.load_method = self.pg.load_method
        self.copy_format = ""
        self.passthrough = False
        self.shards = 1
        self.loader: Loader | None = None
        self.loaders: list[Loader] = []
        self._wp: WritePlan | None = None
        self._load_table = ""
        #: where the load table lives: the target's schema, or pg_temp for a staging table
        #: that only this connection uses (no WAL, and gone with the session after a crash)
        self._load_schema = self.schema_name
        self._staged = False
        #: the staging table outlives a rollback (shards, checkpoints, ranged loads)
        self._stage_committed = False
        self._created = False
        self._target_exists = False
        self._primary_key: tuple[str, ...] = ()
        self._cols = ""
        self._names: list[str] = []
        self._pg_types: list[str] = []
        #: set by the engine for incremental streams: pipeline name, cursor and tie-breaker
        self.incremental: tuple[str, str, str | None] | None = None
        #: checkpoint intervals (bytes, rows, seconds; 0 = off), set by the engine
        self.checkpoint_every: tuple[int, int, float] = (0, 0, 0.0)
        self.checkpoints = 0
        self._ck_mark = (0, 0, 0.0)
        self.new_cursor: cursors.Cursor | None = None
        #: a resumable ranged load (see ``resume``): its rows commit range by range
        self.progress: resume.Progress | None = None
        self._discard: resume.Progress | None = None
        self._worker_conns: list[psycopg.Connection] = []

    @property
    def rows_written(self) -> int:
        return sum(ld.rows_written for ld in self.loaders)

    @property
    def bytes_written(self) -> int:
        return sum(ld.bytes_written for ld in self.loaders)

    def all_timings(self) -> dict[str, float]:
        """Destination timings with the loaders' summed in."""
        out = dict(self.timings)
        for ld in self.loaders:
            for k, v in ld.timings.items():
                out[k] = out.get(k, 0.0) + v
        return out

    def existing_column_types(self) -> dict[str, tuple[str, bool]] | None:
        """Column types of the target table, or None when it does not exist yet (on a
        short-lived connection: called before ``open``)."""
        from .. import passthrough

        conn = connect(self.conninfo, f"destination for stream {self.stream_name}")
        with conn:
            if not table_exists(conn, self.schema_name, self.table_name):
                return None
            return passthrough.column_types(conn, self.schema_name, self.table_name)

    # -- setup ---------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        t0 = time.perf_counter()
        conn = connect(self.conninfo, f"destination for stream {self.stream_name}")
        conn.autocommit = False
        self.timings["dest_connect_secs"] += time.perf_counter() - t0
        return conn

    def open(self, schema: pa.Schema, passthrough: bool = False, shards: int = 1,
             progress: resume.Progress | None = None,
             discard: resume.Progress | None = None) -> None:
        """Prepare the table to load into. Unsharded, also start the load (``write`` /
        ``write_raw``); sharded, each shard takes a ``shard_loader()``; ranged
        (``progress``, new or resumed), each worker takes a ``range_writer()``. ``discard``
        is an earlier unfinished load that cannot be resumed: its record and staging table
        go. With ``passthrough`` loads take raw COPY binary streams instead of Arrow
        batches."""
        self.passthrough, self.shards = passthrough, shards
        self.progress, self._discard = progress, discard
        if passthrough:
            self.load_method = "copy"
        self.conn = self._connect()
        self._primary_key = self._pk_from(schema)
        t0 = time.perf_counter()
        try:
            self._prepare(schema)
            if shards > 1 or progress is not None:
                self.conn.commit()  # other connections must see the staging table
                self._stage_committed = self._staged
            else:
                self.loader = self._new_loader(self.conn)
        except psycopg.Error as exc:
            raise _dest_error(self._where(), exc) from None
        finally:
            self.timings["dest_ddl_secs"] += time.perf_counter() - t0
        if self.loader is not None:
            self.copy_format = self.loader.copy_format
        self._ck_mark = (0, 0, time.monotonic())

    def _pk_from(self, schema: pa.Schema) -> tuple[str, ...]:
        if self.cfg.primary_key:
            return tuple(self.cfg.primary_key)
        return primary_key_of(schema)

    def unfinished_load(self, schema: pa.Schema) -> tuple[resume.Progress | None, bool]:
        """This stream's unfinished ranged load and whether it can go on with ``schema``: a
        replace needs its staging table with the same columns, an append its target."""
        conn = connect(self.conninfo, f"destination for stream {self.stream_name}")
        with conn:
            p = resume.load(conn, self.schema_name, self.pipeline, self.stream_name)
            if p is None or p.write_mode != self.cfg.write_mode:
                return p, False
            if p.write_mode == "replace":
                ok = (p.staging is not None and p.columns == columns_fingerprint(schema)
                      and table_exists(conn, self.schema_name, p.staging))
            else:
                ok = table_exists(conn, self.schema_name, self.table_name)
            return p, ok

    def load_cursor(self) -> cursors.Cursor | None:
        """The committed cursor of this incremental stream (short-lived connection)."""
        conn = connect(self.conninfo, f"destination for stream {self.stream_name}")
        with conn:
            return cursors.load(conn, self.schema_name, self.incremental[0], self.stream_name)

    def _prepare(self, schema: pa.Schema) -> None:
        conn = self.conn
        mode = self.cfg.write_mode
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.schema_name)}")
        schema = ensure_types(conn, self.schema_name, schema)
        if self._discard is not None:
            self._forget_load(self._discard)
        self._target_exists = table_exists(conn, self.schema_name, self.table_name)
        if self._target_exists and mode == "replace":
            self._check_no_dependents()
        target_types = None
        if self._target_exists and mode != "replace":
            schema = self._evolve(schema)
            target_types = self._existing_types(schema)
        if mode == "upsert" or self.incremental:
            if not self._target_exists:
                self._create_table(self.table_name, schema, self._primary_key)
                self._target_exists = True
            if mode == "upsert":
                self._check_conflict_target()
            if self.incremental:
                cursors.ensure_table(conn, self.schema_name)
        self._drop_orphan_stages()
        ranged = self.progress is not None
        if ranged and self.progress.staging is not None:  # resuming a replace
            self._load_table = self.progress.staging
            self._staged = True
        elif mode != "append" or (self.shards > 1 and not ranged) or self.incremental:
            self._load_table = derived_name(self.table_name, f"__rbf_stage_{uuid.uuid4().hex[:8]}")
            if (mode == "upsert" or self.incremental) and self.shards == 1:
                self._load_schema = "pg_temp"  # moved into the target, never renamed
            self._create_table(self._load_table, schema,
                               seq=_SEQ_COLUMN if mode == "upsert" else None,
                               in_schema=self._load_schema)
            self._staged = True
            target_types = None  # the staging table has the source's types
        else:
            self._load_table = self.table_name
            if not self._target_exists:
                self._create_table(self.table_name, schema)
                self._created = True
        if ranged and not self.progress.columns:  # a new ranged load: record it
            self.progress = self.progress.with_staging(
                self._load_table if self._staged else None, columns_fingerprint(schema),
                self._created and bool(self._primary_key))
            resume.save(conn, self.schema_name, self.pipeline, self.stream_name, self.progress)
        self._wp = write_plan(schema, target_types)
        self._pg_types = self._load_types(schema, target_types is not None)
        self._names = list(schema.names)
        self._cols = ", ".join(quote_ident(n) for n in schema.names)

    @property
    def _load_rel(self) -> str:
        """The qualified name of the table rows are loaded into."""
        return qualified(self._load_schema, self._load_table)

    def _new_loader(self, conn: psycopg.Connection) -> Loader:
        loader = Loader(conn, self._where(), self.pg, self._load_rel,
                        self._cols, self._wp, self.passthrough, pg_types=self._pg_types)
        self.loaders.append(loader)
        return loader

    def shard_loader(self) -> Loader:
        """A loader on its own connection and transaction, for one shard (commit it with
        ``commit_shard``)."""
        return self._new_loader(self._connect())

    def range_writer(self) -> "RangeWriter":
        """A writer on its own connection that commits range by range (ranged loads)."""
        conn = self._connect()
        self._worker_conns.append(conn)
        return RangeWriter(self, conn)

    def commit_range(self, loader: Loader | None, conn: psycopg.Connection, index: int) -> None:
        """Commit range ``index``: its rows (``loader``, None when it had none) and its
        mark in the progress table, in one transaction."""
        t0 = time.perf_counter()
        rows = 0
        if loader is not None:
            loader.finish()
            rows = loader.rows_written
        try:
            resume.mark_done(conn, self.schema_name, self.pipeline, self.stream_name, index, rows)
            faults.hit("dest.range_commit")
            conn.commit()
        except psycopg.Error as exc:
            raise _dest_error(self._where(), exc) from None
        faults.hit("dest.range_committed")
        self.timings["dest_commit_secs"] += time.perf_counter() - t0
        self.checkpoints += 1

    def _forget_load(self, p: resume.Progress) -> None:
        """Drop an unfinished load that cannot be resumed (in the current transaction)."""
        resume.reset(self.conn, self.schema_name, self.pipeline, self.stream_name)
        _log.warning("%sstarting over: an unfinished %s load (%d of %d key ranges) cannot be "
                     "resumed with this configuration", self._where(), p.write_mode,
                     len(p.done), p.ranges)

    def commit_shard(self, loader: Loader) -> None:
        """Finish one shard's load and commit it into the staging table."""
        loader.finish()
        try:
            loader.conn.commit()
        except psycopg.Error as exc:
            raise _dest_error(self._where(), exc) from None

    def _drop_orphan_stages(self) -> None:
        """Drop staging tables of this target left by a crashed run (one that could not
        clean up), except the one a ranged load resumes. A staging table in use by a
        concurrent run is locked, and skipped."""
        keep = self.progress.staging if self.progress is not None else None
        tag = re.compile(r"__rbf_stage_[0-9a-f]{8}$")
        for (name,) in self.conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname LIKE %s",
                (self.schema_name, "%\\_\\_rbf\\_stage\\_%")).fetchall():
            m = tag.search(name)
            if name == keep or m is None or derived_name(self.table_name, m.group()) != name:
                continue
            rel = qualified(self.schema_name, name)
            try:
                with self.conn.transaction():
                    self.conn.execute(f"LOCK TABLE {rel} IN ACCESS EXCLUSIVE MODE NOWAIT")
                    self.conn.execute(f"DROP TABLE {rel}")
                _log.info("%sdropped %s, left by an interrupted run", self._where(), name)
            except psycopg.errors.LockNotAvailable:
                continue

    def _create_table(self, name: str, schema: pa.Schema, pk: tuple[str, ...] = (),
                      seq: str | None = None, in_schema: str | None = None) -> None:
        defs = [f"{quote_ident(f.name)} {field_pg_type(f)}" for f in schema]
        if seq:  # arrival order in an upsert staging table: the last duplicate key wins
            defs.append(f"{quote_ident(seq)} bigserial")
        if pk:
            name_sql = quote_ident(derived_name(name, "_pkey"))
            defs.append(f"CONSTRAINT {name_sql} PRIMARY KEY "
                        f"({', '.join(quote_ident(c) for c in pk)})")
        rel = qualified(in_schema or self.schema_name, name)
        self.conn.execute(f"CREATE TABLE {rel} ({', '.join(defs)})")

    def _check_conflict_target(self) -> None:
        cols = list(self._primary_key)
        ok = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = %s::regclass "
            "AND i.indisunique AND i.indpred IS NULL AND "
            "(SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a "
            "WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)) = "
            "(SELECT array_agg(c ORDER BY c) FROM unnest(%s::text[]) c))",
            (qualified(self.schema_name, self.table_name), cols)).fetchone()[0]
        if not ok:
            raise DestinationError(
                f"{self._where()}upsert needs a primary key or unique index on "
                f"({', '.join(cols)}) in {self.schema_name}.{self.table_name}")

    def _evolve(self, schema: pa.Schema) -> pa.Schema:
        """Reconcile the source schema with the existing target table per
        ``schema_evolution``; returns the columns to load (DDL runs in the load's
        transaction)."""
        pol = self.cfg.schema_evolution
        table = describe_table(self.conn, self.schema_name, self.table_name)
        have = {c.name: c for c in table.columns}
        rel = qualified(self.schema_name, self.table_name)
        keep, problems = [], []
        for f in schema:
            col = have.get(f.name)
            src_type = field_pg_type(f)
            if col is None:
                if pol.new_column == "add":
                    self.conn.execute(f"ALTER TABLE {rel} ADD COLUMN {quote_ident(f.name)} "
                                      f"{src_type}")
                    _log.info("%sadded column %s %s", self._where(), f.name, src_type)
                    keep.append(f)
                elif pol.new_column == "fail":
                    problems.append(f"new column {f.name} ({src_type}) "
                                    "[schema_evolution.new_column: fail]")
                continue
            if src_type != col.pg_type and pol.type_change != "coerce":
                if pol.type_change == "fail":
                    problems.append(f"column {f.name} is {src_type} in the source but "
                                    f"{col.pg_type} in the destination "
                                    "[schema_evolution.type_change: fail]")
                continue  # "null": the column is not loaded, so it stays NULL
            # a primary key column stays NOT NULL: a NULL would be refused by the key anyway
            if f.nullable and col.not_null and f.name not in table.primary_key:
                if pol.nullability_change == "fail":
                    problems.append(f"column {f.name} is nullable in the source but NOT NULL "
                                    "in the destination "
                                    "[schema_evolution.nullability_change: fail]")
                    continue
                self.conn.execute(f"ALTER TABLE {rel} ALTER COLUMN {quote_ident(f.name)} "
                                  "DROP NOT NULL")
            keep.append(f)
        removed = [n for n in have if n not in schema.names]
        if removed and pol.removed_column == "fail":
            problems.append(f"columns {', '.join(removed)} are gone from the source "
                            "[schema_evolution.removed_column: fail]")
        if problems:
            raise DestinationError(f"{self._where()}schema changed: " + "; ".join(problems))
        if not keep:
            raise DestinationError(f"{self._where()}no source column can be loaded")
        return pa.schema(keep, metadata=schema.metadata)

    def _load_types(self, schema: pa.Schema, into_existing: bool) -> list[str]:
        if not into_existing:
            return [field_pg_type(f) for f in schema]
        have = {c.name: c.pg_type for c in
                describe_table(self.conn, self.schema_name, self.table_name).columns}
        return [have[n] for n in schema.names]

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

    # -- load (unsharded) ------------------------------------------------------------------
    def write(self, batch: pa.RecordBatch) -> None:
        """Encode and send one batch."""
        self.loader.write(batch)
        self._maybe_checkpoint()

    def write_raw(self, chunk: bytearray) -> int:
        """Send a chunk of a source's COPY binary stream as it is; returns its tuples."""
        n = self.loader.write_raw(chunk)
        self._maybe_checkpoint()
        return n

    def checkpointing(self) -> bool:
        """Mid-stream commits are safe only into a staging table whose rows move with the
        cursor (incremental) or idempotently (upsert)."""
        if self.shards > 1 or not self._staged or not any(self.checkpoint_every):
            return False
        return self.incremental is not None or self.cfg.write_mode == "upsert"

    def _maybe_checkpoint(self) -> None:
        if not self.checkpointing() or self.loader.stream_ended:
            return  # (the final commit follows the end of a passthrough stream)
        every_bytes, every_rows, every_secs = self.checkpoint_every
        rows0, bytes0, t0 = self._ck_mark
        now = time.monotonic()
        if ((every_bytes and self.bytes_written - bytes0 >= every_bytes)
                or (every_rows and self.rows_written - rows0 >= every_rows)
                or (every_secs and now - t0 >= every_secs)):
            self.checkpoint()

    def checkpoint(self) -> None:
        """Commit what is loaded so far (rows and cursor together) and go on loading."""
        self.loader.finish(checkpoint=True)
        t0 = time.perf_counter()
        try:
            self._move_staged(drop=False)
            faults.hit("dest.checkpoint")
            self.conn.commit()
            self._stage_committed = True
            faults.hit("dest.checkpointed")
            self.loader = Loader(self.conn, self._where(), self.pg,
                                 self._load_rel, self._cols,
                                 self._wp, self.passthrough, continuation=True,
                                 pg_types=self._pg_types)
        except psycopg.Error as exc:
            raise _dest_error(self._where(), exc) from None
        self.loaders.append(self.loader)
        self.timings["dest_commit_secs"] += time.perf_counter() - t0
        self.checkpoints += 1
        self._ck_mark = (self.rows_written, self.bytes_written, time.monotonic())

    # -- finish --------------------------------------------------------------------------
    def commit(self) -> None:
        """Finish the load, put the staging table in place, and commit."""
        if self.loader is not None:
            self.loader.finish()
        conn = self.conn
        try:
            t0 = time.perf_counter()
            if self._staged:
                self._place_staging()
            elif self._primary_key and (self.progress.add_pk if self.progress else self._created):
                self._add_primary_key(self.table_name, self.table_name)
            if self.progress is not None:
                resume.reset(conn, self.schema_name, self.pipeline, self.stream_name)
            self.timings["dest_ddl_secs"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            faults.hit("dest.commit")
            conn.commit()
            self.timings["dest_commit_secs"] += time.perf_counter() - t0
        except psycopg.Error as exc:
            raise _dest_error(self._where(), exc) from None
        faults.hit("dest.committed")
        self._staged = False

    def _check_no_dependents(self) -> None:
        """A replace drops the old table: refuse up front, naming them, when views or
        foreign keys depend on it (DROP would fail, and CASCADE would destroy them)."""
        rel = qualified(self.schema_name, self.table_name)
        views = [r[0] for r in self.conn.execute(
            "SELECT DISTINCT v.oid::regclass::text FROM pg_depend d "
            "JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class "
            "WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %s::regclass "
            "AND v.oid <> d.refobjid ORDER BY 1", (rel,))]
        fks = [r[0] for r in self.conn.execute(
            "SELECT conname || ' on ' || conrelid::regclass::text FROM pg_constraint "
            "WHERE contype = 'f' AND confrelid = %s::regclass AND conrelid <> confrelid "
            "ORDER BY 1", (rel,))]
        if views or fks:
            what = "; ".join(filter(None, [
                f"views {', '.join(views)} depend on it" if views else "",
                f"foreign keys {', '.join(fks)} reference it" if fks else ""]))
            raise DestinationError(
                f"{self._where()}replace cannot swap in a new {self.schema_name}."
                f"{self.table_name}: {what} (drop and recreate them around the load, or use "
                "write_mode append or upsert)")

    def _add_primary_key(self, table: str, constraint_base: str) -> None:
        cols = ", ".join(quote_ident(c) for c in self._primary_key)
        name = quote_ident(derived_name(constraint_base, "_pkey"))
        self.conn.execute(
            f"ALTER TABLE {qualified(self.schema_name, table)} ADD CONSTRAINT {name} "
            f"PRIMARY KEY ({cols})")

    def _place_staging(self) -> None:
        conn = self.conn
        stage = self._load_rel
        target = qualified(self.schema_name, self.table_name)
        exists = table_exists(conn, self.schema_name, self.table_name)
        if self.cfg.write_mode != "replace" and exists:
            self._move_staged(drop=True)
            return
        if (exists and self.rows_written == 0 and not self.cfg.allow_empty_replace
                and not conn.execute(f"SELECT EXISTS (SELECT 1 FROM {stage})").fetchone()[0]):
            has_rows = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {target})").fetchone()[0]
            if has_rows:
                raise DestinationError(
                    f"{self._where()}the source returned no rows; refusing to replace the "
                    f"non-empty table {self.schema_name}.{self.table_name} "
                    "(set destination.allow_empty_replace: true to allow it)")
        if self._primary_key:
            self._add_primary_key(self._load_table, self._load_table)
        if exists:
            self._check_no_dependents()
            conn.execute(f"DROP TABLE {target}")
        conn.execute(f"ALTER TABLE {stage} RENAME TO {quote_ident(self.table_name)}")
        if self._primary_key:
            old = quote_ident(derived_name(self._load_table, "_pkey"))
            new = quote_ident(derived_name(self.table_name, "_pkey"))
            conn.execute(f"ALTER TABLE {target} RENAME CONSTRAINT {old} TO {new}")

    def _move_staged(self, drop: bool) -> None:
        """Move the staged rows into the target with one set-based statement, and save the
        cursor they reach, in the current transaction."""
        stage = self._load_rel
        done = None if drop else self._complete_rows(stage)
        if self.incremental:
            self._save_cursor(stage, done)
        self.conn.execute(self._move_sql(stage, qualified(self.schema_name, self.table_name),
                                         done))
        if drop:
            self.conn.execute(f"DROP TABLE {stage}")
        elif done:
            self.conn.execute(f"DELETE FROM {stage} WHERE {done}")
        else:
            self.conn.execute(f"TRUNCATE {stage}")

    def _complete_rows(self, stage: str) -> str | None:
        """At a checkpoint of an incremental stream without a tie-breaker, the rows of the
        highest cursor value read so far may go on in the rest of the stream, and the next
        run reads only ``cursor > last``: the condition selecting the rows below it (None:
        every staged row). Reads are in cursor order with NULLs last, so once a NULL cursor
        is staged every row is complete."""
        if not self.incremental or self.incremental[2] is not None:
            return None
        c = quote_ident(self.incremental[1])
        top, top_type, has_null = self.conn.execute(
            f"SELECT max({c})::text, pg_typeof(max({c}))::text, bool_or({c} IS NULL) "
            f"FROM {stage}").fetchone()
        if top is None or has_null:
            return None
        return f"{c} < {psycopg.sql.Literal(top).as_string(self.conn)}::{top_type}"

    def _move_sql(self, stage: str, target: str, where: str | None = None) -> str:
        cols = self._cols
        where = f" WHERE {where}" if where else ""
        if self.cfg.write_mode != "upsert":
            return f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage}{where}"
        pk = ", ".join(quote_ident(c) for c in self._primary_key)
        rest = [n for n in self._names if n not in self._primary_key]
        # a row equal byte for byte (*<>, any column type) is not rewritten: an upsert of 1M
        # unchanged bench_events rows took 8.5 s instead of 15.2 s (2 runs each)
        action = ("DO UPDATE SET " + ", ".join(
            f"{quote_ident(n)} = EXCLUDED.{quote_ident(n)}" for n in rest)
            + f" WHERE {_TARGET_ALIAS} *<> EXCLUDED") if rest else "DO NOTHING"
        return (f"INSERT INTO {target} AS {_TARGET_ALIAS} ({cols}) SELECT DISTINCT ON ({pk}) "
                f"{cols} FROM {stage}{where} ORDER BY {pk}, {quote_ident(_SEQ_COLUMN)} DESC "
                f"ON CONFLICT ({pk}) {action}")

    def _save_cursor(self, stage: str, where: str | None) -> None:
        pipeline, cursor, tie = self.incremental
        # order by the stage's columns (s.col), not by the ::text outputs of the same name
        order = f"s.{quote_ident(cursor)} DESC" + (f", s.{quote_ident(tie)} DESC" if tie else "")
        tie_sql = f"s.{quote_ident(tie)}::text" if tie else "NULL"
        row = self.conn.execute(
            f"SELECT s.{quote_ident(cursor)}::text, {tie_sql} FROM {stage} AS s "
            f"WHERE s.{quote_ident(cursor)} IS NOT NULL{' AND ' + where if where else ''} "
            f"ORDER BY {order} LIMIT 1").fetchone()
        if row is not None:
            self.new_cursor = cursors.Cursor(row[0], row[1])
            cursors.save(self.conn, self.schema_name, pipeline, self.stream_name, self.new_cursor)

    def abort(self) -> None:
        """Undo everything this stream did: roll back, and drop a committed staging table."""
        for ld in self.loaders:
            ld.abort()
        for conn in self._other_conns():
            if not conn.closed:
                try:
                    conn.rollback()
                except psycopg.Error:
                    pass
        if self.conn is None or self.conn.closed:
            return
        try:
            self.conn.rollback()
            # a ranged load keeps its staging table to resume
            if self._staged and self._stage_committed and self.progress is None:
                self.conn.execute(
                    f"DROP TABLE IF EXISTS {self._load_rel}")
                self.conn.commit()
        except psycopg.Error:
            pass

    def close(self) -> None:
        """Close every connection."""
        for conn in self._other_conns():
            conn.close()
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _other_conns(self) -> list[psycopg.Connection]:
        """The shard and range-worker connections (each once)."""
        conns = {id(c): c for c in [*(ld.conn for ld in self.loaders), *self._worker_conns]}
        conns.pop(id(self.conn), None)
        return list(conns.values())

    def _where(self) -> str:
        return f"stream {self.stream_name} → {self.schema_name}.{self.table_name}: "


class RangeWriter:
    """One worker's writes in a ranged load: a loader per range, each range committed
    with its progress mark by ``end_range``."""

    def __init__(self, dest: PostgresDestination, conn: psycopg.Connection) -> None:
        self.dest, self.conn = dest, conn
        self.loader: Loader | None = None

    def _current(self) -> Loader:
        if self.loader is None:  # started lazily: an empty range commits just its mark
            self.loader = self.dest._new_loader(self.conn)
        return self.loader

    def write(self, batch: pa.RecordBatch) -> None:
        """Encode and send one batch."""
        self._current().write(batch)

    def write_raw(self, chunk: bytearray) -> int:
        """Send a chunk of the range's COPY binary stream; returns its tuples."""
        return self._current().write_raw(chunk)

    def end_range(self, index: int) -> None:
        """Commit range ``index`` with its mark."""
        self.dest.commit_range(self.loader, self.conn, index)
        self.loader = None

    def finish(self) -> None:
        """Every range of this worker is committed by now: nothing is left to do."""
