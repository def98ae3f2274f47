"""Unit tests of the codec kernel, run against every importable twin: round trips, the exact
frame layout, every corruption message, caller-owned output on error, per-thread contexts."""
from __future__ import annotations

import random
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import lz4.block
import pyarrow as pa
import pytest
import zstandard

from rapidbyte_fast._impl import twins
from rapidbyte_fast.errors import CodecError

TWINS = twins("codec")
IMPLS = sorted(TWINS)
HEADER = struct.Struct("<2sBbIII")

_rng = random.Random(20240101)
DATA = {
    "empty": b"",
    "one-byte": b"\x07",
    "64k-text": b"".join(b"event-%d-click;" % i for i in range(5000))[:65536],
    "1m-text": b"".join(b"payload-%d-" % i + b"x" * 50 for i in range(20000))[: 1 << 20],
    "64k-random": _rng.randbytes(65536),
    "1m-zeros": bytes(1 << 20),
}
LEVELS = {"none": [0], "lz4": [0, 1, 9, 127], "zstd": [0, -128, -5, 1, 3, 12, 22]}
EFFECTIVE = {("lz4", 0): 1, ("zstd", 0): 3}


@pytest.fixture(params=IMPLS)
def codec(request):
    return TWINS[request.param]


def frame_of(mod, name: str, data: bytes, level: int = 0) -> bytes:
    out = bytearray()
    mod.compress(name, data, out, level)
    return bytes(out)


def reframe(frame: bytes, payload: bytes, raw: int | None = None) -> bytes:
    """The frame with its payload replaced and the header's sizes and checksum made to fit."""
    magic, cid, level, old_raw, _, _ = HEADER.unpack_from(frame)
    return HEADER.pack(magic, cid, level, old_raw if raw is None else raw, len(payload),
                       zlib.crc32(payload)) + payload


def expect_error(mod, frame: bytes, message: str) -> None:
    out = bytearray(b"keep")
    with pytest.raises(CodecError) as exc:
        mod.decompress(frame, out)
    assert str(exc.value) == message
    assert out == b"keep"


def test_codec_ids(codec):
    assert codec.CODECS == {"none": 0, "lz4": 1, "zstd": 2}
    assert codec.HEADER_SIZE == 16


# The extreme zstd levels are slow, so they only see the inputs up to 64 KB.
ROUND_TRIPS = [
    (name, level, data_name)
    for name, levels in LEVELS.items() for level in levels for data_name in sorted(DATA)
    if level not in (-128, 22) or len(DATA[data_name]) <= 65536
]


@pytest.mark.parametrize("name,level,data_name", ROUND_TRIPS)
def test_round_trip_and_header(codec, name, level, data_name):
    data = DATA[data_name]
    out = bytearray(b"prefix")
    n = codec.compress(name, data, out, level)
    assert out[:6] == b"prefix" and n == len(out) - 6
    frame = bytes(out[6:])
    magic, cid, lvl, raw, size, crc = HEADER.unpack_from(frame)
    payload = frame[16:]
    assert (magic, cid, lvl, raw, size) == (
        b"RB", codec.CODECS[name], EFFECTIVE.get((name, level), level), len(data), len(payload)
    )
    assert crc == zlib.crc32(payload)
    if name == "none":
        assert payload == data
    elif name == "lz4":
        assert lz4.block.decompress(payload, uncompressed_size=len(data)) == data
    else:
        assert zstandard.ZstdDecompressor().decompress(payload) == data
        assert zstandard.frame_content_size(payload) == len(data)
    assert codec.frame_info(frame) == (name, len(data), len(payload))
    back = bytearray(b"pre")
    assert codec.decompress(frame, back) == len(data)
    assert back == b"pre" + data


def test_compressible_data_shrinks(codec):
    data = DATA["1m-zeros"]
    assert len(frame_of(codec, "lz4", data)) < 5000
    assert len(frame_of(codec, "zstd", data)) < 200


@pytest.mark.parametrize("name", ["none", "lz4", "zstd"])
def test_buffer_types_give_the_same_frame(codec, name):
    data = DATA["64k-text"]
    expected = frame_of(codec, name, data)
    for wrap in (bytearray, memoryview, pa.py_buffer):
        assert frame_of(codec, name, wrap(data)) == expected
        out = bytearray()
        assert codec.decompress(wrap(expected), out) == len(data)
        assert out == data
        assert codec.frame_info(wrap(expected)) == (name, len(data), len(expected) - 16)


@pytest.mark.parametrize("out", [b"", memoryview(bytearray()), None])
def test_out_must_be_a_bytearray(codec, out):
    frame = frame_of(codec, "none", b"abc")
    with pytest.raises(TypeError):
        codec.compress("none", b"abc", out)
    with pytest.raises(TypeError):
        codec.decompress(frame, out)


def test_none_frame_is_exact(codec):
    assert frame_of(codec, "none", b"abc") == (
        b"RB\x00\x00" + struct.pack("<III", 3, 3, zlib.crc32(b"abc")) + b"abc"
    )


