"""Golden test of the encoders against a real PostgreSQL.

One Arrow batch with a column for every kind and nasty values in each (extremes, NaN, ±inf,
-0.0, infinity sentinels, BC and far-future dates, control characters, quotes, non-ASCII,
NULLs) is loaded three ways — COPY binary (header + encode_binary + trailer), COPY text
(encode_text) and INSERT statements (build_insert) — with each twin. Every cell is read back
as ``col::text`` and compared with the text PostgreSQL itself prints for the intended value.
Loads run under a hostile session (DateStyle SQL/DMY, IntervalStyle sql_standard) to prove
the text forms do not depend on session settings.
"""
from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from rapidbyte_fast._impl import twins
from rapidbyte_fast.column_plan import (
    COPY_BINARY_HEADER, COPY_BINARY_TRAILER, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN,
    ColumnPlan, Kind, column_inputs,
)

pytestmark = pytest.mark.integration

ENCODE = twins("copy_encode")
INSERT = twins("insert_sql")
_US_MAX = INT64_MAX // 1000 * 1000   # largest interval nanoseconds that are whole µs

# name, SQL type, kind, Arrow type, [(Arrow value, expected ::text or None)] — 9 rows each.
COLUMNS = [
    ("b", "boolean", Kind.BOOL, pa.bool_(), [
        (True, "true"), (False, "false"), (None, None), (True, "true"), (False, "false"),
        (True, "true"), (False, "false"), (True, "true"), (False, "false")]),
    ("i2", "smallint", Kind.INT2, pa.int16(), [
        (-32768, "-32768"), (32767, "32767"), (0, "0"), (-1, "-1"), (1, "1"), (None, None),
        (12345, "12345"), (-12345, "-12345"), (7, "7")]),
    ("i4", "integer", Kind.INT4, pa.int32(), [
        (INT32_MIN, "-2147483648"), (INT32_MAX, "2147483647"), (0, "0"), (-1, "-1"),
        (None, None), (1, "1"), (42, "42"), (-42, "-42"), (100000, "100000")]),
    ("i8", "bigint", Kind.INT8, pa.int64(), [
        (INT64_MIN, "-9223372036854775808"), (INT64_MAX, "9223372036854775807"), (0, "0"),
        (-1, "-1"), (None, None), (1, "1"), (10**15, "1000000000000000"), (-7, "-7"),
        (2**31, "2147483648")]),
    ("f4", "real", Kind.FLOAT4, pa.float32(), [
        (float("nan"), "NaN"), (float("inf"), "Infinity"), (float("-inf"), "-Infinity"),
        (-0.0, "-0"), (1.1, "1.1"), (3.4028234663852886e38, "3.4028235e+38"),
        (1e-45, "1e-45"), (None, None), (0.1, "0.1")]),
    ("f8", "double precision", Kind.FLOAT8, pa.float64(), [
        (float("nan"), "NaN"), (float("inf"), "Infinity"), (float("-inf"), "-Infinity"),
        (-0.0, "-0"), (0.1, "0.1"), (1e300, "1e+300"), (5e-324, "5e-324"), (None, None),
        (1.7976931348623157e308, "1.7976931348623157e+308")]),
    ("t", "text", Kind.TEXT, pa.utf8(), [
        ("tab\there", "tab\there"), ("nl\nx\rcr", "nl\nx\rcr"),
        ("back\\slash \\N", "back\\slash \\N"), ("quote'd ''", "quote'd ''"),
        ("emoji 😀 中文", "emoji 😀 中文"), ("", ""), (None, None), ("\\.", "\\."),
        ("\\N", "\\N")]),
    ("by", "bytea", Kind.BYTEA, pa.binary(), [
        (b"\x00\xff'\\", "\\x00ff275c"), (b"", "\\x"), (None, None), (b"\\N", "\\x5c4e"),
        (b"\t\n\r", "\\x090a0d"), (bytes(range(5)), "\\x0001020304"), (b"abc", "\\x616263"),
        (b"'", "\\x27"), (b"\x80\x7f", "\\x807f")]),
    ("d", "date", Kind.DATE, pa.date32(), [
        (0, "1970-01-01"), (-1, "1969-12-31"), (INT32_MAX, "infinity"),
        (INT32_MIN, "-infinity"), (-719_528, "0001-01-01 BC"), (-2_440_588, "4714-11-24 BC"),
        (2_145_042_905, "5874897-12-31"), (None, None), (10_957, "2000-01-01")]),
    ("tm", "time", Kind.TIME, pa.time64("us"), [
        (0, "00:00:00"), (86_400_000_000, "24:00:00"), (1, "00:00:00.000001"),
        (45_296_789_012, "12:34:56.789012"), (None, None),
        (86_399_999_999, "23:59:59.999999"), (3_600_000_000, "01:00:00"),
        (60_000_000, "00:01:00"), (500_000, "00:00:00.5")]),
    ("ts", "timestamp", Kind.TIMESTAMP, pa.timestamp("us"), [
        (0, "1970-01-01 00:00:00"), (-1, "1969-12-31 23:59:59.999999"),
        (INT64_MAX, "infinity"), (INT64_MIN, "-infinity"),
        (-210_866_803_200_000_000, "4714-11-24 00:00:00 BC"), (None, None),
        (946_684_800_000_000, "2000-01-01 00:00:00"),
        (-62_135_596_800_000_001, "0001-12-31 23:59:59.999999 BC"),
        (INT64_MAX - 1, "294247-01-10 04:00:54.775806")]),
    ("tz", "timestamptz", Kind.TIMESTAMPTZ, pa.timestamp("us", "UTC"), [
        (0, "1970-01-01 00:00:00+00"), (-1, "1969-12-31 23:59:59.999999+00"),
        (INT64_MAX, "infinity"), (INT64_MIN, "-infinity"),
        (-210_866_803_200_000_000, "4714-11-24 00:00:00+00 BC"), (None, None),
        (1_704_067_200_123_456, "2024-01-01 00:00:00.123456+00"),
        (-62_135_596_800_000_001, "0001-12-31 23:59:59.999999+00 BC"),
        (INT64_MAX - 1, "294247-01-10 04:00:54.775806+00")]),
    ("iv", "interval", Kind.INTERVAL, pa.month_day_nano_interval(), [
        ((1, 2, 3000), "1 mon 2 days 00:00:00.000003"),
        ((-1, -2, -3000), "-1 mons -2 days -00:00:00.000003"),
        ((0, 0, 0), "00:00:00"), ((14, 0, 0), "1 year 2 mons"),
        ((0, 0, 3600 * 10**9), "01:00:00"), ((1, -1, 1000), "1 mon -1 days +00:00:00.000001"),
        (None, None),
        ((INT32_MAX, INT32_MAX, _US_MAX),
         "178956970 years 7 mons 2147483647 days 2562047:47:16.854775"),
        ((INT32_MIN, INT32_MIN, -_US_MAX),
         "-178956970 years -8 mons -2147483648 days -2562047:47:16.854775")]),
    ("u", "uuid", Kind.UUID, pa.binary(16), [
        (b"\x00" * 16, "00000000-0000-0000-0000-000000000000"),
        (b"\xff" * 16, "ffffffff-ffff-ffff-ffff-ffffffffffff"), (None, None),
        (bytes.fromhex("0123456789abcdef0123456789abcdef"),
         "01234567-89ab-cdef-0123-456789abcdef"),
        (bytes(range(16)), "00010203-0405-0607-0809-0a0b0c0d0e0f"),
        (b"\x80" + b"\x00" * 15, "80000000-0000-0000-0000-000000000000"),
        (b"\x00" * 15 + b"\x01", "00000000-0000-0000-0000-000000000001"),
        (b"\xa0" * 16, "a0a0a0a0-a0a0-a0a0-a0a0-a0a0a0a0a0a0"),
        (b"\x0f" * 16, "0f0f0f0f-0f0f-0f0f-0f0f-0f0f0f0f0f0f")]),
    ("n", "numeric(20,4)", Kind.NUMERIC, pa.decimal128(20, 4), [
        (Decimal("0"), "0.0000"), (Decimal("-1234567890123456.7890"), "-1234567890123456.7890"),
        (Decimal("0.0001"), "0.0001"), (Decimal("-0.0001"), "-0.0001"),
        (Decimal("9999999999999999.9999"), "9999999999999999.9999"), (None, None),
        (Decimal("1"), "1.0000"), (Decimal("-1.5"), "-1.5000"),
        (Decimal("100000000"), "100000000.0000")]),
    ("nt", "numeric", Kind.NUMERIC_TEXT, pa.utf8(), [
        ("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"),
        ("-12.3400", "-12.3400"), ("-0.00", "0.00"), ("00012.5", "12.5"), (".5", "0.5"),
        (None, None),
        ("123456789012345678901234567890123456789012345678901234567890.000000000000000000001",
         "123456789012345678901234567890123456789012345678901234567890.000000000000000000001")]),
    ("j", "jsonb", Kind.JSONB, pa.utf8(), [
        ('{"b": [1, 2.50, null], "a": "x\\ty"}', '{"a": "x\\ty", "b": [1, 2.50, null]}'),
        ('"emoji 😀"', '"emoji 😀"'), ("[]", "[]"), ("null", "null"),
        ('{"q": "it\'s"}', '{"q": "it\'s"}'), ('  {"k" :1}  ', '{"k": 1}'), (None, None),
        ("123.4500", "123.4500"), ('"back\\\\slash"', '"back\\\\slash"')]),
]
ROWS = 9


