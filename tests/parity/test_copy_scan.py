"""copy_scan twins: identical tuple counts, positions and errors over random COPY streams."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapidbyte_fast._impl import twins
from rapidbyte_fast.errors import DataError

IMPLS = twins("copy_scan")

fields = st.lists(st.one_of(st.none(), st.binary(max_size=40)), max_size=6)


def _tuple(values) -> bytes:
    out = struct.pack(">h", len(values))
    for v in values:
        out += struct.pack(">i", -1) if v is None else struct.pack(">i", len(v)) + v
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(fields, max_size=20), st.booleans(), st.data())
def test_twins_agree_on_any_cut(rows, trailer, data):
    stream = b"".join(_tuple(r) for r in rows) + (b"\xff\xff" if trailer else b"")
    cut = data.draw(st.integers(0, len(stream)))
    results = {name: mod.scan(stream, 0, cut) for name, mod in IMPLS.items()}
    assert len(set(results.values())) == 1
    pos, n, seen = results["python"]
    # the complete tuples before the cut are exactly those counted
    ends = [0]
    for r in rows:
        ends.append(ends[-1] + len(_tuple(r)))
    complete = max(i for i, e in enumerate(ends) if e <= cut)
    if seen:
        assert (pos, n) == (ends[-1] + 2, len(rows))
    else:
        assert (pos, n) == (ends[complete], complete)


@pytest.mark.parametrize("name", sorted(IMPLS))
def test_full_stream_and_offsets(name):
    scan = IMPLS[name].scan
    stream = b"HEADER" + _tuple([b"a", None]) + _tuple([]) + b"\xff\xff"
    assert scan(stream, 6, len(stream)) == (len(stream), 2, True)
    assert scan(bytearray(stream), 6, 6) == (6, 0, False)


@pytest.mark.parametrize("name", sorted(IMPLS))
def test_errors(name):
    scan = IMPLS[name].scan
    with pytest.raises(DataError, match="^COPY tuple 2 in chunk: invalid field count -5$"):
        bad = _tuple([b"x"]) + struct.pack(">h", -5)
        scan(bad, 0, len(bad))
    with pytest.raises(DataError, match="^COPY tuple 1 in chunk: invalid field length -2$"):
        scan(struct.pack(">hi", 1, -2), 0, 6)
    with pytest.raises(ValueError, match="bad range"):
        scan(b"ab", 1, 5)
