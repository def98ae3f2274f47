"""Identifier quoting, derived names, DDL type checks and Arrow → Postgres type mapping."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pyarrow as pa
import pytest

from rapidbyte_fast.column_plan import Kind
from rapidbyte_fast.destinations.postgres import adaptive_flush_bytes
from rapidbyte_fast.errors import ConfigError, DataError
from rapidbyte_fast.pgtypes import (
    column_of_row, check_type_sql, conform, declared_base, derived_name, json_text, pg_type_for_arrow,
    primary_key_of, qualified, quote_ident, split_table, target_encoding,
)


def test_quote_ident():
    assert quote_ident("Order Items") == '"Order Items"'
    assert quote_ident('we"ird') == '"we""ird"'
    assert qualified("select", "from") == '"select"."from"'
    with pytest.raises(ConfigError, match="NUL"):
        quote_ident("a\x00b")


@pytest.mark.parametrize("name,expected", [
    ("orders", ("public", "orders")),
    ("sales.orders", ("sales", "orders")),
    ('"My.Schema"."Or""ders"', ("My.Schema", 'Or"ders')),
    ('sales."Big Table"', ("sales", "Big Table")),
])
def test_split_table(name, expected):
    assert split_table(name, "public") == expected


def test_split_table_rejects_three_parts():
    with pytest.raises(ConfigError, match="expected 'table' or 'schema.table'"):
        split_table("a.b.c", "public")


def test_derived_name_stays_within_63_bytes_and_is_unique():
    short = derived_name("orders", "__stage")
    assert short == "orders__stage"
    a = derived_name("é" * 40, "__rbf_stage_12345678")
    b = derived_name("é" * 39 + "e", "__rbf_stage_12345678")
    assert len(a.encode()) <= 63 and len(b.encode()) <= 63
    assert a != b and a.endswith("__rbf_stage_12345678")


@pytest.mark.parametrize("t", [
    "integer", "character varying(255)", "numeric(18,6)", "timestamp(3) with time zone",
    "time without time zone", "integer[]", "text[][]", '"MyEnum"', 'public."My Type"',
    "bit varying(10)", "double precision", '"d st"."My ""Mood"""[]', 'ys."My Mood"',
    "integer[][]", "interval", "interval(3)", "interval year to month",
    "interval day to second(6)", "interval minute", "time(0) without time zone",
    "timestamp without time zone[]", "character(1)", '"char"', "numeric(5,-2)", "bpchar",
    "tsvector", "public.citext",
])
def test_check_type_sql_accepts_format_type_output(t):
    assert check_type_sql(t, "column x") == t


@pytest.mark.parametrize("t", [
    "integer; DROP TABLE x", "text) --", "int4 DEFAULT 1", "", "integer references t",
    "integer not null", "text collate c", "int4 check", "interval year to decade",
    "double varying", "timestamp with time zone primary key", "a.b.c", "integer[3]",
])
def test_check_type_sql_refuses_injection(t):
    with pytest.raises(DataError, match="column x: .* is not a valid Postgres type name"):
        check_type_sql(t, "column x")


@pytest.mark.parametrize("arrow,pg", [
    (pa.int64(), "bigint"), (pa.int32(), "integer"), (pa.int16(), "smallint"),
    (pa.float64(), "double precision"), (pa.float32(), "real"), (pa.string(), "text"),
    (pa.large_string(), "text"), (pa.bool_(), "boolean"), (pa.binary(), "bytea"),
    (pa.timestamp("us", tz="UTC"), "timestamp with time zone"),
    (pa.timestamp("ms"), "timestamp without time zone"), (pa.date32(), "date"),
    (pa.decimal128(12, 2), "numeric(12,2)"), (pa.dictionary(pa.int8(), pa.string()), "text"),
    (pa.month_day_nano_interval(), "interval"),
])
def test_pg_type_for_arrow(arrow, pg):
    assert pg_type_for_arrow(arrow) == pg


def test_write_plan_kinds_and_binary_fallback():
    schema = pa.schema([
        pa.field("id", pa.int32()),
        pa.field("doc", pa.utf8(), metadata={b"pg_type": b"jsonb"}),
        pa.field("n", pa.utf8(), metadata={b"pg_type": b"numeric"}),
        pa.field("ts", pa.timestamp("ms", tz="Europe/Paris")),
    ])
    wp = target_encoding(schema)
    assert wp.plan.kinds == (Kind.INT4, Kind.JSONB, Kind.NUMERIC_TEXT, Kind.TIMESTAMPTZ)
    assert wp.arrow_types[3] == pa.timestamp("us", tz="UTC")
    assert wp.binary_ok
    inet = pa.schema([pa.field("ip", pa.utf8(), metadata={b"pg_type": b"inet"})])
    assert not target_encoding(inet).binary_ok