def _array(arrow_type: pa.DataType, values: list) -> pa.Array:
    if pa.types.is_date32(arrow_type) or pa.types.is_time64(arrow_type) or \
            pa.types.is_timestamp(arrow_type):
        # Raw integers: sentinels and BC values are out of range for Python datetimes.
        storage = pa.int32() if pa.types.is_date32(arrow_type) else pa.int64()
        return pa.array(values, storage).view(arrow_type)
    if arrow_type == pa.float32():
        return pa.array([None if v is None else np.float32(v) for v in values], arrow_type)
    return pa.array(values, arrow_type)


def _batch() -> tuple[pa.RecordBatch, ColumnPlan, list[list[str | None]]]:
    arrays = [pa.array(range(ROWS), pa.int32())]
    names, kinds, scales, precisions = ["rid"], [Kind.INT4], [0], [0]
    expected = []
    for name, _sql, kind, arrow_type, cells in COLUMNS:
        assert len(cells) == ROWS, name
        arrays.append(_array(arrow_type, [v for v, _ in cells]))
        names.append(name)
        kinds.append(kind)
        scales.append(getattr(arrow_type, "scale", 0))
        precisions.append(getattr(arrow_type, "precision", 0))
        expected.append([e for _, e in cells])
    # Slice off a leading row so every array has a non-zero offset (bitmaps included).
    pad = [pa.concat_arrays([a.slice(0, 1), a]) for a in arrays]
    batch = pa.RecordBatch.from_arrays([a.slice(1) for a in pad], names=names)
    plan = ColumnPlan(tuple(names), tuple(kinds), tuple(scales), tuple(precisions))
    return batch, plan, [list(r) for r in zip(*expected)]


