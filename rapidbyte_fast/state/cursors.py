"""Incremental cursors, stored in the destination beside the data they describe.

The new cursor of a stream is written in the same destination transaction as the rows it
covers, so a crash at any instant neither loses nor repeats rows: either both the rows and
the cursor are committed, or neither is.
"""
from __future__ import annotations

from dataclasses import dataclass

import psycopg

from ..pgtypes import qualified, quote_ident

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
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {_table(schema)} (pipeline text NOT NULL, "
        "stream text NOT NULL, cursor_value text NOT NULL, tie_value text, "
        "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, stream))")


def load(conn: psycopg.Connection, schema: str, pipeline: str, stream: str) -> Cursor | None:
    """The committed cursor of a stream, or None before its first incremental run."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_table(schema),)).fetchone()[0]
    if not exists:
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
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_table(schema),)).fetchone()[0]
    if not exists:
        return []
    return conn.execute(
        f"SELECT stream, cursor_value, tie_value, updated_at FROM {_table(schema)} "
        "WHERE pipeline = %s ORDER BY stream", (pipeline,)).fetchall()


def reset(conn: psycopg.Connection, schema: str, pipeline: str, stream: str | None) -> int:
    """Forget cursors (all streams, or one); the next run reads from the start."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_table(schema),)).fetchone()[0]
    if not exists:
        return 0
    if stream is None:
        cur = conn.execute(f"DELETE FROM {_table(schema)} WHERE pipeline = %s", (pipeline,))
    else:
        cur = conn.execute(f"DELETE FROM {_table(schema)} WHERE pipeline = %s AND stream = %s",
                           (pipeline, stream))
    return cur.rowcount


def predicate(cursor_sql: str, cursor_type: str, tie_sql: str | None, tie_type: str | None,
              last: Cursor | None) -> str | None:
    """``cursor > last`` (or the row comparison with a tie-breaker), bound with the columns'
    real types so numbers never compare as strings; None on the first run."""
    if last is None:
        return None
    lit = psycopg.sql.Literal(last.value).as_string(None)
    if tie_sql is not None and last.tie is not None:
        tie_lit = psycopg.sql.Literal(last.tie).as_string(None)
        return (f"({cursor_sql}, {tie_sql}) > ({lit}::{cursor_type}, {tie_lit}::{tie_type})")
    return f"{cursor_sql} > {lit}::{cursor_type}"
