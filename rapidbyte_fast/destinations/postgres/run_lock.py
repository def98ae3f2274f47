"""One run per destination table: a session-level advisory lock per target, held by a
connection of the run for as long as it runs, so it dies with the run (crash included).
The lock's session is named after the run, so a refused run can say who holds the table."""
from __future__ import annotations

import os
import socket

import psycopg
from psycopg.conninfo import make_conninfo

from ...errors import LockedError
from ...pgconn import connect
from ...pgtypes import qualified

#: the advisory lock key of a table: a 64-bit hash of its qualified name
_KEY_SQL = "hashtextextended(%s, 0)"
_HOLDER_SQL = f"""
SELECT a.application_name, a.backend_start FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND ((l.classid::bigint << 32) | l.objid::bigint) = {_KEY_SQL}
"""
#: what the lock session is called: "rapidbyte-fast lock <pipeline> <run> <host>:<pid>"
_PREFIX = "rapidbyte-fast lock "


class RunLock:
    """The locks of one run on its targets; ``close`` releases them."""

    def __init__(self, endpoint: str, pipeline: str, run_id: str,
                 targets: list[tuple[str, str]]) -> None:
        name = f"{_PREFIX}{pipeline} {run_id[:12]} {socket.gethostname()}:{os.getpid()}"
        self.conn: psycopg.Connection = connect(
            make_conninfo(endpoint, application_name=name[:63]), "destination lock")
        try:
            for schema, table in targets:
                rel = qualified(schema, table)
                got = self.conn.execute(f"SELECT pg_try_advisory_lock({_KEY_SQL})",
                                        (rel,)).fetchone()[0]
                if not got:
                    raise LockedError(f"{schema}.{table} is being written by another run "
                                      f"({self._holder(rel)}); this run wrote nothing")
        except BaseException:
            self.conn.close()
            raise

    def _holder(self, rel: str) -> str:
        row = self.conn.execute(_HOLDER_SQL, (rel,)).fetchone()
        if row is None:  # released in the meantime
            return "it has just finished"
        app, started = row
        if not app.startswith(_PREFIX):
            return f"session {app!r}, started {started:%Y-%m-%d %H:%M:%S%z}"
        pipeline, run, who = (app[len(_PREFIX):].split(" ") + ["?", "?"])[:3]
        host, _, pid = who.rpartition(":")
        return (f"pipeline {pipeline}, run {run}, host {host or '?'}, pid {pid}, started "
                f"{started:%Y-%m-%d %H:%M:%S%z}")

    def close(self) -> None:
        """Release every lock (ending the session does)."""
        self.conn.close()

