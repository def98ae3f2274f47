"""Parity of the COPY encoder twins (compiled vs Python), plus exact expected bytes.

Hypothesis builds record batches of every kind with nasty values (NULLs, NaN payloads, ±inf,
-0.0, integer extremes, infinity sentinels, BC and far-future dates, control characters,
quotes, NUL, non-ASCII), sliced so arrays have non-zero offsets, sometimes with one value
PostgreSQL would reject, and encodes random row sub-ranges with both twins: bytes, return
values, DataError messages and the truncation of ``out`` must all match.
"""
from __future__ import annotations

import struct
from decimal import Decimal, localcontext

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rapidbyte_fast._impl import twins
from rapidbyte_fast._py import value_text as vt
from rapidbyte_fast.column_plan import (
    INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, ColumnPlan, Kind, column_inputs,
)
from rapidbyte_fast.errors import DataError

TWINS = twins("copy_encode")
needs_c = pytest.mark.skipif("c" not in TWINS, reason="compiled copy_encode not built")
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --- batch strategy (shared with test_insert_sql) --------------------------------------------

_CHARS = st.one_of(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    st.sampled_from(list("\t\n\r\\'\", .\x7f😀中é")),
)
_TEXT = st.text(_CHARS, max_size=12)
_INT32 = st.integers(INT32_MIN, INT32_MAX)
_INTERVAL_US = st.integers(INT64_MIN // 1000 + 1, INT64_MAX // 1000)
_NUMERIC_TEXT = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "0", "-0.00", ".5", "5.", "00012.5",
                     "+7", "0.0000000001", "99999999999999999999999999999999999999999"]),
    st.builds(lambda sign, ip, fp: sign + ip + fp, st.sampled_from(["", "-", "+"]),
              st.text("0123456789", min_size=1, max_size=45),
              st.one_of(st.just(""), st.text("0123456789", max_size=25).map(lambda f: "." + f))),
)

VALID = {
    Kind.BOOL: st.booleans(),
    Kind.INT2: st.integers(-2**15, 2**15 - 1),
    Kind.INT4: _INT32,
    Kind.INT8: st.integers(INT64_MIN, INT64_MAX),
    Kind.FLOAT4: st.floats(width=32),
    Kind.FLOAT8: st.floats(),
    Kind.TEXT: _TEXT,
    Kind.BYTEA: st.binary(max_size=12),
    Kind.DATE: st.one_of(
        st.sampled_from([0, -1, INT32_MAX, INT32_MIN, vt.UNIX_DATE_MIN, vt.UNIX_DATE_END - 1,
                         -719_528, -719_529, 10_957, 2_932_896]),
        st.integers(vt.UNIX_DATE_MIN, vt.UNIX_DATE_END - 1)),
    Kind.TIME: st.one_of(st.sampled_from([0, 1, vt.USECS_PER_DAY, vt.USECS_PER_DAY - 1]),
                         st.integers(0, vt.USECS_PER_DAY)),
    Kind.TIMESTAMP: st.one_of(
        st.sampled_from([0, -1, INT64_MAX, INT64_MIN, vt.UNIX_TS_MIN, INT64_MAX - 1,
                         -62_135_596_800_000_001, -62_135_596_800_000_000]),
        st.integers(vt.UNIX_TS_MIN, INT64_MAX)),
    Kind.INTERVAL: st.one_of(
        st.tuples(_INT32, _INT32, _INTERVAL_US.map(lambda us: us * 1000)),
        st.sampled_from([(INT32_MAX, INT32_MAX, INT64_MAX), (INT32_MIN, INT32_MIN, INT64_MIN)])),
    Kind.UUID: st.binary(min_size=16, max_size=16),
    Kind.NUMERIC_TEXT: _NUMERIC_TEXT,
    Kind.JSONB: _TEXT,
}
VALID[Kind.TIMESTAMPTZ] = VALID[Kind.TIMESTAMP]

