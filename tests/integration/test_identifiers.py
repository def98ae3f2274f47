"""Hostile identifiers through the whole pipeline: schema, table and column names with
spaces, double quotes, dots, commas, upper case, unicode, reserved words and exactly 63
bytes work in DDL, COPY column lists, INSERT, staging tables and primary keys."""
from __future__ import annotations

import uuid

import psycopg
import pytest

import rapidbyte_fast
from rapidbyte_fast.errors import ConfigError
from rapidbyte_fast.pgtypes import derived_name, quote_ident

pytestmark = pytest.mark.integration

TAG = uuid.uuid4().hex[:6]                 # one test session's schemas do not meet another's
SRC_SCHEMA = f'Src "Schema".é {TAG}'
DST_SCHEMA = f"select {TAG}"
LONG_TABLE = "T" + "é" * 31                 # 63 bytes: staging names must be hashed
TABLES = ['Order Items "x" 😀', LONG_TABLE, "user"]
COLUMNS = [
    ('Key "K" 名', "integer"), ("select", "text"), ("from", "bigint"), ("with space", "date"),
    ("UPPER", "numeric(8,2)"), ("a,b", "text[]"), ("ünïcødé 名前", "jsonb"),
    ("c" * 63, "boolean"), ("a.b", "uuid"),
]
ROWS = [
    (1, "it's", 2**40, "2024-02-29", "12.50", ["x", None], '{"k": "v"}', True,
     "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    (2, None, None, None, None, None, None, None, None),
    (3, "tab\t\"q\"", -1, "0044-03-15 BC", "-0.01", [], "[]", False,
     "00000000-0000-0000-0000-000000000000"),
]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@pytest.fixture
def hostile(pg_conn):
    for schema in (SRC_SCHEMA, DST_SCHEMA):
        pg_conn.execute(f"DROP SCHEMA IF EXISTS {_q(schema)} CASCADE")
    pg_conn.execute(f"CREATE SCHEMA {_q(SRC_SCHEMA)}")
    cols = ", ".join(f"{_q(n)} {t}" for n, t in COLUMNS)
    for table in TABLES:
        rel = f"{_q(SRC_SCHEMA)}.{_q(table)}"
        pg_conn.execute(f"CREATE TABLE {rel} ({cols}, PRIMARY KEY ({_q(COLUMNS[0][0])}))")
        with pg_conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {rel} VALUES ({', '.join(['%s'] * len(COLUMNS))})",
                            ROWS)
    yield
    for schema in (SRC_SCHEMA, DST_SCHEMA):
        pg_conn.execute(f"DROP SCHEMA IF EXISTS {_q(schema)} CASCADE")


def _config(dsn: str, load_method: str, write_mode: str, passthrough: str) -> dict:
    streams = [{"name": _q(t)} for t in TABLES]
    return {
        "version": "1.0", "pipeline": "hostile",
        "source": {"use": "postgres", "config": {"url": dsn, "schema": SRC_SCHEMA},
                   "streams": streams},
        "destination": {"use": "postgres",
                        "config": {"url": dsn, "schema": DST_SCHEMA,
                                   "load_method": load_method, "passthrough": passthrough},
                        "write_mode": write_mode},
    }


def _snapshot(conn, schema: str, table: str):
    rel = f"{_q(schema)}.{_q(table)}"
    cols = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (rel,)).fetchall()
    text = ", ".join(f"{_q(n)}::text" for n, _ in cols)
    rows = conn.execute(f"SELECT {text} FROM {rel} ORDER BY 1").fetchall()
    pk = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
        (rel,)).fetchall()
    return cols, rows, pk


def _tables(conn, schema: str) -> list[str]:
    return sorted(r[0] for r in conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = to_regnamespace(%s) "
        "AND relkind = 'r'", (_q(schema),)).fetchall())


@pytest.mark.parametrize("load_method, passthrough", [
    ("copy", "off"), ("copy", "auto"), ("insert", "off")])
def test_hostile_names_replace_then_append(pg_dsn, pg_conn, hostile, load_method, passthrough):
    result = rapidbyte_fast.run(_config(pg_dsn, load_method, "replace", passthrough))
    assert [s.records_written for s in result.streams] == [3, 3, 3]
    for table in TABLES:
        assert _snapshot(pg_conn, DST_SCHEMA, table) == _snapshot(pg_conn, SRC_SCHEMA, table)
    assert _tables(pg_conn, DST_SCHEMA) == sorted(TABLES)   # no staging table left
    # replace again (a staging table next to the existing one), then append into it
    rapidbyte_fast.run(_config(pg_dsn, load_method, "replace", passthrough))
    for table in TABLES:  # appending the same rows again must not clash with the keys
        pg_conn.execute(f"ALTER TABLE {_q(DST_SCHEMA)}.{_q(table)} "
                        f"DROP CONSTRAINT {_q(derived_name(table, '_pkey'))}")
    cfg = _config(pg_dsn, load_method, "append", passthrough)
    rapidbyte_fast.run(cfg)
    for table in TABLES:
        _, rows, _ = _snapshot(pg_conn, DST_SCHEMA, table)
        _, src_rows, _ = _snapshot(pg_conn, SRC_SCHEMA, table)
        assert rows == sorted(src_rows * 2, key=lambda r: int(r[0]))


def test_derived_names_fit_and_differ():
    stage = derived_name(LONG_TABLE, "__rbf_stage_0123abcd")
    assert len(stage.encode()) <= 63 and stage.endswith("__rbf_stage_0123abcd")
    assert stage != derived_name(LONG_TABLE[:-1] + "e", "__rbf_stage_0123abcd")
    assert derived_name(TABLES[0], "_pkey") == TABLES[0] + "_pkey"


def test_names_over_63_bytes_are_refused(pg_dsn, pg_conn, hostile):
    with pytest.raises(ConfigError, match="is 64 bytes long; PostgreSQL names have at most 63"):
        quote_ident("é" * 32)
    cfg = _config(pg_dsn, "copy", "replace", "off")
    cfg["source"]["streams"] = [{"name": "x" * 64}]
    with pytest.raises(ConfigError, match="'x{64}' is 64 bytes long"):
        rapidbyte_fast.run(cfg)
    with pytest.raises(psycopg.errors.UndefinedTable):  # nothing was created under a
        pg_conn.execute(f'SELECT 1 FROM {_q(DST_SCHEMA)}."{"x" * 63}"')  # truncated name
