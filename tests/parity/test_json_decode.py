"""The json_decode twins agree byte for byte: statuses, offsets, masks, sizes and sinks, over
generated documents full of nasty values and over broken ones."""
from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rapidbyte_fast._impl import twins

TWINS = twins("json_decode")
pytestmark = pytest.mark.skipif("c" not in TWINS, reason="compiled kernels not built")
PY, C = TWINS["python"], TWINS.get("c")

KINDS = (PY.K_BOOL, PY.K_INT8, PY.K_FLOAT8, PY.K_TEXT, PY.K_DATE, PY.K_TIMESTAMPTZ,
         PY.K_NUMERIC_TEXT, PY.K_JSONB)

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_stamp = st.builds(
    lambda y, mo, d, h, mi, s, f, z: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{f}{z}",
    st.integers(1, 9999), st.integers(1, 13), st.integers(1, 31), st.integers(0, 24),
    st.integers(0, 60), st.integers(0, 60), st.sampled_from(["", ".5", ".123456", ".1234567"]),
    st.sampled_from(["", "Z", "+05:30", "-0800", "+14"]))
_date = st.builds(lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}", st.integers(0, 9999),
                  st.integers(0, 13), st.integers(0, 32))
_scalar = st.one_of(
    st.none(), st.booleans(),
    st.integers(-2**64, 2**64),
    st.sampled_from([0, -0, 2**63 - 1, -2**63, 2**63, -2**63 - 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-0.0, 1e308, 5e-324, 1.5e-300]),
    _text, _stamp, _date,
    st.sampled_from(["\t\n\\\"\x00", "é", "\U0001F600", "2024-02-30", "2023-02-29T00:00:00Z"]))
_value = st.recursive(_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b", "é"]), inner,
                                                 max_size=3)), max_leaves=6)
_keys = st.sampled_from(["id", "name", "x", "é", "a\"b", "n"])
_records = st.lists(st.dictionaries(_keys, _value, max_size=5), max_size=6)


def _table(paths: list[bytes]) -> tuple[bytes, bytes, bytes]:
    offs = [0]
    for p in paths:
        offs.append(offs[-1] + len(p))
    return (b"".join(paths), struct.pack(f"<{len(offs)}i", *offs),
            struct.pack(f"<{len(paths)}i", *range(len(paths))))


def _run(mod, doc: bytes, ndjson: bool, flatten: bool, kind_seed: int):
    """Learn keys, survey, fill: everything each step returns and writes."""
    out = []
    paths: list[bytes] = []
    masks, sizes, unknown = bytearray(), bytearray(), bytearray()
    while True:
        masks += bytes(2 * len(paths) - len(masks))
        r = mod.survey(doc, 0, len(doc), ndjson, *_table(paths), flatten, masks, sizes, unknown,
                       kind_seed % 3 != 0)
        out.append((r, bytes(unknown)))
        if r[0] != mod.UNKNOWN_KEY:
            break
        paths.append(bytes(unknown))
    out.append((bytes(masks), bytes(sizes), paths))
    if r[0] != mod.OK:
        return out
    kinds = bytes(KINDS[(kind_seed + i) % len(KINDS)] for i in range(len(paths)))
    varlena = (PY.K_TEXT, PY.K_NUMERIC_TEXT, PY.K_JSONB)
    valid = [bytearray(b"\x01") for _ in kinds]
    offsets = [bytearray(b"\x00\x00\x00\x00\x02\x00\x00\x00") if k in varlena else bytearray()
               for k in kinds]
    data = [bytearray(b"zz" if k in varlena else bytes({1: 1, 9: 4}.get(k, 8))) for k in kinds]
    f = mod.fill(doc, 0, len(doc), ndjson, *_table(paths), flatten, kinds, r[1], bytes(sizes),
                 valid, offsets, data)
    out.append((f, valid, offsets, data))
    return out


def _same(doc: bytes, ndjson: bool = False, flatten: bool = False, kind_seed: int = 0) -> None:
    assert _run(C, doc, ndjson, flatten, kind_seed) == _run(PY, doc, ndjson, flatten, kind_seed)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_records, st.booleans(), st.integers(0, 7), st.sampled_from([",", ", ", " ,\n "]))
def test_arrays_of_records(records, flatten, seed, sep):
    doc = "[" + sep.join(json.dumps(r, ensure_ascii=seed % 2 == 0) for r in records) + "]"
    _same(doc.encode(), flatten=flatten, kind_seed=seed)


@settings(max_examples=200, deadline=None)
@given(_records, st.integers(0, 7))
def test_ndjson(records, seed):
    doc = "\n".join(json.dumps(r) for r in records) + "\n"
    _same(doc.encode(), ndjson=True, kind_seed=seed)


@settings(max_examples=400, deadline=None)
@given(_records, st.data())
def test_broken_documents(records, data):
    doc = bytearray(json.dumps(records).encode())
    for _ in range(data.draw(st.integers(1, 3))):
        if not doc:
            break
        i = data.draw(st.integers(0, len(doc) - 1))
        op = data.draw(st.sampled_from(["cut", "byte", "drop"]))
        if op == "cut":
            del doc[i:]
        elif op == "byte":
            doc[i] = data.draw(st.sampled_from(b'{}[],:"\\\x00\x1fu0-e.nt '))
        else:
            del doc[i]
    _same(bytes(doc), kind_seed=data.draw(st.integers(0, 7)))


@pytest.mark.parametrize("doc", [
    b"", b"   ", b"[]", b"{}", b"[1]", b'[{"a": 1}] trailing', b'[{"a": 1,}]', b'[{"a" 1}]',
    b'[{"a": "\\ud800"}]', b'[{"a": "\\udc00\\ud800"}]', b'[{"a": "\\u12G4"}]', b'[{"a": 01}]',
    b'[{"a": -}]', b'[{"a": 1.}]', b'[{"a": 1e}]', b'[{"a": tru}]', b'[{"a": nul}]',
    b'[{"a": 1, "a": 2}]', b'[{"a": "\x01"}]', b'[{"a": ' + b"[" * 1100 + b"]" * 1100 + b"}]",
    b'[{"a": 99999999999999999999, "b": -9223372036854775809, "c": 9223372036854775807}]',
    b'[{"t": "2024-02-29T23:59:59.999999+14:00", "d": "1970-01-01", "u": "0001-01-01T00:00"}]',
])
@pytest.mark.parametrize("seed", range(8))
def test_edges(doc, seed):
    _same(doc, kind_seed=seed)
    _same(doc, flatten=True, kind_seed=seed)


@pytest.mark.parametrize("path", [(), (b"data",), (b"meta", b"next"), (b"nope",), (b"data", b"x")])
@pytest.mark.parametrize("measure", [True, False])
def test_locate(path, measure):
    doc = b' {"meta": {"next": "a\\"b", "n": [1, {"x": 2}]}, "data": [{"x": 1}], "z": nul}'
    assert C.locate(doc, 0, len(doc), path, measure) == PY.locate(doc, 0, len(doc), path, measure)
