"""lz4 / zstd frames for inter-stage batches (pure-Python twin of ext/codec.pyx).

A frame is a 16-byte little-endian header followed by the payload::

    magic b"RB" | codec id u8 | level i8 | raw size u32 | payload size u32 | crc32(payload) u32

Codec ids: none = 0 (payload is the raw bytes), lz4 = 1 (one raw LZ4 *block*, not the lz4
frame format), zstd = 2 (one zstd frame carrying its content size). ``level`` in the header is
the effective level: lz4's acceleration (0 means 1), zstd's level (0 means 3), 0 for none.
Compressor state is cached per thread (zstandard objects are not thread-safe) and keyed by
codec and level, so a call never builds a context. Errors are ``CodecError`` with the same
one-line messages as the compiled twin; ``out`` is left as it was on entry.
"""
from __future__ import annotations

import struct
import threading
import zlib
from functools import partial
from typing import Callable

import lz4.block
import zstandard

from ..errors import CodecError

CODECS = {"none": 0, "lz4": 1, "zstd": 2}
HEADER_SIZE = 16

_NAMES = {cid: name for name, cid in CODECS.items()}
_HEADER = struct.Struct("<2sBbIII")
_MAGIC = b"RB"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_U32_MAX = 0xFFFFFFFF
_LZ4_MAX_INPUT = 0x7E000000  # LZ4_MAX_INPUT_SIZE: the largest block liblz4 accepts
# (lowest, highest, what 0 means) per codec id; every level fits the header's signed byte.
_LEVELS = {0: (0, 0, 0), 1: (0, 127, 1), 2: (-128, 22, 3)}

_local = threading.local()
_created = 0
_created_lock = threading.Lock()


def _codec_id(codec: str) -> int:
    cid = CODECS.get(codec)
    if cid is None:
        raise CodecError(f"unknown codec {codec!r}: use 'none', 'lz4' or 'zstd'")
    return cid


def _effective_level(codec: str, cid: int, level: int) -> int:
    lo, hi, default = _LEVELS[cid]
    if not lo <= level <= hi:
        raise CodecError(f"{codec} level {level} is out of range {lo}..{hi}")
    return level or default


def _cache() -> dict:
    try:
        return _local.cache
    except AttributeError:
        _local.cache = {}
        return _local.cache


def _check_out(out: bytearray) -> None:
    # ``out += ...`` on anything else would rebind a local and drop the result silently.
    if not isinstance(out, bytearray):
        raise TypeError(f"out must be a bytearray, not {type(out).__name__}")


def _count_created() -> None:
    global _created
    with _created_lock:
        _created += 1


def _compressor(cid: int, level: int) -> Callable[[object], bytes]:
    cache = _cache()
    fn = cache.get((cid, level))
    if fn is None:
        if cid == 2:
            fn = zstandard.ZstdCompressor(level=level).compress
        else:
            # lz4.block has no context objects (python-lz4 keeps the LZ4 state on the C
            # stack per call), so the cached entry is only the bound call.
            fn = partial(lz4.block.compress, mode="fast", acceleration=level, store_size=False)
        cache[(cid, level)] = fn
        _count_created()
    return fn


def _zstd_decompressor() -> zstandard.ZstdDecompressor:
    cache = _cache()
    dctx = cache.get("zstd-d")
    if dctx is None:
        dctx = cache["zstd-d"] = zstandard.ZstdDecompressor()
        _count_created()
    return dctx


def context_id(codec: str, level: int = 0) -> int:
    """Identity of the calling thread's cached compression context for ``codec`` at ``level``
    (created if needed); 0 for ``none``, which needs no context."""
    cid = _codec_id(codec)
    eff = _effective_level(codec, cid, level)
    return 0 if cid == 0 else id(_compressor(cid, eff))


def contexts_created() -> int:
    """How many compression/decompression contexts this module has created, all threads."""
    return _created


def compress(codec: str, data, out: bytearray, level: int = 0) -> int:
    """Append one frame holding ``data`` compressed with ``codec`` to ``out``; return the
    number of bytes appended. ``level`` 0 is the codec default."""
    _check_out(out)
    cid = _codec_id(codec)
    eff = _effective_level(codec, cid, level)
    n = memoryview(data).nbytes
    limit = _LZ4_MAX_INPUT if cid == 1 else _U32_MAX
    if n > limit:
        raise CodecError(f"{codec} cannot frame {n} bytes: the limit is {limit}")
    payload = data if cid == 0 else _compressor(cid, eff)(data)
    m = memoryview(payload).nbytes
    if m > _U32_MAX:
        raise CodecError(f"{codec} payload of {m} bytes exceeds the frame limit of {_U32_MAX}")
    start = len(out)
    try:
        out += _HEADER.pack(_MAGIC, cid, eff, n, m, zlib.crc32(payload))
        out += payload
    except BaseException:
        del out[start:]
        raise
    return HEADER_SIZE + m


