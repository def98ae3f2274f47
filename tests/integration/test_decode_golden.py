"""Golden values: a real server's COPY BINARY output for every kind, read with ``read_copy``
and decoded with ``decode`` (both twins), must give exactly the values written below."""
from __future__ import annotations

import datetime as dt
import math
import re
import struct
from decimal import Decimal

import pyarrow as pa
import pytest
from psycopg import pq

from rapidbyte_fast._impl import twins
from rapidbyte_fast.column_plan import ColumnPlan, ColumnSinks, Kind
from rapidbyte_fast.errors import DataError

pytestmark = pytest.mark.integration
TWINS = twins("copy_decode")
UTC = dt.timezone.utc


class Raw(int):
    """Expected value compared as the raw Arrow integer (infinity sentinels, 24:00:00, BC)."""


# column, SQL type, kind, precision, scale
COLUMNS = [
    ("b", "boolean", Kind.BOOL, 0, 0),
    ("i2", "smallint", Kind.INT2, 0, 0),
    ("i4", "integer", Kind.INT4, 0, 0),
    ("i8", "bigint", Kind.INT8, 0, 0),
    ("f4", "real", Kind.FLOAT4, 0, 0),
    ("f8", "double precision", Kind.FLOAT8, 0, 0),
    ("t", "text", Kind.TEXT, 0, 0),
    ("vc", "varchar(10)", Kind.TEXT, 0, 0),
    ("by", "bytea", Kind.BYTEA, 0, 0),
    ("d", "date", Kind.DATE, 0, 0),
    ("tm", "time", Kind.TIME, 0, 0),
    ("ts", "timestamp", Kind.TIMESTAMP, 0, 0),
    ("tz", "timestamptz", Kind.TIMESTAMPTZ, 0, 0),
    ("iv", "interval", Kind.INTERVAL, 0, 0),
    ("u", "uuid", Kind.UUID, 0, 0),
    ("n", "numeric(20,4)", Kind.NUMERIC, 20, 4),
    ("nt", "numeric", Kind.NUMERIC_TEXT, 0, 0),
    ("j", "jsonb", Kind.JSONB, 0, 0),
]
PLAN = ColumnPlan(tuple(c[0] for c in COLUMNS), tuple(int(c[2]) for c in COLUMNS),
                  tuple(c[4] for c in COLUMNS), tuple(c[3] for c in COLUMNS))

TEXT = 'tab\there\nnew "quote" \\ back é😀 \'single\''
BIG = "-12345678901234567890123456789012345678901234.5678900"

# One tuple of SQL literals per row, and the decoded value per row.
ROWS_SQL = [
    ("true", "32767", "2147483647", "9223372036854775807", "1.5", "'-0'",
     "E'tab\\there\\nnew \"quote\" \\\\ back é😀 ''single'''", "'ünï'", "'\\x00ff10'",
     "'2024-02-29'", "'23:59:59.999999'", "'2024-01-02 03:04:05.123456'",
     "'2024-01-02 03:04:05.123456+00'", "'1 year 2 months 3 days 04:05:06.789'",
     "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'1234567890123456.7891'", "'3.14159'",
     "'{\"b\": [1, 2], \"a\": \"x\"}'"),
    ("false", "-32768", "-2147483648", "-9223372036854775808", "'NaN'", "'-Infinity'",
     "''", "''", "''", "'infinity'", "'24:00:00'", "'infinity'", "'-infinity'",
     "'-178000000 years'", "'00000000-0000-0000-0000-000000000000'",
     "'-9999999999999999.9999'", "'NaN'", "'null'"),
    ("NULL",) * 18,
    ("true", "0", "0", "0", "'Infinity'", "'NaN'", "'x'", "'0123456789'", "'\\x'",
     "'0044-03-15 BC'", "'00:00:00'", "'1970-01-01 00:00:00'",
     "'1999-12-31 23:59:59.999999+00'", "'-1 days +00:00:00.000001'",
     "'ffffffff-ffff-ffff-ffff-ffffffffffff'", "'0'", f"'{BIG}'", "'[]'"),
    ("NULL", "NULL", "-1", "NULL", "NULL", "'1e308'", "NULL", "NULL", "NULL",
     "'-infinity'", "NULL", "'1969-12-31 23:59:59.999999'", "'2000-01-01 00:00:00+00'",
     "'-2147483648 days'", "NULL", "'0.0001'", "'1e-20'", "NULL"),
    ("NULL",) * 15 + ("'-0.0001'", "'-Infinity'", "NULL"),
    ("NULL",) * 15 + ("NULL", "'0.000'", "NULL"),
    ("NULL",) * 15 + ("NULL", "'Infinity'", "NULL"),
]