def test_adaptive_flush_bytes():
    assert adaptive_flush_bytes(95) == 1 << 20
    assert adaptive_flush_bytes(8 * 1024) == 4 << 20
    assert adaptive_flush_bytes(69 * 1024) == 16 << 20


# --- arrays, user types, Arrow-native values --------------------------------------------------

def test_quote_ident_refuses_names_postgres_would_truncate():
    assert quote_ident("é" * 31 + "x") == '"' + "é" * 31 + 'x"'   # 63 bytes
    with pytest.raises(ConfigError, match="is 64 bytes long"):
        quote_ident("é" * 32)


@pytest.mark.parametrize("arrow,pg", [
    (pa.list_(pa.int32()), "integer[]"), (pa.large_list(pa.large_string()), "text[]"),
    (pa.list_(pa.decimal128(10, 2)), "numeric(10,2)[]"),
    (pa.list_(pa.timestamp("us", "UTC")), "timestamp with time zone[]"),
    (pa.list_(pa.dictionary(pa.int8(), pa.utf8())), "text[]"),
    (pa.list_(pa.int64(), 3), "bigint[]"),
    (pa.list_(pa.list_(pa.int32())), "jsonb"), (pa.struct([("a", pa.int8())]), "jsonb"),
    (pa.map_(pa.utf8(), pa.int8()), "jsonb"), (pa.list_(pa.struct([("a", pa.int8())])), "jsonb"),
    (pa.null(), "text"),
])
def test_pg_type_for_nested_arrow_types(arrow, pg):
    assert pg_type_for_arrow(arrow) == pg


def _field(name, t, pg_type=None, defs=None):
    meta = {}
    if pg_type:
        meta[b"pg_type"] = pg_type.encode()
    if defs:
        meta[b"pg_type_def"] = json.dumps(defs).encode()
    return pa.field(name, t, metadata=meta or None)


def test_write_plan_arrays():
    schema = pa.schema([
        _field("a", pa.list_(pa.int32()), "integer[]"),
        _field("n", pa.list_(pa.utf8()), "numeric[]"),
        _field("j", pa.large_list(pa.utf8()), "jsonb[]"),
        _field("d", pa.list_(pa.decimal128(6, 2))),
        _field("t2", pa.utf8(), "integer[][]"),
    ])
    wp = target_encoding(schema)
    assert wp.plan.kinds == (Kind.ARRAY, Kind.ARRAY, Kind.ARRAY, Kind.ARRAY, Kind.TEXT)
    assert wp.plan.elem_kinds == (Kind.INT4, Kind.NUMERIC_TEXT, Kind.JSONB, Kind.NUMERIC, 0)
    assert wp.plan.elem_oids == (23, 1700, 3802, 1700, 0)
    assert (wp.plan.precisions[3], wp.plan.scales[3]) == (6, 2)
    assert wp.arrow_types[2] == pa.list_(pa.utf8())
    assert not wp.binary_ok                      # the 2-D text column is parsed by Postgres
    assert target_encoding(pa.schema(list(schema)[:4])).binary_ok
    # an existing target decides: text[] elements can go to varchar[]; integer[] to text[] not
    existing = target_encoding(pa.schema([schema[0]]), {"a": "_text"})
    assert not existing.binary_ok and existing.plan.elem_oids == (0,)
    text = target_encoding(pa.schema([_field("s", pa.list_(pa.utf8()))]), {"s": "_varchar"})
    assert text.binary_ok and text.plan.elem_oids == (1043,)


def test_write_plan_sees_through_carried_domains_and_enums():
    enum = {"kind": "enum", "schema": "s", "name": "mood", "ref": "s.mood", "labels": ["a"]}
    dom = {"kind": "domain", "schema": "s", "name": "pos", "ref": "s.pos", "base": "integer",
           "not_null": False, "default": None, "checks": []}
    jdom = dict(dom, name="doc", ref="s.doc", base="jsonb")
    wp = target_encoding(pa.schema([_field("m", pa.utf8(), "s.mood", [enum]),
                               _field("p", pa.int32(), "s.pos", [dom]),
                               _field("j", pa.utf8(), "s.doc", [jdom])]))
    assert wp.binary_ok and wp.plan.kinds == (Kind.TEXT, Kind.INT4, Kind.JSONB)
    arrays = target_encoding(pa.schema([_field("m", pa.utf8(), "s.mood[]", [enum])]))
    assert not arrays.binary_ok                  # element OIDs of enums differ per database
    assert declared_base("s.pos[]", {"s.pos": dom}) == ""
    assert declared_base("numeric(10,2)[]") == "_numeric"