def _header(view: memoryview) -> tuple[int, int, int, int]:
    """(codec id, raw size, payload size, checksum) of a frame whose header is intact."""
    if len(view) < HEADER_SIZE:
        raise CodecError(
            f"codec frame truncated: {len(view)} bytes, the header alone is {HEADER_SIZE}"
        )
    magic, cid, _level, raw, size, crc = _HEADER.unpack_from(view)
    if magic != _MAGIC:
        raise CodecError(f"codec frame has bad magic 0x{magic.hex()}, expected 0x{_MAGIC.hex()}")
    if cid not in _NAMES:
        raise CodecError(f"codec frame has unknown codec id {cid}")
    return cid, raw, size, crc


def frame_info(frame) -> tuple[str, int, int]:
    """(codec name, raw size, payload size) from a frame's header; only the header is read."""
    cid, raw, size, _crc = _header(memoryview(frame).cast("B"))
    return _NAMES[cid], raw, size


def _corrupt(cid: int, raw: int) -> CodecError:
    return CodecError(
        f"codec frame {_NAMES[cid]} payload is corrupt: it does not decompress to "
        f"the {raw} bytes the header says"
    )


def _zstd_decompress(payload: memoryview, raw: int) -> bytes:
    # Both twins demand exactly one zstd frame whose content size matches the header, so they
    # agree on every crafted payload whatever zstd version each one links.
    if payload[:4] != _ZSTD_MAGIC:
        raise _corrupt(2, raw)
    try:
        content = zstandard.frame_content_size(payload)
    except zstandard.ZstdError:
        raise _corrupt(2, raw) from None
    if content < 0:
        raise _corrupt(2, raw)
    if content != raw:
        raise CodecError(
            f"codec frame size mismatch: header says {raw} raw bytes, zstd payload says {content}"
        )
    dctx = _zstd_decompressor()
    try:
        if raw == 0:
            # zstandard's one-shot decompress returns b"" for a zero content size without
            # reading the rest, so only the streaming object sees trailing garbage.
            obj = dctx.decompressobj()
            data = obj.decompress(payload)
            if not obj.eof or obj.unused_data:
                raise _corrupt(2, raw)
        else:
            data = dctx.decompress(payload, allow_extra_data=False)
    except zstandard.ZstdError:
        raise _corrupt(2, raw) from None
    if len(data) != raw:
        raise _corrupt(2, raw)
    return data


def _lz4_decompress(payload: memoryview, raw: int) -> bytes:
    # A valid block is never longer than LZ4_compressBound(raw); this also keeps both sizes
    # inside liblz4's int arguments.
    if raw > _LZ4_MAX_INPUT or len(payload) > raw + raw // 255 + 16:
        raise _corrupt(1, raw)
    try:
        data = lz4.block.decompress(payload, uncompressed_size=raw)
    except lz4.block.LZ4BlockError:
        raise _corrupt(1, raw) from None
    # uncompressed_size is only a capacity: a short block decodes without complaint.
    if len(data) != raw:
        raise _corrupt(1, raw)
    return data


def decompress(frame, out: bytearray) -> int:
    """Validate one whole frame and append its raw bytes to ``out``; return bytes appended."""
    _check_out(out)
    view = memoryview(frame).cast("B")
    cid, raw, size, crc = _header(view)
    present = len(view) - HEADER_SIZE
    if present < size:
        raise CodecError(
            f"codec frame truncated: header says {size} payload bytes, {present} present"
        )
    if present > size:
        raise CodecError(
            f"codec frame has {present - size} bytes after its {size}-byte payload"
        )
    if cid == 0 and raw != size:
        raise CodecError(
            f"codec frame size mismatch: codec none with {raw} raw bytes carries "
            f"a {size}-byte payload"
        )
    payload = view[HEADER_SIZE:]
    actual = zlib.crc32(payload)
    if actual != crc:
        raise CodecError(
            f"codec frame checksum mismatch: header says {crc:08x}, payload has {actual:08x}"
        )
    if cid == 0:
        data = payload
    elif cid == 1:
        data = _lz4_decompress(payload, raw)
    else:
        data = _zstd_decompress(payload, raw)
    start = len(out)
    try:
        out += data
    except BaseException:
        del out[start:]
        raise
    return raw
