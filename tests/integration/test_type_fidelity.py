"""Exact type fidelity: a Postgres → Postgres copy recreates the same table.

An all-types table (every type of issue 4: numbers, text family, binary, date/time with BC
and infinities, json, network types, bit strings, xml, 1-D and 2-D arrays with NULL
elements, an enum, a domain, ranges, a composite) with rows of normal values, NULLs, minima
and maxima is copied by the real pipeline (``rapidbyte_fast.run``) into a second schema, for
every load method on the active implementation (RAPIDBYTE_IMPL). Every destination column
must have the source's ``format_type`` (and declared array dimensions), and every value the
same ``::text``. Further tests: the enum/domain/composite definitions recreated in another
database (``pgddl.ensure_types``), and Arrow-native values (lists, structs, maps,
dictionaries, decimals) landing in sensible Postgres types.
"""
from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import psycopg
import pyarrow as pa
import pytest

import rapidbyte_fast
from rapidbyte_fast.errors import DestinationError
from rapidbyte_fast.pgddl import ensure_types
from rapidbyte_fast.pgtypes import describe_table, field_pg_type

pytestmark = pytest.mark.integration

DEEP_JSON = "[" * 60 + '{"k": "v"}' + "]" * 60
BIG_NUMERIC = "-" + "9" * 45 + "." + "0" * 3 + "1"
CJK = "emoji 😀 and CJK 漢字かなカナ한글, tab\t newline\n quote' \" back\\slash"