@pytest.mark.parametrize(
    "name,level,message",
    [
        ("gzip", 0, "unknown codec 'gzip': use 'none', 'lz4' or 'zstd'"),
        (b"zstd", 0, "unknown codec b'zstd': use 'none', 'lz4' or 'zstd'"),
        ("none", 1, "none level 1 is out of range 0..0"),
        ("lz4", -1, "lz4 level -1 is out of range 0..127"),
        ("lz4", 128, "lz4 level 128 is out of range 0..127"),
        ("zstd", 23, "zstd level 23 is out of range -128..22"),
        ("zstd", -129, "zstd level -129 is out of range -128..22"),
        ("zstd", 2**70, f"zstd level {2**70} is out of range -128..22"),
    ],
)
def test_compress_rejects_bad_codec_and_level(codec, name, level, message):
    out = bytearray(b"keep")
    with pytest.raises(CodecError) as exc:
        codec.compress(name, b"data", out, level)
    assert str(exc.value) == message
    assert out == b"keep"
    with pytest.raises(CodecError) as exc:
        codec.context_id(name, level)
    assert str(exc.value) == message


@pytest.mark.parametrize("name", ["none", "lz4", "zstd"])
def test_structural_corruption(codec, name):
    frame = frame_of(codec, name, DATA["64k-text"])
    size = len(frame) - 16
    expect_error(codec, frame[:10], "codec frame truncated: 10 bytes, the header alone is 16")
    expect_error(codec, b"", "codec frame truncated: 0 bytes, the header alone is 16")
    expect_error(codec, b"XY" + frame[2:], "codec frame has bad magic 0x5859, expected 0x5242")
    expect_error(codec, frame[:2] + b"\x07" + frame[3:], "codec frame has unknown codec id 7")
    expect_error(
        codec, frame[:-1], f"codec frame truncated: header says {size} payload bytes, "
        f"{size - 1} present",
    )
    expect_error(
        codec, frame[:16], f"codec frame truncated: header says {size} payload bytes, 0 present"
    )
    expect_error(
        codec, frame + b"\x00\x01", f"codec frame has 2 bytes after its {size}-byte payload"
    )
    flipped = bytearray(frame)
    flipped[16 + size // 2] ^= 0x40
    crc = zlib.crc32(frame[16:])
    expect_error(
        codec, bytes(flipped), f"codec frame checksum mismatch: header says {crc:08x}, "
        f"payload has {zlib.crc32(flipped[16:]):08x}",
    )
    bad_crc = frame[:12] + struct.pack("<I", crc ^ 1) + frame[16:]
    expect_error(
        codec, bad_crc,
        f"codec frame checksum mismatch: header says {crc ^ 1:08x}, payload has {crc:08x}",
    )


def test_frame_info_checks_only_the_header(codec):
    frame = frame_of(codec, "zstd", DATA["64k-text"])
    assert codec.frame_info(frame[:16]) == ("zstd", 65536, len(frame) - 16)
    for bad, message in [
        (frame[:15], "codec frame truncated: 15 bytes, the header alone is 16"),
        (b"rb" + frame[2:], "codec frame has bad magic 0x7262, expected 0x5242"),
        (frame[:2] + b"\xff" + frame[3:], "codec frame has unknown codec id 255"),
    ]:
        with pytest.raises(CodecError) as exc:
            codec.frame_info(bad)
        assert str(exc.value) == message


def test_none_size_mismatch(codec):
    frame = frame_of(codec, "none", b"abcdef")
    bad = frame[:4] + struct.pack("<I", 5) + frame[8:]
    expect_error(
        codec, bad,
        "codec frame size mismatch: codec none with 5 raw bytes carries a 6-byte payload",
    )


def corrupt(name: str, raw: int) -> str:
    return (f"codec frame {name} payload is corrupt: it does not decompress to "
            f"the {raw} bytes the header says")


def test_zstd_payload_corruption(codec):
    data = DATA["64k-text"]
    frame = frame_of(codec, "zstd", data)
    payload = frame[16:]
    expect_error(
        codec, reframe(frame, payload, raw=65535),
        "codec frame size mismatch: header says 65535 raw bytes, zstd payload says 65536",
    )
    expect_error(codec, reframe(frame, b"not zstd at all"), corrupt("zstd", 65536))
    expect_error(codec, reframe(frame, b""), corrupt("zstd", 65536))
    expect_error(codec, reframe(frame, payload[:4]), corrupt("zstd", 65536))
    # a valid frame followed by a second frame or junk is not one frame
    empty = zstandard.ZstdCompressor().compress(b"")
    expect_error(codec, reframe(frame, payload + empty), corrupt("zstd", 65536))
    expect_error(codec, reframe(frame, payload[:-3]), corrupt("zstd", 65536))
    expect_error(codec, reframe(frame, empty + b"junk", raw=0), corrupt("zstd", 0))
    expect_error(codec, reframe(frame, empty + payload, raw=0), corrupt("zstd", 0))
    no_size = zstandard.ZstdCompressor(write_content_size=False).compress(data)
    expect_error(codec, reframe(frame, no_size), corrupt("zstd", 65536))
    # a foreign but well-formed zstd frame is accepted
    foreign = zstandard.ZstdCompressor(level=7, write_checksum=True).compress(data)
    out = bytearray()
    assert codec.decompress(reframe(frame, foreign), out) == len(data) and out == data


def test_lz4_payload_corruption(codec):
    data = DATA["64k-text"]
    frame = frame_of(codec, "lz4", data)
    payload = frame[16:]
    expect_error(codec, reframe(frame, payload, raw=65537), corrupt("lz4", 65537))
    expect_error(codec, reframe(frame, payload, raw=65535), corrupt("lz4", 65535))
    expect_error(codec, reframe(frame, payload, raw=0), corrupt("lz4", 0))
    expect_error(codec, reframe(frame, payload[:-5]), corrupt("lz4", 65536))
    expect_error(codec, reframe(frame, b""), corrupt("lz4", 65536))
    expect_error(codec, reframe(frame, b"\xff" * 40), corrupt("lz4", 65536))
    expect_error(codec, reframe(frame, payload, raw=0x7E000001), corrupt("lz4", 0x7E000001))
    # longer than LZ4_compressBound(raw): 10 raw bytes never need 27 payload bytes
    expect_error(codec, reframe(frame, b"\x00" * 27, raw=10), corrupt("lz4", 10))
    # a block from another encoder is accepted
    foreign = lz4.block.compress(data, mode="high_compression", store_size=False)
    out = bytearray()
    assert codec.decompress(reframe(frame, foreign), out) == len(data) and out == data


@pytest.mark.parametrize("name", ["lz4", "zstd"])
def test_contexts_are_reused_per_thread(codec, name):
    data = DATA["64k-text"]
    frame_of(codec, name, data)
    codec.decompress(frame_of(codec, name, data), bytearray())
    created = codec.contexts_created()
    ctx = codec.context_id(name)
    assert ctx != 0
    for _ in range(20):
        out = bytearray()
        codec.compress(name, data, out)
        codec.decompress(out, bytearray())
    assert codec.context_id(name) == ctx
    assert codec.contexts_created() == created


@pytest.mark.parametrize("name", ["lz4", "zstd"])
def test_threads_get_their_own_contexts(codec, name):
    main_ctx = codec.context_id(name)
    created = codec.contexts_created()
    barrier = threading.Barrier(2)
    seen: dict[int, tuple[int, int]] = {}

    def work(slot: int) -> None:
        first = codec.context_id(name)
        out = bytearray()
        codec.compress(name, DATA["64k-text"], out)
        # both threads are alive here, so neither context can have been freed and reused
        barrier.wait()
        seen[slot] = (first, codec.context_id(name))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (a1, a2), (b1, b2) = seen[0], seen[1]
    assert a1 == a2 and b1 == b2
    assert len({a1, b1, main_ctx}) == 3
    assert codec.contexts_created() == created + 2
    assert codec.context_id("none") == 0


def test_concurrent_threads_produce_correct_frames(codec):
    results: list[bool] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        ok = True
        for i in range(30):
            data = rng.randbytes(rng.randrange(1, 5000)) * rng.randrange(1, 40)
            name = ("lz4", "zstd", "none")[i % 3]
            out = bytearray()
            codec.compress(name, data, out)
            back = bytearray()
            codec.decompress(out, back)
            ok = ok and back == data
        results.append(ok)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True, True, True]