def test_lists_going_to_non_array_types_and_structs_become_json():
    schema = pa.schema([_field("l", pa.list_(pa.int8()), "jsonb"),
                        _field("s", pa.struct([("k", pa.utf8()), ("v", pa.float64())])),
                        _field("nest", pa.list_(pa.list_(pa.int8())))])
    wp = target_encoding(schema)
    assert wp.plan.kinds == (Kind.JSONB, Kind.JSONB, Kind.JSONB)
    batch = pa.RecordBatch.from_arrays([
        pa.array([[1, None], None], pa.list_(pa.int8())),
        pa.array([{"k": "é\"", "v": float("nan")}, {"k": None, "v": 1e300}], schema[1].type),
        pa.array([[[1], []], [None]], pa.list_(pa.list_(pa.int8())))], schema=schema)
    out = conform(batch, wp)
    assert out.column(0).to_pylist() == ["[1, null]", None]
    assert out.column(1).to_pylist() == ['{"k": "é\\"", "v": "NaN"}', '{"k": null, "v": 1e+300}']
    assert out.column(2).to_pylist() == ["[[1], []]", "[null]"]


def test_json_text_is_exact():
    values = pa.array([{"d": Decimal("2.50"), "b": b"\x00\xff", "t": dt.date(2024, 2, 29),
                        "n": Decimal("-0")}], pa.struct([
                            ("d", pa.decimal128(5, 2)), ("b", pa.binary()),
                            ("t", pa.date32()), ("n", pa.decimal128(3, 0))]))
    assert json_text(values).to_pylist() == [
        '{"d": 2.50, "b": "\\\\x00ff", "t": "2024-02-29", "n": 0}']


def test_primary_key_of():
    schema = pa.schema([pa.field("a", pa.int8()), pa.field("b c", pa.int8())],
                       metadata={b"primary_key": b"b c,a"})
    assert primary_key_of(schema) == ("b c", "a")
    assert primary_key_of(schema.with_metadata({b"primary_key": b"x"})) == ()
    assert primary_key_of(pa.schema([])) == ()


@pytest.mark.parametrize("row, expected", [
    (("a", "integer[]", False, "_int4", "b", -1, 1, "int4", 23, 1007),
     ("integer[]", Kind.ARRAY, Kind.INT4, 23, False)),
    (("a", "integer[]", False, "_int4", "b", -1, 0, "int4", 23, 1007),
     ("integer[]", Kind.ARRAY, Kind.INT4, 23, False)),
    (("a", "integer[]", False, "_int4", "b", -1, 2, "int4", 23, 1007),
     ("integer[][]", Kind.TEXT, 0, 0, True)),
    (("a", "numeric(5,2)[]", False, "_numeric", "b", 327686, 1, "numeric", 1700, 1231),
     ("numeric(5,2)[]", Kind.ARRAY, Kind.NUMERIC, 1700, False)),
    (("a", "inet[]", False, "_inet", "b", -1, 1, "inet", 869, 1041),
     ("inet[]", Kind.TEXT, 0, 0, True)),
    (("a", "s.intlist", False, "_int4", "d", -1, 0, "int4", 23, 1007),
     ("s.intlist", Kind.ARRAY, Kind.INT4, 23, False)),
    (("a", "s.mood[]", False, "_mood", "b", -1, 1, None, None, 16501),
     ("s.mood[]", Kind.TEXT, 0, 0, True)),
    # user types named like built-ins are decided by OID, not taken for them
    (("a", "s.text", False, "s.text", "c", -1, 0, None, None, 16400),
     ("s.text", Kind.TEXT, 0, 0, True)),
    (("a", "s.int4", False, "s.int4", "e", -1, 0, None, None, 16410),
     ("s.int4", Kind.TEXT, 0, 0, False)),
    (("a", "regclass", False, "regclass", "b", -1, 0, None, None, 2205),
     ("regclass", Kind.TEXT, 0, 0, True)),
])
def test_catalog_rows_to_columns(row, expected):
    col = column_of_row(*row)
    assert (col.pg_type, col.kind, col.elem_kind, col.elem_oid, col.as_text) == expected
    if col.kind == Kind.ARRAY and col.elem_kind == Kind.NUMERIC:
        assert (col.precision, col.scale) == (5, 2)