BAD = {
    Kind.TEXT: ["a\x00b", "\x00"],
    Kind.JSONB: ['{"a": "\x00"}'],
    Kind.DATE: [vt.UNIX_DATE_MIN - 1, vt.UNIX_DATE_END, INT32_MIN + 1],
    Kind.TIME: [-1, vt.USECS_PER_DAY + 1, INT64_MIN],
    Kind.TIMESTAMP: [vt.UNIX_TS_MIN - 1, INT64_MIN + 1],
    Kind.TIMESTAMPTZ: [vt.UNIX_TS_MIN - 1],
    Kind.INTERVAL: [(0, 0, 1), (1, 1, -999), (0, 0, INT64_MIN)],
    Kind.NUMERIC_TEXT: ["", "abc", "1e5", "1.2.3", "--1", "+Infinity", " 1", "1\x00", "-", ".",
                        "nan", "1" * 131_073, "0." + "1" * 16_384],
}

_ARROW = {Kind.BOOL: pa.bool_(), Kind.INT2: pa.int16(), Kind.INT4: pa.int32(),
          Kind.INT8: pa.int64(), Kind.FLOAT4: pa.float32(), Kind.FLOAT8: pa.float64(),
          Kind.TEXT: pa.utf8(), Kind.BYTEA: pa.binary(), Kind.INTERVAL:
          pa.month_day_nano_interval(), Kind.UUID: pa.binary(16), Kind.NUMERIC_TEXT: pa.utf8(),
          Kind.JSONB: pa.utf8()}
_VIEWED = {Kind.DATE: (pa.int32(), pa.date32()), Kind.TIME: (pa.int64(), pa.time64("us")),
           Kind.TIMESTAMP: (pa.int64(), pa.timestamp("us")),
           Kind.TIMESTAMPTZ: (pa.int64(), pa.timestamp("us", "UTC"))}


def _decimal_array(values: list, precision: int, scale: int) -> pa.Array:
    # Raw buffers: negative scales and out-of-precision int128 extremes are allowed bytes.
    data = b"".join((v or 0).to_bytes(16, "little", signed=True) for v in values)
    mask = np.array([v is not None for v in values], dtype=bool)
    validity = pa.py_buffer(np.packbits(mask, bitorder="little").tobytes())
    return pa.Array.from_buffers(pa.decimal128(precision, scale), len(values),
                                 [validity, pa.py_buffer(data)], null_count=int((~mask).sum()))


def to_array(kind: Kind, values: list, precision: int = 0, scale: int = 0) -> pa.Array:
    """An Arrow array of ``kind`` from plain Python values (ints for dates and times)."""
    if kind == Kind.NUMERIC:
        return _decimal_array(values, precision, scale)
    if kind in _VIEWED:
        storage, arrow_type = _VIEWED[kind]
        return pa.array(values, storage).view(arrow_type)
    return pa.array(values, _ARROW[kind])


SCALAR_KINDS = [k for k in Kind if k != Kind.ARRAY]


def list_array(child: pa.Array, offsets: list[int], valid: list[bool]) -> pa.Array:
    """A list array over ``child`` from raw offsets (null slots may span elements)."""
    mask = np.packbits(np.array(valid, dtype=bool), bitorder="little").tobytes()
    return pa.Array.from_buffers(
        pa.list_(child.type), len(valid),
        [pa.py_buffer(mask), pa.py_buffer(np.array(offsets, dtype="<i4").tobytes())],
        null_count=valid.count(False), children=[child])


@st.composite
def array_columns(draw, n: int) -> tuple[pa.Array, int, int, int]:
    """(list array of ``n`` rows over a sliced element array whose first offset need not be
    0, precision, scale, element kind)."""
    elem = draw(st.sampled_from(SCALAR_KINDS))
    child, precision, scale, _ = draw(columns(elem, draw(st.integers(0, 30))))
    pad_before, pad_after = draw(st.integers(0, 3)), draw(st.integers(0, 2))
    size = n + pad_before + pad_after
    offsets = sorted(draw(st.lists(st.integers(0, len(child)), min_size=size + 1,
                                   max_size=size + 1)))
    valid = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    return list_array(child, offsets, valid).slice(pad_before, n), precision, scale, elem