def _create(conn, schema: str) -> str:
    table = f'"{schema}"."golden"'
    cols = ", ".join(f'"{name}" {sql}' for name, sql, *_ in COLUMNS)
    conn.execute(f"CREATE TABLE {table} (rid integer PRIMARY KEY, {cols})")
    return table


def _read_back(conn, table: str) -> list[list[str | None]]:
    conn.execute("SET TimeZone = 'UTC'; SET IntervalStyle = 'postgres'; SET DateStyle = 'ISO'")
    select = ", ".join(f'"{name}"::text' for name, *_ in COLUMNS)
    return [list(r) for r in conn.execute(f"SELECT {select} FROM {table} ORDER BY rid")]


def _hostile_session(conn) -> None:
    conn.execute("SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'sql_standard'; "
                 "SET TimeZone = 'Asia/Kathmandu'")


def _load(conn, method: str, impl: str, table: str, plan: ColumnPlan, cols: list,
          nrows: int = ROWS) -> None:
    names = ", ".join(f'"{n}"' for n in plan.names)
    if method == "insert":
        prefix = f"INSERT INTO {table} ({names}) VALUES ".encode()
        pos = 0
        while pos < nrows:  # small statements: several calls, each resuming where it stopped
            out = bytearray()
            rows, nbytes = INSERT[impl].build_insert(plan, cols, pos, nrows, out, prefix, b"",
                                                     4, 300)
            assert rows >= 1 and nbytes == len(out)
            conn.execute(bytes(out))
            pos += rows
        return
    out = bytearray()
    encode = ENCODE[impl].encode_binary if method == "binary" else ENCODE[impl].encode_text
    assert encode(plan, cols, 0, nrows, out) == len(out)
    fmt = "binary" if method == "binary" else "text"
    data = COPY_BINARY_HEADER + bytes(out) + COPY_BINARY_TRAILER if fmt == "binary" else out
    with conn.cursor().copy(f"COPY {table} ({names}) FROM STDIN (FORMAT {fmt})") as copy:
        copy.write(data)


