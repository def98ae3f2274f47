"""Sentinels: the Arrow values that stand for Postgres values Arrow has no value for.

``numeric(p,s)`` (p <= 38) becomes decimal128(p, s), which has no NaN or infinities; they are
carried as unscaled values beyond any declared precision (NaN = 10^38 + 1, +Infinity =
10^38, -Infinity = -10^38, so that Arrow orders them as PostgreSQL does). PostgreSQL 17's
infinite intervals become month_day_nano_interval extremes (all three fields at int32/int64
max, or all at min), as dates and timestamps map ±infinity to integer extremes. Golden bytes
both ways, on both twins of every kernel (pgserver is PostgreSQL 16, which has no infinite
intervals, so no integration test can make one).
"""
from __future__ import annotations

import struct

import pyarrow as pa
import pytest

from rapidbyte_fast._impl import twins
from rapidbyte_fast.column_plan import (
    COPY_BINARY_HEADER, ColumnPlan, ColumnSinks, Kind, column_inputs,
)
from rapidbyte_fast.errors import DataError

DECODE, ENCODE, INSERT = twins("copy_decode"), twins("copy_encode"), twins("insert_sql")

I32_MAX, I32_MIN, I64_MAX, I64_MIN = 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)
NAN, POS_INF, NEG_INF = 10**38 + 1, 10**38, -(10**38)

# numeric_send of NaN, +Infinity, -Infinity and 1.50 (as numeric(10,2) sends it)
WIRE_NUMERIC = [struct.pack(">hhHh", 0, 0, 0xC000, 0), struct.pack(">hhHh", 0, 0, 0xD000, 0),
                struct.pack(">hhHh", 0, 0, 0xF000, 0), struct.pack(">hhHhHH", 2, 0, 0, 2, 1, 5000)]
DECIMALS = [NAN, POS_INF, NEG_INF, 150]
# interval_send (time µs, days, months) of infinity, -infinity and 1 mon 2 days 3 µs
WIRE_INTERVAL = [struct.pack(">qii", I64_MAX, I32_MAX, I32_MAX),
                 struct.pack(">qii", I64_MIN, I32_MIN, I32_MIN), struct.pack(">qii", 3, 2, 1)]
INTERVALS = [(I32_MAX, I32_MAX, I64_MAX), (I32_MIN, I32_MIN, I64_MIN), (1, 2, 3000)]

P_NUM = ColumnPlan(("n",), (Kind.NUMERIC,), (2,), (10,))
P_NUM_ARRAY = ColumnPlan(("a",), (Kind.ARRAY,), (2,), (10,), (Kind.NUMERIC,), (1700,))
P_INTERVAL = ColumnPlan(("i",), (Kind.INTERVAL,), (0,), (0,))


def _stream(fields: list[bytes]) -> bytes:
    """A COPY BINARY stream with one single-column row per field."""
    rows = b"".join(struct.pack(">hi", 1, len(f)) + f for f in fields)
    return COPY_BINARY_HEADER + rows + b"\xff\xff"


def _decode(mod, plan: ColumnPlan, fields: list[bytes]) -> pa.Array:
    stream = _stream(fields)
    sinks = ColumnSinks(plan)
    assert mod.decode(plan, stream, 19, len(stream), sinks, 100) == (len(stream), True)
    return sinks.finish()[0]


def _decimal_bytes(values: list[int]) -> bytes:
    return b"".join(v.to_bytes(16, "little", signed=True) for v in values)


def _decimals(values: list[int]) -> pa.Array:
    return pa.Array.from_buffers(pa.decimal128(10, 2), len(values),
                                 [None, pa.py_buffer(_decimal_bytes(values))])


def _intervals(values: list[tuple[int, int, int]]) -> pa.Array:
    data = b"".join(struct.pack("<iiq", *v) for v in values)
    return pa.Array.from_buffers(pa.month_day_nano_interval(), len(values),
                                 [None, pa.py_buffer(data)])


def _inputs(plan: ColumnPlan, arr: pa.Array) -> list:
    return column_inputs(pa.RecordBatch.from_arrays([arr], names=list(plan.names)), plan)


def _binary(mod, plan: ColumnPlan, arr: pa.Array) -> bytes:
    out = bytearray()
    mod.encode_binary(plan, _inputs(plan, arr), 0, len(arr), out)
    return bytes(out)


def _text(mod, plan: ColumnPlan, arr: pa.Array) -> bytes:
    out = bytearray()
    mod.encode_text(plan, _inputs(plan, arr), 0, len(arr), out)
    return bytes(out)