def _lit(text: str) -> str:
    """An E'...' SQL literal of ``text``."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


# column, type, then a SQL literal per row: normal, NULLs, minima, maxima, edges
MATRIX = [
    ("c_int2", "smallint", "12", "NULL", "-32768", "32767", "0"),
    ("c_int4", "integer", "-7", "NULL", "-2147483648", "2147483647", "0"),
    ("c_int8", "bigint", "9000000000", "NULL", "-9223372036854775808",
     "9223372036854775807", "0"),
    ("c_f4", "real", "1.5", "NULL", "'-Infinity'", "'Infinity'", "'NaN'"),
    ("c_f8", "double precision", "0.1", "NULL", "'-Infinity'", "'NaN'", "'-0'"),
    ("c_num", "numeric(12,3)", "123.456", "NULL", "-999999999.999", "999999999.999", "0"),
    ("c_numu", "numeric", "3.14159", "NULL", "1e-30", f"'{BIG_NUMERIC}'", "'NaN'"),
    ("c_money", "money", "12.34", "NULL", "'-92233720368547758.08'",
     "'92233720368547758.07'", "0"),
    ("c_bool", "boolean", "true", "NULL", "false", "true", "false"),
    ("c_text", "text", "'hello'", "NULL", "''", _lit(CJK), "'NULL'"),
    ("c_vc", "varchar(255)", "'v'", "NULL", "''", "repeat('é', 255)", "'\\N'"),
    ("c_ch", "char(5)", "'ab'", "NULL", "''", "'abcde'", "' '"),
    ("c_name", "name", "'nm'", "NULL", "''", "repeat('n', 63)", "'Name With Space'"),
    ("c_bytea", "bytea", "'\\x0102'", "NULL", "''", "decode(repeat('ff00', 500), 'hex')",
     "'\\x5c4e'"),
    ("c_date", "date", "'2024-02-29'", "NULL", "'-infinity'", "'infinity'",
     "'4714-11-24 BC'"),
    ("c_date2", "date", "'1970-01-01'", "NULL", "'0044-03-15 BC'", "'9999-12-31'",
     "'5874897-12-31'"),
    ("c_time", "time", "'12:34:56.789'", "NULL", "'00:00'", "'24:00:00'",
     "'23:59:59.999999'"),
    ("c_timetz", "timetz", "'12:00+05'", "NULL", "'00:00+1559'", "'24:00:00-1559'",
     "'01:02:03.456789-03:30'"),
    ("c_ts", "timestamp", "'2024-01-01 00:00:00.123456'", "NULL", "'-infinity'",
     "'9999-12-31 23:59:59.999999'", "'4714-11-24 00:00:00 BC'"),
    ("c_tstz", "timestamptz", "'2024-01-01 00:00:00+00'", "NULL", "'-infinity'",
     "'infinity'", "'1970-01-01 00:00:00+00'"),
    ("c_tstz2", "timestamptz", "'2000-01-01 00:00:00.000001+00'", "NULL",
     "'0001-01-01 00:00:00+00 BC'", "'9999-12-31 23:59:59.999999+00'",
     "'1969-12-31 23:59:59.999999+00'"),
    ("c_iv", "interval", "'1 year 2 days 00:00:01.5'", "NULL", "'-178000000 years'",
     "'178000000 years'", "'-1 days +00:00:00.000001'"),
    ("c_uuid", "uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "NULL",
     "'00000000-0000-0000-0000-000000000000'", "'ffffffff-ffff-ffff-ffff-ffffffffffff'",
     "gen_random_uuid()"),
    ("c_json", "json", "'{\"a\": 1,  \"a\": 2}'", "NULL", "'{}'", f"'{DEEP_JSON}'",
     "'\"\\u00e9\"'"),
    ("c_jsonb", "jsonb", "'{\"b\": [1, 2.50], \"a\": null}'", "NULL", "'{}'", f"'{DEEP_JSON}'",
     "'[]'"),
    ("c_inet", "inet", "'192.168.0.1/24'", "NULL", "'0.0.0.0'",
     "'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128'", "'::1'"),
    ("c_cidr", "cidr", "'10.0.0.0/8'", "NULL", "'0.0.0.0/0'", "'2001:db8::/32'",
     "'192.168.1.0/24'"),
    ("c_mac", "macaddr", "'08:00:2b:01:02:03'", "NULL", "'00:00:00:00:00:00'",
     "'ff:ff:ff:ff:ff:ff'", "'08-00-2b-01-02-03'"),
    ("c_mac8", "macaddr8", "'08:00:2b:01:02:03:04:05'", "NULL", "'00:00:00:00:00:00:00:00'",
     "'ff:ff:ff:ff:ff:ff:ff:ff'", "'08:00:2b:01:02:03'"),
    ("c_bit", "bit(4)", "B'1010'", "NULL", "B'0000'", "B'1111'", "B'0101'"),
    ("c_vbit", "varbit", "B'101'", "NULL", "B''", "repeat('1', 1000)::varbit", "B'0'"),
    ("c_xml", "xml", "XML", "NULL", "NULL", "XML", "NULL"),
    ("a_int", "integer[]", "'{1,NULL,3}'", "NULL", "'{}'", "'{2147483647,-2147483648}'",
     "'{NULL}'"),
    ("a_text", "text[]", """'{"a b",NULL,"c,d","\\"q\\"","NULL",""}'""", "NULL", "'{}'",
     f"ARRAY[{_lit(CJK)}, 'x']", "'{\"\\\\\\\\N\"}'"),
    ("a_num", "numeric[]", "'{1.5,NULL,NaN}'", "NULL", "'{}'",
     f"ARRAY['{BIG_NUMERIC}'::numeric, 'Infinity']", "'{1e-30,-0.000}'"),
    ("a_num2", "numeric(6,2)[]", "'{1.25,NULL}'", "NULL", "'{-9999.99}'", "'{9999.99}'",
     "'{}'"),
    ("a_date", "date[]", "'{2024-02-29,infinity}'", "NULL", "'{-infinity,\"4714-11-24 BC\"}'",
     "'{9999-12-31}'", "'{}'"),
    ("a_tstz", "timestamptz[]", "'{\"2024-01-01 10:00:00+00\",NULL}'", "NULL", "'{-infinity}'",
     "'{infinity}'", "'{}'"),
    ("a_uuid", "uuid[]", "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'", "NULL",
     "'{00000000-0000-0000-0000-000000000000}'", "'{}'", "'{NULL}'"),
    ("a_bytea", "bytea[]", r"""'{"\\x00ff",NULL}'""", "NULL", r"""'{"\\x"}'""", "'{}'",
     "'{}'"),
    ("a_jsonb", "jsonb[]", "ARRAY['{\"a\": 1}'::jsonb, NULL]", "NULL", "'{}'",
     f"ARRAY['{DEEP_JSON}'::jsonb]", "'{}'"),
    ("a_bool", "boolean[]", "'{t,f,NULL}'", "NULL", "'{}'", "'{t}'", "'{f}'"),
    ("a_f8", "float8[]", "'{1.5,NaN,-Infinity}'", "NULL", "'{}'", "'{Infinity}'", "'{-0}'"),
    ("a_int2d", "integer[][]", "'{{1,2},{3,NULL}}'", "NULL", "'{}'",
     "'[0:1][5:6]={{1,2},{3,4}}'", "'{1,2}'"),
    ("a_text2d", "text[][]", "'{{a,NULL},{\"c d\",\"\"}}'", "NULL", "'{}'",
     "'{{\"😀\",NULL}}'", "'[0:0]={x}'"),
    ("a_num2d", "numeric[][]", "'{{1.1,NULL},{NaN,4}}'", "NULL", "'{}'",
     f"ARRAY[ARRAY['{BIG_NUMERIC}'::numeric]]", "'{}'"),
    ("a_inet", "inet[]", "'{10.0.0.1,NULL}'", "NULL", "'{}'", "'{::1}'", "'{}'"),
    ("c_mood", "{s}.mood", "'ok'", "NULL", "'sad'", "'happy'", "'it''s \"fine\"'"),
    ("a_mood", "{s}.mood[]", "'{ok,NULL}'", "NULL", "'{}'", "'{happy,sad}'", "'{}'"),
    ("c_posint", "{s}.posint", "5", "NULL", "1", "2147483647", "42"),
    ("c_r4", "int4range", "'[1,5)'", "NULL", "'empty'", "'(,)'", "'[-2147483648,2147483647)'"),
    ("c_rtz", "tstzrange", "'[2024-01-01,2024-02-01)'", "NULL", "'empty'",
     "'[-infinity,infinity]'", "'(,2024-01-01 00:00:00+00)'"),
    ("c_pair", "{s}.pair", "ROW(1, 'x')", "NULL", "ROW(NULL, NULL)",
     "ROW(2147483647, 'q\"uo,te (x)')", "ROW(0, '')"),
]
ROWS = 5


def _xml_supported(conn) -> bool:
    try:
        conn.execute("SELECT '<a/>'::xml")
        return True
    except psycopg.Error:  # pgserver's build has no libxml: xml values cannot be made
        return False


@pytest.fixture
def all_types(pg_conn, pg_schema):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TYPE {s}.mood AS ENUM ('sad', 'ok', 'it''s \"fine\"', 'happy')")
    pg_conn.execute(f"CREATE DOMAIN {s}.posint AS integer CHECK (VALUE > 0)")
    pg_conn.execute(f"CREATE TYPE {s}.pair AS (a integer, b text)")
    cols = ", ".join(f"{name} {sql_type.replace('{s}', s)}" for name, sql_type, *_ in MATRIX)
    pg_conn.execute(f"CREATE TABLE {s}.alltypes (id integer PRIMARY KEY, {cols})")
    xml = "'<doc a=\"1\">text &amp; 😀</doc>'" if _xml_supported(pg_conn) else "NULL"
    for r in range(ROWS):
        values = ", ".join(("NULL" if r == 1 else xml) if row[2 + r] == "XML" else row[2 + r]
                           for row in MATRIX)
        pg_conn.execute(f"INSERT INTO {s}.alltypes VALUES ({r}, {values})")
    return pg_schema


def _columns(conn, schema: str, table: str) -> list[tuple[str, str, int]]:
    return conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod), attndims FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (f'"{schema}"."{table}"',)).fetchall()


def _text_rows(conn, schema: str, table: str, names: list[str]) -> list[tuple]:
    select = ", ".join(f'"{n}"::text' for n in names)
    return conn.execute(f'SELECT {select} FROM "{schema}"."{table}" ORDER BY id').fetchall()


def _config(dsn: str, src: str, dst: str, load_method: str, passthrough: str) -> dict:
    return {
        "version": "1.0", "pipeline": "fidelity",
        "source": {"use": "postgres", "config": {"url": dsn, "schema": src},
                   "streams": [{"name": "alltypes"}]},
        "destination": {"use": "postgres",
                        "config": {"url": dsn, "schema": dst, "load_method": load_method,
                                   "passthrough": passthrough},
                        "write_mode": "replace"},
    }


@pytest.mark.parametrize("load_method, passthrough", [
    ("copy", "off"), ("copy", "auto"), ("insert", "off")])
def test_postgres_to_postgres_recreates_the_same_table(pg_dsn, pg_conn, all_types, pg_schema2,
                                                      load_method, passthrough):
    result = rapidbyte_fast.run(_config(pg_dsn, all_types, pg_schema2, load_method,
                                        passthrough))
    assert result.streams[0].records_written == ROWS
    source = _columns(pg_conn, all_types, "alltypes")
    assert _columns(pg_conn, pg_schema2, "alltypes") == source
    names = [name for name, _, _ in source]
    want = _text_rows(pg_conn, all_types, "alltypes", names)
    got = _text_rows(pg_conn, pg_schema2, "alltypes", names)
    wrong = [(names[c], r, got[r][c], want[r][c]) for r in range(ROWS)
             for c in range(len(names)) if got[r][c] != want[r][c]]
    assert wrong == []
    assert want[1][1:] == (None,) * len(MATRIX)


def test_source_schema_carries_types(pg_conn, all_types):
    fields = {f.name: f for f in describe_table(pg_conn, all_types, "alltypes").arrow_schema()}
    assert fields["a_int"].type == pa.list_(pa.int32())
    assert fields["a_num"].type == pa.list_(pa.utf8())
    assert fields["a_num2"].type == pa.list_(pa.decimal128(6, 2))
    assert fields["a_int2d"].type == pa.utf8()
    assert field_pg_type(fields["a_int2d"]) == "integer[][]"
    assert field_pg_type(fields["c_mood"]) == f"{all_types}.mood"
    assert field_pg_type(fields["a_mood"]) == f"{all_types}.mood[]"
    assert fields["c_posint"].type == pa.int32()


def test_one_dimensional_column_with_a_two_dimensional_value_travels_as_text(
        pg_dsn, pg_conn, pg_schema, pg_schema2):
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".t (id int, a integer[])')
    pg_conn.execute(f"""INSERT INTO "{pg_schema}".t VALUES (1, '{{1}}'), (2, '{{{{1}}}}')""")
    cfg = _config(pg_dsn, pg_schema, pg_schema2, "copy", "off")
    cfg["source"]["streams"] = [{"name": "t"}]
    # the decoder refuses the 2-D value; the stream starts again with the column as text
    rapidbyte_fast.run(cfg)
    assert pg_conn.execute(f'SELECT a::text FROM "{pg_schema2}".t ORDER BY id').fetchall() == [
        ("{1}",), ("{{1}}",)]
    pg_conn.execute(f'ALTER TABLE "{pg_schema}".t ALTER COLUMN a TYPE integer[][]')
    rapidbyte_fast.run(cfg)
    assert pg_conn.execute(f'SELECT a::text FROM "{pg_schema2}".t ORDER BY id').fetchall() == [
        ("{1}",), ("{{1}}",)]


# --- user-defined types in another database ---------------------------------------------------

@pytest.fixture
def other_db(pg_dsn, pg_conn):
    name = f"rbf_other_{uuid.uuid4().hex[:8]}"
    pg_conn.execute(f'CREATE DATABASE "{name}"')
    conninfo = psycopg.conninfo.make_conninfo(pg_dsn, dbname=name)
    yield conninfo
    pg_conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_user_types_are_created_in_the_destination_schema(pg_conn, pg_schema, other_db):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"""CREATE TYPE {s}."My Mood" AS ENUM ('sad', 'it''s ok', 'ha"ppy')""")
    pg_conn.execute(f"CREATE DOMAIN {s}.posint AS integer NOT NULL CHECK (VALUE > 0) "
                    "CHECK (VALUE < 1000)")
    pg_conn.execute(f"""CREATE DOMAIN {s}.glad AS {s}."My Mood" CHECK (VALUE <> 'sad')""")
    pg_conn.execute(f'CREATE TYPE {s}.pair AS (a integer, m {s}."My Mood", "B c" text[])')
    pg_conn.execute(f'CREATE TABLE {s}.t (m {s}."My Mood", ma {s}."My Mood"[], p {s}.posint, '
                    f"g {s}.glad, pr {s}.pair)")
    pg_conn.execute(f"""INSERT INTO {s}.t VALUES ('ha"ppy', '{{sad,NULL}}', 7, 'it''s ok',
                        ROW(1, 'sad', '{{x}}'))""")
    source = describe_table(pg_conn, pg_schema, "t").arrow_schema()
    with psycopg.connect(other_db) as dst:
        dst.execute('CREATE SCHEMA "d st"')
        schema = ensure_types(dst, "d st", source)
        assert [field_pg_type(f) for f in schema] == [
            '"d st"."My Mood"', '"d st"."My Mood"[]', '"d st".posint', '"d st".glad',
            '"d st".pair']
        cols = ", ".join(f'"{f.name}" {field_pg_type(f)}' for f in schema)
        dst.execute(f'CREATE TABLE "d st".t ({cols})')
        dst.commit()
        text = [tuple(r) for r in dst.execute(
            "SELECT enum_range(NULL::\"d st\".\"My Mood\")::text, "
            "(SELECT string_agg(pg_get_constraintdef(oid), ' ' ORDER BY conname) "
            " FROM pg_constraint WHERE contypid = '\"d st\".posint'::regtype), "
            "(SELECT typnotnull FROM pg_type WHERE oid = '\"d st\".posint'::regtype), "
            "(SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            " WHERE contypid = '\"d st\".glad'::regtype)")]
        assert text == [('{sad,"it\'s ok","ha\\"ppy"}',
                         "CHECK ((VALUE > 0)) CHECK ((VALUE < 1000))", True,
                         "CHECK ((VALUE <> 'sad'::\"d st\".\"My Mood\"))")]
        # a second run finds them (in the destination schema) and creates nothing
        again = ensure_types(dst, "d st", source)
        assert [field_pg_type(f) for f in again] == [field_pg_type(f) for f in schema]
        dst.rollback()
        # a same-named type with other labels is refused with the DDL to create
        dst.execute('ALTER TYPE "d st"."My Mood" ADD VALUE \'new\'')
        dst.commit()
        with pytest.raises(DestinationError, match=(
                r'type "d st"."My Mood" exists in the destination but has the labels '
                r".*'new'.*; make it match the source, or drop or rename it so that it can be "
                r"created as: CREATE TYPE \"d st\".\"My Mood\" AS ENUM \('sad', 'it''s ok', "
                r"'ha\"ppy'\)")):
            ensure_types(dst, "d st", source)


def test_same_database_reuses_the_source_types(pg_conn, pg_schema):
    pg_conn.execute(f'CREATE TYPE "{pg_schema}".mood AS ENUM (\'a\')')
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".t (m "{pg_schema}".mood)')
    source = describe_table(pg_conn, pg_schema, "t").arrow_schema()
    schema = ensure_types(pg_conn, "elsewhere", source)
    assert field_pg_type(schema[0]) == f"{pg_schema}.mood"
    assert pg_conn.execute("SELECT to_regnamespace('elsewhere')").fetchone()[0] is None


def test_missing_extension_type_says_how_to_create_it(pg_conn):
    schema = pa.schema([pa.field("x", pa.utf8(), metadata={b"pg_type": b"citext"})])
    with pytest.raises(DestinationError, match=(
            r"^column x: type citext does not exist in the destination database; create it "
            r"there first \(CREATE EXTENSION for an extension's type\)$")):
        ensure_types(pg_conn, "public", schema)


# --- Arrow-native values --------------------------------------------------------------------

@pytest.mark.parametrize("load_method", ["copy", "insert"])
def test_arrow_native_values_land_in_sensible_types(load_arrow, pg_conn, pg_schema,
                                                   load_method):
    batch = pa.RecordBatch.from_pydict({
        "id": pa.array([1, 2], pa.int64()),
        "f": pa.array([1.5, None], pa.float64()),
        "s": pa.array(["x", None], pa.large_string()),
        "ts": pa.array([dt.datetime(2024, 1, 1, 12), None], pa.timestamp("ms", "Europe/Paris")),
        "d": pa.array([Decimal("1.25"), Decimal("-0.50")], pa.decimal128(5, 2)),
        "b": pa.array([b"\x00", None], pa.binary()),
        "dict": pa.array(["a", "b"]).dictionary_encode(),
        "ints": pa.array([[1, None], []], pa.list_(pa.int32())),
        "strs": pa.array([["a b", None], None], pa.large_list(pa.large_string())),
        "nested": pa.array([[[1], [2, 3]], None], pa.list_(pa.list_(pa.int64()))),
        "obj": pa.array([{"k": 1, "v": "x"}, None], pa.struct([("k", pa.int64()),
                                                               ("v", pa.utf8())])),
        "m": pa.array([[("a", 1.5)], []], pa.map_(pa.utf8(), pa.float64())),
        "u8": pa.array([255, 0], pa.uint8()),
        "u64": pa.array([2**64 - 1, 0], pa.uint64()),
    })
    load_arrow(pg_schema, "native", [batch], load_method)
    assert [(n, t) for n, t, _ in _columns(pg_conn, pg_schema, "native")] == [
        ("id", "bigint"), ("f", "double precision"), ("s", "text"),
        ("ts", "timestamp with time zone"), ("d", "numeric(5,2)"), ("b", "bytea"),
        ("dict", "text"), ("ints", "integer[]"), ("strs", "text[]"), ("nested", "jsonb"),
        ("obj", "jsonb"), ("m", "jsonb"), ("u8", "smallint"), ("u64", "numeric(20,0)")]
    pg_conn.execute("SET TimeZone = 'UTC'")
    rows = pg_conn.execute(f'SELECT ts::text, d::text, ints::text, strs::text, nested::text, '
                           f'obj::text, m::text, u64::text FROM "{pg_schema}".native '
                           "ORDER BY id").fetchall()
    assert rows == [
        ("2024-01-01 12:00:00+00", "1.25", "{1,NULL}", '{"a b",NULL}', "[[1], [2, 3]]",
         '{"k": 1, "v": "x"}', '{"a": 1.5}', "18446744073709551615"),
        (None, "-0.50", "{}", None, None, None, "{}", "0")]