@pytest.mark.skipif("c" not in TWINS, reason="compiled codec not built")
def test_compiled_twin_without_lz4_and_libdeflate():
    """liblz4 missing: the module imports, lz4 names the library, zstd still works; libdeflate
    missing: crc32 comes from libz and gives the same checksums."""
    script = """
import zlib
import rapidbyte_fast.native_libs as nl
real = nl.load
def load(name, soname, symbols):
    if name in ("lz4", "deflate"):
        return nl.NativeLibrary(name, None, missing=f"the system library {soname} was not found")
    return real(name, soname, symbols)
nl.load = load
from rapidbyte_fast._native import codec
from rapidbyte_fast.errors import CodecError
out = bytearray()
data = bytes(range(256)) * 300
codec.compress("zstd", data, out)
back = bytearray()
codec.decompress(out, back)
print(back == data, int.from_bytes(out[12:16], "little") == zlib.crc32(out[16:]))
for call in (lambda: codec.compress("lz4", b"x", bytearray()),
             lambda: codec.decompress(bytes(out[:2]) + b"\\x01" + bytes(out[3:]), bytearray()),
             lambda: codec.context_id("lz4")):
    try:
        call()
    except CodecError as exc:
        print(exc)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[2])
    assert run.stdout.splitlines() == ["True True"] + [
        "cannot use codec lz4: the system library liblz4.so.1 was not found"
    ] * 3