@pytest.mark.parametrize("impl", ["python", "c"])
@pytest.mark.parametrize("method", ["binary", "text", "insert"])
def test_every_kind_round_trips(pg_conn, pg_schema, method: str,
                                impl: str) -> None:
    if impl not in ENCODE or impl not in INSERT:
        pytest.skip(f"{impl} twin not built")
    batch, plan, expected = _batch()
    table = _create(pg_conn, pg_schema)
    _hostile_session(pg_conn)
    _load(pg_conn, method, impl, table, plan, column_inputs(batch, plan))
    got = _read_back(pg_conn, table)
    assert len(got) == ROWS
    wrong = [(name, r, got[r][c], expected[r][c]) for r in range(ROWS)
             for c, (name, *_rest) in enumerate(COLUMNS) if got[r][c] != expected[r][c]]
    assert wrong == []


# Arrays: name, SQL type, element kind, element OID, Arrow element type, [(list, ::text)].
ARRAY_COLUMNS = [
    ("ai", "integer[]", Kind.INT4, 23, pa.int32(), [
        ([1, None, INT32_MIN], "{1,NULL,-2147483648}"), ([], "{}"), (None, None),
        ([None], "{NULL}")]),
    ("at", "text[]", Kind.TEXT, 25, pa.utf8(), [
        (["a b", None, "", "NULL", 'q"\\', "\t\n,{}", "it's 😀"],
         '{"a b",NULL,"","NULL","q\\"\\\\","\t\n,{}","it\'s 😀"}'),
        ([], "{}"), (["x"], "{x}"), (None, None)]),
    ("an", "numeric(10,2)[]", Kind.NUMERIC, 1700, pa.decimal128(10, 2), [
        ([Decimal("1.25"), None, Decimal("-99999999.99")], "{1.25,NULL,-99999999.99}"),
        ([Decimal("0")], "{0.00}"), (None, None), ([], "{}")]),
    ("ant", "numeric[]", Kind.NUMERIC_TEXT, 1700, pa.utf8(), [
        (["NaN", "1.50", "-Infinity", None], "{NaN,1.50,-Infinity,NULL}"),
        (["0.000000000000000000000000000001"], "{0.000000000000000000000000000001}"),
        ([], "{}"), (None, None)]),
    ("ad", "date[]", Kind.DATE, 1082, pa.date32(), [
        ([0, INT32_MAX, INT32_MIN, -719_528], "{1970-01-01,infinity,-infinity,\"0001-01-01 BC\"}"),
        ([None], "{NULL}"), ([], "{}"), (None, None)]),
    ("atz", "timestamptz[]", Kind.TIMESTAMPTZ, 1184, pa.timestamp("us", "UTC"), [
        ([0, INT64_MAX], '{"1970-01-01 00:00:00+00",infinity}'), ([], "{}"), (None, None),
        ([-62_135_596_800_000_001], '{"0001-12-31 23:59:59.999999+00 BC"}')]),
    ("ab", "bytea[]", Kind.BYTEA, 17, pa.binary(), [
        ([b"\x00\xff", b"", None], '{"\\\\x00ff","\\\\x",NULL}'), ([], "{}"), (None, None),
        ([b"'"], '{"\\\\x27"}')]),
    ("aj", "jsonb[]", Kind.JSONB, 3802, pa.utf8(), [
        (['{"b": 1, "a": "x\\"y"}', None], '{"{\\"a\\": \\"x\\\\\\"y\\", \\"b\\": 1}",NULL}'),
        (["[]"], '{[]}'), ([], "{}"), (None, None)]),
    ("au", "uuid[]", Kind.UUID, 2950, pa.binary(16), [
        ([bytes(16)], "{00000000-0000-0000-0000-000000000000}"), ([], "{}"), (None, None),
        ([None, b"\xff" * 16], "{NULL,ffffffff-ffff-ffff-ffff-ffffffffffff}")]),
    ("ab8", "boolean[]", Kind.BOOL, 16, pa.bool_(), [
        ([True, False, None], "{t,f,NULL}"), ([], "{}"), (None, None), ([True], "{t}")]),
    ("af", "double precision[]", Kind.FLOAT8, 701, pa.float64(), [
        ([float("nan"), float("-inf"), -0.0, 0.1], "{NaN,-Infinity,-0,0.1}"), ([], "{}"),
        (None, None), ([1e300], "{1e+300}")]),
    ("aiv", "interval[]", Kind.INTERVAL, 1186, pa.month_day_nano_interval(), [
        ([(1, 2, 3000)], '{"1 mon 2 days 00:00:00.000003"}'), ([], "{}"), (None, None),
        ([(0, 0, 0), None], "{00:00:00,NULL}")]),
]
ARRAY_ROWS = 4


