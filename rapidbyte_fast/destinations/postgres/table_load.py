"""One stream's load into Postgres, as planned by its ``WriteSpec``.

The load's main connection runs the strategy's DDL and the final commit. Committed once
(``commit == "once"``), the one writer shares that connection and the whole stream is one
transaction, or one per checkpoint of a merge. Committed per range, every worker's writer
has its own connection and commits each key range by itself: with its progress mark when
the load is resumable, else into a staging table that the final commit moves or swaps in.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable

import psycopg

from ... import faults
from ...pgconn import connect
from ...pgtypes import describe_table, field_pg_type, quote_ident, table_exists, target_encoding
from ...state import cursors, dlq, progress
from .ddl import column_list
from .loader import Loader, dest_error
from ...row_guard import Rejects
from .spec import WriteSpec
from .strategies import STRATEGIES

if TYPE_CHECKING:
    import pyarrow as pa


_log = logging.getLogger("rapidbyte_fast")

#: The advisory lock class (first key) under which a load creates its schema's shared objects.
SHARED_DDL_LOCK = 0x7262


class TableLoad:
    """Loads one stream: ``open``, then each worker's ``writer``, then ``commit`` (or
    ``abort``), then ``close``."""

    def __init__(self, endpoint: str, spec: WriteSpec, pg_cfg, evolution,
                 before_commit: Callable[[psycopg.Connection], None] | None = None,
                 rejects: Rejects | None = None) -> None:
        self.endpoint, self.spec, self.pg = endpoint, spec, pg_cfg
        #: where rows the server refuses go (on_data_error skip|dlq); None: they fail the load
        self.rejects = rejects
        #: runs in each transaction that commits rows, just before the commit (e.g. marking
        #: the attempt's dead letters committed with the rows)
        self.before_commit = before_commit
        self.strategy = STRATEGIES[spec.strategy](spec, evolution, pg_cfg)
        self.conn: psycopg.Connection | None = None
        self.timings = {"dest_connect_secs": 0.0, "dest_commit_secs": 0.0, "dest_ddl_secs": 0.0}
        self.loaders: list[Loader] = []
        self.checkpoints = 0
        self._conns: list[psycopg.Connection] = []
        self._wp = None
        self._cols = ""
        self._pg_types: list[str] = []
        self._ck_mark = (0, 0, 0.0)
        #: what ``open`` decided about the columns, for ``attach`` elsewhere
        self.prepared: tuple | None = None
        #: rows of ranges another attempt had committed first (rolled back here)
        self.discarded_rows = 0

    @property
    def rows_written(self) -> int:
        return sum(ld.rows_written for ld in self.loaders) - self.discarded_rows

    @property
    def bytes_written(self) -> int:
        return sum(ld.bytes_written for ld in self.loaders)

    @property
    def copy_format(self) -> str:
        return self.loaders[0].copy_format if self.loaders else ""

    def all_timings(self) -> dict[str, float]:
        """Destination timings with the loaders' summed in."""
        out = dict(self.timings)
        for ld in self.loaders:
            for k, v in ld.timings.items():
                out[k] = out.get(k, 0.0) + v
        return out

    def _connect(self) -> psycopg.Connection:
        t0 = time.perf_counter()
        conn = connect(self.endpoint, f"destination for stream {self.spec.stream}")
        conn.autocommit = False
        self.timings["dest_connect_secs"] += time.perf_counter() - t0
        self._conns.append(conn)
        return conn

    def open(self, schema: pa.Schema) -> None:
        """Prepare the table to load into (the strategy's DDL)."""
        self.conn = self._connect()
        t0 = time.perf_counter()
        try:
            self._shared_objects(self.conn)
            schema, target_types = self.strategy.prepare(self.conn, schema)
            self.attach((schema, target_types,
                         self._load_types(schema, target_types is not None)))
            if self.spec.commit == "per_range":
                self.conn.commit()  # other connections must see the staging table
                self.strategy.stage_committed = self.spec.staging is not None
        except psycopg.Error as exc:
            raise dest_error(self.spec.prefix, exc) from None
        finally:
            self.timings["dest_ddl_secs"] += time.perf_counter() - t0
        self._ck_mark = (0, 0, time.monotonic())

    def _shared_objects(self, conn: psycopg.Connection) -> None:
        """The schema and the state tables every stream into it shares, when missing, in a
        short transaction of their own: streams loading at once would otherwise wait on
        (or collide with) each other's uncommitted DDL."""
        spec = self.spec
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                     (SHARED_DDL_LOCK, spec.schema))
        # (only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database)
        if conn.execute("SELECT to_regnamespace(%s) IS NULL",
                        (quote_ident(spec.schema),)).fetchone()[0]:
            conn.execute(f"CREATE SCHEMA {quote_ident(spec.schema)}")
        if spec.cursor is not None and not table_exists(conn, spec.schema, cursors.STATE_TABLE):
            cursors.ensure_table(conn, spec.schema)
        if self.rejects is not None and self.rejects.letters is not None:
            dlq.ensure_table(conn, spec.schema)
        if spec.ranged is not None and not table_exists(conn, spec.schema,
                                                        progress.PROGRESS_TABLE):
            progress.ensure_table(conn, spec.schema)
        conn.commit()

    def attach(self, prepared: tuple) -> None:
        """Load into a table another process's ``open`` prepared (its picklable
        ``prepared``): range writers of a distributed load, which run no DDL."""
        schema, target_types, pg_types = prepared
        self.prepared = prepared
        # (raw COPY bytes are not encoded: a passthrough load never builds Arrow types)
        self._wp = None if self.spec.raw else target_encoding(schema, target_types)
        self._pg_types = list(pg_types)
        self._cols = column_list(schema.names)

    def _load_types(self, schema: pa.Schema, into_existing: bool) -> list[str]:
        if not into_existing:
            return [field_pg_type(f) for f in schema]
        have = {c.name: c.pg_type for c in
                describe_table(self.conn, self.spec.schema, self.spec.table).columns}
        return [have[n] for n in schema.names]

    def new_loader(self, conn: psycopg.Connection, continuation: bool = False) -> Loader:
        """A loader of the load table on ``conn``."""
        loader = Loader(conn, self.spec.prefix, self.pg, self.strategy.load_rel, self._cols,
                        self._wp, self.spec.raw, continuation=continuation,
                        pg_types=self._pg_types, rejects=self.rejects)
        self.loaders.append(loader)
        return loader

    def writer(self) -> "Writer":
        """A worker's writer: on the main connection when committed once, else its own."""
        if self.spec.commit == "once":
            return OnceWriter(self)
        return RangeWriter(self, self._connect())

    def checkpoint(self, loader: Loader) -> Loader:
        """Commit what is loaded so far (rows and cursor together); returns the loader
        that goes on."""
        loader.finish(checkpoint=True)
        t0 = time.perf_counter()
        try:
            self.strategy.checkpoint(self.conn)
            if self.before_commit is not None:
                self.before_commit(self.conn)
            faults.hit("dest.checkpoint")
            self.conn.commit()
            self.strategy.stage_committed = True
            faults.hit("dest.checkpointed")
            loader = self.new_loader(self.conn, continuation=True)
        except psycopg.Error as exc:
            raise dest_error(self.spec.prefix, exc) from None
        self.timings["dest_commit_secs"] += time.perf_counter() - t0
        self.checkpoints += 1
        self._ck_mark = (self.rows_written, self.bytes_written, time.monotonic())
        return loader

    def checkpoint_due(self) -> bool:
        """Mid-stream commits are safe only into a staging table whose rows move with the
        cursor (incremental) or idempotently (upsert)."""
        every_bytes, every_rows, every_secs = self.spec.checkpoint_every
        rows0, bytes0, t0 = self._ck_mark
        return bool((every_bytes and self.bytes_written - bytes0 >= every_bytes)
                    or (every_rows and self.rows_written - rows0 >= every_rows)
                    or (every_secs and time.monotonic() - t0 >= every_secs))

    def commit_range(self, loader: Loader | None, conn: psycopg.Connection, index: int) -> None:
        """Commit range ``index``: its rows (``loader``, None when it had none) and, when the
        load is resumable, its mark, in one transaction."""
        t0 = time.perf_counter()
        rows = 0
        if loader is not None:
            loader.finish()
            rows = loader.rows_written
        spec = self.spec
        try:
            if spec.ranged is not None and not progress.mark_done(
                    conn, spec.schema, spec.pipeline, spec.stream, index, rows):
                conn.rollback()
                self.discarded_rows += rows
                _log.warning("%skey range %d was committed by another attempt; this copy "
                             "is rolled back", spec.prefix, index)
                return
            faults.hit("dest.range_commit")
            conn.commit()
        except psycopg.Error as exc:
            raise dest_error(spec.prefix, exc) from None
        faults.hit("dest.range_committed")
        self.timings["dest_commit_secs"] += time.perf_counter() - t0
        self.checkpoints += spec.ranged is not None

    def ranged_rows(self) -> int:
        """The rows a resumable load's committed ranges hold, by every attempt (a task
        lost after its commit never reports its rows)."""
        spec = self.spec
        try:
            record = progress.load(self.conn, spec.schema, spec.pipeline, spec.stream)
        except psycopg.Error as exc:
            raise dest_error(spec.prefix, exc) from None
        return record.rows_done if record is not None else 0

    def commit(self, last: Loader | None = None, rows: int | None = None) -> None:
        """Finish the load (``last``: the once-committed loader), put the rows in place, and
        commit (``rows``: those written by writers elsewhere, when not by this load's)."""
        if last is not None:
            last.finish()
        conn = self.conn
        try:
            t0 = time.perf_counter()
            self.strategy.finish(conn, self.rows_written if rows is None else rows)
            if self.spec.ranged is not None:
                progress.reset(conn, self.spec.schema, self.spec.pipeline, self.spec.stream)
            if self.before_commit is not None:
                self.before_commit(conn)
            self.timings["dest_ddl_secs"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            faults.hit("dest.commit")
            conn.commit()
            self.timings["dest_commit_secs"] += time.perf_counter() - t0
        except psycopg.Error as exc:
            raise dest_error(self.spec.prefix, exc) from None
        faults.hit("dest.committed")

    def abort(self) -> None:
        """Undo what is not committed; drop a committed staging table that cannot be
        resumed."""
        for ld in self.loaders:
            ld.abort()
        for conn in self._conns:
            if not conn.closed:
                try:
                    conn.rollback()
                except psycopg.Error:
                    pass
        if self.conn is None or self.conn.closed:
            return
        try:
            self.strategy.abort(self.conn)
        except psycopg.Error:
            pass

    def close(self) -> None:
        """Close every connection."""
        for conn in self._conns:
            conn.close()


class OnceWriter:
    """The one writer of a load committed once (with checkpoints of a merge)."""

    def __init__(self, load: TableLoad) -> None:
        self.load = load
        self.loader = load.new_loader(load.conn)

    def write(self, batch: pa.RecordBatch) -> None:
        """Encode and send one batch."""
        self.loader.write(batch)
        self._maybe_checkpoint()

    def write_raw(self, chunk: bytearray) -> int:
        """Send a chunk of the source's COPY binary stream; returns its tuples."""
        n = self.loader.write_raw(chunk)
        self._maybe_checkpoint()
        return n

    def _maybe_checkpoint(self) -> None:
        # (the final commit follows the end of a passthrough stream)
        if self.loader.stream_ended or not self.load.checkpoint_due():
            return
        self.loader = self.load.checkpoint(self.loader)

    def end_range(self, index: int) -> None:
        """One piece: nothing commits before the end."""

    def finish(self) -> Loader:
        """The loader the final commit finishes."""
        return self.loader


class RangeWriter:
    """One worker's writes, on its own connection: a loader per range, each range
    committed by ``end_range``."""

    def __init__(self, load: TableLoad, conn: psycopg.Connection) -> None:
        self.load, self.conn = load, conn
        self.loader: Loader | None = None

    def _current(self) -> Loader:
        if self.loader is None:  # started lazily: an empty range commits just its mark
            self.loader = self.load.new_loader(self.conn)
        return self.loader

    def write(self, batch: pa.RecordBatch) -> None:
        """Encode and send one batch."""
        self._current().write(batch)

    def write_raw(self, chunk: bytearray) -> int:
        """Send a chunk of the range's COPY binary stream; returns its tuples."""
        return self._current().write_raw(chunk)

    def committed(self) -> frozenset[int]:
        """The ranges already marked committed (a retried task skips them)."""
        spec = self.load.spec
        if spec.ranged is None:
            return frozenset()
        try:
            record = progress.load(self.conn, spec.schema, spec.pipeline, spec.stream)
            self.conn.commit()
        except psycopg.Error as exc:
            raise dest_error(spec.prefix, exc) from None
        return record.done if record is not None else frozenset()

    def end_range(self, index: int) -> None:
        """Commit range ``index`` (with its mark when resumable)."""
        self.load.commit_range(self.loader, self.conn, index)
        self.loader = None

    def finish(self) -> None:
        """Every range of this worker is committed by now: nothing is left to do."""


Writer = OnceWriter | RangeWriter
