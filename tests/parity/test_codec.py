"""Parity of the codec twins (Hypothesis): each decompresses the other's frames to the same
bytes, headers agree, and identical corrupt input gives the identical CodecError message."""
from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rapidbyte_fast._impl import twins
from rapidbyte_fast.errors import CodecError

TWINS = twins("codec")
if "c" not in TWINS:
    pytest.skip("compiled codec not built", allow_module_level=True)
C, PY = TWINS["c"], TWINS["python"]
HEADER = struct.Struct("<2sBbIII")

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

data_st = st.one_of(
    st.binary(max_size=3000),
    # repetitive input, so the compressors emit matches and not only literals
    st.tuples(st.binary(min_size=1, max_size=40), st.integers(1, 3000)).map(
        lambda t: (t[0] * t[1])[:100_000]
    ),
)
codec_level_st = st.one_of(
    st.just(("none", 0)),
    st.tuples(st.just("lz4"), st.integers(0, 127)),
    st.tuples(st.just("zstd"), st.integers(-128, 22)),
)


def frame_of(mod, name: str, data: bytes, level: int) -> bytes:
    out = bytearray()
    assert mod.compress(name, data, out, level) == len(out)
    return bytes(out)


def outcome(mod, frame: bytes) -> tuple:
    out = bytearray(b"entry")
    try:
        n = mod.decompress(frame, out)
    except CodecError as exc:
        assert out == b"entry"
        return ("error", str(exc))
    assert n == len(out) - 5
    return ("ok", bytes(out[5:]))


@SETTINGS
@given(data=data_st, codec_level=codec_level_st)
def test_twins_read_each_others_frames(data, codec_level):
    name, level = codec_level
    fc, fp = frame_of(C, name, data, level), frame_of(PY, name, data, level)
    # magic, codec id, level and raw size agree; payloads may differ (each twin links its
    # own zstd / lz4 build), but never for "none"
    assert fc[:8] == fp[:8]
    if name == "none":
        assert fc == fp
    for frame in (fc, fp):
        assert HEADER.unpack_from(frame)[4] == len(frame) - 16
        assert HEADER.unpack_from(frame)[5] == zlib.crc32(frame[16:])
        assert C.frame_info(frame) == PY.frame_info(frame) == (name, len(data), len(frame) - 16)
        assert outcome(C, frame) == outcome(PY, frame) == ("ok", data)


def _reframe(frame: bytes, payload: bytes, raw: int) -> bytes:
    magic, cid, level, _, _, _ = HEADER.unpack_from(frame)
    return HEADER.pack(magic, cid, level, raw, len(payload), zlib.crc32(payload)) + payload


@st.composite
def corrupt_frames(draw) -> bytes:
    name, level = draw(codec_level_st)
    data = draw(data_st)
    frame = frame_of(draw(st.sampled_from([C, PY])), name, data, level)
    kind = draw(st.sampled_from(["truncate", "flip", "append", "field", "payload", "codec"]))
    if kind == "truncate":
        return frame[: draw(st.integers(0, len(frame) - 1))]
    if kind == "flip":
        i = draw(st.integers(0, len(frame) - 1))
        return frame[:i] + bytes([frame[i] ^ draw(st.integers(1, 255))]) + frame[i + 1:]
    if kind == "append":
        return frame + draw(st.binary(min_size=1, max_size=20))
    if kind == "field":
        offset = draw(st.sampled_from([4, 8, 12]))
        value = draw(st.one_of(st.integers(0, 0xFFFFFFFF), st.integers(0, len(data) + 20)))
        return frame[:offset] + struct.pack("<I", value) + frame[offset + 4:]
    if kind == "codec":
        # same payload labelled as another codec, with the header otherwise consistent
        return frame[:2] + bytes([draw(st.integers(0, 3))]) + frame[3:]
    # payload damage behind a valid checksum: only the decompressor can notice
    payload = bytearray(frame[16:])
    for _ in range(draw(st.integers(1, 4))):
        if payload:
            payload[draw(st.integers(0, len(payload) - 1))] ^= draw(st.integers(1, 255))
    if draw(st.booleans()):
        payload = payload[: draw(st.integers(0, len(payload)))]
    raw = draw(st.one_of(st.just(len(data)), st.integers(0, len(data) + 300)))
    return _reframe(frame, bytes(payload), raw)


@SETTINGS
@given(frame=corrupt_frames())
def test_twins_agree_on_damaged_frames(frame):
    assert outcome(C, frame) == outcome(PY, frame)
    try:
        info = PY.frame_info(frame)
    except CodecError as exc:
        with pytest.raises(CodecError) as c_exc:
            C.frame_info(frame)
        assert str(c_exc.value) == str(exc)
    else:
        assert C.frame_info(frame) == info


@pytest.mark.parametrize("frame", [
    b"", b"R", b"RB\x02", b"RB\x02\x03" + bytes(12), b"RB\x01\x01" + bytes(12),
    b"RB\x00\x00" + bytes(12), b"RB\x09\x00" + bytes(12), b"\x00" * 40,
])
def test_twins_agree_on_tiny_frames(frame):
    assert outcome(C, frame) == outcome(PY, frame)