def _insert(mod, plan: ColumnPlan, arr: pa.Array) -> bytes:
    out = bytearray()
    mod.build_insert(plan, _inputs(plan, arr), 0, len(arr), out, b"V ", b";", 100, 1 << 20)
    return bytes(out)


@pytest.mark.parametrize("impl", sorted(DECODE))
def test_numeric_nan_and_infinities_decode_to_sentinels(impl):
    arr = _decode(DECODE[impl], P_NUM, WIRE_NUMERIC)
    assert arr.type == pa.decimal128(10, 2)
    assert arr.buffers()[1].to_pybytes() == _decimal_bytes(DECIMALS)


@pytest.mark.parametrize("impl", sorted(DECODE))
def test_numeric_array_elements_decode_to_sentinels(impl):
    elems = [None, *WIRE_NUMERIC]
    head = struct.pack(">iiIii", 1, 1, 1700, len(elems), 1)
    body = b"".join(b"\xff\xff\xff\xff" if e is None else struct.pack(">i", len(e)) + e
                    for e in elems)
    arr = _decode(DECODE[impl], P_NUM_ARRAY, [head + body])
    assert arr.values.buffers()[1].to_pybytes() == _decimal_bytes([0, *DECIMALS])


@pytest.mark.parametrize("impl", sorted(ENCODE))
def test_numeric_sentinels_encode_as_nan_and_infinities(impl):
    mod = ENCODE[impl]
    tuples = b"".join(struct.pack(">hi", 1, len(f)) + f for f in WIRE_NUMERIC)
    assert _binary(mod, P_NUM, _decimals(DECIMALS)) == tuples
    assert _text(mod, P_NUM, _decimals(DECIMALS)) == b"NaN\nInfinity\n-Infinity\n1.50\n"


@pytest.mark.parametrize("impl", sorted(INSERT))
def test_numeric_sentinels_insert_as_nan_and_infinities(impl):
    assert _insert(INSERT[impl], P_NUM, _decimals(DECIMALS)) == (
        b"V ('NaN'),('Infinity'),('-Infinity'),('1.50');")


@pytest.mark.parametrize("impl", sorted(ENCODE))
def test_numeric_sentinels_in_arrays(impl):
    child = _decimals([NAN, NEG_INF])
    arr = pa.ListArray.from_arrays(pa.array([0, 2], pa.int32()), child)
    mod = ENCODE[impl]
    assert _text(mod, P_NUM_ARRAY, arr) == b"{NaN,-Infinity}\n"
    body = struct.pack(">iiIii", 1, 0, 1700, 2, 1) + b"".join(
        struct.pack(">i", len(f)) + f for f in (WIRE_NUMERIC[0], WIRE_NUMERIC[2]))
    assert _binary(mod, P_NUM_ARRAY, arr) == struct.pack(">hi", 1, len(body)) + body


@pytest.mark.parametrize("impl", sorted(DECODE))
def test_infinite_intervals_decode_to_extremes(impl):
    arr = _decode(DECODE[impl], P_INTERVAL, WIRE_INTERVAL)
    assert arr.buffers()[1].to_pybytes() == b"".join(struct.pack("<iiq", *v) for v in INTERVALS)


@pytest.mark.parametrize("impl", sorted(ENCODE))
def test_interval_extremes_encode_as_infinity(impl):
    mod = ENCODE[impl]
    tuples = b"".join(struct.pack(">hi", 1, 16) + f for f in WIRE_INTERVAL)
    assert _binary(mod, P_INTERVAL, _intervals(INTERVALS)) == tuples
    assert _text(mod, P_INTERVAL, _intervals(INTERVALS)) == (
        b"infinity\n-infinity\n+1 mons +2 days +0:00:00.000003\n")


@pytest.mark.parametrize("impl", sorted(INSERT))
def test_interval_extremes_insert_as_infinity(impl):
    assert _insert(INSERT[impl], P_INTERVAL, _intervals(INTERVALS[:2])) == (
        b"V ('infinity'),('-infinity');")


@pytest.mark.parametrize("impl", sorted(ENCODE))
def test_partial_interval_extremes_are_not_infinity(impl):
    # Only the exact triple is the sentinel; a lone extreme nanosecond count stays a value
    # (and one that is not whole microseconds is refused as before).
    with pytest.raises(DataError, match="not a whole number of microseconds"):
        _binary(ENCODE[impl], P_INTERVAL, _intervals([(0, 0, I64_MAX)]))