EXPECTED = {
    "b": [True, False, None, True, None, None, None, None],
    "i2": [32767, -32768, None, 0, None, None, None, None],
    "i4": [2147483647, -2147483648, None, 0, -1, None, None, None],
    "i8": [2**63 - 1, -(2**63), None, 0, None, None, None, None],
    "f4": [1.5, "nan", None, math.inf, None, None, None, None],
    "f8": ["-0.0", -math.inf, None, "nan", 1e308, None, None, None],
    "t": [TEXT, "", None, "x", None, None, None, None],
    "vc": ["ünï", "", None, "0123456789", None, None, None, None],
    "by": [b"\x00\xff\x10", b"", None, b"", None, None, None, None],
    "d": [dt.date(2024, 2, 29), Raw(2**31 - 1), None, Raw(-735_160), Raw(-(2**31)),
          None, None, None],
    "tm": [dt.time(23, 59, 59, 999999), Raw(86_400_000_000), None, dt.time(0), None,
           None, None, None],
    "ts": [dt.datetime(2024, 1, 2, 3, 4, 5, 123456), Raw(2**63 - 1), None,
           dt.datetime(1970, 1, 1), dt.datetime(1969, 12, 31, 23, 59, 59, 999999),
           None, None, None],
    "tz": [dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC), Raw(-(2**63)), None,
           dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
           dt.datetime(2000, 1, 1, tzinfo=UTC), None, None, None],
    "iv": [pa.MonthDayNano([14, 3, 14_706_789_000_000]),
           pa.MonthDayNano([-2_136_000_000, 0, 0]), None, pa.MonthDayNano([0, -1, 1000]),
           pa.MonthDayNano([0, -(2**31), 0]), None, None, None],
    "u": [bytes.fromhex("a0eebc999c0b4ef8bb6d6bb9bd380a11"), bytes(16), None,
          b"\xff" * 16, None, None, None, None],
    "n": [Decimal("1234567890123456.7891"), Decimal("-9999999999999999.9999"), None,
          Decimal("0.0000"), Decimal("0.0001"), Decimal("-0.0001"), None, None],
    "nt": ["3.14159", "NaN", None, BIG, "0.00000000000000000001", "-Infinity", "0.000",
           "Infinity"],
    "j": ['{"a": "x", "b": [1, 2]}', "null", None, "[]", None, None, None, None],
}


def _check(arr: pa.Array, name: str, kind: Kind) -> None:
    raw_type = {Kind.DATE: pa.int32(), Kind.TIME: pa.int64(), Kind.TIMESTAMP: pa.int64(),
                Kind.TIMESTAMPTZ: pa.int64()}.get(kind)
    for i, want in enumerate(EXPECTED[name]):
        got = arr[i].as_py() if not isinstance(want, Raw) else arr.view(raw_type)[i].as_py()
        if want == "nan":
            assert math.isnan(got), (name, i)
        elif want == "-0.0":
            assert got == 0.0 and math.copysign(1.0, got) == -1.0, (name, i)
        else:
            assert got == want and type(got) is type(want if not isinstance(want, Raw) else 0), \
                (name, i, got, want)


