"""Parity of the binary array parameter twins (compiled vs Python), plus exact bytes.

Uses the batch strategy of test_copy_encode (every scalar kind, nasty values, sliced arrays,
sometimes a value PostgreSQL would reject) over random row ranges: bytes appended to each
output, return values, DataError messages (the first bad cell in row-major order, as COPY
meets it) and the truncation of every output must all match. Each element must be exactly
the field copy_encode writes for that cell.
"""
from __future__ import annotations

import struct

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapidbyte_fast._impl import twins
from rapidbyte_fast.column_plan import (
    INT32_MAX, INT64_MIN, ColumnPlan, Kind, column_inputs,
)
from rapidbyte_fast.errors import DataError
from tests.parity.test_copy_encode import SCALAR_KINDS, SETTINGS, columns, to_array

TWINS = twins("array_params")
ENCODE = twins("copy_encode")
needs_c = pytest.mark.skipif("c" not in TWINS, reason="compiled array_params not built")
IMPLS = pytest.mark.parametrize("impl", sorted(TWINS))


@st.composite
def scalar_batches(draw) -> tuple[ColumnPlan, list, tuple[int, ...], int, int]:
    """(plan, column_inputs, element OIDs, start, stop) over 1-5 non-ARRAY columns."""
    kinds = draw(st.lists(st.sampled_from(SCALAR_KINDS), min_size=1, max_size=5))
    n = draw(st.integers(0, 14))
    drawn = [draw(columns(kind, n)) for kind in kinds]
    names = tuple(f'c{i} "{k.name}"' for i, k in enumerate(kinds))
    batch = pa.RecordBatch.from_arrays([d[0] for d in drawn], names=list(names))
    plan = ColumnPlan(names, tuple(kinds), tuple(d[2] for d in drawn),
                      tuple(d[1] for d in drawn))
    oids = tuple(draw(st.sampled_from([23, 25, 2**32 - 1])) for _ in kinds)
    start = draw(st.integers(0, n))
    stop = draw(st.one_of(st.just(n), st.integers(start, n)))
    return plan, column_inputs(batch, plan), oids, start, stop


def outcome(mod, plan, cols, oids, start, stop) -> tuple:
    """("ok", return value, bytes appended per output) or ("error", message), checking that
    every output is back to its entry bytes after an error."""
    outs = [bytearray(b"keep%d" % k) for k in range(len(cols))]
    try:
        total = mod.encode_arrays(plan, cols, oids, start, stop, outs)
    except DataError as exc:
        assert outs == [bytearray(b"keep%d" % k) for k in range(len(cols))], \
            "outputs were not truncated back on error"
        return "error", str(exc)
    appended = [bytes(o[len(b"keep%d" % k):]) for k, o in enumerate(outs)]
    assert total == sum(map(len, appended))
    return "ok", total, appended


@needs_c
@SETTINGS
@given(scalar_batches())
def test_encode_arrays_parity(case) -> None:
    assert outcome(TWINS["c"], *case) == outcome(TWINS["python"], *case)


def _strip_counts(tuples: bytes, rows: int) -> bytes:
    """COPY BINARY tuples of one column without their 2-byte field counts."""
    fields, pos = bytearray(), 0
    for _ in range(rows):
        pos += 2
        (n,) = struct.unpack_from(">i", tuples, pos)
        end = pos + 4 + max(n, 0)
        fields += tuples[pos:end]
        pos = end
    assert pos == len(tuples)
    return bytes(fields)


@IMPLS
@SETTINGS
@given(scalar_batches())
def test_elements_are_copy_fields(impl: str, case) -> None:
    plan, cols, oids, start, stop = case
    result = outcome(TWINS[impl], plan, cols, oids, start, stop)
    if result[0] == "error":
        with pytest.raises(DataError):
            ENCODE[impl].encode_binary(plan, cols, start, stop, bytearray())
        return
    for k, array in enumerate(result[2]):
        n = stop - start
        if n == 0:
            assert array == struct.pack(">iiI", 0, 0, oids[k])
            continue
        ndim, has_null, oid, dim, lbound = struct.unpack_from(">iiIii", array)
        fields = array[20:]
        assert (ndim, oid, dim, lbound) == (1, oids[k], n, 1)
        assert fields == _column_fields(impl, plan, cols, k, start, stop)
        assert has_null == int(b"\xff\xff\xff\xff" in _fields(fields, n))


def _column_fields(impl: str, plan: ColumnPlan, cols: list, k: int, start: int,
                   stop: int) -> bytes:
    """Column ``k``'s COPY BINARY fields of rows [start, stop), as copy_encode writes them."""
    one = ColumnPlan((plan.names[k],), (plan.kinds[k],), (plan.scales[k],),
                     (plan.precisions[k],))
    out = bytearray()
    ENCODE[impl].encode_binary(one, [cols[k]], start, stop, out)
    return _strip_counts(bytes(out), stop - start)


def _fields(data: bytes, n: int) -> list[bytes]:
    """The length words of ``n`` fields: b'\\xff\\xff\\xff\\xff' for a NULL."""
    words, pos = [], 0
    for _ in range(n):
        (m,) = struct.unpack_from(">i", data, pos)
        words.append(data[pos:pos + 4])
        pos += 4 + max(m, 0)
    return words


