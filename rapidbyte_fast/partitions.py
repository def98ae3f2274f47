"""Partitioned full refresh: split a table into shards that read one exported snapshot.

Shards are ranges of an integer key (``partition_key``, else a one-column integer primary
key) or, for tables without one, ranges of heap blocks (``ctid``, a TID range scan). The
coordinator keeps the exporting transaction open while shards run, so every shard sees the
same snapshot and concurrent writers cannot tear the copy. Key ranges are cut as for
resumable loads (``resume.key_cuts``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import psycopg

from .column_plan import Kind
from .errors import ConfigError
from .pgtypes import PgTable, qualified
from .resume import key_cuts, key_range_sql

#: ``parallelism: auto`` shards tables with at least this many (estimated) rows ...
AUTO_MIN_ROWS = 500_000
#: ... on machines with at least this many cores: each shard runs two server backends, and
#: on 2 cores 2 shards lost (python -m bench run, 1M rows, 3 iters: arrow 2.89 s vs 2.60 s,
#: passthrough 2.70 s vs 2.57 s with one shard).
AUTO_MIN_CORES = 4
#: ... and never uses more shards than this.
AUTO_MAX_SHARDS = 4


@dataclass(frozen=True)
class Partitioning:
    """How a stream is split: one WHERE clause per shard, all on ``snapshot``."""

    wheres: tuple[str, ...]
    snapshot: str
    method: str


class SnapshotExporter:
    """A read-only repeatable-read transaction whose snapshot the shards import."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self.snapshot: str = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]

    def close(self) -> None:
        """End the exporting transaction (after every shard has finished)."""
        if not self.conn.closed:
            self.conn.execute("COMMIT")


def shard_count(conn: psycopg.Connection, table: PgTable, requested, write_mode: str) -> int:
    """Shards for ``requested`` (an int, or "auto": by size and cores). Auto shards only
    ``replace``: sharded append/upsert load a staging table and move it, which costs more
    than the parallel read saves (bench peers, 1M rows: append 6.7 s sharded vs replace
    2.8 s)."""
    if requested != "auto":
        return int(requested)
    if write_mode != "replace":
        return 1
    est = conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                       (qualified(table.schema, table.name),)).fetchone()[0]
    cores = os.cpu_count() or 1
    if est is None or est < AUTO_MIN_ROWS or cores < AUTO_MIN_CORES:
        return 1
    return min(cores, AUTO_MAX_SHARDS)


def plan(conn: psycopg.Connection, exporter: SnapshotExporter, table: PgTable,
         partition_key: str | None, shards: int, stream: str) -> Partitioning | None:
    """Shard WHERE clauses computed inside the exporter's snapshot, or None for one shard."""
    key = integer_key(table, partition_key, stream)
    if key is not None:
        return _key_ranges(exporter.conn, exporter.snapshot, table, key, shards)
    kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass",
                        (qualified(table.schema, table.name),)).fetchone()[0]
    if kind not in ("r", "m"):
        return None  # views and foreign tables have no ctid to split on
    return _block_ranges(exporter.conn, exporter.snapshot, table, shards)


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


def _key_ranges(conn, snapshot: str, table: PgTable, key: str, shards: int):
    found = key_cuts(conn, table, (key,), shards)
    if found is None or not found[0]:
        return None
    cuts, has_null = found
    key_type = next(c.pg_type for c in table.columns if c.name == key)
    wheres = tuple(key_range_sql((key,), (key_type,), cuts, i, has_null)
                   for i in range(len(cuts) + 1))
    return Partitioning(wheres, snapshot, f"key {key}")


def _block_ranges(conn, snapshot: str, table: PgTable, shards: int):
    pages = conn.execute(
        "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int",
        (qualified(table.schema, table.name),)).fetchone()[0]
    if pages < shards:
        return None
    step = -(-pages // shards)
    wheres = []
    for i in range(shards):
        lo, hi = i * step, (i + 1) * step
        upper = f" AND ctid < '({hi},0)'::tid" if i < shards - 1 else ""
        wheres.append(f"(ctid >= '({lo},0)'::tid{upper})")
    return Partitioning(tuple(wheres), snapshot, "ctid")
