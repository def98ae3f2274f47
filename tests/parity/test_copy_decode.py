"""Parity of the COPY BINARY decoder twins (compiled vs Python) on generated streams.

Streams are built by a small test-side encoder from wire-level values, so every edge the
server can send (and some it cannot) is reachable: NULLs, NaN payloads, ±inf, -0.0, integer
extremes, infinity sentinels, epoch edges, decimal128 limits, non-ASCII and control
characters. Each stream is fed to both twins cut at the same random chunk boundaries with
the same random ``max_rows``; sinks, return values, finished arrays and errors must match,
and the decoded values must equal the values the stream was built from.
"""
from __future__ import annotations

import math
import struct
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rapidbyte_fast._impl import twins
from rapidbyte_fast.column_plan import (
    COPY_BINARY_HEADER, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, PG_EPOCH_OFFSET_DAYS,
    PG_EPOCH_OFFSET_US, ColumnPlan, ColumnSinks, Kind,
)
from rapidbyte_fast.errors import DataError

TWINS = twins("copy_decode")
PY = TWINS["python"]
needs_c = pytest.mark.skipif("c" not in TWINS, reason="compiled copy_decode not built")
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- test-side encoder ---------------------------------------------------------------------

def encode_numeric(d: Decimal | str) -> bytes:
    """numeric_send of a Decimal (canonical: no leading/trailing zero words) or NaN/±Inf."""
    special = {"NaN": 0xC000, "Infinity": 0xD000, "-Infinity": 0xF000}
    if isinstance(d, str):
        return struct.pack(">hhHh", 0, 0, special[d], 0)
    sign, digits, exp = d.as_tuple()
    dscale = max(0, -exp)
    n = int("".join(map(str, digits)) or "0")
    if n == 0:
        return struct.pack(">hhHh", 0, 0, 0, dscale)
    shift = exp % 4
    n *= 10 ** shift
    e4 = (exp - shift) // 4
    words = []
    while n:
        n, w = divmod(n, 10000)
        words.append(w)
    words.reverse()
    weight = len(words) - 1 + e4
    while words[-1] == 0:
        words.pop()
    return struct.pack(f">hhHh{len(words)}H", len(words), weight, 0x4000 if sign else 0,
                       dscale, *words)


def encode_array(oid: int, elems: list[bytes | None], lbound: int = 1) -> bytes:
    """array_send of a 1-D array (``{}`` without dimensions)."""
    if not elems:
        return struct.pack(">iiI", 0, 0, oid)
    head = struct.pack(">iiIii", 1, None in elems, oid, len(elems), lbound)
    return head + b"".join(b"\xff\xff\xff\xff" if e is None else struct.pack(">i", len(e)) + e
                           for e in elems)


def copy_stream(rows: list[list[bytes | None]], trailer: bool = True) -> bytes:
    out = bytearray(COPY_BINARY_HEADER)
    for row in rows:
        out += struct.pack(">h", len(row))
        for f in row:
            if f is None:
                out += b"\xff\xff\xff\xff"
            else:
                out += struct.pack(">i", len(f)) + f
    if trailer:
        out += b"\xff\xff"
    return bytes(out)


# --- one strategy per kind: (wire bytes, expected decoded value) ---------------------------

def _ints(bits: int, fmt: str):
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return st.one_of(st.sampled_from([lo, hi, 0, -1, 1]), st.integers(lo, hi)).map(
        lambda v: (struct.pack(fmt, v), v))