@pytest.fixture
def golden_stream(pg_conn, pg_schema) -> bytes:
    cols = ", ".join(f"{c[0]} {c[1]}" for c in COLUMNS)
    pg_conn.execute("SET TimeZone = 'UTC'")
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".golden (ord int, {cols})')
    for k, row in enumerate(ROWS_SQL):
        pg_conn.execute(f'INSERT INTO "{pg_schema}".golden VALUES ({k}, {", ".join(row)})')
    names = ", ".join(c[0] for c in COLUMNS)
    sql = f'COPY (SELECT {names} FROM "{pg_schema}".golden ORDER BY ord) TO STDOUT (FORMAT binary)'
    streams = {}
    for impl, mod in TWINS.items():
        pgconn = pg_conn.pgconn
        pgconn.send_query(sql.encode())
        assert pgconn.get_result().status == pq.ExecStatus.COPY_OUT
        buf = bytearray()
        done = False
        while not done:
            _, done = mod.read_copy(pgconn, buf, 100)
        while (res := pgconn.get_result()) is not None:
            assert res.status == pq.ExecStatus.COMMAND_OK, res.error_message
        streams[impl] = bytes(buf)
    assert len(set(streams.values())) == 1
    return streams["python"]


@pytest.mark.parametrize("impl", sorted(TWINS))
def test_every_kind_decodes_to_the_exact_values(golden_stream, impl):
    mod = TWINS[impl]
    sinks = ColumnSinks(PLAN)
    h = mod.parse_header(golden_stream)
    assert h == 19
    pos, trailer = mod.decode(PLAN, golden_stream, h, len(golden_stream), sinks, 1000)
    assert (pos, trailer, sinks.rows) == (len(golden_stream), True, len(ROWS_SQL))
    arrays = sinks.finish()
    for (name, _sql, kind, *_), arr in zip(COLUMNS, arrays):
        assert arr.type == PLAN.arrow_type(PLAN.names.index(name))
        _check(arr, name, kind)


def test_numeric_text_equals_numeric_out(pg_conn):
    """NUMERIC_TEXT reproduces the server's own text for awkward numerics."""
    values = ["0", "0.0", "-0.000100", "1e-30", "123456789012345678901234567890.1",
              "1e100", "-99999.99999", "10000", "0.1", "1.0000001", "NaN", "Infinity"]
    rows = ", ".join(f"('{v}'::numeric)" for v in values)
    want = [r[0] for r in pg_conn.execute(f"SELECT v::text FROM (VALUES {rows}) t(v)")]
    plan = ColumnPlan(("v",), (int(Kind.NUMERIC_TEXT),), (0,), (0,))
    pgconn = pg_conn.pgconn
    pgconn.send_query(f"COPY (SELECT * FROM (VALUES {rows}) t(v)) TO STDOUT (FORMAT binary)"
                      .encode())
    assert pgconn.get_result().status == pq.ExecStatus.COPY_OUT
    buf = bytearray()
    while not TWINS["python"].read_copy(pgconn, buf, 1 << 20)[1]:
        pass
    assert pgconn.get_result().status == pq.ExecStatus.COMMAND_OK
    assert pgconn.get_result() is None
    for mod in TWINS.values():
        sinks = ColumnSinks(plan)
        mod.decode(plan, buf, 19, len(buf), sinks, 100)
        assert sinks.finish()[0].to_pylist() == want


def test_stream_rows_are_big_endian_on_the_wire(golden_stream):
    """Guards the test itself: the server really sent binary COPY with 18 fields per row."""
    assert golden_stream[:11] == b"PGCOPY\n\xff\r\n\x00"
    assert struct.unpack(">h", golden_stream[19:21])[0] == len(COLUMNS)


def _copy_out(conn, sql: str) -> bytes:
    pgconn = conn.pgconn
    pgconn.send_query(f"COPY ({sql}) TO STDOUT (FORMAT binary)".encode())
    assert pgconn.get_result().status == pq.ExecStatus.COPY_OUT
    buf = bytearray()
    while not TWINS["python"].read_copy(pgconn, buf, 1 << 20)[1]:
        pass
    assert pgconn.get_result().status == pq.ExecStatus.COMMAND_OK
    assert pgconn.get_result() is None
    return bytes(buf)