@st.composite
def columns(draw, kind: Kind, n: int) -> tuple[pa.Array, int, int, int]:
    """(array of ``n`` rows sliced at a random offset, precision, scale, element kind)."""
    if kind == Kind.ARRAY:
        return draw(array_columns(n))
    precision = scale = 0
    if kind == Kind.NUMERIC:
        precision = draw(st.integers(1, 38))
        scale = draw(st.one_of(st.integers(-4, precision + 2),
                               st.sampled_from([-1000, -33, 39, 1000])))
        top = 10**precision - 1
        value = st.one_of(st.integers(-top, top),
                          st.sampled_from([top, -top, 0, 1, -1, 2**127 - 1, -2**127,
                                           10**38, -10**38, 10**38 + 1, -10**38 - 1]))
    else:
        value = VALID[kind]
    pad_before, pad_after = draw(st.integers(0, 9)), draw(st.integers(0, 3))
    size = n + pad_before + pad_after
    values = draw(st.lists(st.one_of(st.none(), value), min_size=size, max_size=size))
    if kind in BAD and values and draw(st.integers(0, 2)) == 0:
        values[draw(st.integers(0, size - 1))] = draw(st.sampled_from(BAD[kind]))
    return to_array(kind, values, precision, scale).slice(pad_before, n), precision, scale, 0


@st.composite
def batches(draw) -> tuple[ColumnPlan, list, int, int]:
    """(plan, column_inputs, start, stop) over 1-5 columns of random kinds."""
    kinds = draw(st.lists(st.sampled_from(list(Kind)), min_size=1, max_size=5))
    n = draw(st.integers(0, 14))
    drawn = [draw(columns(kind, n)) for kind in kinds]
    names = tuple(f'c{i} "{k.name}"' for i, k in enumerate(kinds))
    batch = pa.RecordBatch.from_arrays([d[0] for d in drawn], names=list(names))
    plan = ColumnPlan(names, tuple(kinds), tuple(d[2] for d in drawn),
                      tuple(d[1] for d in drawn), tuple(d[3] for d in drawn),
                      tuple(1000 + d[3] if d[3] else 0 for d in drawn))
    start = draw(st.integers(0, n))
    stop = draw(st.one_of(st.just(n), st.integers(start, n)))
    return plan, column_inputs(batch, plan), start, stop


def outcome(fn, *args, out_prefix: bytes = b"keep") -> tuple:
    """("ok", return value, bytes appended) or ("error", message), checking truncation."""
    out = bytearray(out_prefix)
    try:
        result = fn(*args[:4], out, *args[4:])
    except DataError as exc:
        assert bytes(out) == out_prefix, "out was not truncated back on error"
        return "error", str(exc)
    return "ok", result, bytes(out[len(out_prefix):])


# --- parity -----------------------------------------------------------------------------------

@needs_c
@SETTINGS
@given(batches())
def test_encode_binary_parity(case) -> None:
    plan, cols, start, stop = case
    py = outcome(TWINS["python"].encode_binary, plan, cols, start, stop)
    assert outcome(TWINS["c"].encode_binary, plan, cols, start, stop) == py
    if py[0] == "ok":
        assert py[1] == len(py[2])


@needs_c
@SETTINGS
@given(batches())
def test_encode_text_parity(case) -> None:
    plan, cols, start, stop = case
    py = outcome(TWINS["python"].encode_text, plan, cols, start, stop)
    assert outcome(TWINS["c"].encode_text, plan, cols, start, stop) == py
    if py[0] == "ok":
        assert py[1] == len(py[2])
        assert py[2].count(b"\n") == stop - start   # newlines inside values are escaped


# --- exact output, both twins ----------------------------------------------------------------

IMPLS = pytest.mark.parametrize("impl", sorted(TWINS))


def _single(kind: Kind, values: list, precision: int = 0, scale: int = 0,
            name: str = "col") -> tuple[ColumnPlan, list]:
    arr = to_array(kind, values, precision, scale)
    plan = ColumnPlan((name,), (kind,), (scale,), (precision,))
    return plan, column_inputs(pa.RecordBatch.from_arrays([arr], names=[name]), plan)


def _numeric(weight: int, sign: int, dscale: int, *groups: int) -> bytes:
    """A numeric field as PostgreSQL's numeric_send writes it (length word included)."""
    return struct.pack(f">iHhHh{len(groups)}H", 8 + 2 * len(groups), len(groups), weight,
                       sign, dscale, *groups)


def _tuple(*fields: bytes) -> bytes:
    return struct.pack(">h", len(fields)) + b"".join(fields)


