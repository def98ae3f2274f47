"""Change reader: the changes of a logical replication slot (pgoutput) as Arrow windows.

``ChangeReader`` makes sure the publication and the slot exist (a new slot exports a
snapshot, so that a bootstrap full load reads exactly the data before the slot's
consistent point), then reads the changes after the slot's confirmed position without
consuming them::

    COPY (SELECT lsn, data FROM pg_logical_slot_peek_binary_changes(slot, NULL, n,
          'proto_version', '1', 'publication_names', pub, 'binary', 'true'))
    TO STDOUT (FORMAT binary)

The decoder kernel turns the messages into per-table COPY-binary change rows and
``copy_decode`` turns those into Arrow batches (see ``_py/pgoutput.py`` for the columns).
A window holds whole transactions, at most ``max_window_changes`` changes (the first
transaction boundary after them) and ``max_window_bytes`` of decoded rows; one transaction
larger than that is refused with the setting to raise. Reading again without ``advance``
returns the same window: call ``advance(window.end_lsn)`` only after the destination
committed the window (and recorded its ``end_lsn``), so a crash in between re-reads it.

Memory: the read buffer (``READ_CHUNK_BYTES``), the window's change rows (at most
``max_window_bytes``, checked per change) and, once the window is complete, its Arrow
batches (about as large as the rows, built one table at a time while its rows are freed).
The server materialises each peek (work_mem, then temporary files) before sending it.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import psycopg
import pyarrow as pa
from psycopg import pq, sql

from ... import load_errors
from ..._impl import copy_decode, pgoutput
from ...column_plan import ColumnSinks, Kind
from ...errors import DataError, SourceError
from ...pgconn import connect
from ...pgtypes import describe_table, qualified, quote_ident, split_table
from ...redact import redact
from ..postgres.reader import READ_CHUNK_BYTES, _wait_result
from . import protocol as P
from .relations import RelationPlan, identity_problem, resolve

_SLOT_NAME = re.compile(r"[a-z0-9_]{1,63}")
#: The SQL state of "can no longer get changes from replication slot" (invalidated slot).
_PREREQUISITE = "55000"


@dataclass
class TableChanges:
    """The changes of one table in a window, under one column layout."""

    schema: str
    table: str
    key: tuple[str, ...]
    arrow_schema: pa.Schema
    batches: list[pa.RecordBatch]
    #: the table's columns (names, types) differ from those this reader last reported for
    #: it: the apply runs schema evolution before loading these batches
    schema_changed: bool

    @property
    def rows(self) -> int:
        return sum(b.num_rows for b in self.batches)


@dataclass
class ChangeWindow:
    """Whole transactions read from the slot; ``advance(end_lsn)`` after applying them."""

    end_lsn: int                 # end of the last commit record: where the slot advances to
    last_commit_lsn: int
    transactions: int
    changes: int
    bytes: int                   # decoded change rows (COPY binary) before Arrow
    tables: list[TableChanges]
    origins: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class SlotCreated:
    """A new slot: its consistent point and the snapshot a bootstrap load must read in."""

    consistent_lsn: int
    snapshot: str


@dataclass(frozen=True)
class SlotStatus:
    """What ``state show`` reports of a slot."""

    slot: str
    active: bool
    wal_status: str | None
    confirmed_lsn: int | None
    restart_lsn: int | None
    lag_bytes: int | None        # WAL written since the confirmed position
    retained_bytes: int | None   # WAL the server keeps for this slot


class _TextModeNeeded(Exception):
    """Internal: a relation has a column that is carried as text; read in text mode."""


class ChangeReader:
    """Reads the changes of ``tables`` from one slot and publication of one database."""

    def __init__(self, conninfo: str, publication: str, slot: str, tables: list[str],
                 default_schema: str = "public", binary: bool | None = None,
                 max_window_bytes: int = 256 << 20, max_window_changes: int = 1_000_000,
                 max_batch_rows: int = 100_000, max_batch_bytes: int = 64 << 20,
                 budget_setting: str = "max_window_bytes") -> None:
        if not _SLOT_NAME.fullmatch(slot):
            raise SourceError(f"replication slot name {slot!r}: use 1-63 lower-case letters, "
                              "digits and underscores")
        self.conninfo = conninfo
        self.publication = publication
        self.slot = slot
        self.tables = [split_table(t, default_schema) for t in tables]
        self.binary = binary
        self.max_window_bytes = max_window_bytes
        self.max_window_changes = max_window_changes
        self.max_batch_rows = max_batch_rows
        self.max_batch_bytes = max_batch_bytes
        self.budget_setting = budget_setting
        self.conn: psycopg.Connection | None = None
        #: catalog look-ups while ``conn`` is busy streaming a window
        self._catalog: psycopg.Connection | None = None
        self._snapshot_conn: psycopg.Connection | None = None
        self._plans: dict[int, RelationPlan] = {}
        self._reported: dict[tuple[str, str], tuple] = {}
        self.timings = {"source_fetch_secs": 0.0, "source_decode_secs": 0.0}

    # ------------------------------------------------------------------ set-up

    def open(self) -> None:
        """Connect, check the server and the tables, create the publication if missing."""
        self.conn = connect(self.conninfo, f"change capture slot {self.slot}")
        self.conn.execute("SET bytea_output = hex")
        self._catalog = connect(self.conninfo, f"change capture slot {self.slot} (catalog)")
        level = self.conn.execute("SHOW wal_level").fetchone()[0]
        if level != "logical":
            raise SourceError(f"change capture needs wal_level = logical, the server has "
                              f"{level}: ALTER SYSTEM SET wal_level = logical; then restart it")
        as_text = False
        for schema, table in self.tables:
            info = describe_table(self.conn, schema, table)
            replident = self.conn.execute(
                "SELECT relreplident FROM pg_class WHERE oid = %s::regclass",
                (qualified(schema, table),)).fetchone()[0]
            problem = identity_problem(qualified(schema, table), replident, info.primary_key)
            if problem:
                raise SourceError(problem)
            as_text = as_text or any(c.as_text for c in info.columns)
        if self.binary is None:
            version = self.conn.info.server_version
            self.binary = version >= 140000 and not as_text
        self._ensure_publication()

    def _ensure_publication(self) -> None:
        assert self.conn is not None
        rels = sql.SQL(", ").join(sql.SQL(qualified(s, t)) for s, t in self.tables)
        pub = sql.SQL(quote_ident(self.publication))
        exists = self.conn.execute("SELECT puballtables FROM pg_publication WHERE pubname = %s",
                                   (self.publication,)).fetchone()
        try:
            if exists is None:
                self.conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(pub, rels))
                return
            if exists[0]:
                return
            have = set(self.conn.execute(
                "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
                (self.publication,)).fetchall())
            missing = [(s, t) for s, t in self.tables if (s, t) not in have]
            if missing:
                self.conn.execute(sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                    pub, sql.SQL(", ").join(sql.SQL(qualified(s, t)) for s, t in missing)))
        except psycopg.Error as exc:
            raise SourceError(f"publication {self.publication}: "
                              f"{' '.join(str(exc).split())}").with_sqlstate(
                exc.sqlstate) from None

    def slot_exists(self) -> bool:
        """True when the slot exists (a lost one included)."""
        assert self.conn is not None
        return self.conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
                                 (self.slot,)).fetchone() is not None

    def create_slot(self) -> SlotCreated:
        """Create the slot and export its snapshot, held until ``release_snapshot``: a
        bootstrap load reads in it (``SET TRANSACTION SNAPSHOT``) and the changes after
        ``consistent_lsn`` are exactly those the load did not see."""
        self.release_snapshot()
        try:
            repl = psycopg.connect(self.conninfo, autocommit=True, replication="database")
        except psycopg.OperationalError as exc:
            raise SourceError(f"slot {self.slot}: cannot open a replication connection: "
                              f"{redact(' '.join(str(exc).split()))}") from None
        res = repl.pgconn.exec_(
            f"CREATE_REPLICATION_SLOT {self.slot} LOGICAL pgoutput EXPORT_SNAPSHOT".encode())
        if res.status != pq.ExecStatus.TUPLES_OK:
            msg = (res.error_message or b"").decode("utf-8", "replace")
            repl.close()
            raise SourceError(f"slot {self.slot}: cannot create it: {' '.join(msg.split())}")
        consistent, snapshot = res.get_value(0, 1).decode(), res.get_value(0, 2).decode()
        self._snapshot_conn = repl
        return SlotCreated(P.parse_lsn(consistent), snapshot)

    def release_snapshot(self) -> None:
        """Close the connection that keeps the exported snapshot valid."""
        if self._snapshot_conn is not None:
            self._snapshot_conn.close()
            self._snapshot_conn = None

    def status(self) -> SlotStatus | None:
        """Lag and retained WAL of the slot (None when it does not exist)."""
        assert self.conn is not None
        row = self.conn.execute(
            "SELECT active, wal_status, confirmed_flush_lsn::text, restart_lsn::text, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
            "FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)).fetchone()
        if row is None:
            return None
        active, wal_status, confirmed, restart, lag, retained = row
        return SlotStatus(self.slot, active, wal_status,
                          P.parse_lsn(confirmed) if confirmed else None,
                          P.parse_lsn(restart) if restart else None, lag, retained)

    def _check_slot(self) -> None:
        st = self.status()
        if st is None:
            raise SourceError(f"replication slot {self.slot} does not exist: it was dropped; "
                              "run the stream's bootstrap again to create it with a new full "
                              "load")
        if st.wal_status == "lost":
            raise SourceError(self._lost_text())

    def _lost_text(self) -> str:
        return (f"replication slot {self.slot} was invalidated (the server removed WAL it "
                "still needed, see max_slot_wal_keep_size): changes are lost; drop it "
                f"(SELECT pg_drop_replication_slot('{self.slot}')) and run the stream's "
                "bootstrap again for a new full load")

    def advance(self, lsn: int) -> int:
        """Move the slot's confirmed position to ``lsn`` (a window's ``end_lsn``); call only
        after the destination committed the window. A position the slot already passed is
        left alone (a restart advancing to the LSN its destination recorded). Returns the
        slot's position."""
        assert self.conn is not None
        self._check_slot()
        st = self.status()
        if st is not None and st.confirmed_lsn is not None and lsn <= st.confirmed_lsn:
            return st.confirmed_lsn
        try:
            row = self.conn.execute(
                "SELECT end_lsn::text FROM pg_replication_slot_advance(%s, %s)",
                (self.slot, P.lsn_text(lsn))).fetchone()
        except psycopg.Error as exc:
            raise SourceError(f"slot {self.slot}: cannot advance to {P.lsn_text(lsn)}: "
                              f"{' '.join(str(exc).split())}").with_sqlstate(
                exc.sqlstate) from None
        return P.parse_lsn(row[0])

    def close(self) -> None:
        """Close every connection (an exported snapshot with them)."""
        self.release_snapshot()
        for conn in (self.conn, self._catalog):
            if conn is not None:
                conn.close()
        self.conn = self._catalog = None

    # ------------------------------------------------------------------ reading

    def read_window(self) -> ChangeWindow | None:
        """The next window of changes after the slot's confirmed position (None: none)."""
        self._check_slot()
        try:
            return self._read_window()
        except _TextModeNeeded:
            self.binary = False  # stays in text mode: the table keeps its text-only column
            return self._read_window()

    def _peek_sql(self) -> bytes:
        assert self.conn is not None
        q = sql.SQL(
            "COPY (SELECT lsn, data FROM pg_logical_slot_peek_binary_changes({}, NULL, {}, "
            "'proto_version', '1', 'publication_names', {}, 'binary', {})) "
            "TO STDOUT (FORMAT binary)").format(
            sql.Literal(self.slot), sql.Literal(self.max_window_changes),
            sql.Literal(quote_ident(self.publication)),
            sql.Literal("true" if self.binary else "false"))
        return q.as_bytes(self.conn)

    def _read_window(self) -> ChangeWindow | None:
        assert self.conn is not None
        pgconn = self.conn.pgconn
        dec = pgoutput.Decoder()
        segments: list[tuple[RelationPlan, bytearray]] = []
        current: dict[int, int] = {}   # relation OID -> index of its open segment
        origins: set[str] = set()
        pgconn.send_query(self._peek_sql())
        res = _wait_result(pgconn)   # the server decodes the whole peek first: GIL released
        if res is None or res.status != pq.ExecStatus.COPY_OUT:
            self._raise_server(pgconn, res)
        buf = bytearray()
        pos = 0
        header = False
        done = finished = cut = False
        try:
            while not (finished or cut):
                if not done:
                    t0 = time.perf_counter()
                    _, done = copy_decode.read_copy(pgconn, buf, READ_CHUNK_BYTES)
                    self.timings["source_fetch_secs"] += time.perf_counter() - t0
                if not header:
                    hlen = copy_decode.parse_header(buf)
                    if not hlen:
                        if done:
                            break
                        continue
                    pos, header = hlen, True
                t0 = time.perf_counter()
                while True:
                    pos, ev = dec.feed(buf, pos, len(buf), self.max_window_bytes,
                                       self.max_window_changes)
                    if ev == P.EV_MORE:
                        break
                    if ev == P.EV_RELATION:
                        msg = bytes(buf[dec.msg_start:dec.msg_end])
                        if not self._relation(dec, P.parse_relation(msg, dec.msg_lsn),
                                              segments, current):
                            dec.rollback()
                            cut = True
                            break
                    elif ev == P.EV_ORIGIN:
                        origins.add(P.parse_origin(bytes(buf[dec.msg_start:dec.msg_end]),
                                                   dec.msg_lsn)[1])
                    elif ev == P.EV_LIMIT:
                        cut = True
                        break
                    elif ev == P.EV_TOO_LARGE:
                        if dec.window_txns == 0:
                            raise self._too_large(dec)
                        dec.rollback()
                        cut = True
                        break
                    elif ev == P.EV_END:
                        finished = True
                        break
                self.timings["source_decode_secs"] += time.perf_counter() - t0
                del buf[:pos]
                pos = 0
                if done and not (finished or cut):
                    break
        except BaseException:
            self._abandon(pgconn, done)
            raise
        if cut:
            self._abandon(pgconn, done)
        else:
            while not done:   # only the end of the COPY is left after its trailer
                done = copy_decode.read_copy(pgconn, buf, 1)[1]
            self._finish(pgconn)
            if not finished:
                raise SourceError(f"slot {self.slot}: the change stream ended without a "
                                  "COPY trailer")
        if dec.window_txns == 0:
            return None
        t0 = time.perf_counter()
        tables = [self._table_changes(rp, rows) for rp, rows in segments if len(rows)]
        self.timings["source_decode_secs"] += time.perf_counter() - t0
        return ChangeWindow(dec.end_lsn, dec.last_commit_lsn, dec.window_txns,
                            dec.window_changes, dec.window_bytes, tables, origins)

    def _relation(self, dec, rel: P.Relation, segments: list, current: dict[int, int]) -> bool:
        """Register a Relation message with the decoder; False when the window must end
        before the open transaction (the table's columns changed after earlier ones)."""
        if (rel.schema, rel.name) not in self.tables:
            n = len(rel.columns)   # not ours: framed and skipped
            dec.set_relation(rel.oid, f"{rel.schema}.{rel.name}",
                             tuple(c.name for c in rel.columns), bytes([Kind.TEXT]) * n,
                             bytes(n), (0,) * n, bytes(n), (), None)
            return True
        rp = self._plans.get(rel.oid)
        if rp is None or rp.relation != rel:
            assert self._catalog is not None
            rp = resolve(self._catalog, rel)
            self._plans[rel.oid] = rp
        if self.binary and any(rp.text_only):
            raise _TextModeNeeded()
        seg = current.get(rel.oid)
        if seg is not None and segments[seg][0].relation == rel:
            rows = segments[seg][1]
        else:
            if seg is not None and len(segments[seg][1]) and dec.window_txns and dec.in_txn:
                return False   # the new layout starts the next window
            rows = bytearray()
            current[rel.oid] = len(segments)
            segments.append((rp, rows))
        plan = rp.plan
        n = len(rp.columns)
        dec.set_relation(rel.oid, rp.table, plan.names[:n], bytes(plan.kinds[:n]),
                         bytes(plan.elem_kinds[:n]), plan.elem_oids[:n], rp.text_only,
                         rp.key_index, rows)
        return True

    def _table_changes(self, rp: RelationPlan, rows: bytearray) -> TableChanges:
        plan, schema = rp.plan, rp.schema
        sinks = ColumnSinks(plan)
        batches = []
        pos, n = 0, len(rows)
        while pos < n:
            try:
                pos, _ = copy_decode.decode(plan, rows, pos, min(n, pos + self.max_batch_bytes),
                                            sinks, self.max_batch_rows - sinks.rows)
            except DataError as exc:
                raise load_errors.in_stream(exc, f"changes of table {rp.table}: ",
                                            sum(b.num_rows for b in batches)) from None
            if pos == n or sinks.rows >= self.max_batch_rows \
                    or sinks.nbytes() >= self.max_batch_bytes:
                batches.append(pa.RecordBatch.from_arrays(sinks.finish(), schema=schema))
        del rows[:]
        name = (rp.relation.schema, rp.relation.name)
        previous = self._reported.get(name)
        self._reported[name] = rp.signature()
        return TableChanges(rp.relation.schema, rp.relation.name, rp.key, schema, batches,
                            previous is not None and previous != rp.signature())

    def _too_large(self, dec) -> SourceError:
        table = next((rp.table for oid, rp in self._plans.items() if oid == dec.msg_oid), "?")
        return SourceError(
            f"slot {self.slot}: transaction {dec.xid} (commit LSN "
            f"{P.lsn_text(dec.commit_lsn)}) holds more than {self.max_window_bytes} bytes of "
            f"changes (table {table} passed the limit): one transaction is applied as one "
            f"window; raise {self.budget_setting} above the transaction's size")

    # ------------------------------------------------------------------ COPY plumbing

    def _abandon(self, pgconn: pq.PGconn, done: bool) -> None:
        """Stop a COPY that is still sending (the rest is read again next window)."""
        if pgconn.status != pq.ConnStatus.OK:
            return
        if not done:
            assert self.conn is not None
            self.conn.cancel_safe(timeout=5.0)
            scratch = bytearray()
            try:
                while not copy_decode.read_copy(pgconn, scratch, 1 << 20)[1]:
                    del scratch[:]
            except SourceError:
                return
        while pgconn.get_result() is not None:
            pass

    def _finish(self, pgconn: pq.PGconn) -> None:
        while (res := pgconn.get_result()) is not None:
            if res.status != pq.ExecStatus.COMMAND_OK:
                self._raise_server(pgconn, res)

    def _raise_server(self, pgconn: pq.PGconn, res: pq.PGresult | None) -> None:
        state = res.error_field(pq.DiagnosticField.SQLSTATE) if res is not None else None
        raw = (res.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) if res is not None
               else None) or pgconn.error_message
        msg = " ".join((raw or b"").decode("utf-8", "replace").split())
        while pgconn.get_result() is not None:
            pass
        if state and state.decode() == _PREREQUISITE and "can no longer" in msg:
            raise SourceError(self._lost_text())
        raise SourceError(f"slot {self.slot}: {msg or 'reading changes failed'}").with_sqlstate(
            state.decode() if state else None)