# SQL array literal, element kind, precision, scale, expected list
ARRAYS = [
    ("'{1,NULL,-2147483648}'::int4[]", Kind.INT4, 0, 0, [1, None, -(2**31)]),
    ("'{}'::int8[]", Kind.INT8, 0, 0, []),
    (r"""'{"a b",NULL,"","q\""}'::text[]""", Kind.TEXT, 0, 0, ["a b", None, "", 'q"']),
    ("'{x,y}'::varchar(3)[]", Kind.TEXT, 0, 0, ["x", "y"]),
    ("'{1.5,NaN,NULL,-Infinity}'::numeric[]", Kind.NUMERIC_TEXT, 0, 0,
     ["1.5", "NaN", None, "-Infinity"]),
    ("'{1.25,-0.5}'::numeric(6,2)[]", Kind.NUMERIC, 6, 2, [Decimal("1.25"), Decimal("-0.50")]),
    ("'{2024-02-29,NULL}'::date[]", Kind.DATE, 0, 0, [dt.date(2024, 2, 29), None]),
    ("'{\"2024-01-02 03:04:05.5+00\"}'::timestamptz[]", Kind.TIMESTAMPTZ, 0, 0,
     [dt.datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)]),
    (r"""'{"\\x00ff"}'::bytea[]""", Kind.BYTEA, 0, 0, [b"\x00\xff"]),
    ("ARRAY['{\"b\": 1}'::jsonb, NULL]", Kind.JSONB, 0, 0, ['{"b": 1}', None]),
    ("'{t,f}'::bool[]", Kind.BOOL, 0, 0, [True, False]),
    ("'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'::uuid[]", Kind.UUID, 0, 0,
     [bytes.fromhex("a0eebc999c0b4ef8bb6d6bb9bd380a11")]),
    ("'{1.5,-0}'::float8[]", Kind.FLOAT8, 0, 0, [1.5, -0.0]),
    ("NULL::int2[]", Kind.INT2, 0, 0, None),
]


@pytest.mark.parametrize("impl", sorted(TWINS))
def test_arrays_decode_to_lists(pg_conn, impl):
    pg_conn.execute("SET TimeZone = 'UTC'")
    stream = _copy_out(pg_conn, "SELECT " + ", ".join(a[0] for a in ARRAYS))
    plan = ColumnPlan(tuple(f"c{i}" for i in range(len(ARRAYS))), (Kind.ARRAY,) * len(ARRAYS),
                      tuple(a[3] for a in ARRAYS), tuple(a[2] for a in ARRAYS),
                      tuple(a[1] for a in ARRAYS))
    sinks = ColumnSinks(plan)
    TWINS[impl].decode(plan, stream, 19, len(stream), sinks, 10)
    assert [a.to_pylist()[0] for a in sinks.finish()] == [a[4] for a in ARRAYS]


@pytest.mark.parametrize("impl", sorted(TWINS))
@pytest.mark.parametrize("literal, message", [
    ("'{{1,2},{3,4}}'::int4[]", "column 'a', row 1: array with 2 dimensions: "),
    ("'[0:1]={1,2}'::int4[]", "column 'a', row 1: array with lower bound 0: "),
])
def test_arrays_that_are_not_lists_are_refused(pg_conn, impl, literal, message):
    stream = _copy_out(pg_conn, f"SELECT '{{1}}'::int4[] UNION ALL SELECT {literal}")
    plan = ColumnPlan(("a",), (Kind.ARRAY,), (0,), (0,), (Kind.INT4,))
    with pytest.raises(DataError, match="^" + re.escape(message)):
        TWINS[impl].decode(plan, stream, 19, len(stream), ColumnSinks(plan), 10)