@IMPLS
def test_binary_fields_exact(impl: str) -> None:
    enc = TWINS[impl].encode_binary
    cases = [
        (Kind.BOOL, [True, None, False], [b"\x00\x00\x00\x01\x01", b"\xff\xff\xff\xff",
                                          b"\x00\x00\x00\x01\x00"]),
        (Kind.INT2, [-2], [b"\x00\x00\x00\x02\xff\xfe"]),
        (Kind.INT8, [1], [b"\x00\x00\x00\x08" + (1).to_bytes(8, "big")]),
        (Kind.FLOAT8, [-0.0], [b"\x00\x00\x00\x08\x80" + b"\x00" * 7]),
        (Kind.TEXT, ["é", ""], [b"\x00\x00\x00\x02\xc3\xa9", b"\x00\x00\x00\x00"]),
        (Kind.JSONB, ["[]"], [b"\x00\x00\x00\x03\x01[]"]),
        (Kind.DATE, [0, INT32_MAX, INT32_MIN],
         [struct.pack(">ii", 4, -10_957), struct.pack(">ii", 4, INT32_MAX),
          struct.pack(">ii", 4, INT32_MIN)]),
        (Kind.TIMESTAMP, [0, INT64_MAX, INT64_MIN],
         [struct.pack(">iq", 8, -946_684_800_000_000), struct.pack(">iq", 8, INT64_MAX),
          struct.pack(">iq", 8, INT64_MIN)]),
        (Kind.INTERVAL, [(1, 2, 3000)], [struct.pack(">iqii", 16, 3, 2, 1)]),
        (Kind.UUID, [bytes(range(16))], [b"\x00\x00\x00\x10" + bytes(range(16))]),
        (Kind.NUMERIC_TEXT, ["-12.3400", "NaN", "-0.00", "0.00001", "10000", "-Infinity"],
         [_numeric(0, 0x4000, 4, 12, 3400), _numeric(0, 0xC000, 0), _numeric(0, 0, 2),
          _numeric(-2, 0, 5, 1000), _numeric(1, 0, 0, 1), _numeric(0, 0xF000, 0)]),
    ]
    for kind, values, fields in cases:
        plan, cols = _single(kind, values)
        out = bytearray(b"x")
        n = enc(plan, cols, 0, len(values), out)
        assert bytes(out) == b"x" + b"".join(_tuple(f) for f in fields), kind
        assert n == len(out) - 1


@IMPLS
def test_decimal128_numeric_binary_exact(impl: str) -> None:
    enc = TWINS[impl].encode_binary
    plan, cols = _single(Kind.NUMERIC, [123_400, -1, 0, 10**38 - 1], 38, 4)
    out = bytearray()
    enc(plan, cols, 0, 4, out)
    assert bytes(out) == b"".join(_tuple(f) for f in [
        _numeric(0, 0, 4, 12, 3400),                 # 12.3400
        _numeric(-1, 0x4000, 4, 1),                  # -0.0001
        _numeric(0, 0, 4),                           # 0.0000
        _numeric(8, 0, 4, 99, *[9999] * 9),          # 34 nines . 4 nines
    ])
    plan, cols = _single(Kind.NUMERIC, [5, -12], 5, -2)   # negative scale: 500, -1200
    out = bytearray()
    enc(plan, cols, 0, 2, out)
    assert bytes(out) == _tuple(_numeric(0, 0, 0, 500)) + _tuple(_numeric(0, 0x4000, 0, 1200))
    plan, cols = _single(Kind.NUMERIC, [5] * 50, 38, -1000)  # 5e1000: 250 zero groups dropped
    out = bytearray()
    enc(plan, cols, 0, 50, out)
    assert bytes(out) == _tuple(_numeric(250, 0, 0, 5)) * 50


