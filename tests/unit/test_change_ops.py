"""The apply's truncate check on a window's ``_rb_op`` column (sliced batches included)."""
from __future__ import annotations

import pyarrow as pa
import pytest

from rapidbyte_fast.destinations.postgres.change_apply import any_truncate


@pytest.mark.parametrize("ops,start,length,expected", [
    (["I", "U", "D"], 0, 3, False),
    (["I", "T", "D"], 0, 3, True),
    (["T", "I", "U", "D", "T"], 1, 3, False),   # truncates only outside the slice
    (["I", "U", "T"], 2, 1, True),
    (["T"], 1, 0, False),
    ([], 0, 0, False),
])
def test_any_truncate_sees_only_the_batch_rows(ops, start, length, expected):
    col = pa.array(ops, pa.utf8()).slice(start, length)
    assert any_truncate(col) is expected


def test_any_truncate_on_a_record_batch_slice():
    batch = pa.RecordBatch.from_arrays([pa.array(["I"] * 100 + ["T"] + ["U"] * 99)],
                                       names=["_rb_op"])
    assert any_truncate(batch.slice(0, 100).column("_rb_op")) is False
    assert any_truncate(batch.slice(50, 100).column("_rb_op")) is True
    assert any_truncate(batch.slice(101).column("_rb_op")) is False
