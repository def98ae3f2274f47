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
larger than that is refused with the setting to raise. One peek (of up to
``max_window_changes`` changes) yields windows of about ``WINDOW_TARGET_BYTES`` while it
stays open: the server decodes the WAL from the slot's restart point on every peek, so a
peek per window would decode it again for each (a drain stages the windows of one peek
and commits them together: ``read_window(same_peek=True)`` reads on only in the open
peek). Call ``advance(window.end_lsn)`` only after the destination committed the window
(and recorded its ``end_lsn``): the slot moves
when the peek that holds it ends (or at ``close``), and a crash before re-reads from the
slot's position what the destination's position then skips.

Memory: the read buffer (``READ_CHUNK_BYTES``), the window's change rows (at most
``max_window_bytes``, checked per change) and, while the window is staged, one Arrow
batch of it: ``TableChanges.batches`` decodes the rows batch by batch as it is iterated
(800k changes in one window: peak RSS 314 MB with every batch built up front, the rows
and the batches about 100 MB each). A window's rows are freed by the next
``read_window``. The server materialises each peek (work_mem, then temporary files)
before sending it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import psycopg
from psycopg import pq, sql

from ... import load_errors
from ..._impl import copy_decode, pgoutput
from ...column_plan import ColumnSinks
from ...deferred import deferred
from ...errors import DataError, SourceError
from ...pgconn import connect
from ...pgtypes import describe_table, qualified, quote_ident, split_table
from ...pgconn import wait_result
from ..postgres.reader import READ_CHUNK_BYTES
from . import protocol as P
from . import slot as S
from .announced import CUT, TEXT_MODE, Announced, Segments, bind
from .relations import RelationPlan, identity_problem

# a bootstrap only creates the slot: pyarrow is imported by the first window's batches
pa = deferred("pyarrow")

#: The SQL state of "can no longer get changes from replication slot" (invalidated slot).
_PREREQUISITE = "55000"
# How a read of the change stream ended.
_ENDED, _FULL = "ended", "full"
#: A window ends at a commit soon after this many bytes of change rows (at most
#: ``max_window_bytes``; a window's first step may overshoot by a quarter of it). The rows
#: are held while the window is staged; a drain applies the windows of one peek in one
#: destination transaction, so their size no longer sets how often the apply passes over
#: the target. 800k changes of bench_events in one peek (python -m bench cdc --no-apitap,
#: load average 2.5-2.6): 32 MB windows drained in 12.36 s at a peak RSS of 153 MB, 64 MB
#: in 11.89 s at 184 MB (the issue's bound is 200 MB). Windows of one peek cost no more
#: reading; a peek per 32 MB window re-decoded the WAL from the slot's restart point each
#: time (read 5.4 s -> 21.3 s).
WINDOW_TARGET_BYTES = 32 << 20
#: The least input fed to the decoder at once while a window fills (per-call overhead).
_MIN_STEP = 8 << 10


@dataclass
class TableChanges:
    """The changes of one table in a window, under one column layout."""

    schema: str
    table: str
    key: tuple[str, ...]
    arrow_schema: pa.Schema
    batches: ChangeBatches
    #: the table's columns (names, types) differ from those this reader last reported for
    #: it: the apply runs schema evolution before loading these batches
    schema_changed: bool

    @property
    def rows(self) -> int:
        """The changes (decodes them)."""
        return sum(b.num_rows for b in self.batches)