@IMPLS
def test_text_lines_exact(impl: str) -> None:
    kinds = (Kind.INT4, Kind.TEXT, Kind.BYTEA, Kind.TIMESTAMPTZ, Kind.INTERVAL, Kind.FLOAT4,
             Kind.NUMERIC, Kind.DATE, Kind.BOOL)
    arrays = [to_array(Kind.INT4, [-1, None]),
              to_array(Kind.TEXT, ["a\tb\\c\nd\re", "\\N"]),
              to_array(Kind.BYTEA, [b"\x0a\xff", None]),
              to_array(Kind.TIMESTAMPTZ, [-62_135_596_800_000_001, INT64_MIN]),
              to_array(Kind.INTERVAL, [(-1, 0, 5000), (0, -3, 0)]),
              to_array(Kind.FLOAT4, [0.1, float("-inf")]),
              to_array(Kind.NUMERIC, [-5, 123456], 10, 3),
              to_array(Kind.DATE, [-719_529, 2_145_042_905]),
              to_array(Kind.BOOL, [True, False])]
    names = tuple(f"c{i}" for i in range(len(kinds)))
    plan = ColumnPlan(names, kinds, (0,) * 6 + (3, 0, 0), (0,) * 6 + (10, 0, 0))
    cols = column_inputs(pa.RecordBatch.from_arrays(arrays, names=list(names)), plan)
    out = bytearray()
    TWINS[impl].encode_text(plan, cols, 0, 2, out)
    assert bytes(out).decode() == (
        "-1\ta\\tb\\\\c\\nd\\re\t\\\\x0aff\t0001-12-31 23:59:59.999999+00 BC\t"
        "-1 mons +0 days +0:00:00.000005\t0.100000001\t-0.005\t0002-12-31 BC\tt\n"
        "\\N\t\\\\N\t\\N\t-infinity\t+0 mons -3 days +0:00:00.000000\t-Infinity\t123.456\t"
        "5874897-12-31\tf\n")


@IMPLS
@pytest.mark.parametrize("method", ["encode_binary", "encode_text"])
def test_errors_name_column_row_and_value(impl: str, method: str) -> None:
    fn = getattr(TWINS[impl], method)
    cases = [
        (Kind.TEXT, ["ok", None, "a\x00b"], "column 'col', row 2: text contains a NUL byte, "
         "which PostgreSQL text cannot hold (value: 'a\\x00b')"),
        (Kind.DATE, [0, vt.UNIX_DATE_END], "column 'col', row 1: date out of PostgreSQL's range "
         "(4714-11-24 BC .. 5874897-12-31) (value: 2145042906 days since 1970-01-01)"),
        (Kind.INTERVAL, [(0, 0, 1500)], "column 'col', row 0: interval nanoseconds are not a "
         "whole number of microseconds (value: 0 months 0 days 1500 ns)"),
        (Kind.NUMERIC_TEXT, ["1", "1e5"], "column 'col', row 1: not a plain decimal numeric "
         "text (digits, one '.', NaN, Infinity) (value: '1e5')"),
        (Kind.TIME, [vt.USECS_PER_DAY + 1], "column 'col', row 0: time of day outside "
         "00:00:00 .. 24:00:00 (value: 86400000001 us since midnight)"),
    ]
    for kind, values, message in cases:
        plan, cols = _single(kind, values)
        assert outcome(fn, plan, cols, 0, len(values)) == ("error", message)
        # The same bad value outside the row range, or under a NULL, is never looked at.
        assert outcome(fn, plan, cols, 0, len(values) - 1)[0] == "ok"


@IMPLS
def test_first_bad_cell_in_row_major_order(impl: str) -> None:
    arrays = [to_array(Kind.TEXT, ["a", "b", "c\x00"]), to_array(Kind.DATE, [0, INT32_MIN + 1, 0])]
    plan = ColumnPlan(("t", "d"), (Kind.TEXT, Kind.DATE), (0, 0), (0, 0))
    cols = column_inputs(pa.RecordBatch.from_arrays(arrays, names=["t", "d"]), plan)
    for method in ("encode_binary", "encode_text"):
        status, message = outcome(getattr(TWINS[impl], method), plan, cols, 0, 3)
        assert message.startswith("column 'd', row 1: date out of"), message


@IMPLS
def test_null_slots_hold_garbage(impl: str) -> None:
    # A NULL whose slot holds an out-of-range date is still just NULL.
    data = pa.py_buffer(struct.pack("<ii", INT32_MIN + 1, 0))
    arr = pa.Array.from_buffers(pa.date32(), 2, [pa.py_buffer(b"\x02"), data], null_count=1)
    plan = ColumnPlan(("d",), (Kind.DATE,), (0,), (0,))
    cols = column_inputs(pa.RecordBatch.from_arrays([arr], names=["d"]), plan)
    out = bytearray()
    TWINS[impl].encode_text(plan, cols, 0, 2, out)
    assert bytes(out) == b"\\N\n1970-01-01\n"