@IMPLS
def test_arrays_exact(impl: str) -> None:
    batch = pa.RecordBatch.from_arrays(
        [pa.array([1, None, INT32_MAX], pa.int32()), pa.array(["a", "", "é"]),
         pa.array([-0.0, float("nan"), None])], names=["i", "t", "f"])
    plan = ColumnPlan(("i", "t", "f"), (Kind.INT4, Kind.TEXT, Kind.FLOAT8), (0,) * 3, (0,) * 3)
    outs = [bytearray(), bytearray(), bytearray()]
    total = TWINS[impl].encode_arrays(plan, column_inputs(batch, plan), (23, 1043, 701), 0, 3,
                                      outs)
    assert [bytes(o) for o in outs] == [
        struct.pack(">iiIii", 1, 1, 23, 3, 1) + struct.pack(">ii", 4, 1) + b"\xff" * 4
        + struct.pack(">ii", 4, INT32_MAX),
        struct.pack(">iiIii", 1, 0, 1043, 3, 1) + struct.pack(">i", 1) + b"a"
        + struct.pack(">i", 0) + struct.pack(">i", 2) + "é".encode(),
        struct.pack(">iiIii", 1, 1, 701, 3, 1) + struct.pack(">i", 8) + struct.pack(">d", -0.0)
        + struct.pack(">i", 8) + struct.pack(">d", float("nan")) + b"\xff" * 4,
    ]
    assert total == sum(map(len, outs))
    empty = [bytearray(), bytearray(), bytearray()]
    assert TWINS[impl].encode_arrays(plan, column_inputs(batch, plan), (23, 25, 701), 2, 2,
                                     empty) == 36
    assert [bytes(e) for e in empty] == [struct.pack(">iiI", 0, 0, oid) for oid in (23, 25, 701)]


@IMPLS
def test_first_bad_cell_in_row_major_order(impl: str) -> None:
    # column a is bad at row 2, column b at rows 1 and 3: COPY stops at b's row 1 first,
    # and from row 2 on at a's row 2 (before b's row 3)
    a = to_array(Kind.DATE, [0, 0, -2**31 + 1, 0])
    b = pa.array(["x", "nul\x00", "y", "\x00"])
    batch = pa.RecordBatch.from_arrays([a, b], names=["a", "b"])
    plan = ColumnPlan(("a", "b"), (Kind.DATE, Kind.TEXT), (0, 0), (0, 0))
    outs = [bytearray(b"A"), bytearray(b"B")]
    with pytest.raises(DataError, match=r"column 'b', row 1: text contains a NUL byte"):
        TWINS[impl].encode_arrays(plan, column_inputs(batch, plan), (1082, 25), 0, 4, outs)
    assert outs == [bytearray(b"A"), bytearray(b"B")]
    with pytest.raises(DataError, match=r"column 'a', row 2: date out of PostgreSQL's range"):
        TWINS[impl].encode_arrays(plan, column_inputs(batch, plan), (1082, 25), 2, 4, outs)


@IMPLS
def test_malformed_calls(impl: str) -> None:
    batch = pa.RecordBatch.from_arrays([pa.array([1], pa.int64()),
                                        pa.array([[1]], pa.list_(pa.int64()))], names=["a", "l"])
    plan = ColumnPlan(("a", "l"), (Kind.INT8, Kind.ARRAY), (0, 0), (0, 0), (0, Kind.INT8),
                      (0, 20))
    cols = column_inputs(batch, plan)
    mod = TWINS[impl]
    with pytest.raises(ValueError, match="column 1 is an ARRAY"):
        mod.encode_arrays(plan, cols, (20, 1016), 0, 1, [bytearray(), bytearray()])
    one = ColumnPlan(("a",), (Kind.INT8,), (0,), (0,))
    with pytest.raises(ValueError, match="1 element OIDs and 2 outputs for 1 columns"):
        mod.encode_arrays(one, cols[:1], (20,), 0, 1, [bytearray(), bytearray()])
    with pytest.raises(ValueError, match="element type OID 0 of column 0"):
        mod.encode_arrays(one, cols[:1], (0,), 0, 1, [bytearray()])
    with pytest.raises(TypeError, match="output 0 is a bytes"):
        mod.encode_arrays(one, cols[:1], (20,), 0, 1, [b""])
    with pytest.raises(ValueError, match="row range"):
        mod.encode_arrays(one, cols[:1], (20,), 0, 2, [bytearray()])


@IMPLS
def test_int_extremes(impl: str) -> None:
    batch = pa.RecordBatch.from_arrays([pa.array([INT64_MIN, None], pa.int64())], names=["v"])
    plan = ColumnPlan(("v",), (Kind.INT8,), (0,), (0,))
    out = [bytearray()]
    TWINS[impl].encode_arrays(plan, column_inputs(batch, plan), (20,), 0, 2, out)
    assert bytes(out[0]) == (struct.pack(">iiIii", 1, 1, 20, 2, 1) + struct.pack(">iq", 8,
                                                                                  INT64_MIN)
                             + b"\xff" * 4)
