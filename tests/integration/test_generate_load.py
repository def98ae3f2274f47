"""The generate datasets load into real PostgreSQL tables of their pg_type types, and SQL
recomputes the DATASETS.md formulas (and the bench_events checksum) from the loaded ids."""
from __future__ import annotations

import json
import uuid

import psycopg
import pyarrow as pa
import pytest

from rapidbyte_fast.sources.generate import DATASETS, dataset_schema, generate_batches

ROWS = 1000


def create_and_load(conn: psycopg.Connection, schema: str, dataset: str, rows: int) -> str:
    arrow_schema = dataset_schema(dataset)
    qualified = f'"{schema}"."{dataset}"'
    columns = ", ".join(
        f'"{f.name}" {f.metadata[b"pg_type"].decode()}{"" if f.nullable else " NOT NULL"}'
        for f in arrow_schema
    )
    conn.execute(f"CREATE TABLE {qualified} ({columns}, PRIMARY KEY (id))")
    with conn.cursor() as cur, cur.copy(f"COPY {qualified} FROM STDIN") as copy:
        for batch in generate_batches(dataset, 1, rows + 1, 300):
            for row in python_rows(batch):
                copy.write_row(row)
    return qualified


def python_rows(batch: pa.RecordBatch) -> list[tuple]:
    columns = []
    for field, column in zip(batch.schema, batch.columns):
        values = column.to_pylist()
        if field.type == pa.binary(16):
            values = [uuid.UUID(bytes=v) for v in values]
        columns.append(values)
    return list(zip(*columns))


@pytest.mark.parametrize("dataset", DATASETS)
def test_types_match_pg_type_and_rows_round_trip(pg_conn, pg_schema, dataset: str) -> None:
    rows = 200 if dataset == "large" else ROWS
    table = create_and_load(pg_conn, pg_schema, dataset, rows)
    got = pg_conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull"
        " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 ORDER BY a.attnum",
        (pg_schema, dataset),
    ).fetchall()
    schema = dataset_schema(dataset)
    assert got == [(f.name, f.metadata[b"pg_type"].decode(), f.nullable) for f in schema]

    pg_types = [f.metadata[b"pg_type"] for f in schema]
    loaded = [tuple(str(v) if t == b"inet" else v for v, t in zip(r, pg_types))
              for r in pg_conn.execute(f"SELECT * FROM {table} ORDER BY id")]
    expected = [tuple(json.loads(v) if t == b"jsonb" else v for v, t in zip(r, pg_types))
                for batch in generate_batches(dataset, 1, rows + 1, 300)
                for r in python_rows(batch)]
    assert loaded == expected


def test_bench_events_checksum_and_formulas(pg_conn, pg_schema) -> None:
    table = create_and_load(pg_conn, pg_schema, "bench_events", ROWS)
    assert pg_conn.execute(
        f"SELECT count(*), sum(amount), count(DISTINCT payload) FROM {table}"
    ).fetchone() == (ROWS, sum(7 * i % 10000 for i in range(1, ROWS + 1)), ROWS)
    counts = pg_conn.execute(f"""
        SELECT count(*), count(*) FILTER (WHERE (
            event_type <> (ARRAY['click','purchase','view','signup','logout'])[id % 5 + 1]
            OR user_id <> id % 1000 + 1
            OR amount <> (7 * id) % 10000
            OR is_active <> (id % 3 <> 0)
            OR payload <> 'payload-' || id || '-' || repeat('x', 50)
            OR created_at <> timestamp '2024-01-01 00:00:00'
                              - make_interval(secs => (37 * id) % 86400)
        ) IS NOT FALSE) FROM {table}
    """).fetchone()
    assert counts == (ROWS, 0)
    assert pg_conn.execute(f"SELECT min(id), max(id) FROM {table}").fetchone() == (1, ROWS)