@IMPLS
def test_bad_calls_raise_value_error(impl: str) -> None:
    plan, cols = _single(Kind.INT4, [1, 2])
    with pytest.raises(ValueError, match="row range"):
        TWINS[impl].encode_binary(plan, cols, 1, 3, bytearray())
    with pytest.raises(ValueError, match="2 column inputs"):
        TWINS[impl].encode_text(plan, cols * 2, 0, 1, bytearray())
    scale_plan, scale_cols = _single(Kind.NUMERIC, [1], 38, 0)
    bad = ColumnPlan(scale_plan.names, scale_plan.kinds, (2000,), (38,))
    with pytest.raises(DataError, match="decimal scale 2000"):
        TWINS[impl].encode_binary(bad, [scale_cols[0][:1] + (2000,) + scale_cols[0][2:]], 0, 1,
                                  bytearray())


# --- the shared calendar against an independent implementation -------------------------------

@settings(max_examples=300, deadline=None)
@given(st.integers(vt.UNIX_TS_MIN, INT64_MAX - 1))
def test_timestamp_text_matches_numpy(us: int) -> None:
    # numpy's datetime64 covers every int64 microsecond with astronomical years (0 = 1 BC).
    iso = str(np.datetime64(us, "us"))
    date, clock = iso.rsplit("T", 1)
    year, month_day = date[:-6], date[-5:]
    bc = int(year) <= 0
    expected = f"{1 - int(year) if bc else int(year):04d}-{month_day} {clock}"
    assert vt.fmt_timestamp(us, False) == expected + (" BC" if bc else "")


def test_decimal_text_matches_decimal_module() -> None:
    with localcontext() as ctx:
        ctx.prec = 100
        for v, scale in [(0, 3), (-5, 3), (123456, 3), (10**38 - 1, 38), (-(2**127), 10),
                         (7, -3), (-1, 0), (0, -2)]:
            expected = f"{Decimal(v).scaleb(-scale):f}" if scale >= 0 else str(v * 10**-scale)
            assert vt.fmt_decimal(v, scale) == expected, (v, scale)


_FLOAT_EDGES = [1234567890123456.5, 1234567890123457.5, 0.1, 1e-6, 9.999999999999999e-7, 1e16,
                1e17, 9.999999999999999e16, 1e22, 1e38, 1.7e38, 1e300, 5e-324,
                2.2250738585072014e-308, 1.7976931348623157e308, 0.0, -0.0, 0.5, 1e15,
                123456789012345678.0, 0.0001, 0.00001, -3.141592653589793, 2.0**-20]


@IMPLS
@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                          st.sampled_from(_FLOAT_EDGES)), max_size=20),
       st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), max_size=20))
def test_float_text_is_printf_g(impl: str, f8: list[float], f4: list[float]) -> None:
    # Reference: Python's '%.17g' / '%.9g' (what the brief fixes; the compiled twin uses its
    # own exact 128-bit rounding for everyday magnitudes). Ties included: 1048576.125 (f4).
    f4 = f4 + [1048576.125, 1048576.375, 16777216.0]
    for kind, values, digits in ((Kind.FLOAT8, f8, 17), (Kind.FLOAT4, f4, 9)):
        plan, cols = _single(kind, values)
        out = bytearray()
        TWINS[impl].encode_text(plan, cols, 0, len(values), out)
        assert bytes(out).decode().split("\n")[:-1] == ["%.*g" % (digits, v) for v in values]


# --- arrays ------------------------------------------------------------------------------------

def _arrays(*columns: tuple) -> tuple[ColumnPlan, list]:
    """Plan and inputs of ARRAY columns given as (name, element kind, OID, list values)."""
    arrays, names = [], []
    for name, elem, _, values in columns:
        flat = [v for row in values if row is not None for v in row]
        offsets = [0]
        for row in values:
            offsets.append(offsets[-1] + len(row or []))
        arrays.append(list_array(to_array(elem, flat), offsets, [v is not None for v in values]))
        names.append(name)
    plan = ColumnPlan(tuple(names), (Kind.ARRAY,) * len(columns), (0,) * len(columns),
                      (0,) * len(columns), tuple(c[1] for c in columns),
                      tuple(c[2] for c in columns))
    return plan, column_inputs(pa.RecordBatch.from_arrays(arrays, names=names), plan)


