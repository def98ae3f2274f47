"""The narrowing of a refused batch down to its refused rows (``row_guard.load_guarded``),
over an attempt that refuses chosen rows, with and without naming them."""
from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from rapidbyte_fast.row_guard import Refusal, Rejects, load_guarded
from rapidbyte_fast.state.dlq import DeadLetterTable

LETTERS = DeadLetterTable("dst", "p", "run-1")


def _attempts(bad: set[int], names_row: bool, calls: list):
    def attempt(lo: int, hi: int) -> Refusal | None:
        calls.append((lo, hi))
        hit = sorted(r for r in bad if lo <= r < hi)
        if not hit:
            return None
        return Refusal(f"row {hit[0]} refused", "23514", hit[0] if names_row else None)
    return attempt


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 300), data=st.data(), names_row=st.booleans())
def test_exactly_the_refused_rows_are_set_aside(n, data, names_row):
    bad = set(data.draw(st.lists(st.integers(0, n - 1), max_size=12)))
    batch = pa.RecordBatch.from_pydict({"id": list(range(n))})
    rejects = Rejects("s", "dlq", LETTERS)
    calls: list = []
    loaded, sink = load_guarded(batch, _attempts(bad, names_row, calls), rejects)
    assert loaded == n - len(bad)
    assert [int(rec.split(": ")[1].rstrip("}")) for _, rec, _, _ in sink] == sorted(bad)
    assert all(stream == "s" and errs == [f"23514: row {r} refused"] and cat == "load"
               for (stream, _, errs, cat), r in zip(sink, sorted(bad)))
    assert rejects.dead_lettered == len(bad) and rejects.skipped == 0
    # every row is in exactly one accepted attempt or rejected
    accepted = [r for lo, hi in calls if not any(lo <= b < hi for b in bad)
                for r in range(lo, hi)]
    assert sorted(accepted + sorted(bad)) == list(range(n))
    if names_row:  # straight to each row: at most two attempts per refused row, plus one
        assert len(calls) <= 2 * len(bad) + 1


def test_skip_counts_only():
    rejects = Rejects("s", "skip", None)
    batch = pa.RecordBatch.from_pydict({"id": [1, 2, 3]})
    assert load_guarded(batch, _attempts({1}, False, []), rejects) == (2, [])
    assert (rejects.skipped, rejects.dead_lettered) == (1, 0)


def test_a_mode_without_its_dead_letters_is_refused():
    with pytest.raises(ValueError):
        Rejects("s", "dlq", None)
    with pytest.raises(ValueError):
        Rejects("s", "skip", LETTERS)
    with pytest.raises(ValueError):
        Rejects("s", "fail", None)
