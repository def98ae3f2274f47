"""What the decoder twins refuse, or stop before, instead of trusting the stream.

* A varlena column's data, and an array column's element count, are addressed by int32
  offsets: the scan stops before the row that would take a column past 2^31 - 1 (the rows
  before it are decoded; the caller cuts the batch and goes on), and a first row that does
  not fit is a DataError. Nothing is allocated for the rows that do not fit: a 10-byte
  numeric can print as ~147 KB of text, so sizing the sinks first would ask for gigabytes.
  The sinks are made nearly full without touching memory (``PyByteArray_Resize`` of an empty
  bytearray maps pages it never writes), so the tests need no 2 GiB of RAM.
* Text from a source whose bytes are not guaranteed to be UTF-8 (a SQL_ASCII database:
  ``ColumnPlan.validate_utf8``) is checked before it enters an Arrow utf8 array.
"""
from __future__ import annotations

import ctypes
import re
import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rapidbyte_fast._impl import twins
from rapidbyte_fast.column_plan import COPY_BINARY_HEADER, ColumnPlan, ColumnSinks, Kind
from rapidbyte_fast.errors import DataError

TWINS = twins("copy_decode")
IMPLS = pytest.mark.parametrize("impl", sorted(TWINS))
LIMIT = 2**31 - 1

_resize = ctypes.pythonapi.PyByteArray_Resize
_resize.argtypes = [ctypes.py_object, ctypes.c_ssize_t]
_resize.restype = ctypes.c_int


def _fill_to(buf: bytearray, size: int) -> None:
    """Make ``buf`` ``size`` bytes long without writing (or paying for) the pages."""
    assert _resize(buf, size) == 0


def _stream(rows: list[list[bytes | None]], trailer: bool = True) -> bytes:
    out = bytearray(COPY_BINARY_HEADER)
    for row in rows:
        out += struct.pack(">h", len(row))
        for f in row:
            out += b"\xff\xff\xff\xff" if f is None else struct.pack(">i", len(f)) + f
    return bytes(out + (b"\xff\xff" if trailer else b""))


def _array(oid: int, elems: list[bytes]) -> bytes:
    head = struct.pack(">iiIii", 1, 0, oid, len(elems), 1)
    return head + b"".join(struct.pack(">i", len(e)) + e for e in elems)


def _lengths(sinks: ColumnSinks) -> list[int]:
    return [len(b) for bufs in (sinks.valid, sinks.offsets, sinks.data, sinks.child_valid,
                                sinks.child_offsets, sinks.child_data) for b in bufs]


P_TEXT = ColumnPlan(("t",), (Kind.TEXT,), (0,), (0,))
P_NUMTEXT = ColumnPlan(("n",), (Kind.NUMERIC_TEXT,), (0,), (0,))
P_INTS = ColumnPlan(("a",), (Kind.ARRAY,), (0,), (0,), (Kind.INT4,), (23,))
P_TEXTS = ColumnPlan(("a",), (Kind.ARRAY,), (0,), (0,), (Kind.TEXT,), (25,))
TOO_LARGE = re.escape("more than 2 GiB of data in one batch (lower max_batch_bytes)")
# numeric_send of 9999 * 10^(4 * 32767) with 16383 decimals: 10 bytes, 147,455 bytes of text
HUGE_NUMERIC = struct.pack(">hhHhH", 1, 32767, 0, 16383, 9999)


@IMPLS
def test_scan_stops_before_the_row_that_passes_2_gib(impl):
    mod = TWINS[impl]
    sinks = ColumnSinks(P_TEXT)
    _fill_to(sinks.data[0], LIMIT - 100)
    stream = _stream([[b"a" * 60], [b"b" * 60]])
    first_end = len(_stream([[b"a" * 60]], trailer=False))
    assert mod.decode(P_TEXT, stream, 19, len(stream), sinks, 100) == (first_end, False)
    assert sinks.rows == 1 and len(sinks.data[0]) == LIMIT - 40
    kept = _lengths(sinks)
    # the next call (the caller did not cut the batch) cannot fit even one row
    with pytest.raises(DataError, match=rf"^column 't', row 1: {TOO_LARGE}"):
        mod.decode(P_TEXT, stream, first_end, len(stream), sinks, 100)
    assert _lengths(sinks) == kept and sinks.rows == 1


@IMPLS
def test_no_allocation_for_rows_that_do_not_fit(impl):
    mod = TWINS[impl]
    sinks = ColumnSinks(P_NUMTEXT)
    stream = _stream([[HUGE_NUMERIC]] * 1000)   # ~147 MB of text
    tracemalloc.start()
    try:
        _fill_to(sinks.data[0], LIMIT - 1000)
        before = tracemalloc.get_traced_memory()[0]
        with pytest.raises(DataError, match=rf"^column 'n', row 0: {TOO_LARGE}"):
            mod.decode(P_NUMTEXT, stream, 19, len(stream), sinks, 10_000)
        grown = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert grown < 1 << 20