def test_small_formulas(pg_conn, pg_schema) -> None:
    table = create_and_load(pg_conn, pg_schema, "small", ROWS)
    counts = pg_conn.execute(f"""
        SELECT count(*), count(*) FILTER (WHERE (
            event_id <> lpad(to_hex(id), 32, '0')::uuid
            OR event_type <> (ARRAY['click','purchase','view','signup','logout','scroll',
                                    'hover','submit'])[id % 8 + 1]
            OR user_id <> id % 100000 + 1
            OR session_id IS DISTINCT FROM CASE WHEN id % 10 < 7 THEN 31 * id % 500000 END
            OR device_type <> (ARRAY['mobile','desktop','tablet'])[id % 3 + 1]
            OR ip_address <> ('10.' || id % 256 || '.' || id / 256 % 256 || '.'
                              || id % 253 + 1)::inet
            OR page_url <> '/section-' || id % 12 || '/page-' || id % 500
            OR referrer_url IS DISTINCT FROM CASE WHEN id % 10 < 6 THEN
                'https://ref-' || id % 50 || '.example.com/campaign/' || id % 200 END
            OR utm_source IS DISTINCT FROM CASE WHEN id % 10 < 4 THEN
                (ARRAY['google','facebook','twitter','linkedin'])[id % 4 + 1] END
            OR utm_medium IS DISTINCT FROM CASE WHEN id % 10 < 4 THEN
                (ARRAY['cpc','organic','social','email'])[id % 4 + 1] END
            OR duration_ms <> 7 * id % 30000
            OR is_converted <> (id % 5 = 0)
            OR created_at <> timestamptz '2024-01-01 00:00:00+00'
                              - make_interval(secs => (37 * id) % 86400)
        ) IS NOT FALSE) FROM {table}
    """).fetchone()
    assert counts == (ROWS, 0)
    assert pg_conn.execute(
        f"SELECT count(*), count(session_id), count(referrer_url), count(utm_source) FROM {table}"
    ).fetchone() == (ROWS, 700, 600, 400)


def test_medium_numerics_and_jsonb(pg_conn, pg_schema) -> None:
    table = create_and_load(pg_conn, pg_schema, "medium", ROWS)
    counts = pg_conn.execute(f"""
        SELECT count(*), count(*) FILTER (WHERE (
            subtotal <> ((13 * id % 50000) + 100) / 100.0
            OR tax_amount <> round(subtotal * 0.08, 2)
            OR total_amount <> round(subtotal * 1.08, 2)
            OR (shipping_state IS NULL) <> (id % 5 = 4)
            OR (notes IS NULL) <> (id % 10 >= 6)
            OR metadata #>> '{{custom_fields,external_ref}}' <> 'EXT-' || id
            OR jsonb_array_length(metadata -> 'features') <> 5
            OR jsonb_array_length(metadata -> 'invoices') <> 3
            OR order_id <> lpad(to_hex(id), 32, '0')::uuid
        ) IS NOT FALSE) FROM {table}
    """).fetchone()
    assert counts == (ROWS, 0)
    # DATASETS.md: ~1.5 KB metadata (as Postgres prints jsonb: with spaces after : and ,).
    avg_metadata = pg_conn.execute(f"SELECT avg(length(metadata::text)) FROM {table}").fetchone()[0]
    assert 1_400 <= avg_metadata <= 1_900


def test_large_formulas(pg_conn, pg_schema) -> None:
    rows = 100
    table = create_and_load(pg_conn, pg_schema, "large", rows)
    counts = pg_conn.execute(f"""
        SELECT count(*), count(*) FILTER (WHERE (
            (published_at IS NULL) <> (id % 4 = 3)
            OR is_published <> (id % 4 <> 3)
            OR word_count <> array_length(regexp_split_to_array(body_text, '\\s+'), 1)
            OR (metadata #>> '{{document,id}}')::bigint <> id
            OR document_id <> lpad(to_hex(id), 32, '0')::uuid
        ) IS NOT FALSE) FROM {table}
    """).fetchone()
    assert counts == (rows, 0)
