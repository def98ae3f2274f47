"""Parity of the INSERT statement builder twins (compiled vs Python), plus exact statements.

Uses the batch strategy of test_copy_encode (every kind, nasty values, sliced arrays, bad
values). Each case is cut into statements with random ``max_rows`` / ``max_bytes`` and
consumed call after call until ``stop``: every call's (rows, bytes), the appended statement
and any DataError (with ``out`` truncated back) must match between the twins.
"""
from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapidbyte_fast._impl import twins
from rapidbyte_fast.column_plan import INT32_MIN, INT64_MAX, INT64_MIN, ColumnPlan, Kind
from rapidbyte_fast.column_plan import column_inputs
from rapidbyte_fast.errors import DataError
from tests.parity.test_copy_encode import SETTINGS, batches, outcome, to_array

TWINS = twins("insert_sql")
needs_c = pytest.mark.skipif("c" not in TWINS, reason="compiled insert_sql not built")
IMPLS = pytest.mark.parametrize("impl", sorted(TWINS))


def _statements(mod, plan, cols, start, stop, prefix, suffix, max_rows, max_bytes) -> list:
    """Outcome of every call needed to cover [start, stop) (stops at the first error)."""
    calls = []
    pos = start
    while True:
        result = outcome(mod.build_insert, plan, cols, pos, stop, prefix, suffix, max_rows,
                         max_bytes)
        calls.append(result)
        if result[0] == "error" or pos == stop:
            return calls
        rows, nbytes = result[1]
        assert 1 <= rows <= max_rows and nbytes == len(result[2])
        assert result[2].startswith(prefix) and result[2].endswith(suffix)
        pos += rows


@needs_c
@SETTINGS
@given(batches(), st.integers(1, 6), st.integers(0, 400),
       st.sampled_from([(b"INSERT INTO t VALUES ", b""), (b"", b" ON CONFLICT DO NOTHING")]))
def test_build_insert_parity(case, max_rows: int, max_bytes: int, affixes) -> None:
    plan, cols, start, stop = case
    args = (plan, cols, start, stop, *affixes, max_rows, max_bytes)
    py = _statements(TWINS["python"], *args)
    assert _statements(TWINS["c"], *args) == py


@IMPLS
def test_statement_exact(impl: str) -> None:
    kinds = (Kind.INT8, Kind.TEXT, Kind.BOOL, Kind.BYTEA, Kind.FLOAT8, Kind.DATE,
             Kind.TIMESTAMP, Kind.UUID, Kind.NUMERIC, Kind.NUMERIC_TEXT, Kind.JSONB,
             Kind.INTERVAL, Kind.TIME)
    arrays = [to_array(Kind.INT8, [INT64_MIN, None]),
              to_array(Kind.TEXT, ["it's \\ 'q'", ""]),
              to_array(Kind.BOOL, [True, False]),
              to_array(Kind.BYTEA, [b"\x0a\xff", b""]),
              to_array(Kind.FLOAT8, [-0.0, float("nan")]),
              to_array(Kind.DATE, [-719_529, INT32_MIN]),
              to_array(Kind.TIMESTAMP, [INT64_MAX, 1]),
              to_array(Kind.UUID, [bytes(range(16)), None]),
              to_array(Kind.NUMERIC, [-123, 0], 5, 2),
              to_array(Kind.NUMERIC_TEXT, ["-Infinity", "1.50"]),
              to_array(Kind.JSONB, ['{"a": "b\'"}', None]),
              to_array(Kind.INTERVAL, [(0, 0, 0), (-2, 3, -4000)]),
              to_array(Kind.TIME, [1, 86_400_000_000])]
    names = tuple(f"c{i}" for i in range(len(kinds)))
    plan = ColumnPlan(names, kinds, (0,) * 8 + (2,) + (0,) * 4, (0,) * 8 + (5,) + (0,) * 4)
    cols = column_inputs(pa.RecordBatch.from_arrays(arrays, names=list(names)), plan)
    out = bytearray(b"--")
    got = TWINS[impl].build_insert(plan, cols, 0, 2, out, b"INSERT INTO t VALUES ",
                                   b" RETURNING 1", 10, 1 << 20)
    stmt = (
        "INSERT INTO t VALUES "
        "(-9223372036854775808,'it''s \\ ''q''',true,'\\x0aff','-0','0002-12-31 BC',"
        "'infinity','00010203-0405-0607-0809-0a0b0c0d0e0f','-1.23','-Infinity',"
        "'{\"a\": \"b''\"}','+0 mons +0 days +0:00:00.000000','00:00:00.000001'),"
        "(NULL,'',false,'\\x','NaN','-infinity','1970-01-01 00:00:00.000001',NULL,'0.00',"
        "'1.50',NULL,'-2 mons +3 days -0:00:00.000004','24:00:00.000000')"
        " RETURNING 1").encode()
    assert got == (2, len(stmt))
    assert bytes(out) == b"--" + stmt


