"""Key ranges of a Postgres table: one mechanism for parallel and resumable full refresh.

A full refresh reads a list of ranges with W workers. The ranges are spans of a key: an
integer column (``partition_key``, else a one-column integer primary key) cut into equal
spans of its values, else the primary key of any orderable types cut at quantiles of a
``TABLESAMPLE`` (compared as a row for a composite key), else (parallel, not resumable)
spans of heap blocks (``ctid``, a TID range scan). The cut points are fixed when the load
is planned, and the first and last ranges are open-ended (the first also takes NULL keys),
so every row belongs to exactly one range even when rows are added between two attempts.
Workers read one snapshot, exported by a coordinator connection held open for the load.
"""
from __future__ import annotations

import math
import os

import psycopg

from ...column_plan import Kind
from ...connector import KeyCuts
from ...errors import ConfigError
from ...pgtypes import PgTable, qualified, quote_ident

#: ``parallelism: auto`` uses several workers for tables with at least this many
#: (estimated) rows ...
AUTO_MIN_ROWS = 500_000
#: ... on machines with at least this many cores: each worker runs two server backends, and
#: on 2 cores 2 workers lost (python -m bench run, 1M rows, 3 iters: arrow 2.89 s vs 2.60 s,
#: passthrough 2.70 s vs 2.57 s with one worker).
AUTO_MIN_CORES = 4
#: ... and never uses more workers than this.
AUTO_MAX_WORKERS = 4
#: a load is never cut into more ranges than this: each is one COPY and one commit
MAX_RANGES = 4096
#: keys sampled per range when cut points are sampled: 200 put every cut within about 1%
#: of an even split's position (the sample's quantile error is ~1/sqrt(200 * ranges))
SAMPLE_PER_RANGE = 200


class SnapshotExporter:
    """A read-only repeatable-read transaction whose snapshot the workers import."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self.snapshot: str = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]

    def close(self) -> None:
        """End the exporting transaction (after every worker has finished) and disconnect."""
        if not self.conn.closed:
            self.conn.execute("COMMIT")
        self.conn.close()


def worker_count(est_rows: int, requested, write_mode: str) -> int:
    """Workers for ``requested`` (an int, or "auto": by size and cores). Auto uses several
    only for ``replace``: a parallel append/upsert loads a staging table and moves it, which
    costs more than the parallel read saves (bench peers, 1M rows: append 6.7 s in 2
    workers vs replace 2.8 s)."""
    if requested != "auto":
        return int(requested)
    cores = os.cpu_count() or 1
    if write_mode != "replace" or est_rows < AUTO_MIN_ROWS or cores < AUTO_MIN_CORES:
        return 1
    return min(cores, AUTO_MAX_WORKERS)


def range_count(est_rows: int, est_bytes: int, every_bytes: int, every_rows: int) -> int:
    """How many ranges make each about one checkpoint interval (1 when checkpoints are off
    or the table is small)."""
    n = 1
    if every_bytes:
        n = max(n, math.ceil(est_bytes / every_bytes))
    if every_rows:
        n = max(n, math.ceil(est_rows / every_rows))
    return min(n, MAX_RANGES)


def integer_key(table: PgTable, partition_key: str | None, stream: str) -> str | None:
    """The integer column to cut ranges on: ``partition_key``, else a one-column integer
    primary key; None when there is neither."""
    ints = {c.name for c in table.columns if c.kind in (Kind.INT2, Kind.INT4, Kind.INT8)}
    if partition_key is not None:
        if partition_key not in {c.name for c in table.columns}:
            raise ConfigError(f"stream {stream}: partition_key {partition_key} is not a column "
                              "of the stream")
        if partition_key not in ints:
            raise ConfigError(f"stream {stream}: partition_key {partition_key} must be an "
                              "integer column (smallint, integer or bigint)")
        return partition_key
    if len(table.primary_key) == 1 and table.primary_key[0] in ints:
        return table.primary_key[0]
    return None


def block_ranges(conn: psycopg.Connection, table: PgTable, pieces: int) -> tuple[str, ...]:
    """Predicates splitting a table into ``pieces`` spans of heap blocks (the last one
    open-ended); () when it has fewer blocks, or no ctid (views, foreign tables)."""
    rel = qualified(table.schema, table.name)
    kind, pages = conn.execute(
        "SELECT relkind, pg_relation_size(oid) / current_setting('block_size')::int "
        "FROM pg_class WHERE oid = %s::regclass", (rel,)).fetchone()
    if kind not in ("r", "m") or pages < pieces:
        return ()
    step = -(-pages // pieces)
    out = []
    for i in range(pieces):
        lo, hi = i * step, (i + 1) * step
        upper = f" AND ctid < '({hi},0)'::tid" if i < pieces - 1 else ""
        out.append(f"(ctid >= '({lo},0)'::tid{upper})")
    return tuple(out)


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
             pieces: int) -> KeyCuts | None:
    """Cut points splitting the table into at most ``pieces`` ranges of ``key``; None for
    an empty table. One integer column is cut into equal spans of its values; any other key
    at quantiles of a sample of the table."""
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
        cuts = tuple((str(v),) for v in range(int(lo) + width, int(hi) + 1, width))
    else:
        cuts = _sampled_cuts(conn, table, key, pieces)
        if cuts is None:
            return None
    return KeyCuts(key, tuple(cols[c].pg_type for c in key), cuts, nullable)


def _sampled_cuts(conn: psycopg.Connection, table: PgTable, key: tuple[str, ...],
                  pieces: int) -> tuple[tuple[str, ...], ...] | None:
    """Cut points at the quantiles of a sample, computed by the server: only the first key
    of each of ``pieces`` buckets comes back, whatever the table's size."""
    rel = qualified(table.schema, table.name)
    rows, pages = conn.execute(
        "SELECT greatest(reltuples, 0), pg_relation_size(oid) / "
        "current_setting('block_size')::int FROM pg_class WHERE oid = %s::regclass",
        (rel,)).fetchone()
    want = pieces * SAMPLE_PER_RANGE
    # SYSTEM sampling takes whole pages; never analyzed, the table has at least a row per
    # page; a sample that came back empty asks for more
    known = rows if rows else pages
    pct = 100.0 if not known or known <= want else 100.0 * want / known
    cols = ", ".join(f"t.{quote_ident(c)}" for c in key)
    texts = ", ".join(f"s.{quote_ident(c)}::text" for c in key)
    order = ", ".join(f"s.{quote_ident(c)}" for c in key)
    while True:
        firsts = conn.execute(
            f"SELECT DISTINCT ON (s.__rbf_bucket) {texts} FROM (SELECT {cols}, "
            f"ntile({int(pieces)}) OVER (ORDER BY {cols}) AS __rbf_bucket FROM {rel} AS t "
            f"TABLESAMPLE SYSTEM ({pct})) AS s ORDER BY s.__rbf_bucket, {order}").fetchall()
        if firsts or pct >= 100.0:
            break
        pct = min(100.0, pct * 4)
    if not firsts:
        return None
    cuts: list[tuple[str, ...]] = []
    for first in firsts[1:]:
        cut = tuple(first)
        if cut != tuple(firsts[0]) and (not cuts or cuts[-1] != cut):
            cuts.append(cut)
    return tuple(cuts)