@IMPLS
def test_array_element_count_stays_within_int32_offsets(impl):
    mod = TWINS[impl]
    sinks = ColumnSinks(P_INTS)
    _fill_to(sinks.child_valid[0], LIMIT - 2)          # elements already in the batch
    stream = _stream([[_array(23, [struct.pack(">i", k) for k in range(5)])]])
    with pytest.raises(DataError, match=rf"^column 'a', row 0: {TOO_LARGE}"):
        mod.decode(P_INTS, stream, 19, len(stream), sinks, 10)
    assert sinks.rows == 0 and len(sinks.child_valid[0]) == LIMIT - 2


@IMPLS
def test_array_element_data_stays_within_int32_offsets(impl):
    mod = TWINS[impl]
    sinks = ColumnSinks(P_TEXTS)
    _fill_to(sinks.child_data[0], LIMIT - 30)
    ok, big = _array(25, [b"x" * 10]), _array(25, [b"y" * 10, b"z" * 20])
    stream = _stream([[ok], [big]])
    first_end = len(_stream([[ok]], trailer=False))
    assert mod.decode(P_TEXTS, stream, 19, len(stream), sinks, 10) == (first_end, False)
    with pytest.raises(DataError, match=rf"^column 'a', row 1, array element 2: {TOO_LARGE}"):
        mod.decode(P_TEXTS, stream, first_end, len(stream), sinks, 10)


# --- UTF-8 ------------------------------------------------------------------------------------

P_CHECKED = ColumnPlan(("t", "j", "a"), (Kind.TEXT, Kind.JSONB, Kind.ARRAY), (0, 0, 0),
                       (0, 0, 0), (0, 0, Kind.TEXT), (0, 0, 25), validate_utf8=True)


def _checked_row(text: bytes, json: bytes = b'"x"', elem: bytes = b"e") -> list[bytes]:
    return [text, b"\x01" + json, _array(25, [b"ok", elem])]


@IMPLS
@pytest.mark.parametrize("row, message", [
    (_checked_row(b"caf\xe9"), r"column 't', row 1: text is not valid UTF-8 \(value: 'caf\\\\xe9'\)"),
    (_checked_row(b"ok", json=b'"\xc3"'),
     r"column 'j', row 1: text is not valid UTF-8 \(value: '\"\\\\xc3\"'\)"),
    (_checked_row(b"ok", elem=b"\xed\xa0\x80"),
     r"column 'a', row 1, array element 2: text is not valid UTF-8 "),
])
def test_invalid_utf8_names_column_and_row(impl, row, message):
    stream = _stream([_checked_row("é 😀".encode()), row])
    sinks = ColumnSinks(P_CHECKED)
    with pytest.raises(DataError, match="^" + message):
        TWINS[impl].decode(P_CHECKED, stream, 19, len(stream), sinks, 10)
    assert sinks.rows == 0


@IMPLS
def test_unchecked_plans_copy_text_as_sent(impl):
    plan = ColumnPlan(("t",), (Kind.TEXT,), (0,), (0,))
    stream = _stream([[b"caf\xe9"]])
    sinks = ColumnSinks(plan)
    TWINS[impl].decode(plan, stream, 19, len(stream), sinks, 10)
    assert bytes(sinks.data[0]) == b"caf\xe9"


_BYTES = st.one_of(st.binary(max_size=12), st.text(max_size=6).map(str.encode),
                   st.lists(st.sampled_from([b"\xc3", b"\xa9", b"\xed\xa0\x80", b"\xf4\x90",
                                             b"\xe0\x80\x80", b"\xf0\x9f\x98\x80", b"a",
                                             b"\xc0\xaf", b"\xf8", b"\x80"]),
                            max_size=5).map(b"".join))


@pytest.mark.skipif("c" not in TWINS, reason="compiled copy_decode not built")
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_BYTES, min_size=1, max_size=6))
def test_utf8_check_parity(values):
    plan = ColumnPlan(("t",), (Kind.TEXT,), (0,), (0,), validate_utf8=True)
    stream = _stream([[v] for v in values])
    outcomes = {}
    for name, mod in TWINS.items():
        sinks = ColumnSinks(plan)
        try:
            outcomes[name] = (mod.decode(plan, stream, 19, len(stream), sinks, 100),
                              bytes(sinks.data[0]))
        except DataError as exc:
            outcomes[name] = str(exc)
    assert outcomes["c"] == outcomes["python"]
    bad = [k for k, v in enumerate(values) if not _is_utf8(v)]
    assert isinstance(outcomes["c"], str) == bool(bad)


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
