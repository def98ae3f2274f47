"""Resumable full refresh: the source is read as ranges of an integer key, and each range's
rows commit in the destination together with a mark in ``<schema>.rbf_progress``. A failed
run, or its retry, goes on with the ranges not yet marked: a large load never restarts from
zero and never commits a range twice.

A replace loads a staging table that outlives a failed attempt and is swapped in at the end;
an append commits straight into its target. The ranges are fixed when the load starts, so a
row belongs to exactly one range even when it is updated between two attempts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import psycopg

import pyarrow as pa

from .pgtypes import PgTable, field_pg_type, qualified, quote_ident

PROGRESS_TABLE = "rbf_progress"
#: a load is never cut into more ranges than this: each is one COPY and one commit
MAX_RANGES = 4096


@dataclass(frozen=True)
class Progress:
    """An unfinished ranged load of one stream."""

    write_mode: str
    key: str
    #: range i holds the keys in [bounds[i], bounds[i + 1]) (see ``key_range_sql``)
    bounds: tuple[int, ...]
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
        return len(self.bounds) - 1

    def pending(self) -> list[int]:
        """Ranges still to load, in key order."""
        return [i for i in range(self.ranges) if i not in self.done]

    def where(self, i: int) -> str:
        """The source predicate of range ``i``."""
        return key_range_sql(self.key, self.bounds, i, self.has_null)

    def with_staging(self, staging: str | None, columns: str, add_pk: bool) -> "Progress":
        return replace(self, staging=staging, columns=columns, add_pk=add_pk)


def columns_fingerprint(schema: pa.Schema) -> str:
    """The columns and types a staging table is made of."""
    return ", ".join(f"{quote_ident(f.name)} {field_pg_type(f)}" for f in schema)


def key_range_sql(key: str, bounds: tuple[int, ...], i: int, has_null: bool) -> str:
    """The predicate of range ``i`` of ``bounds``. The first and last ranges are open-ended
    (the first also takes NULL keys), so rows added beyond the bounds since they were
    computed still fall in exactly one range."""
    k = quote_ident(key)
    last = len(bounds) - 2
    parts = ([f"{k} >= {int(bounds[i])}"] if i > 0 else []) + (
        [f"{k} < {int(bounds[i + 1])}"] if i < last else [])
    clause = " AND ".join(parts) or "TRUE"
    return f"({clause} OR {k} IS NULL)" if i == 0 and has_null else f"({clause})"


def key_bounds(conn: psycopg.Connection, table: PgTable, key: str,
               pieces: int) -> tuple[tuple[int, ...], bool] | None:
    """Bounds cutting the key's span into at most ``pieces`` ranges, and whether the key
    may be NULL; None for an empty table."""
    k = quote_ident(key)
    lo, hi = conn.execute(
        f"SELECT min({k}), max({k}) FROM {qualified(table.schema, table.name)}").fetchone()
    if lo is None:
        return None
    span = int(hi) - int(lo) + 1
    width = -(-span // max(1, min(pieces, span)))
    bounds = list(range(int(lo), int(hi) + 1, width)) + [int(hi) + 1]
    nullable = not next(c.not_null for c in table.columns if c.name == key)
    return tuple(bounds), nullable


def range_count(conn: psycopg.Connection, table: PgTable, every_bytes: int,
                every_rows: int) -> int:
    """How many ranges make each about one checkpoint interval, from the planner's size
    estimates (1 when checkpoints are off or the table is small)."""
    rows, size = conn.execute(
        "SELECT greatest(reltuples, 0)::bigint, pg_relation_size(oid) FROM pg_class "
        "WHERE oid = %s::regclass", (qualified(table.schema, table.name),)).fetchone()
    n = 1
    if every_bytes:
        n = max(n, math.ceil(size / every_bytes))
    if every_rows:
        n = max(n, math.ceil(rows / every_rows))
    return min(n, MAX_RANGES)


def _table(schema: str) -> str:
    return qualified(schema, PROGRESS_TABLE)


def ensure_table(conn: psycopg.Connection, schema: str) -> None:
    """Create the progress table in ``schema`` if missing."""
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {_table(schema)} (pipeline text NOT NULL, "
        "stream text NOT NULL, write_mode text NOT NULL, key text NOT NULL, "
        "bounds bigint[] NOT NULL, has_null boolean NOT NULL, staging text, "
        "columns text NOT NULL, add_pk boolean NOT NULL, done int[] NOT NULL DEFAULT '{}', "
        "rows_done bigint NOT NULL DEFAULT 0, started_at timestamptz NOT NULL DEFAULT now(), "
        "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, stream))")


def _exists(conn: psycopg.Connection, schema: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_table(schema),)).fetchone()[0]


def load(conn: psycopg.Connection, schema: str, pipeline: str, stream: str) -> Progress | None:
    """The unfinished ranged load of a stream, if any."""
    if not _exists(conn, schema):
        return None
    row = conn.execute(
        f"SELECT write_mode, key, bounds, has_null, staging, columns, add_pk, done, rows_done "
        f"FROM {_table(schema)} WHERE pipeline = %s AND stream = %s",
        (pipeline, stream)).fetchone()
    if row is None:
        return None
    return Progress(row[0], row[1], tuple(row[2]), row[3], row[4], row[5], row[6],
                    frozenset(row[7]), row[8])


def save(conn: psycopg.Connection, schema: str, pipeline: str, stream: str,
         p: Progress) -> None:
    """Record a new ranged load (in the caller's transaction, with its staging table)."""
    ensure_table(conn, schema)
    conn.execute(
        f"INSERT INTO {_table(schema)} (pipeline, stream, write_mode, key, bounds, has_null, "
        "staging, columns, add_pk) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (pipeline, stream) DO UPDATE SET write_mode = EXCLUDED.write_mode, "
        "key = EXCLUDED.key, bounds = EXCLUDED.bounds, has_null = EXCLUDED.has_null, "
        "staging = EXCLUDED.staging, columns = EXCLUDED.columns, add_pk = EXCLUDED.add_pk, "
        "done = '{}', rows_done = 0, started_at = now(), updated_at = now()",
        (pipeline, stream, p.write_mode, p.key, list(p.bounds), p.has_null, p.staging,
         p.columns, p.add_pk))


def mark_done(conn: psycopg.Connection, schema: str, pipeline: str, stream: str, index: int,
              rows: int) -> None:
    """Mark range ``index`` loaded, in the transaction that commits its rows."""
    conn.execute(
        f"UPDATE {_table(schema)} SET done = array_append(done, %s), "
        "rows_done = rows_done + %s, updated_at = now() WHERE pipeline = %s AND stream = %s",
        (index, rows, pipeline, stream))


def reset(conn: psycopg.Connection, schema: str, pipeline: str,
          stream: str | None = None) -> int:
    """Forget unfinished loads (all streams, or one) and drop their staging tables, in the
    caller's transaction; the next run starts them over. Returns how many there were."""
    if not _exists(conn, schema):
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
    if not _exists(conn, schema):
        return []
    return conn.execute(
        f"SELECT stream, write_mode, cardinality(done), cardinality(bounds) - 1, rows_done, "
        f"updated_at FROM {_table(schema)} WHERE pipeline = %s ORDER BY stream",
        (pipeline,)).fetchall()
