"""Every connection pins the session settings its SQL relies on.

A database and a role that set ``standard_conforming_strings = off`` (and hostile date,
interval, time zone and float settings) must not change what lands: without the pin, a
text ending in a backslash written with ``load_method: insert`` lets the next value's text
be parsed as SQL.
"""
from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import rapidbyte_fast
from rapidbyte_fast.pgconn import connect

pytestmark = pytest.mark.integration

HOSTILE = {
    "standard_conforming_strings": "off",
    "DateStyle": "'SQL, DMY'",
    "IntervalStyle": "sql_standard",
    "TimeZone": "'Asia/Kathmandu'",
    "extra_float_digits": "-15",
}
PINNED = {
    "standard_conforming_strings": "on",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "extra_float_digits": "3",
    "client_encoding": "UTF8",
}
TEXTS = ["x\\", "it's", "\\'); DROP TABLE t; --", "tab\tnl\n", "plain"]


@pytest.fixture
def hostile_dsn(pg_dsn, pg_conn):
    """A database and a login role that both set hostile session defaults."""
    name = f"hostile_{uuid.uuid4().hex[:8]}"
    pg_conn.execute(f'CREATE DATABASE "{name}"')
    pg_conn.execute(f'CREATE ROLE "{name}" LOGIN SUPERUSER')
    for key, value in HOSTILE.items():
        pg_conn.execute(f'ALTER DATABASE "{name}" SET {key} = {value}')
        pg_conn.execute(f'ALTER ROLE "{name}" SET {key} = {value}')
    params = conninfo_to_dict(pg_dsn)
    params.update(dbname=name, user=name)
    params.pop("password", None)
    yield make_conninfo(**params)
    pg_conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    pg_conn.execute(f'DROP ROLE "{name}"')


def test_connect_pins_every_setting(hostile_dsn):
    with psycopg.connect(hostile_dsn) as raw:  # the role's hostile defaults are in force
        assert raw.execute("SHOW standard_conforming_strings").fetchone()[0] == "off"
    conn = connect(hostile_dsn, "test")
    try:
        for key, want in PINNED.items():
            assert conn.execute(f"SHOW {key}").fetchone()[0] == want, key
    finally:
        conn.close()


def _source(conn, schema: str) -> None:
    conn.execute(f'CREATE TABLE "{schema}".t (id integer PRIMARY KEY, s text, '
                 "d date, ts timestamptz, iv interval, f float8, n numeric(8,3))")
    for i, text in enumerate(TEXTS):
        conn.execute(f'INSERT INTO "{schema}".t VALUES (%s, %s, %s, %s, %s, %s, %s)',
                     (i, text, "2024-02-03", "2024-02-03 04:05:06.789+00", "1 day 02:03:04",
                      0.1 + i, "12.345"))


@pytest.mark.parametrize("load_method, passthrough, write_mode", [
    ("insert", "off", "replace"), ("copy", "off", "replace"), ("copy", "auto", "replace"),
    ("insert", "off", "upsert"), ("copy", "off", "append")])
def test_hostile_destination_gets_exact_values(pg_dsn, pg_conn, pg_schema, hostile_dsn,
                                               load_method, passthrough,
                                               write_mode):
    _source(pg_conn, pg_schema)
    rapidbyte_fast.run({
        "version": "1.0", "pipeline": "hostile",
        "source": {"use": "postgres", "config": {"url": pg_dsn, "schema": pg_schema},
                   "streams": [{"name": "t"}]},
        "destination": {"use": "postgres",
                        "config": {"url": hostile_dsn, "schema": "dst",
                                   "load_method": load_method, "passthrough": passthrough},
                        "write_mode": write_mode,
                        **({"primary_key": ["id"]} if write_mode == "upsert" else {})},
    })
    query = ("SET standard_conforming_strings = on; SET DateStyle = 'ISO'; "
             "SET IntervalStyle = postgres; SET TimeZone = 'UTC'; "
             "SET extra_float_digits = 3; ")
    select = "SELECT id, s, d::text, ts::text, iv::text, f::text, n::text FROM {} ORDER BY id"
    want = pg_conn.execute(select.format(f'"{pg_schema}".t')).fetchall()
    with psycopg.connect(hostile_dsn, autocommit=True) as dst:
        dst.execute(query)
        got = dst.execute(select.format("dst.t")).fetchall()
    assert got == want


def test_hostile_source_incremental_cursor(pg_dsn, pg_conn, pg_schema, hostile_dsn):
    """The cursor predicate's literals are read back on a hostile source session."""
    with psycopg.connect(hostile_dsn, autocommit=True) as src:
        src.execute("SET standard_conforming_strings = on")
        src.execute("CREATE SCHEMA s")
        src.execute("CREATE TABLE s.ev (id integer PRIMARY KEY, k text, at timestamptz)")
        src.execute("INSERT INTO s.ev SELECT i, 'k' || i || '\\', "
                    "'2024-01-01'::timestamptz + i * interval '1 hour' "
                    "FROM generate_series(1, 5) i")
    cfg = {
        "version": "1.0", "pipeline": "hostile_inc",
        "source": {"use": "postgres", "config": {"url": hostile_dsn, "schema": "s"},
                   "streams": [{"name": "ev", "sync_mode": "incremental",
                                "cursor_field": "k", "tie_breaker_field": "at"}]},
        "destination": {"use": "postgres", "config": {"url": pg_dsn, "schema": pg_schema},
                        "write_mode": "append"},
    }
    assert rapidbyte_fast.run(cfg).records_written == 5
    with psycopg.connect(hostile_dsn, autocommit=True) as src:
        src.execute("SET standard_conforming_strings = on")
        src.execute("INSERT INTO s.ev VALUES (6, 'k6\\', '2024-01-01 06:00+00')")
    assert rapidbyte_fast.run(cfg).records_written == 1
    rows = pg_conn.execute(f'SELECT id, k FROM "{pg_schema}".ev ORDER BY id').fetchall()
    assert rows == [(i, f"k{i}\\") for i in range(1, 7)]