def _list(elem_type: pa.DataType, rows: list) -> pa.Array:
    flat = [v for row in rows if row is not None for v in row]
    offsets = [0]
    for row in rows:
        offsets.append(offsets[-1] + len(row or []))
    values = _array(elem_type, flat)
    mask = pa.array([r is None for r in rows])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, mask=mask)


@pytest.mark.parametrize("impl", ["python", "c"])
@pytest.mark.parametrize("method", ["binary", "text", "insert"])
def test_arrays_round_trip(pg_conn, pg_schema, method: str,
                           impl: str) -> None:
    if impl not in ENCODE or impl not in INSERT:
        pytest.skip(f"{impl} twin not built")
    names = ["rid"] + [c[0] for c in ARRAY_COLUMNS]
    arrays = [pa.array(range(ARRAY_ROWS), pa.int32())]
    arrays += [_list(c[4], [v for v, _ in c[5]]) for c in ARRAY_COLUMNS]
    plan = ColumnPlan(tuple(names), (Kind.INT4,) + (Kind.ARRAY,) * len(ARRAY_COLUMNS),
                      tuple(0 if c is None else getattr(c[4], "scale", 0)
                            for c in [None] + ARRAY_COLUMNS),
                      tuple(0 if c is None else getattr(c[4], "precision", 0)
                            for c in [None] + ARRAY_COLUMNS),
                      (0,) + tuple(c[2] for c in ARRAY_COLUMNS),
                      (0,) + tuple(c[3] for c in ARRAY_COLUMNS))
    batch = pa.RecordBatch.from_arrays(arrays, names=names)
    table = f'"{pg_schema}"."arrays"'
    cols = ", ".join(f'"{name}" {sql}' for name, sql, *_ in ARRAY_COLUMNS)
    pg_conn.execute(f"CREATE TABLE {table} (rid integer PRIMARY KEY, {cols})")
    _hostile_session(pg_conn)
    _load(pg_conn, method, impl, table, plan, column_inputs(batch, plan), ARRAY_ROWS)
    pg_conn.execute("SET TimeZone = 'UTC'; SET IntervalStyle = 'postgres'; SET DateStyle = 'ISO'")
    select = ", ".join(f'"{name}"::text' for name, *_ in ARRAY_COLUMNS)
    got = [list(r) for r in pg_conn.execute(f"SELECT {select} FROM {table} ORDER BY rid")]
    want = [[c[5][r][1] for c in ARRAY_COLUMNS] for r in range(ARRAY_ROWS)]
    wrong = [(c[0], r, got[r][k], want[r][k]) for r in range(ARRAY_ROWS)
             for k, c in enumerate(ARRAY_COLUMNS) if got[r][k] != want[r][k]]
    assert wrong == []