@IMPLS
def test_row_and_byte_limits(impl: str) -> None:
    plan = ColumnPlan(("v",), (Kind.INT4,), (0,), (0,))
    cols = column_inputs(pa.record_batch({"v": pa.array(range(10), pa.int32())}), plan)
    build = TWINS[impl].build_insert
    out = bytearray()
    assert build(plan, cols, 2, 10, out, b"P", b"S", 3, 1 << 20) == (3, 13)
    assert bytes(out) == b"P(2),(3),(4)S"
    out = bytearray()
    # 'P(5)S' is 5 bytes, under 7; 'P(5),(6)S' (9) reaches it.
    assert build(plan, cols, 5, 10, out, b"P", b"S", 100, 7) == (2, 9)
    assert bytes(out) == b"P(5),(6)S"
    out = bytearray()
    assert build(plan, cols, 9, 10, out, b"P", b"S", 100, 0) == (1, 5)   # at least one row
    assert build(plan, cols, 10, 10, out, b"P", b"S", 100, 0) == (0, 0)  # nothing left
    assert bytes(out) == b"P(9)S"
    with pytest.raises(ValueError, match="max_rows"):
        build(plan, cols, 0, 10, out, b"P", b"S", 0, 100)


@IMPLS
def test_error_after_cut_is_not_reached(impl: str) -> None:
    plan = ColumnPlan(("t",), (Kind.TEXT,), (0,), (0,))
    cols = column_inputs(pa.record_batch({"t": pa.array(["a", "b", "c\x00"])}), plan)
    build = TWINS[impl].build_insert
    out = bytearray(b"old")
    assert build(plan, cols, 0, 3, out, b"", b"", 2, 1000) == (2, 11)
    assert bytes(out) == b"old('a'),('b')"
    with pytest.raises(DataError, match=r"^column 't', row 2: text contains a NUL byte"):
        build(plan, cols, 0, 3, out, b"", b"", 3, 1000)
    assert bytes(out) == b"old('a'),('b')"


@IMPLS
def test_huge_value_grows_the_statement(impl: str) -> None:
    big = "x'" * 300_000
    plan = ColumnPlan(("t",), (Kind.TEXT,), (0,), (0,))
    cols = column_inputs(pa.record_batch({"t": pa.array(["a", big, "b"])}), plan)
    out = bytearray()
    assert TWINS[impl].build_insert(plan, cols, 0, 3, out, b"", b";", 10, 5) == (1, 6)
    out = bytearray()
    rows, _ = TWINS[impl].build_insert(plan, cols, 1, 3, out, b"", b";", 10, 5)
    assert (rows, bytes(out)) == (1, b"('" + big.replace("'", "''").encode() + b"');")


@IMPLS
def test_array_literals_exact(impl: str) -> None:
    from tests.parity.test_copy_encode import _arrays

    plan, cols = _arrays(("t", Kind.TEXT, 25, [["it's", 'a"b\\', None, ""], [], None]),
                         ("y", Kind.BYTEA, 17, [[b"\x01"], [None], [b""]]),
                         ("n", Kind.NUMERIC_TEXT, 1700, [["NaN", "-1.5"], ["0"], []]))
    out = bytearray()
    assert TWINS[impl].build_insert(plan, cols, 0, 3, out, b"V ", b"", 10, 1 << 20)[0] == 3
    assert bytes(out).decode() == (
        "V ('{it''s,\"a\\\"b\\\\\",NULL,\"\"}','{\"\\\\x01\"}','{NaN,-1.5}'),"
        "('{}','{NULL}','{0}'),(NULL,'{\"\\\\x\"}','{}')")
    bad, bad_cols = _arrays(("n", Kind.NUMERIC_TEXT, 1700, [["1"], ["2", "1e5"]]))
    with pytest.raises(DataError, match=r"^column 'n', row 1, array element 2: not a plain "
                                        r"decimal numeric text .* \(value: '1e5'\)$"):
        TWINS[impl].build_insert(bad, bad_cols, 0, 2, bytearray(), b"", b"", 10, 1 << 20)