@IMPLS
def test_array_binary_exact(impl: str) -> None:
    plan, cols = _arrays(("a", Kind.INT4, 23, [[1, None, -2], [], None]),
                         ("t", Kind.TEXT, 25, [["é"], [None], [""]]))
    out = bytearray()
    TWINS[impl].encode_binary(plan, cols, 0, 3, out)
    int_array = struct.pack(">iiIiiiiiii", 1, 1, 23, 3, 1, 4, 1, -1, 4, -2)
    assert bytes(out) == (
        _tuple(struct.pack(">i", len(int_array)) + int_array,
               struct.pack(">iiiIiii", 26, 1, 0, 25, 1, 1, 2) + "é".encode())
        + _tuple(struct.pack(">iiiI", 12, 0, 0, 23),
                 struct.pack(">iiiIiii", 24, 1, 1, 25, 1, 1, -1))
        + _tuple(b"\xff\xff\xff\xff", struct.pack(">iiiIiii", 24, 1, 0, 25, 1, 1, 0)))


@IMPLS
def test_array_text_exact(impl: str) -> None:
    plan, cols = _arrays(
        ("t", Kind.TEXT, 25, [["a b", None, "", "NULL", "nUlL", 'q"\\', "\t,{}", "it's", "é"],
                              [], None]),
        ("y", Kind.BYTEA, 17, [[b"\x01\xff", b""], [None], []]),
        ("ts", Kind.TIMESTAMPTZ, 1184, [[0], [INT64_MAX, None], [INT64_MIN]]),
        ("f", Kind.FLOAT8, 701, [[float("nan"), -0.0], [1e300], [float("-inf")]]))
    out = bytearray()
    TWINS[impl].encode_text(plan, cols, 0, 3, out)
    assert bytes(out).decode() == (
        '{"a b",NULL,"","NULL","nUlL","q\\\\"\\\\\\\\","\\t,{}",it\'s,é}\t'
        '{"\\\\\\\\x01ff","\\\\\\\\x"}\t{"1970-01-01 00:00:00.000000+00"}\t{NaN,-0}\n'
        '{}\t{NULL}\t{infinity,NULL}\t{1.0000000000000001e+300}\n'
        '\\N\t{}\t{-infinity}\t{-Infinity}\n')


@IMPLS
@pytest.mark.parametrize("method", ["encode_binary", "encode_text"])
def test_array_element_errors(impl: str, method: str) -> None:
    fn = getattr(TWINS[impl], method)
    plan, cols = _arrays(("a", Kind.TEXT, 25, [["ok"], None, ["x", "b\x00d"]]),
                         ("d", Kind.DATE, 1082, [[0], [vt.UNIX_DATE_END], [0]]))
    # row 1 of "a" is NULL; the bad date of row 1 comes before the NUL of row 2
    assert outcome(fn, plan, cols, 0, 3) == ("error", (
        "column 'd', row 1, array element 1: date out of PostgreSQL's range (4714-11-24 BC .. "
        "5874897-12-31) (value: 2145042906 days since 1970-01-01)"))
    assert outcome(fn, plan, cols, 2, 3) == ("error", (
        "column 'a', row 2, array element 2: text contains a NUL byte, which PostgreSQL text "
        "cannot hold (value: 'b\\x00d')"))


@IMPLS
def test_bad_array_inputs_raise_value_error(impl: str) -> None:
    plan, cols = _arrays(("a", Kind.INT4, 23, [[1, 2], [3]]))
    kind, scale, length, offset, validity, offsets, child = cols[0]
    fn = TWINS[impl].encode_binary
    with pytest.raises(ValueError, match="needs an element column input"):
        fn(plan, [(kind, scale, length, offset, validity, offsets, child[6])], 0, 2, bytearray())
    with pytest.raises(ValueError, match="element column of column 0 is too short"):
        fn(plan, [(kind, scale, length, offset, validity, offsets, child[:2] + (2,) + child[3:])],
           0, 2, bytearray())
    backwards = pa.py_buffer(struct.pack("<3i", 0, 2, 1))
    with pytest.raises(ValueError, match="offsets of column 0 are not monotonic"):
        fn(plan, [(kind, scale, length, offset, validity, backwards, child)], 0, 2, bytearray())
