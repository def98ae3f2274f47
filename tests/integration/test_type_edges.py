"""Type edges a Postgres → Postgres copy must get right on every path (copy and insert on the
Arrow path, passthrough of raw COPY bytes):

* NaN in ``numeric(p,s)`` arrives as it was (PostgreSQL refuses ±Infinity in a numeric
  with a precision; the kernels carry them too, see tests/parity/test_sentinels.py);
* ``reg*`` values (regclass, regtype, ...) arrive by name: their binary form is an OID that
  means another object (or nothing) in another database;
* user types named like built-ins (``s.text``, ``s.int4``) are not taken for them;
* text from a SQL_ASCII database that is not UTF-8 is a DataError naming column and row,
  not bytes smuggled into an Arrow utf8 array. (A session whose client_encoding is UTF8
  already gets a server error for such bytes; the decoder's check is what names the cell
  when the bytes arrive unconverted, with client_encoding SQL_ASCII.)
"""
from __future__ import annotations

import uuid

import psycopg
import pytest

import rapidbyte_fast
from rapidbyte_fast._impl import copy_decode
from rapidbyte_fast.column_plan import ColumnSinks, Kind
from rapidbyte_fast.errors import DataError
from rapidbyte_fast.pgtypes import describe_table

pytestmark = pytest.mark.integration

PATHS = [("copy", "off"), ("copy", "auto"), ("insert", "off")]


def _config(src_url: str, src: str, dst_url: str, dst: str, table: str, load_method: str,
            passthrough: str) -> dict:
    return {
        "version": "1.0", "pipeline": "edges",
        "source": {"use": "postgres", "config": {"url": src_url, "schema": src},
                   "streams": [{"name": table}]},
        "destination": {"use": "postgres",
                        "config": {"url": dst_url, "schema": dst, "load_method": load_method,
                                   "passthrough": passthrough},
                        "write_mode": "replace"},
    }