def _floats(fmt: str, width: int):
    specials = [0.0, -0.0, math.inf, -math.inf, math.nan]
    values = st.one_of(st.sampled_from(specials), st.floats(width=width))
    by_value = values.map(lambda v: struct.pack(fmt, v))
    any_bits = st.binary(min_size=width // 8, max_size=width // 8)  # NaN payloads included
    return st.one_of(by_value, any_bits).map(lambda b: (b, b[::-1]))


_TS_EDGES = [INT64_MAX, INT64_MIN, INT64_MIN + 1, 0, -1, -PG_EPOCH_OFFSET_US,
             INT64_MAX - PG_EPOCH_OFFSET_US]
_TEXT = st.text(alphabet=st.one_of(st.sampled_from("\t\n\\\"'\r,\x00 é€😀"),
                                   st.characters(codec="utf-8")), max_size=30)


def _timestamps():
    def pair(v):
        return struct.pack(">q", v), v if v in (INT64_MAX, INT64_MIN) else v + PG_EPOCH_OFFSET_US
    top = INT64_MAX - PG_EPOCH_OFFSET_US
    return st.one_of(st.sampled_from(_TS_EDGES), st.integers(INT64_MIN, top)).map(pair)


def _dates():
    def pair(v):
        return struct.pack(">i", v), v if v in (INT32_MAX, INT32_MIN) else v + PG_EPOCH_OFFSET_DAYS
    top = INT32_MAX - PG_EPOCH_OFFSET_DAYS
    edges = [INT32_MAX, INT32_MIN, 0, -1, -PG_EPOCH_OFFSET_DAYS, top]
    return st.one_of(st.sampled_from(edges), st.integers(INT32_MIN, top)).map(pair)


def _intervals():
    lim = INT64_MAX // 1000
    finite = st.tuples(
        st.one_of(st.sampled_from([lim, -lim, 0]), st.integers(-lim, lim)),
        st.integers(INT32_MIN, INT32_MAX), st.integers(INT32_MIN, INT32_MAX),
    ).map(lambda t: (struct.pack(">qii", *t), pa.MonthDayNano([t[2], t[1], t[0] * 1000])))
    infinite = st.sampled_from([(INT64_MAX, INT32_MAX), (INT64_MIN, INT32_MIN)]).map(
        lambda t: (struct.pack(">qii", t[0], t[1], t[1]), pa.MonthDayNano([t[1], t[1], t[0]])))
    return st.one_of(finite, infinite)


def _decimals(precision: int, scale: int):
    lim = 10 ** precision - 1
    unscaled = st.one_of(st.sampled_from([lim, -lim, 0, 1, -1]), st.integers(-lim, lim))
    # Decimal arithmetic rounds to 28 digits: build values from text, which is exact.
    finite = unscaled.map(lambda u: Decimal(f"{u}E-{scale}")).map(
        lambda d: (encode_numeric(d), d))
    sentinels = {"NaN": 10**38 + 1, "Infinity": 10**38, "-Infinity": -(10**38)}
    special = st.sampled_from(sorted(sentinels)).map(
        lambda s: (encode_numeric(s), Decimal(f"{sentinels[s]}E-{scale}")))
    return st.one_of(finite, special)


def _numeric_text():
    finite = st.tuples(st.integers(-(10 ** 45), 10 ** 45), st.integers(-30, 30)).map(
        lambda t: Decimal(f"{t[0]}E{t[1]}"))
    specials = st.sampled_from(["NaN", "Infinity", "-Infinity"])
    return st.one_of(
        finite.map(lambda d: (encode_numeric(d), f"{d:f}" if d else f"{abs(d):f}")),
        specials.map(lambda s: (encode_numeric(s), s)),
    )


#: (name, kind, precision, scale, strategy)
COLUMNS = [
    ("b", Kind.BOOL, 0, 0, st.sampled_from([(b"\x00", False), (b"\x01", True), (b"\x07", True)])),
    ("i2", Kind.INT2, 0, 0, _ints(16, ">h")),
    ("i4", Kind.INT4, 0, 0, _ints(32, ">i")),
    ("i8", Kind.INT8, 0, 0, _ints(64, ">q")),
    ("f4", Kind.FLOAT4, 0, 0, _floats(">f", 32)),
    ("f8", Kind.FLOAT8, 0, 0, _floats(">d", 64)),
    ("t", Kind.TEXT, 0, 0, _TEXT.map(lambda s: (s.encode(), s))),
    ("by", Kind.BYTEA, 0, 0, st.binary(max_size=20).map(lambda b: (b, b))),
    ("d", Kind.DATE, 0, 0, _dates()),
    ("tm", Kind.TIME, 0, 0, st.integers(0, 86_400_000_000).map(
        lambda v: (struct.pack(">q", v), v))),
    ("ts", Kind.TIMESTAMP, 0, 0, _timestamps()),
    ("tz", Kind.TIMESTAMPTZ, 0, 0, _timestamps()),
    ("iv", Kind.INTERVAL, 0, 0, _intervals()),
    ("u", Kind.UUID, 0, 0, st.binary(min_size=16, max_size=16).map(lambda b: (b, b))),
    ("n38", Kind.NUMERIC, 38, 10, _decimals(38, 10)),
    ("n20", Kind.NUMERIC, 20, 4, _decimals(20, 4)),
    ("nt", Kind.NUMERIC_TEXT, 0, 0, _numeric_text()),
    ("j", Kind.JSONB, 0, 0, _TEXT.map(lambda s: (b"\x01" + s.encode(), s))),
]
_BY_NAME = {c[0]: c for c in COLUMNS}
#: Array columns over some of the element strategies above: (name, element column, OID).
ARRAY_COLUMNS = [("a_i4", "i4", 1007), ("a_t", "t", 1009), ("a_n20", "n20", 1231),
                 ("a_nt", "nt", 1231), ("a_d", "d", 1182), ("a_j", "j", 3807),
                 ("a_by", "by", 1001), ("a_b", "b", 1000)]


def _array_values(strategy, oid: int):
    items = st.lists(st.one_of(st.none(), strategy), max_size=6)
    return items.map(lambda xs: (encode_array(oid, [x[0] if x else None for x in xs]),
                                 [x[1] if x else None for x in xs]))


COLUMNS += [(name, Kind.ARRAY, _BY_NAME[elem][2], _BY_NAME[elem][3],
             _array_values(_BY_NAME[elem][4], oid)) for name, elem, oid in ARRAY_COLUMNS]
ELEM_KINDS = {name: _BY_NAME[elem][1] for name, elem, _ in ARRAY_COLUMNS}
PLAN = ColumnPlan(tuple(c[0] for c in COLUMNS), tuple(int(c[1]) for c in COLUMNS),
                  tuple(c[3] for c in COLUMNS), tuple(c[2] for c in COLUMNS),
                  tuple(int(ELEM_KINDS.get(c[0], 0)) for c in COLUMNS))
_RAW_VIEW = {Kind.DATE: pa.int32(), Kind.TIME: pa.int64(), Kind.TIMESTAMP: pa.int64(),
             Kind.TIMESTAMPTZ: pa.int64()}


def _field(strategy):
    return st.one_of(st.none(), strategy)


_ROW = st.tuples(*[_field(c[4]) for c in COLUMNS])


# --- feeding -------------------------------------------------------------------------------

def _snapshot(sinks: ColumnSinks):
    lists = (sinks.valid, sinks.offsets, sinks.data, sinks.child_valid, sinks.child_offsets,
             sinks.child_data)
    return [[bytes(b) for b in bufs] for bufs in lists], sinks.rows


def feed(mod, plan: ColumnPlan, stream: bytes, cuts: list[int], max_rows: list[int]):
    """Decode ``stream`` as a reader would: bytes arrive in pieces ending at ``cuts``; each
    piece is decoded (calls capped by the cycling ``max_rows``) until no progress. Returns
    (call results, error message or None, sinks)."""
    sinks = ColumnSinks(plan)
    buf = bytearray()
    pos = 0
    header = False
    results: list[tuple[int, bool]] = []
    calls = 0
    for cut in sorted(set(cuts) | {len(stream)}):
        buf += stream[len(buf):cut]
        if not header:
            h = mod.parse_header(buf)
            if not h:
                continue
            pos, header = h, True
        while True:
            before = _snapshot(sinks)
            cap = max_rows[calls % len(max_rows)]
            calls += 1
            try:
                res = mod.decode(plan, buf, pos, len(buf), sinks, cap)
            except DataError as exc:
                assert _snapshot(sinks) == before, "sinks not restored after DataError"
                return results, str(exc), sinks
            results.append(res)
            progressed = res[0] != pos
            pos = res[0]
            if res[1] or (cap and not progressed):
                break
        if results and results[-1][1]:
            break
    return results, None, sinks


def _both(plan, stream, cuts, max_rows):
    out = {}
    for name, mod in TWINS.items():
        out[name] = feed(mod, plan, stream, cuts, max_rows)
    return out


def _assert_same(out, plan, valid_utf8=True):
    py_results, py_err, py_sinks = out["python"]
    for name, (results, err, sinks) in out.items():
        assert results == py_results, name
        assert err == py_err, name
        assert _snapshot(sinks) == _snapshot(py_sinks), name
    arrays = {name: sinks.finish() for name, (_, _, sinks) in out.items()}
    for name, arrs in arrays.items():
        for i, (a, b) in enumerate(zip(arrs, arrays["python"])):
            # Full Arrow validation rejects what Postgres allows: time '24:00:00', and the
            # NaN/±Infinity sentinels beyond a decimal's precision.
            a.validate(full=valid_utf8 and Kind.TIME not in (plan.kinds[i], plan.elem_kinds[i])
                       and Kind.NUMERIC not in (plan.kinds[i], plan.elem_kinds[i]))
            assert a.type == plan.arrow_type(i)
            assert [x.to_pybytes() if x else None for x in a.buffers()] == \
                   [x.to_pybytes() if x else None for x in b.buffers()], (name, plan.names[i])
    return arrays["python"], py_results, py_err


def _expected_column(arr: pa.Array, kind: Kind, elem: Kind | None = None):
    if kind == Kind.ARRAY:
        flat = _expected_column(arr.values, elem)
        offs = arr.offsets.to_pylist()
        return [flat[offs[i]:offs[i + 1]] if arr[i].is_valid else None
                for i in range(len(arr))]
    if kind in _RAW_VIEW:
        return arr.view(_RAW_VIEW[kind]).to_pylist()
    if kind in (Kind.FLOAT4, Kind.FLOAT8):
        # compare bit patterns (NaN payloads, -0.0)
        width = 4 if kind == Kind.FLOAT4 else 8
        data = arr.buffers()[1].to_pybytes()
        return [None if not arr[i].is_valid else data[i * width:(i + 1) * width]
                for i in range(len(arr))]
    return arr.to_pylist()


# --- tests ---------------------------------------------------------------------------------

@needs_c
@SETTINGS
@given(rows=st.lists(_ROW, max_size=25), data=st.data())
def test_valid_streams_decode_identically_and_exactly(rows, data):
    stream = copy_stream([[f[0] if f else None for f in row] for row in rows])
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    max_rows = data.draw(st.lists(st.integers(0, 30), min_size=1, max_size=4))
    if not any(max_rows):
        max_rows.append(1)
    arrays, results, err = _assert_same(_both(PLAN, stream, cuts, max_rows), PLAN)
    assert err is None
    assert results[-1][1] is True and results[-1][0] == len(stream)
    for i, (name, kind, *_rest) in enumerate(COLUMNS):
        expected = [f[1] if f else None for f in (row[i] for row in rows)]
        assert _expected_column(arrays[i], kind, ELEM_KINDS.get(name)) == expected, name


@needs_c
@SETTINGS
@given(rows=st.lists(_ROW, min_size=1, max_size=8), data=st.data())
def test_corrupted_streams_fail_or_decode_identically(rows, data):
    stream = bytearray(copy_stream([[f[0] if f else None for f in row] for row in rows]))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(len(COPY_BINARY_HEADER), len(stream) - 1))
        stream[i] = data.draw(st.integers(0, 255))
    stream = bytes(stream[: data.draw(st.integers(len(COPY_BINARY_HEADER), len(stream)))])
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=6))
    max_rows = data.draw(st.lists(st.integers(1, 10), min_size=1, max_size=3))
    _assert_same(_both(PLAN, stream, cuts, max_rows), PLAN, valid_utf8=False)


