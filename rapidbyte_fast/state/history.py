"""Run history: one row per stream per run (id, pipeline, stream, start, end, status, rows,
bytes, error), in sqlite (default, in the user data dir) or in a Postgres database."""
from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import psycopg

from ..redact import redact

_COLUMNS = ("run_id", "pipeline", "stream", "started_at", "finished_at", "status",
            "records", "bytes", "path", "error")
_SQLITE_DDL = """CREATE TABLE IF NOT EXISTS rbf_runs (run_id TEXT NOT NULL, pipeline TEXT NOT NULL,
stream TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL, status TEXT NOT NULL,
records INTEGER, bytes INTEGER, path TEXT, error TEXT, PRIMARY KEY (run_id, stream))"""
_PG_DDL = """CREATE TABLE IF NOT EXISTS rapidbyte.rbf_runs (run_id text NOT NULL,
pipeline text NOT NULL, stream text NOT NULL, started_at double precision NOT NULL,
finished_at double precision, status text NOT NULL, records bigint, bytes bigint, path text,
error text, PRIMARY KEY (run_id, stream))"""


class RunHistory:
    """Append-only log of stream runs."""

    def __init__(self, backend: str, connection: str) -> None:
        self.backend, self.connection = backend, connection
        self._table = "rbf_runs" if backend == "sqlite" else "rapidbyte.rbf_runs"

    def _sqlite(self) -> sqlite3.Connection:
        Path(self.connection).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.connection, timeout=30)
        conn.execute(_SQLITE_DDL)
        return conn

    def _write(self, sql: str, params: tuple) -> None:
        if self.backend == "sqlite":
            with closing(self._sqlite()) as conn, conn:
                conn.execute(sql, params)
            return
        with psycopg.connect(self.connection, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA IF NOT EXISTS rapidbyte")
            conn.execute(_PG_DDL)
            conn.execute(sql.replace("?", "%s"), params)

    def started(self, run_id: str, pipeline: str, stream: str) -> None:
        """Record that a stream began."""
        self._write(f"INSERT INTO {self._table} (run_id, pipeline, stream, started_at, status) "
                    "VALUES (?, ?, ?, ?, 'running')", (run_id, pipeline, stream, time.time()))

    def finished(self, run_id: str, stream: str, status: str, records: int, nbytes: int,
                 path: str, error: str | None) -> None:
        """Record how a stream ended (errors are stored redacted)."""
        self._write(
            f"UPDATE {self._table} SET finished_at = ?, status = ?, records = ?, bytes = ?, "
            "path = ?, error = ? WHERE run_id = ? AND stream = ?",
            (time.time(), status, records, nbytes, path,
             redact(error) if error else None, run_id, stream))

    def recent(self, pipeline: str, limit: int = 20) -> list[dict]:
        """The latest stream runs of a pipeline, newest first."""
        sql = (f"SELECT {', '.join(_COLUMNS)} FROM {self._table} WHERE pipeline = ? "
               "ORDER BY started_at DESC LIMIT ?")
        if self.backend == "sqlite":
            if not Path(self.connection).exists():
                return []
            with closing(self._sqlite()) as conn:
                rows = conn.execute(sql, (pipeline, limit)).fetchall()
        else:
            with psycopg.connect(self.connection, autocommit=True) as conn:
                if conn.execute("SELECT to_regclass('rapidbyte.rbf_runs')").fetchone()[0] is None:
                    return []
                rows = conn.execute(sql.replace("?", "%s"), (pipeline, limit)).fetchall()
        return [dict(zip(_COLUMNS, r)) for r in rows]
