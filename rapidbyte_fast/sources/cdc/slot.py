"""The publication and the logical replication slot a change reader reads from: creation
(with an exported snapshot for the bootstrap load), status (lag, retained WAL), checks
(missing, invalidated) and advancing the confirmed position."""
from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from psycopg import pq, sql

from ...errors import SourceError
from ...pgtypes import qualified, quote_ident
from ...redact import redact
from . import protocol as P

_SLOT_NAME = re.compile(r"[a-z0-9_]{1,63}")


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


def check_name(slot: str) -> str:
    """A slot name PostgreSQL accepts (they are not quoted in replication commands)."""
    if not _SLOT_NAME.fullmatch(slot):
        raise SourceError(f"replication slot name {slot!r}: use 1-63 lower-case letters, "
                          "digits and underscores")
    return slot


def _one_line(exc: psycopg.Error) -> str:
    return " ".join(str(exc).split())


def ensure_publication(conn: psycopg.Connection, publication: str,
                       tables: list[tuple[str, str]]) -> None:
    """Create the publication for ``tables``, or add the ones it lacks."""
    pub = sql.SQL(quote_ident(publication))
    try:
        row = conn.execute("SELECT puballtables FROM pg_publication WHERE pubname = %s",
                           (publication,)).fetchone()
        if row is None:
            conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
                pub, sql.SQL(", ").join(sql.SQL(qualified(s, t)) for s, t in tables)))
            return
        if row[0]:
            return
        have = set(conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
            (publication,)).fetchall())
        missing = [(s, t) for s, t in tables if (s, t) not in have]
        if missing:
            conn.execute(sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                pub, sql.SQL(", ").join(sql.SQL(qualified(s, t)) for s, t in missing)))
    except psycopg.Error as exc:
        raise SourceError(f"publication {publication}: {_one_line(exc)}",
                          sqlstate=exc.sqlstate) from None


def create(conninfo: str, slot: str) -> tuple[SlotCreated, psycopg.Connection]:
    """Create the slot over a replication connection and export its snapshot; the snapshot
    stays valid while the returned connection is open (and idle)."""
    try:
        repl = psycopg.connect(conninfo, autocommit=True, replication="database")
    except psycopg.OperationalError as exc:
        raise SourceError(f"slot {slot}: cannot open a replication connection: "
                          f"{redact(_one_line(exc))}") from None
    res = repl.pgconn.exec_(
        f"CREATE_REPLICATION_SLOT {check_name(slot)} LOGICAL pgoutput EXPORT_SNAPSHOT".encode())
    if res.status != pq.ExecStatus.TUPLES_OK:
        msg = " ".join((res.error_message or b"").decode("utf-8", "replace").split())
        repl.close()
        raise SourceError(f"slot {slot}: cannot create it: {msg}")
    consistent, snapshot = res.get_value(0, 1).decode(), res.get_value(0, 2).decode()
    return SlotCreated(P.parse_lsn(consistent), snapshot), repl


def status(conn: psycopg.Connection, slot: str) -> SlotStatus | None:
    """Lag and retained WAL of the slot (None when it does not exist)."""
    row = conn.execute(
        "SELECT active, wal_status, confirmed_flush_lsn::text, restart_lsn::text, "
        "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, "
        "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
        "FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
    if row is None:
        return None
    active, wal_status, confirmed, restart, lag, retained = row
    return SlotStatus(slot, active, wal_status, P.parse_lsn(confirmed) if confirmed else None,
                      P.parse_lsn(restart) if restart else None, lag, retained)


def lost_text(slot: str) -> str:
    """The refusal of an invalidated slot, with the fix."""
    return (f"replication slot {slot} was invalidated (the server removed WAL it still "
            "needed, see max_slot_wal_keep_size): changes are lost; drop it "
            f"(SELECT pg_drop_replication_slot('{slot}')) and run the stream's bootstrap "
            "again for a new full load")


def usable(conn: psycopg.Connection, slot: str) -> SlotStatus:
    """The slot's status; SourceError with the fix when it is missing or invalidated."""
    st = status(conn, slot)
    if st is None:
        raise SourceError(f"replication slot {slot} does not exist: it was dropped; run the "
                          "stream's bootstrap again to create it with a new full load")
    if st.wal_status == "lost":
        raise SourceError(lost_text(slot))
    return st


def advance(conn: psycopg.Connection, slot: str, lsn: int) -> int:
    """Move the confirmed position to ``lsn``; a position already passed is left alone (a
    restart advancing to what its destination recorded). Returns the slot's position."""
    st = usable(conn, slot)
    if st.confirmed_lsn is not None and lsn <= st.confirmed_lsn:
        return st.confirmed_lsn
    try:
        row = conn.execute("SELECT end_lsn::text FROM pg_replication_slot_advance(%s, %s)",
                           (slot, P.lsn_text(lsn))).fetchone()
    except psycopg.Error as exc:
        raise SourceError(f"slot {slot}: cannot advance to {P.lsn_text(lsn)}: "
                          f"{_one_line(exc)}", sqlstate=exc.sqlstate) from None
    return P.parse_lsn(row[0])


def drop(conn: psycopg.Connection, slot: str) -> bool:
    """Drop the slot (waiting for a reader that holds it to let go); False when missing."""
    if status(conn, slot) is None:
        return False
    try:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    except psycopg.Error as exc:
        raise SourceError(f"slot {slot}: cannot drop it: {_one_line(exc)}",
                          sqlstate=exc.sqlstate) from None
    return True
