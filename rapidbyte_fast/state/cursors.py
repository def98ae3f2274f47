"""Incremental cursors, stored in the destination beside the data they describe.

The new cursor of a stream is written in the same destination transaction as the rows it
covers, so a crash at any instant neither loses nor repeats rows: either both the rows and
the cursor are committed, or neither is.
"""
from __future__ import annotations

from dataclasses import dataclass

import psycopg

from ..pgtypes import qualified, table_exists

STATE_TABLE = "rbf_state"


@dataclass(frozen=True)
class Cursor:
    """The last value read of ``cursor_field`` (and the tie-breaker), in Postgres text form."""

    value: str
    tie: str | None = None


def _table(schema: str) -> str:
    return qualified(schema, STATE_TABLE)


def ensure_table(conn: psycopg.Connection, schema: str) -> None:
    """Create the state table in ``schema`` if missing."""
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {_table(schema)} (pipeline text NOT NULL, "
        "stream text NOT NULL, cursor_value text NOT NULL, tie_value text, "
        "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, stream))")


def load(conn: psycopg.Connection, schema: str, pipeline: str, stream: str) -> Cursor | None:
    """The committed cursor of a stream, or None before its first incremental run."""
    if not table_exists(conn, schema, STATE_TABLE):
        return None
    row = conn.execute(
        f"SELECT cursor_value, tie_value FROM {_table(schema)} WHERE pipeline = %s "
        "AND stream = %s", (pipeline, stream)).fetchone()
    return Cursor(row[0], row[1]) if row else None


def save(conn: psycopg.Connection, schema: str, pipeline: str, stream: str,
         cursor: Cursor) -> None:
    """Upsert the cursor inside the caller's transaction."""
    conn.execute(
        f"INSERT INTO {_table(schema)} (pipeline, stream, cursor_value, tie_value) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (pipeline, stream) DO UPDATE SET "
        "cursor_value = EXCLUDED.cursor_value, tie_value = EXCLUDED.tie_value, "
        "updated_at = now()", (pipeline, stream, cursor.value, cursor.tie))


def show(conn: psycopg.Connection, schema: str, pipeline: str) -> list[tuple]:
    """(stream, cursor, tie, updated_at) of every stream of a pipeline."""
    if not table_exists(conn, schema, STATE_TABLE):
        return []
    return conn.execute(
        f"SELECT stream, cursor_value, tie_value, updated_at FROM {_table(schema)} "
        "WHERE pipeline = %s ORDER BY stream", (pipeline,)).fetchall()


def reset(conn: psycopg.Connection, schema: str, pipeline: str, stream: str | None) -> int:
    """Forget cursors (all streams, or one); the next run reads from the start."""
    if not table_exists(conn, schema, STATE_TABLE):
        return 0
    if stream is None:
        cur = conn.execute(f"DELETE FROM {_table(schema)} WHERE pipeline = %s", (pipeline,))
    else:
        cur = conn.execute(f"DELETE FROM {_table(schema)} WHERE pipeline = %s AND stream = %s",
                           (pipeline, stream))
    return cur.rowcount
