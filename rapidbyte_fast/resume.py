"""Resumable full refresh: the source is read as ranges of a key, and each range's rows
commit in the destination together with a mark in ``<schema>.rbf_progress``. A failed run,
or its retry, goes on with the ranges not yet marked: a large load never restarts from zero
and never commits a range twice.

The key is an integer column (``partition_key``, or a one-column integer primary key), cut
into equal spans of its values, or else the primary key of any orderable types, cut at
points sampled from the table (row comparison for a composite key). A replace loads a
staging table that outlives a failed attempt and is swapped in at the end; an append
commits straight into its target. The cut points are fixed when the load starts, and the
first and last ranges are open-ended, so every row belongs to exactly one range even when
rows are added or updated between two attempts (a key that is itself updated can move).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace

import psycopg
import pyarrow as pa

from .column_plan import Kind
from .pgtypes import PgTable, field_pg_type, qualified, quote_ident

PROGRESS_TABLE = "rbf_progress"
#: a load is never cut into more ranges than this: each is one COPY and one commit
MAX_RANGES = 4096
#: keys sampled per range when cut points are sampled: 200 put every cut within about 1%
#: of an even split's position (the sample's quantile error is ~1/sqrt(200 * ranges))
SAMPLE_PER_RANGE = 200


@dataclass(frozen=True)
class Progress:
    """An unfinished ranged load of one stream."""

    write_mode: str
    #: the key columns and their types (the cut points are cast to them)
    key: tuple[str, ...]
    key_types: tuple[str, ...]
    #: range i holds the keys with cuts[i - 1] <= key < cuts[i] (see ``key_range_sql``)
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

    def where(self, i: int) -> str:
        """The source predicate of range ``i``."""
        return key_range_sql(self.key, self.key_types, self.cuts, i, self.has_null)

    def with_staging(self, staging: str | None, columns: str, add_pk: bool) -> "Progress":
        return replace(self, staging=staging, columns=columns, add_pk=add_pk)


def columns_fingerprint(schema: pa.Schema) -> str:
    """The columns and types a staging table is made of."""
    return ", ".join(f"{quote_ident(f.name)} {field_pg_type(f)}" for f in schema)


def key_range_sql(key: tuple[str, ...], types: tuple[str, ...],
                  cuts: tuple[tuple[str, ...], ...], i: int, has_null: bool) -> str:
    """The predicate of range ``i``: from cut ``i - 1`` to cut ``i``. The first and last
    ranges are open-ended (the first also takes NULL keys), so rows added beyond the cuts
    since they were sampled still fall in exactly one range."""
    def row(values):
        lits = [f"{psycopg.sql.Literal(v).as_string(None)}::{t}" for v, t in zip(values, types)]
        return lits[0] if len(lits) == 1 else f"({', '.join(lits)})"

    k = (quote_ident(key[0]) if len(key) == 1
         else f"({', '.join(quote_ident(c) for c in key)})")
    parts = ([f"{k} >= {row(cuts[i - 1])}"] if i > 0 else []) + (
        [f"{k} < {row(cuts[i])}"] if i < len(cuts) else [])
    clause = " AND ".join(parts) or "TRUE"
    return f"({clause} OR {quote_ident(key[0])} IS NULL)" if i == 0 and has_null else f"({clause})"


def key_cuts(conn: psycopg.Connection, table: PgTable, key: tuple[str, ...],
             pieces: int) -> tuple[tuple[tuple[str, ...], ...], bool] | None:
    """Cut points splitting the table into at most ``pieces`` ranges of ``key``, and whether
    the key may be NULL; None for an empty table. One integer column is cut into equal
    spans of its values; any other key at quantiles of a sample of the table."""
    cols = {c.name: c for c in table.columns}
    rel = qualified(table.schema, table.name)
    nullable = len(key) == 1 and not cols[key[0]].not_null
    if len(key) == 1 and cols[key[0]].kind in (Kind.INT2, Kind.INT4, Kind.INT8):
        k = quote_ident(key[0])
        lo, hi = conn.execute(f"SELECT min({k}), max({k}) FROM {rel}").fetchone()
        if lo is None:
            return None
        span = int(hi) - int(lo) + 1
        width = -(-span // max(1, min(pieces, span)))
        return tuple((str(v),) for v in range(int(lo) + width, int(hi) + 1, width)), nullable
    return _sampled_cuts(conn, table, key, pieces), nullable


def _sampled_cuts(conn: psycopg.Connection, table: PgTable, key: tuple[str, ...],
                  pieces: int) -> tuple[tuple[str, ...], ...] | None:
    rel = qualified(table.schema, table.name)
    rows = conn.execute("SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = %s::regclass",
                        (rel,)).fetchone()[0]
    want = pieces * SAMPLE_PER_RANGE
    # SYSTEM sampling takes whole pages; a sample that came back empty asks for more
    pct = 100.0 if not rows or rows <= want else 100.0 * want / rows
    cols = ", ".join(f"t.{quote_ident(c)}" for c in key)
    while True:
        sample = conn.execute(
            f"SELECT {', '.join(f't.{quote_ident(c)}::text' for c in key)} FROM {rel} AS t "
            f"TABLESAMPLE SYSTEM ({pct}) ORDER BY {cols}").fetchall()
        if sample or pct >= 100.0:
            break
        pct = min(100.0, pct * 4)
    if not sample:
        return None
    cuts: list[tuple[str, ...]] = []
    for j in range(1, pieces):
        cut = tuple(sample[j * len(sample) // pieces])
        if cut != tuple(sample[0]) and (not cuts or cuts[-1] != cut):
            cuts.append(cut)
    return tuple(cuts)


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
        "key_types text NOT NULL, cuts text NOT NULL, ranges int NOT NULL, "
        "has_null boolean NOT NULL, staging text, "
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
        f"SELECT write_mode, key, key_types, cuts, has_null, staging, columns, add_pk, done, "
        f"rows_done FROM {_table(schema)} WHERE pipeline = %s AND stream = %s",
        (pipeline, stream)).fetchone()
    if row is None:
        return None
    return Progress(row[0], tuple(json.loads(row[1])), tuple(json.loads(row[2])),
                    tuple(tuple(c) for c in json.loads(row[3])), row[4], row[5], row[6],
                    row[7], frozenset(row[8]), row[9])


def save(conn: psycopg.Connection, schema: str, pipeline: str, stream: str,
         p: Progress) -> None:
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
        f"SELECT stream, write_mode, cardinality(done), ranges, rows_done, "
        f"updated_at FROM {_table(schema)} WHERE pipeline = %s ORDER BY stream",
        (pipeline,)).fetchall()
