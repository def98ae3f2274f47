"""The benchmark tables: what a correct copy must contain (computed from DATASETS.md, not
read back from the source), checking a table against it, and seeding the source table
through our own ``generate`` source.

Checksums: bench_events is checked with count(*), sum(amount), count(DISTINCT payload);
the other datasets with count(*), sum(id), count(DISTINCT id). A copy is only accepted
into a table that has a primary key.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import psycopg
from psycopg import sql

#: (summed column, distinct column) per dataset.
_CHECK_COLUMNS = {"bench_events": ("amount", "payload")}
_DEFAULT_CHECK_COLUMNS = ("id", "id")
#: bench_events.amount = (7·i) mod 10000; 7 is coprime to 10000, so any 10000 consecutive
#: rows hold each amount 0..9999 exactly once.
_AMOUNT_PERIOD = 10_000


@dataclass(frozen=True)
class Checksum:
    """count(*), the sum and the distinct count of a dataset's check columns."""

    count: int
    total: int
    distinct: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _amounts(first: int, last: int, min_amount: int) -> tuple[int, int]:
    """(count, sum) of the amounts >= min_amount of rows first..last."""
    count = total = 0
    for i in range(first, last + 1):
        amount = 7 * i % _AMOUNT_PERIOD
        if amount >= min_amount:
            count += 1
            total += amount
    return count, total


def expected(dataset: str, rows: int, filtered: bool = False) -> Checksum:
    """The checksum of ``rows`` generated rows of ``dataset``; ``filtered`` keeps only
    bench_events rows with amount >= 5000 (the transform_filter scenarios)."""
    if dataset != "bench_events":
        if filtered:
            raise ValueError(f"no filtered checksum for {dataset}")
        return Checksum(rows, rows * (rows + 1) // 2, rows)
    min_amount = 5000 if filtered else 0
    periods, rest = divmod(rows, _AMOUNT_PERIOD)
    per_count, per_total = _amounts(1, _AMOUNT_PERIOD, min_amount)
    tail_count, tail_total = _amounts(1, rest, min_amount)  # row i and i + 10000 match
    count = periods * per_count + tail_count
    return Checksum(count, periods * per_total + tail_total, count)


def measure(conn: psycopg.Connection, dataset: str, schema: str, table: str) -> Checksum:
    """The checksum of ``schema.table`` as it is now."""
    summed, distinct = _CHECK_COLUMNS.get(dataset, _DEFAULT_CHECK_COLUMNS)
    query = sql.SQL("SELECT count(*), coalesce(sum({}), 0), count(DISTINCT {}) FROM {}").format(
        sql.Identifier(summed), sql.Identifier(distinct), sql.Identifier(schema, table))
    count, total, n_distinct = conn.execute(query).fetchone()
    return Checksum(int(count), int(total), int(n_distinct))


def has_primary_key(conn: psycopg.Connection, schema: str, table: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND i.indisprimary", (schema, table),
    ).fetchone()
    return row[0] > 0


def table_exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                        (sql.Identifier(schema, table).as_string(conn),)).fetchone()[0]


def verify(dsn: str, dataset: str, schema: str, table: str, want: Checksum,
           primary_key: bool = True) -> Checksum:
    """Check ``schema.table`` against ``want`` (and its primary key); ``RuntimeError``
    saying what differs otherwise."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not table_exists(conn, schema, table):
            raise RuntimeError(f"verification failed: {schema}.{table} does not exist")
        got = measure(conn, dataset, schema, table)
        if got != want:
            raise RuntimeError(f"verification failed for {schema}.{table}: got {got}, "
                               f"expected {want}")
        if primary_key and not has_primary_key(conn, schema, table):
            raise RuntimeError(f"verification failed: {schema}.{table} has no primary key")
    return got


def seed_pipeline(dataset: str, rows: int, url: str, schema: str) -> dict:
    """The generate → Postgres pipeline that (re)creates ``schema.<dataset>``."""
    return {
        "version": "1.0",
        "pipeline": f"bench-seed-{dataset.replace('_', '-')}",
        "source": {"use": "generate", "config": {"rows": rows, "dataset": dataset},
                   "streams": [{"name": dataset}]},
        "destination": {"use": "postgres",
                        "config": {"url": url, "schema": schema, "load_method": "copy"},
                        "write_mode": "replace", "primary_key": ["id"]},
        "resources": {"parallelism": 1},
    }


def source_is_seeded(dsn: str, dataset: str, rows: int, schema: str) -> bool:
    """Whether ``schema.<dataset>`` already holds exactly the ``rows`` generated rows."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return (table_exists(conn, schema, dataset)
                and measure(conn, dataset, schema, dataset) == expected(dataset, rows)
                and has_primary_key(conn, schema, dataset))