class ChangeBatches:
    """A segment's change rows as Arrow batches of at most ``max_rows`` / ``max_bytes``,
    decoded as they are iterated (again on every iteration) until ``release``; a value the
    column cannot hold raises ``DataError`` then, naming the table, column and row."""

    def __init__(self, rp: RelationPlan, rows: bytearray, max_rows: int, max_bytes: int,
                 timings: dict[str, float]) -> None:
        self.rp, self._rows = rp, rows
        self.max_rows, self.max_bytes, self.timings = max_rows, max_bytes, timings

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        rows, rp = self._rows, self.rp
        assert rows is not None, "a window's batches are read before the next read_window"
        sinks = ColumnSinks(rp.plan)
        pos, n, done = 0, len(rows), 0
        while pos < n:
            t0 = time.perf_counter()
            try:
                pos, _ = copy_decode.decode(rp.plan, rows, pos, min(n, pos + self.max_bytes),
                                            sinks, self.max_rows - sinks.rows)
            except DataError as exc:
                raise load_errors.in_stream(exc, f"changes of table {rp.table}: ",
                                            done) from None
            batch = None
            if pos == n or sinks.rows >= self.max_rows or sinks.nbytes() >= self.max_bytes:
                batch = pa.RecordBatch.from_arrays(sinks.finish(), schema=rp.schema)
            self.timings["source_decode_secs"] += time.perf_counter() - t0
            if batch is not None:
                done += batch.num_rows
                yield batch

    def release(self) -> None:
        """Free the rows (the reader reads the next window)."""
        self._rows = None


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
    #: the last transaction's commit time, epoch seconds (the decoder has it: the window's
    #: batches need not be decoded again to find it)
    last_commit_time: float = 0.0


@dataclass
class _Stream:
    """An open peek: windows are cut from it at commits while it stays open."""

    dec: object
    flushed: int                  # the server's WAL flush position before the peek
    limit: int                    # the rows it asked for (upto_nchanges)
    buf: bytearray = field(default_factory=bytearray)
    header: bool = False
    done: bool = False
    ours: set[int] = field(default_factory=set)   # relation OIDs of ours it announced


