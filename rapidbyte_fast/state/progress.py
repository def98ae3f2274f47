"""Progress marks of resumable full refreshes, stored in the destination beside the data.

A ranged load reads the source as key ranges; each range's rows commit in the destination
together with a mark in ``<schema>.rbf_progress``. A failed run, or its retry, goes on with
the ranges not yet marked: a large load never restarts from zero and never commits a range
twice. The record keeps what is needed to cut the same ranges again (key, types, cut
points), the staging table of a replace (kept across attempts) and the columns it was
made of.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import json
from dataclasses import dataclass, field, replace

import psycopg

from ..pgtypes import field_pg_type, qualified, quote_ident, table_exists

if TYPE_CHECKING:
    import pyarrow as pa


PROGRESS_TABLE = "rbf_progress"


@dataclass(frozen=True)
class RangedLoad:
    """A ranged load of one stream, as recorded (``done``: the ranges committed so far)."""

    write_mode: str
    #: the key columns and their types (the cut points are cast to them)
    key: tuple[str, ...]
    key_types: tuple[str, ...]
    #: range i holds the keys with cuts[i - 1] <= key < cuts[i] (cut by the source)
    cuts: tuple[tuple[str, ...], ...]
    #: the key may be NULL: range 0 takes the NULLs
    has_null: bool
    #: the staging table of a replace (kept across attempts)
    staging: str | None = None
    #: the staged columns and their types (a replace resumes only onto the same columns)
    columns: str = ""
    #: the load created the target: it gets its primary key at the end
    add_pk: bool = False
    done: frozenset[int] = field(default_factory=frozenset)
    rows_done: int = 0

    @property
    def ranges(self) -> int:
        return len(self.cuts) + 1

    def pending(self) -> list[int]:
        """Ranges still to load, in key order."""
        return [i for i in range(self.ranges) if i not in self.done]

    def with_staging(self, staging: str | None, columns: str, add_pk: bool) -> "RangedLoad":
        return replace(self, staging=staging, columns=columns, add_pk=add_pk)


def columns_fingerprint(schema: pa.Schema) -> str:
    """The columns and types a staging table is made of."""
    return ", ".join(f"{quote_ident(f.name)} {field_pg_type(f)}" for f in schema)


def _table(schema: str) -> str:
    return qualified(schema, PROGRESS_TABLE)


def ensure_table(conn: psycopg.Connection, schema: str) -> None:
    """Create the progress table in ``schema`` if missing."""
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {_table(schema)} (pipeline text NOT NULL, "
        "stream text NOT NULL, write_mode text NOT NULL, key text NOT NULL, "
        "key_types text NOT NULL, cuts text NOT NULL, ranges int NOT NULL, "
        "has_null boolean NOT NULL, staging text, "
        "columns text NOT NULL, add_pk boolean NOT NULL, done int[] NOT NULL DEFAULT '{}', "
        "rows_done bigint NOT NULL DEFAULT 0, started_at timestamptz NOT NULL DEFAULT now(), "
        "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, stream))")


def load(conn: psycopg.Connection, schema: str, pipeline: str, stream: str) -> RangedLoad | None:
    """The unfinished ranged load of a stream, if any."""
    if not table_exists(conn, schema, PROGRESS_TABLE):
        return None
    row = conn.execute(
        f"SELECT write_mode, key, key_types, cuts, has_null, staging, columns, add_pk, done, "
        f"rows_done FROM {_table(schema)} WHERE pipeline = %s AND stream = %s",
        (pipeline, stream)).fetchone()
    if row is None:
        return None
    return RangedLoad(row[0], tuple(json.loads(row[1])), tuple(json.loads(row[2])),
                    tuple(tuple(c) for c in json.loads(row[3])), row[4], row[5], row[6],
                    row[7], frozenset(row[8]), row[9])


def save(conn: psycopg.Connection, schema: str, pipeline: str, stream: str,
         p: RangedLoad) -> None:
    """Record a new ranged load (in the caller's transaction, with its staging table)."""
    ensure_table(conn, schema)
    conn.execute(
        f"INSERT INTO {_table(schema)} (pipeline, stream, write_mode, key, key_types, cuts, "
        "ranges, has_null, staging, columns, add_pk) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (pipeline, stream) DO UPDATE SET write_mode = EXCLUDED.write_mode, "
        "key = EXCLUDED.key, key_types = EXCLUDED.key_types, cuts = EXCLUDED.cuts, "
        "ranges = EXCLUDED.ranges, has_null = EXCLUDED.has_null, "
        "staging = EXCLUDED.staging, columns = EXCLUDED.columns, add_pk = EXCLUDED.add_pk, "
        "done = '{}', rows_done = 0, started_at = now(), updated_at = now()",
        (pipeline, stream, p.write_mode, json.dumps(p.key), json.dumps(p.key_types),
         json.dumps(p.cuts), p.ranges, p.has_null, p.staging, p.columns, p.add_pk))


def mark_done(conn: psycopg.Connection, schema: str, pipeline: str, stream: str, index: int,
              rows: int) -> bool:
    """Mark range ``index`` loaded, in the transaction that commits its rows; False when
    another attempt has marked it (a retried task whose first run committed): the caller
    rolls its copy back. The row lock makes two concurrent attempts wait for each other,
    and the second then sees the first's mark."""
    cur = conn.execute(
        f"UPDATE {_table(schema)} SET done = array_append(done, %s), "
        "rows_done = rows_done + %s, updated_at = now() WHERE pipeline = %s AND stream = %s "
        "AND NOT %s = ANY(done)",
        (index, rows, pipeline, stream, index))
    return cur.rowcount == 1


def reset(conn: psycopg.Connection, schema: str, pipeline: str,
          stream: str | None = None) -> int:
    """Forget unfinished loads (all streams, or one) and drop their staging tables, in the
    caller's transaction; the next run starts them over. Returns how many there were."""
    if not table_exists(conn, schema, PROGRESS_TABLE):
        return 0
    sql = f"DELETE FROM {_table(schema)} WHERE pipeline = %s"
    args: tuple = (pipeline,)
    if stream is not None:
        sql += " AND stream = %s"
        args += (stream,)
    gone = conn.execute(sql + " RETURNING staging", args).fetchall()
    for (staging,) in gone:
        if staging:  # already renamed into place when a replace has just finished
            conn.execute(f"DROP TABLE IF EXISTS {qualified(schema, staging)}")
    return len(gone)


def show(conn: psycopg.Connection, schema: str, pipeline: str) -> list[tuple]:
    """(stream, write_mode, ranges done, ranges, rows done, updated_at) of unfinished loads."""
    if not table_exists(conn, schema, PROGRESS_TABLE):
        return []
    return conn.execute(
        f"SELECT stream, write_mode, cardinality(done), ranges, rows_done, "
        f"updated_at FROM {_table(schema)} WHERE pipeline = %s ORDER BY stream",
        (pipeline,)).fetchall()
