"""Identifier quoting, derived names, DDL type checks and Arrow → Postgres type mapping."""
from __future__ import annotations

import pyarrow as pa
import pytest

from rapidbyte_fast.column_plan import Kind
from rapidbyte_fast.destinations.postgres import adaptive_flush_bytes
from rapidbyte_fast.errors import ConfigError, DataError
from rapidbyte_fast.pgtypes import (
    check_type_sql, derived_name, pg_type_for_arrow, qualified, quote_ident, split_table,
    write_plan,
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
    "bit varying(10)", "double precision",
])
def test_check_type_sql_accepts_format_type_output(t):
    assert check_type_sql(t, "column x") == t


@pytest.mark.parametrize("t", ["integer; DROP TABLE x", "text) --", "int4 DEFAULT 1", ""])
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
    wp = write_plan(schema)
    assert wp.plan.kinds == (Kind.INT4, Kind.JSONB, Kind.NUMERIC_TEXT, Kind.TIMESTAMPTZ)
    assert wp.arrow_types[3] == pa.timestamp("us", tz="UTC")
    assert wp.binary_ok
    inet = pa.schema([pa.field("ip", pa.utf8(), metadata={b"pg_type": b"inet"})])
    assert not write_plan(inet).binary_ok


def test_adaptive_flush_bytes():
    assert adaptive_flush_bytes(95) == 1 << 20
    assert adaptive_flush_bytes(8 * 1024) == 4 << 20
    assert adaptive_flush_bytes(69 * 1024) == 16 << 20