def _texts(conn, schema: str, table: str) -> list[tuple]:
    cols = [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum", (f'"{schema}"."{table}"',))]
    select = ", ".join(f'"{c}"::text' for c in cols)
    return conn.execute(f'SELECT {select} FROM "{schema}"."{table}" ORDER BY 1').fetchall()


@pytest.fixture
def other_db(pg_dsn, pg_conn):
    name = f"rbf_edges_{uuid.uuid4().hex[:8]}"
    pg_conn.execute(f'CREATE DATABASE "{name}"')
    yield psycopg.conninfo.make_conninfo(pg_dsn, dbname=name)
    pg_conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.parametrize("load_method, passthrough", PATHS)
def test_numeric_nan_and_infinities_arrive(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                           load_method, passthrough):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.t (id int PRIMARY KEY, n numeric(10,2), "
                    "a numeric(10,2)[])")
    pg_conn.execute(f"""INSERT INTO {s}.t VALUES (1, 'NaN', '{{NaN,1.5}}'),
                        (2, 'NaN', '{{NaN,NULL}}'), (4, 1.5, '{{}}'), (5, NULL, NULL),
                        (6, -99999999.99, '{{0.01}}')""")
    rapidbyte_fast.run(_config(pg_dsn, pg_schema, pg_dsn, pg_schema2, "t", load_method,
                               passthrough))
    want = [("1", "NaN", "{NaN,1.50}"), ("2", "NaN", "{NaN,NULL}"), ("4", "1.50", "{}"),
            ("5", None, None), ("6", "-99999999.99", "{0.01}")]
    assert _texts(pg_conn, pg_schema, "t") == want
    assert _texts(pg_conn, pg_schema2, "t") == want


@pytest.mark.parametrize("load_method, passthrough", PATHS)
def test_reg_types_arrive_by_name(pg_dsn, pg_conn, other_db, load_method, passthrough):
    schema = f"edges_{uuid.uuid4().hex[:8]}"
    setup = [f'CREATE SCHEMA "{schema}"', f'CREATE TABLE "{schema}".lookup_target (x int)',
             f"""CREATE TYPE "{schema}".mood AS ENUM ('ok')"""]
    try:
        for statement in setup:
            pg_conn.execute(statement)
        with psycopg.connect(other_db, autocommit=True) as dst:  # the same names, other OIDs
            for statement in setup:
                dst.execute(statement)
        pg_conn.execute(
            f'CREATE TABLE "{schema}".t (id int PRIMARY KEY, rc regclass, rt regtype, '
            "rn regnamespace, rp regproc, rpp regprocedure, ro regoper, roo regoperator, "
            "rcfg regconfig, rd regdictionary, rr regrole, rcol regcollation, "
            "a regclass[])")
        pg_conn.execute(
            f"""INSERT INTO "{schema}".t VALUES (1, '"{schema}".lookup_target',
                '"{schema}".mood', '"{schema}"', 'now', 'abs(integer)', '||/',
                '+(integer,integer)', 'english', 'simple', current_user::regrole, '"C"',
                ARRAY['"{schema}".lookup_target'::regclass]), (2, NULL, NULL, NULL, NULL,
                NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)""")
        rapidbyte_fast.run(_config(pg_dsn, schema, other_db, schema, "t", load_method,
                                   passthrough))
        want = _texts(pg_conn, schema, "t")
        assert want[0][1] == f"{schema}.lookup_target"
        with psycopg.connect(other_db) as dst:
            assert _texts(dst, schema, "t") == want
    finally:
        pg_conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_user_types_named_like_builtins_are_not_taken_for_them(pg_dsn, pg_conn, pg_schema,
                                                               pg_schema2):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TYPE {s}.text AS (a int, b bool)")
    pg_conn.execute(f"CREATE TYPE {s}.int4 AS ENUM ('small', 'large')")
    pg_conn.execute(f"CREATE DOMAIN {s}.uuid AS {s}.int4")
    pg_conn.execute(f"CREATE TABLE {s}.t (id int PRIMARY KEY, c {s}.text, e {s}.int4, "
                    f"d {s}.uuid, ce {s}.text[])")
    pg_conn.execute(f"""INSERT INTO {s}.t VALUES (1, ROW(7, true), 'large', 'small',
                        ARRAY[ROW(1, false)::{s}.text]), (2, NULL, NULL, NULL, NULL)""")
    cols = {c.name: c for c in describe_table(pg_conn, pg_schema, "t").columns}
    assert [(cols[n].kind, cols[n].as_text) for n in ("c", "e", "d", "ce")] == [
        (Kind.TEXT, True), (Kind.TEXT, False), (Kind.TEXT, True), (Kind.TEXT, True)]
    rapidbyte_fast.run(_config(pg_dsn, pg_schema, pg_dsn, pg_schema2, "t", "copy", "off"))
    assert _texts(pg_conn, pg_schema2, "t") == _texts(pg_conn, pg_schema, "t")


@pytest.fixture
def sql_ascii_db(pg_dsn, pg_conn):
    name = f"rbf_ascii_{uuid.uuid4().hex[:8]}"
    pg_conn.execute(f"""CREATE DATABASE "{name}" ENCODING 'SQL_ASCII' LC_COLLATE 'C'
                        LC_CTYPE 'C' TEMPLATE template0""")
    yield psycopg.conninfo.make_conninfo(pg_dsn, dbname=name)
    pg_conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.parametrize("column_type", ["text", "varchar(10)", "text[]", "jsonb"])
def test_text_from_sql_ascii_must_be_utf8(sql_ascii_db, column_type):
    latin1 = "'caf\\351'" if column_type != "jsonb" else "'\"caf\\351\"'"
    value = f"ARRAY[E{latin1}]" if column_type == "text[]" else f"E{latin1}"
    ok = "ARRAY['caf']" if column_type == "text[]" else "'\"ok\"'"
    with psycopg.connect(sql_ascii_db, autocommit=True, client_encoding="UTF8") as src:
        src.execute(f"CREATE TABLE t (id int PRIMARY KEY, v {column_type})")
        src.execute(f"INSERT INTO t VALUES (1, {ok}), (2, {value})")
        table = describe_table(src, "public", "t")
        plan = table.column_plan()
        assert plan.validate_utf8
        select = ", ".join(c.select_sql() for c in table.columns)
        src.execute("SET client_encoding = 'SQL_ASCII'")  # the bytes as stored, unchecked
        with src.cursor().copy(f"COPY (SELECT {select} FROM t ORDER BY id) TO STDOUT "
                               "(FORMAT binary)") as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
    sinks = ColumnSinks(plan)
    element = ", array element 1" if column_type == "text[]" else ""
    with pytest.raises(DataError, match=(
            rf"^column 'v', row 1{element}: text is not valid UTF-8 "
            r"\(value: '\"?caf\\\\xe9\"?'\)")):
        copy_decode.decode(plan, data, copy_decode.parse_header(data), len(data), sinks, 100)


def test_text_from_utf8_databases_is_not_checked_again(pg_conn, pg_schema):
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".t (v text)')
    assert not describe_table(pg_conn, pg_schema, "t").column_plan().validate_utf8