class ChangeReader:
    """Reads the changes of ``tables`` from one slot and publication of one database."""

    def __init__(self, conninfo: str, publication: str, slot: str, tables: list[str],
                 default_schema: str = "public", binary: bool | None = None,
                 max_window_bytes: int = 256 << 20, max_window_changes: int = 1_000_000,
                 max_batch_rows: int = 100_000, max_batch_bytes: int = 64 << 20,
                 budget_setting: str = "max_window_bytes") -> None:
        self.conninfo = conninfo
        self.publication = publication
        self.slot = S.check_name(slot)
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
        self._announced = Announced(self.tables)
        #: after a read that found nothing: the WAL flush position before it, which the slot
        #: may advance to (``advance(reader.idle_lsn)``) so that a quiet publication on a
        #: busy server does not make the slot retain WAL without bound
        self.idle_lsn: int | None = None
        self.timings = {"source_fetch_secs": 0.0, "source_decode_secs": 0.0}
        #: the last window's batches, released by the next read
        self._held: list[ChangeBatches] = []
        self._stream: _Stream | None = None
        #: where ``advance`` asked the slot to go while a peek held it
        self._pending: int | None = None
        #: after a window whose peek returned fewer rows than it asked for: the flush
        #: position before that peek, all read (another peek: 0.85-1.0 s to find nothing
        #: and a 0.36-0.40 s advance, of a 15-19 s drain of python -m bench cdc)
        self.caught_up: int | None = None

    # ------------------------------------------------------------------ set-up

    def open(self) -> None:
        """Connect, check the server and the tables, create the publication if missing."""
        self.conn = connect(self.conninfo, f"source (change capture slot {self.slot})")
        self.conn.execute("SET bytea_output = hex")
        self._catalog = connect(self.conninfo,
                                f"source (change capture slot {self.slot}, catalog)")
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
            self.binary = self.conn.info.server_version >= 140000 and not as_text
        S.ensure_publication(self.conn, self.publication, self.tables)

    def slot_exists(self) -> bool:
        """True when the slot exists (a lost one included)."""
        assert self._catalog is not None
        return S.status(self._catalog, self.slot) is not None

    def create_slot(self) -> S.SlotCreated:
        """Create the slot and export its snapshot, held until ``release_snapshot``: a
        bootstrap load reads in it (``SET TRANSACTION SNAPSHOT``) and the changes after
        ``consistent_lsn`` are exactly those the load did not see."""
        self.release_snapshot()
        created, self._snapshot_conn = S.create(self.conninfo, self.slot)
        return created

    def release_snapshot(self) -> None:
        """Close the connection that keeps the exported snapshot valid."""
        if self._snapshot_conn is not None:
            self._snapshot_conn.close()
            self._snapshot_conn = None

    def status(self) -> S.SlotStatus | None:
        """Lag and retained WAL of the slot (None when it does not exist)."""
        assert self._catalog is not None
        return S.status(self._catalog, self.slot)

    @staticmethod
    def position_text(lsn: int) -> str:
        """A position as the destination stores it (``X/Y``)."""
        return P.lsn_text(lsn)

    @staticmethod
    def parse_position(text: str) -> int:
        """The LSN of a stored position."""
        return P.parse_lsn(text)

    def advance(self, lsn: int) -> int:
        """Move the slot's confirmed position to ``lsn`` (a window's ``end_lsn``); call only
        after the destination committed the window. While a peek is open (more windows to
        come from it) the slot is held by it: the move waits until the peek ends, which is
        safe as the destination recorded the position (a restart advances to it first).
        Returns the position asked for, or the slot's. See ``slot.advance``."""
        assert self.conn is not None
        if self._stream is not None:
            self._pending = max(self._pending or 0, lsn)
            return lsn
        self._pending = None
        return S.advance(self.conn, self.slot, lsn)

    def close(self) -> None:
        """Close every connection (an exported snapshot with them) and free the last
        window's rows; a move of the slot that waited for the peek is made."""
        self._release()
        if self._stream is not None and self.conn is not None:
            self._end_stream(abandon=True)
        if self._pending is not None and self.conn is not None and not self.conn.closed:
            try:
                self.advance(self._pending)
            except (SourceError, psycopg.Error):
                pass   # the destination holds the position: the next run moves the slot
        self.release_snapshot()
        for conn in (self.conn, self._catalog):
            if conn is not None:
                conn.close()
        self.conn = self._catalog = None

    # ------------------------------------------------------------------ reading

    @property
    def peeking(self) -> bool:
        """Whether a peek is open: the next window comes from it, after the last one."""
        return self._stream is not None

    def read_window(self, same_peek: bool = False) -> ChangeWindow | None:
        """The next window of changes after the last one read (the first: after the slot's
        confirmed position); None: none. One peek yields windows of whole transactions
        (``WINDOW_TARGET_BYTES`` each) until it ends. ``same_peek``: only from the open
        peek (None when it has no more), as the windows read since the last ``advance``
        are not applied yet: a new peek would read them again."""
        assert self.conn is not None and self._catalog is not None
        self._release()
        self.idle_lsn = self.caught_up = None
        if same_peek and self._stream is None:
            return None
        while True:
            fresh = self._stream is None
            dec, win, how, st = self._read()
            if how == TEXT_MODE:
                self.binary = False   # for good: the table keeps its text-only column
                if same_peek:
                    return None
                fresh = True
                dec, win, how, st = self._read()
            if dec.window_txns:
                break
            if same_peek:   # it ended with nothing more: caught up if it ended short
                if how == _ENDED and dec.messages < st.limit:
                    self.caught_up = st.flushed
                return None
            if fresh:
                # everything that committed before ``flushed`` was read (none of it ours)
                self.idle_lsn = st.flushed
                return None
            # the peek ended: a new one; its decoder and the rows it holds are freed first
            # (two windows' rows at once: a drain's peak 249 MB, not 214, bench cdc data)
            dec = win = None
        if how == _ENDED and dec.messages < st.limit:
            self.caught_up = st.flushed
        tables = [self._table_changes(rp, rows) for rp, rows in win.segments if len(rows)]
        return ChangeWindow(dec.end_lsn, dec.last_commit_lsn, dec.window_txns,
                            dec.window_changes, dec.window_bytes, tables, win.origins,
                            (dec.last_commit_ts + P.PG_EPOCH_UNIX_US) / 1e6)

    def _open_stream(self) -> _Stream:
        """Start a peek after the slot's confirmed position (moved first if asked)."""
        assert self.conn is not None and self._catalog is not None
        if self._pending is not None:
            self.advance(self._pending)
        S.usable(self.conn, self.slot)
        flushed = P.parse_lsn(self._catalog.execute(
            "SELECT pg_current_wal_flush_lsn()::text").fetchone()[0])
        pgconn = self.conn.pgconn
        pgconn.send_query(_peek_sql(self.conn, self.slot, self.max_window_changes,
                                    self.publication, bool(self.binary)))
        t0 = time.perf_counter()
        res = wait_result(pgconn)   # the server decodes the whole peek first: GIL released
        self.timings["source_fetch_secs"] += time.perf_counter() - t0
        if res is None or res.status != pq.ExecStatus.COPY_OUT:
            _raise_server(self.slot, pgconn, res)
        self._stream = _Stream(pgoutput.Decoder(), flushed, self.max_window_changes)
        return self._stream

    def _end_stream(self, abandon: bool) -> None:
        st, self._stream = self._stream, None
        assert st is not None and self.conn is not None
        if abandon:
            _abandon(self.conn, st.done)
        else:
            while not st.done:   # only the end of the COPY is left after its trailer
                st.done = copy_decode.read_copy(self.conn.pgconn, st.buf, 1)[1]
            _finish(self.slot, self.conn.pgconn)

    def _read(self) -> tuple:
        """One window through the decoder: (decoder, segments, how it ended, its peek)."""
        assert self.conn is not None
        st = self._stream or self._open_stream()
        dec, win = st.dec, Segments()
        dec.reset_window()
        for oid in st.ours:   # announced earlier in this peek: rows go to this window
            bind(dec, self._announced.plans[oid], win)
        how = None
        try:
            while True:
                if st.header:
                    t0 = time.perf_counter()
                    pos, how = self._decode(dec, win, st.buf, 0)
                    self.timings["source_decode_secs"] += time.perf_counter() - t0
                    del st.buf[:pos]
                    if how is not None:
                        break
                if st.done:
                    raise SourceError(f"slot {self.slot}: the change stream ended without "
                                      "a COPY trailer")
                t0 = time.perf_counter()
                _, st.done = copy_decode.read_copy(self.conn.pgconn, st.buf, READ_CHUNK_BYTES)
                self.timings["source_fetch_secs"] += time.perf_counter() - t0
                if not st.header:
                    pos = copy_decode.parse_header(st.buf)
                    st.header = pos > 0
                    del st.buf[:pos]
        except BaseException:
            self._stream = None
            _abandon(self.conn, st.done)
            raise
        if how != _FULL:
            self._end_stream(abandon=how != _ENDED)
        return dec, win, how, st

    def _decode(self, dec, win: Segments, buf: bytearray, pos: int) -> tuple[int, str | None]:
        """Feed ``buf[pos:]`` to the decoder until it needs more bytes or the read ends.
        Until the window nears its target, at most the bytes it still has room for go in
        one call (a change row is about as large as its message): the changes the target
        allows are estimated again after each."""
        most, max_bytes = self.max_window_changes, self.max_window_bytes
        while True:
            end = len(buf)
            room = min(WINDOW_TARGET_BYTES, max_bytes) - dec.window_bytes
            if room > 0:   # a quarter of the room: the first step has no estimate yet
                end = min(end, pos + max(room // 4, _MIN_STEP))
            new, ev = dec.feed(buf, pos, end, max_bytes, _window_changes(dec, most, max_bytes))
            if ev == P.EV_MORE and end < len(buf):
                if new == pos:   # a message longer than the step
                    new, ev = dec.feed(buf, pos, len(buf), max_bytes,
                                       _window_changes(dec, most, max_bytes))
                    if ev == P.EV_MORE:
                        return new, None
                else:
                    pos = new
                    continue
            pos = new
            if ev == P.EV_MORE:
                return pos, None
            msg = bytes(buf[dec.msg_start:dec.msg_end])
            if ev == P.EV_RELATION:
                assert self._catalog is not None and self._stream is not None
                how = self._announced.announce(self._catalog, dec,
                                               P.parse_relation(msg, dec.msg_lsn), win,
                                               bool(self.binary), self._stream.ours)
                if how is not None:
                    return pos, how
            elif ev == P.EV_ORIGIN:
                win.origins.add(P.parse_origin(msg, dec.msg_lsn)[1])
            elif ev == P.EV_LIMIT:
                return pos, _FULL
            elif ev == P.EV_TOO_LARGE:
                if dec.window_txns == 0:
                    raise _too_large(self.slot, dec, self._announced.plans.get(dec.msg_oid),
                                     self.max_window_bytes, self.budget_setting)
                dec.rollback()
                return pos, CUT
            elif ev == P.EV_END:
                return pos, _ENDED

    def _release(self) -> None:
        for held in self._held:
            held.release()
        self._held = []

    def _table_changes(self, rp: RelationPlan, rows: bytearray) -> TableChanges:
        batches = ChangeBatches(rp, rows, self.max_batch_rows, self.max_batch_bytes,
                                self.timings)
        self._held.append(batches)
        return TableChanges(rp.relation.schema, rp.relation.name, rp.key, rp.schema, batches,
                            self._announced.layout_changed(rp))


def _peek_sql(conn: psycopg.Connection, slot: str, limit: int, publication: str,
              binary: bool) -> bytes:
    q = sql.SQL(
        "COPY (SELECT lsn, data FROM pg_logical_slot_peek_binary_changes({}, NULL, {}, "
        "'proto_version', '1', 'publication_names', {}, 'binary', {})) "
        "TO STDOUT (FORMAT binary)").format(
        sql.Literal(slot), sql.Literal(limit), sql.Literal(quote_ident(publication)),
        sql.Literal("true" if binary else "false"))
    return q.as_bytes(conn)


def _too_large(slot: str, dec, rp: RelationPlan | None, max_bytes: int,
               setting: str) -> SourceError:
    return SourceError(
        f"slot {slot}: transaction {dec.xid} (commit LSN {P.lsn_text(dec.commit_lsn)}) holds "
        f"more than {max_bytes} bytes of changes (table {rp.table if rp else '?'} passed the "
        f"limit): one transaction is held as one window; raise {setting} above the "
        "transaction's size")


def _window_changes(dec, most: int, max_bytes: int) -> int:
    """The changes after which the window ends at a commit: ``most``, or fewer when the
    rows so far say the target bytes come sooner."""
    target = min(WINDOW_TARGET_BYTES, max_bytes)
    if dec.window_changes == 0:
        return most
    left = (target - dec.window_bytes) * dec.window_changes // max(dec.window_bytes, 1)
    return min(most, dec.window_changes + max(left, 1))


def _abandon(conn: psycopg.Connection, done: bool) -> None:
    """Stop a COPY that is still sending (the rest is read again next window)."""
    pgconn = conn.pgconn
    if pgconn.status != pq.ConnStatus.OK:
        return
    if not done:
        conn.cancel_safe(timeout=5.0)
        scratch = bytearray()
        try:
            while not copy_decode.read_copy(pgconn, scratch, 1 << 20)[1]:
                del scratch[:]
        except SourceError:
            return
    while pgconn.get_result() is not None:
        pass


def _finish(slot: str, pgconn: pq.PGconn) -> None:
    while (res := pgconn.get_result()) is not None:
        if res.status != pq.ExecStatus.COMMAND_OK:
            _raise_server(slot, pgconn, res)


def _raise_server(slot: str, pgconn: pq.PGconn, res: pq.PGresult | None) -> None:
    state = res.error_field(pq.DiagnosticField.SQLSTATE) if res is not None else None
    raw = (res.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) if res is not None
           else None) or pgconn.error_message
    msg = " ".join((raw or b"").decode("utf-8", "replace").split())
    while pgconn.get_result() is not None:
        pass
    if state and state.decode() == _PREREQUISITE and "can no longer" in msg:
        raise SourceError(S.lost_text(slot))
    raise SourceError(f"slot {slot}: {msg or 'reading changes failed'}",
                      sqlstate=state.decode() if state else None)