def _plan(*cols: tuple) -> ColumnPlan:
    """Plan of (name, kind, precision, scale[, element kind]) columns."""
    return ColumnPlan(tuple(c[0] for c in cols), tuple(int(c[1]) for c in cols),
                      tuple(c[3] for c in cols), tuple(c[2] for c in cols),
                      tuple(int(c[4]) if len(c) > 4 else 0 for c in cols))


P_ARR = _plan(("id", Kind.INT4, 0, 0), ("a", Kind.ARRAY, 0, 0, Kind.INT4),
              ("t", Kind.ARRAY, 0, 0, Kind.TEXT))
I4 = [struct.pack(">i", v) for v in range(4)]
OK_ARR = [I4[1], encode_array(23, [I4[1], None]), encode_array(25, [b"x", b"yz"])]


P_NUM = _plan(("id", Kind.INT4, 0, 0), ("amount", Kind.NUMERIC, 20, 4))
P_MIX = _plan(("id", Kind.INT4, 0, 0), ("name", Kind.TEXT, 0, 0), ("doc", Kind.JSONB, 0, 0))
OK_NUM = [struct.pack(">i", 1), encode_numeric(Decimal("1.5000"))]
OK_MIX = [struct.pack(">i", 1), b"x", b"\x01{}"]

ERROR_CASES = [
    ("too large", P_NUM, [OK_NUM, [struct.pack(">i", 2), encode_numeric(Decimal("1e16"))]],
     "column 'amount', row 1: numeric value 10000000000000000 cannot be stored exactly as "
     "decimal128(20, 4)"),
    ("too small", P_NUM, [[struct.pack(">i", 2), encode_numeric(Decimal("-1e16"))]],
     "column 'amount', row 0: numeric value -10000000000000000 cannot be stored exactly as "
     "decimal128(20, 4)"),
    ("too many digits", P_NUM, [OK_NUM, OK_NUM, [None, encode_numeric(Decimal("1" * 17))]],
     f"column 'amount', row 2: numeric value {'1' * 17} cannot be stored exactly as "
     "decimal128(20, 4)"),
    ("too many fraction digits", P_NUM, [[None, encode_numeric(Decimal("0.00001"))]],
     "column 'amount', row 0: numeric value 0.00001 cannot be stored exactly as "
     "decimal128(20, 4)"),
    ("malformed numeric", P_NUM, [[None, struct.pack(">hhHhH", 1, 0, 0, 0, 10000)]],
     "column 'amount', row 0: malformed numeric value"),
    ("bad numeric sign", P_NUM, [[None, struct.pack(">hhHh", 0, 0, 0x1234, 0)]],
     "column 'amount', row 0: malformed numeric value"),
    ("int4 of 3 bytes", P_MIX, [OK_MIX, [b"\x00\x00\x01", b"x", b"\x01{}"]],
     "column 'id', row 1: field length 3 is invalid for int4"),
    ("negative length", P_MIX, [OK_MIX, OK_MIX, [struct.pack(">i", 1), -7, b"\x01{}"]],
     "column 'name', row 2: field length -7 is invalid for text"),
    # the text bytes counted before the bad length must not be kept for the good row
    ("bad length after text", P_MIX, [OK_MIX, [struct.pack(">i", 1), b"hello", -3]],
     "column 'doc', row 1: field length -3 is invalid for jsonb"),
    ("jsonb version", P_MIX, [[struct.pack(">i", 1), b"x", b"\x02{}"]],
     "column 'doc', row 0: unsupported jsonb format version 2"),
    ("empty jsonb", P_MIX, [[struct.pack(">i", 1), b"x", b""]],
     "column 'doc', row 0: empty jsonb value"),
    ("field count", P_MIX, [OK_MIX, [struct.pack(">i", 1), b"x"]],
     "COPY row 1: expected 3 fields, got 2"),
    ("date overflow", _plan(("d", Kind.DATE, 0, 0)), [[struct.pack(">i", INT32_MAX - 1)]],
     f"column 'd', row 0: date {INT32_MAX - 1} days after 2000-01-01 is out of range for date32"),
    ("timestamp overflow", _plan(("ts", Kind.TIMESTAMPTZ, 0, 0)),
     [[struct.pack(">q", INT64_MAX - 1)]],
     f"column 'ts', row 0: timestamp {INT64_MAX - 1} us after 2000-01-01 is out of range "
     "for timestamp[us]"),
    ("2-D array", P_ARR, [OK_ARR, [I4[2], struct.pack(">iiIiiiii", 2, 0, 23, 1, 1, 1, 1, 4)
                                   + I4[3], None]],
     "column 'a', row 1: array with 2 dimensions: only 1-D arrays with lower bound 1 become "
     "Arrow lists; declare the column with all its dimensions (e.g. integer[][]) to carry "
     "its values as exact text"),
    ("lower bound 0", P_ARR, [[I4[2], None, encode_array(25, [b"a"], lbound=0)]],
     "column 't', row 0: array with lower bound 0: only 1-D arrays with lower bound 1 "
     "become Arrow lists; declare the column with all its dimensions (e.g. integer[][]) to "
     "carry its values as exact text"),
    ("element of 3 bytes", P_ARR, [OK_ARR, [I4[2], encode_array(23, [I4[1], b"\x00\x00\x01"]),
                                           None]],
     "column 'a', row 1, array element 2: field length 3 is invalid for int4"),
    ("array header cut", P_ARR, [[I4[2], encode_array(23, [I4[1]])[:11], None]],
     "column 'a', row 0: malformed array value"),
    ("array flags", P_ARR, [[I4[2], struct.pack(">iiI", 0, 2, 23), None]],
     "column 'a', row 0: malformed array value"),
    ("array count too big", P_ARR, [[I4[2], struct.pack(">iiIiii", 1, 0, 23, 3, 1, 4) + I4[1],
                                     None]],
     "column 'a', row 0: malformed array value"),
    ("array trailing bytes", P_ARR, [[I4[2], None, encode_array(25, [b"a"]) + b"!"]],
     "column 't', row 0: malformed array value"),
    ("empty array with bytes", P_ARR, [[I4[2], struct.pack(">iiI", 0, 0, 23) + I4[1], None]],
     "column 'a', row 0: malformed array value"),
    # the element bytes counted before the bad field must not be kept for the good row
    ("bad length after array", P_ARR, [OK_ARR, [I4[2], encode_array(23, [I4[1]]), -5]],
     "column 't', row 1: field length -5 is invalid for array"),
    ("element value", _plan(("a", Kind.ARRAY, 20, 4, Kind.NUMERIC)),
     [[encode_array(1700, [encode_numeric(Decimal("1")), None,
                           encode_numeric(Decimal("0.00001"))])]],
     "column 'a', row 0, array element 3: numeric value 0.00001 cannot be stored exactly as "
     "decimal128(20, 4)"),
    ("element date", _plan(("a", Kind.ARRAY, 0, 0, Kind.DATE)),
     [[encode_array(1082, [struct.pack(">i", INT32_MAX - 1)])]],
     f"column 'a', row 0, array element 1: date {INT32_MAX - 1} days after 2000-01-01 is out "
     "of range for date32"),
    ("interval overflow", _plan(("iv", Kind.INTERVAL, 0, 0)),
     [[struct.pack(">qii", INT64_MAX // 1000 + 1, 0, 0)]],
     f"column 'iv', row 0: interval time part of {INT64_MAX // 1000 + 1} us overflows "
     "month_day_nano_interval"),
]


def _encode_rows(rows):
    """Like copy_stream, but an int field is written as a bare (bad) length."""
    stream = bytearray(COPY_BINARY_HEADER)
    for row in rows:
        stream += struct.pack(">h", len(row))
        for f in row:
            if isinstance(f, int):  # a raw (bad) length with no data
                stream += struct.pack(">i", f)
            elif f is None:
                stream += b"\xff\xff\xff\xff"
            else:
                stream += struct.pack(">i", len(f)) + f
    return bytes(stream + b"\xff\xff")


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
@pytest.mark.parametrize("impl", sorted(TWINS))
def test_bad_values_raise_data_error_naming_column_and_row(impl, case):
    _, plan, rows, message = case
    stream = _encode_rows(rows)
    mod = TWINS[impl]
    sinks = ColumnSinks(plan)
    h = mod.parse_header(stream)
    with pytest.raises(DataError) as info:
        mod.decode(plan, stream, h, len(stream), sinks, 100)
    assert str(info.value) == message
    assert sinks.rows == 0 and all(len(b) == 0 for b in sinks.valid + sinks.data
                                   + sinks.child_valid + sinks.child_data)
    assert all(bytes(o) in (b"", b"\x00\x00\x00\x00")
               for o in sinks.offsets + sinks.child_offsets)


@pytest.mark.parametrize("impl", sorted(TWINS))
def test_error_row_counts_rows_already_in_the_sinks(impl):
    mod = TWINS[impl]
    stream = _encode_rows([OK_NUM, OK_NUM, [None, encode_numeric(Decimal("1e16"))]])
    sinks = ColumnSinks(P_NUM)
    h = mod.parse_header(stream)
    pos, trailer = mod.decode(P_NUM, stream, h, len(stream), sinks, 2)
    assert (sinks.rows, trailer) == (2, False)
    kept = _snapshot(sinks)
    with pytest.raises(DataError, match=r"^column 'amount', row 2: numeric value 1000"):
        mod.decode(P_NUM, stream, pos, len(stream), sinks, 2)
    assert _snapshot(sinks) == kept


@pytest.mark.parametrize("impl", sorted(TWINS))
def test_truncated_stream_stops_at_the_incomplete_tuple(impl):
    mod = TWINS[impl]
    full = _encode_rows([OK_MIX, OK_MIX, [struct.pack(">i", 3), b"hello", b"\x01[1]"]])
    first_two = len(_encode_rows([OK_MIX, OK_MIX])) - 2
    for cut in range(first_two, len(full) - 2):
        sinks = ColumnSinks(P_MIX)
        assert mod.decode(P_MIX, full[:cut], 19, cut, sinks, 10) == (first_two, False)
        assert sinks.rows == 2
        assert [a.to_pylist() for a in sinks.finish()] == [[1, 1], ["x", "x"], ["{}", "{}"]]


@pytest.mark.parametrize("impl", sorted(TWINS))
def test_trailer_is_seen_after_max_rows_and_with_max_rows_zero(impl):
    mod = TWINS[impl]
    stream = _encode_rows([OK_MIX, OK_MIX])
    sinks = ColumnSinks(P_MIX)
    assert mod.decode(P_MIX, stream, 19, len(stream), sinks, 0) == (19, False)
    pos, trailer = mod.decode(P_MIX, stream, 19, len(stream), sinks, 2)
    assert (pos, trailer, sinks.rows) == (len(stream), True, 2)
    sinks = ColumnSinks(P_MIX)
    pos, _ = mod.decode(P_MIX, stream, 19, len(stream), sinks, 1)
    assert mod.decode(P_MIX, memoryview(stream), pos, len(stream), sinks, 1) == (len(stream), True)
    assert mod.decode(P_MIX, bytearray(b"\xff\xff"), 0, 2, ColumnSinks(P_MIX), 0) == (2, True)


@pytest.mark.parametrize("impl", sorted(TWINS))
def test_nulls_pad_fixed_width_and_repeat_offsets(impl):
    plan = _plan(("i", Kind.INT8, 0, 0), ("t", Kind.TEXT, 0, 0), ("n", Kind.NUMERIC, 10, 2),
                 ("b", Kind.BOOL, 0, 0))
    stream = _encode_rows([[None, b"ab", None, None], [struct.pack(">q", -2), None,
                                                      encode_numeric(Decimal("-1.25")), b"\x01"]])
    sinks = ColumnSinks(plan)
    TWINS[impl].decode(plan, stream, 19, len(stream), sinks, 10)
    assert [bytes(v) for v in sinks.valid] == [b"\x00\x01", b"\x01\x00", b"\x00\x01", b"\x00\x01"]
    assert bytes(sinks.data[0]) == bytes(8) + (-2).to_bytes(8, "little", signed=True)
    assert bytes(sinks.offsets[1]) == struct.pack("<3i", 0, 2, 2)
    assert bytes(sinks.data[2]) == bytes(16) + (-125).to_bytes(16, "little", signed=True)
    assert bytes(sinks.data[3]) == b"\x00\x01"
    assert [a.to_pylist() for a in sinks.finish()] == [
        [None, -2], ["ab", None], [None, Decimal("-1.25")], [None, True]]


@pytest.mark.parametrize("impl", sorted(TWINS))
@pytest.mark.parametrize("value, text", [
    ("0", "0"), ("0.000", "0.000"), ("-0.5", "-0.5"), ("12345.6789", "12345.6789"),
    ("1E+8", "100000000"), ("0.00001", "0.00001"), ("-1000.10", "-1000.10"),
    ("9" * 40 + ".5", "9" * 40 + ".5"), ("1E-20", "0.00000000000000000001"),
])
def test_numeric_text_matches_numeric_out(impl, value, text):
    plan = _plan(("n", Kind.NUMERIC_TEXT, 0, 0))
    stream = _encode_rows([[encode_numeric(Decimal(value))]])
    sinks = ColumnSinks(plan)
    TWINS[impl].decode(plan, stream, 19, len(stream), sinks, 1)
    assert sinks.finish()[0].to_pylist() == [text]


@pytest.mark.parametrize("impl", sorted(TWINS))
def test_decimal128_limits(impl):
    plan = _plan(("n", Kind.NUMERIC, 38, 0))
    top = Decimal("9" * 38)
    bottom = Decimal("-" + "9" * 38)  # not -top: Decimal arithmetic rounds to 28 digits
    stream = _encode_rows([[encode_numeric(top)], [encode_numeric(bottom)]])
    sinks = ColumnSinks(plan)
    TWINS[impl].decode(plan, stream, 19, len(stream), sinks, 2)
    assert sinks.finish()[0].to_pylist() == [top, bottom]
    over = _encode_rows([[encode_numeric(Decimal("1" + "0" * 38))]])
    with pytest.raises(DataError, match="numeric value 1" + "0" * 38 + " cannot be stored"):
        TWINS[impl].decode(plan, over, 19, len(over), ColumnSinks(plan), 1)


@pytest.mark.parametrize("impl", sorted(TWINS))
def test_arrays_become_lists(impl):
    plan = _plan(("a", Kind.ARRAY, 0, 0, Kind.INT4), ("t", Kind.ARRAY, 0, 0, Kind.TEXT),
                 ("n", Kind.ARRAY, 10, 2, Kind.NUMERIC))
    rows = [[encode_array(23, [I4[1], None, I4[3]]), encode_array(25, [b"a b", None, b""]),
             encode_array(1700, [encode_numeric(Decimal("-1.25"))])],
            [encode_array(23, []), None, encode_array(1700, [None])],
            [None, encode_array(25, [b"\xc3\xa9"]), struct.pack(">iiIii", 1, 0, 1700, 0, 7)]]
    stream = _encode_rows(rows)
    sinks = ColumnSinks(plan)
    assert TWINS[impl].decode(plan, stream, 19, len(stream), sinks, 10) == (len(stream), True)
    assert bytes(sinks.offsets[0]) == struct.pack("<4i", 0, 3, 3, 3)
    assert bytes(sinks.child_valid[1]) == b"\x01\x00\x01\x01"
    assert bytes(sinks.child_offsets[1]) == struct.pack("<5i", 0, 3, 3, 3, 5)
    arrays = sinks.finish()
    assert [a.type for a in arrays] == [pa.list_(pa.int32()), pa.list_(pa.utf8()),
                                        pa.list_(pa.decimal128(10, 2))]
    assert [a.to_pylist() for a in arrays] == [
        [[1, None, 3], [], None], [["a b", None, ""], None, ["é"]],
        [[Decimal("-1.25")], [None], []]]


@pytest.mark.parametrize("impl", sorted(TWINS))
def test_parse_header(impl):
    mod = TWINS[impl]
    h = COPY_BINARY_HEADER
    assert mod.parse_header(h) == 19
    assert mod.parse_header(h + b"rest") == 19
    assert mod.parse_header(h[:5]) == 0
    assert mod.parse_header(h[:18]) == 0
    ext = h[:15] + struct.pack(">i", 3)
    assert mod.parse_header(ext + b"ab") == 0
    assert mod.parse_header(bytearray(ext + b"abc")) == 22
    with pytest.raises(DataError, match="PGCOPY binary signature"):
        mod.parse_header(b"PGCOPX")
    with pytest.raises(DataError, match="with OIDs"):
        mod.parse_header(h[:11] + struct.pack(">i", 1 << 16) + bytes(4))
    with pytest.raises(DataError, match="unknown critical flags"):
        mod.parse_header(h[:11] + struct.pack(">i", 1 << 20) + bytes(4))
    assert mod.parse_header(h[:11] + struct.pack(">i", 1) + bytes(4)) == 19  # non-critical


@pytest.mark.parametrize("impl", sorted(TWINS))
def test_bad_arguments(impl):
    mod = TWINS[impl]
    with pytest.raises(ValueError, match="invalid range"):
        mod.decode(P_MIX, b"\xff\xff", 0, 3, ColumnSinks(P_MIX), 1)
    with pytest.raises(ValueError, match="max_rows"):
        mod.decode(P_MIX, b"\xff\xff", 0, 2, ColumnSinks(P_MIX), -1)
    bad = _plan(("n", Kind.NUMERIC, 39, 0))
    with pytest.raises(ValueError, match="precision must be 1..38"):
        mod.decode(bad, b"\xff\xff", 0, 2, ColumnSinks(bad), 1)
    unknown = ColumnPlan(("x",), (99,), (0,), (0,))
    with pytest.raises(ValueError, match="^99 is not a valid Kind$"):
        mod.decode(unknown, b"\xff\xff", 0, 2, ColumnSinks(P_MIX), 1)


@pytest.mark.parametrize("impl", sorted(TWINS))
def test_bad_array_plans(impl):
    mod = TWINS[impl]
    for elem, message in ((0, "^0 is not a valid Kind$"), (Kind.ARRAY, "arrays of arrays")):
        plan = _plan(("a", Kind.ARRAY, 0, 0, elem))
        with pytest.raises(ValueError, match=message):
            mod.decode(plan, b"\xff\xff", 0, 2, ColumnSinks(plan), 1)
    plan = _plan(("a", Kind.ARRAY, 39, 0, Kind.NUMERIC))
    with pytest.raises(ValueError, match="precision must be 1..38"):
        mod.decode(plan, b"\xff\xff", 0, 2, ColumnSinks(plan), 1)
