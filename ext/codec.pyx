# cython: language_level=3
"""lz4 / zstd frames for inter-stage batches (compiled twin of rapidbyte_fast/_py/codec.py).

A frame is a 16-byte little-endian header followed by the payload::

    magic b"RB" | codec id u8 | level i8 | raw size u32 | payload size u32 | crc32(payload) u32

Codec ids: none = 0, lz4 = 1 (one raw LZ4 block), zstd = 2 (one zstd frame with its content
size). The header's level is the effective one (lz4 acceleration, 0 means 1; zstd level, 0
means 3). libzstd, liblz4 and, for crc32, libdeflate (else libz) are system shared libraries
located by ``rapidbyte_fast.native_libs`` and called through typed function pointers, so the
build needs no headers and a missing library only disables its codec (``CodecError`` names
it). Contexts live per thread in a ``threading.local`` (one zstd CCtx serves every level,
as ``ZSTD_compressCCtx`` takes the level per call) and are freed when the thread ends. All
compression, decompression and checksumming runs with the GIL released.
"""
import threading

from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_GET_SIZE, PyByteArray_Resize
from libc.stdint cimport uint32_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy

from rapidbyte_fast import native_libs
from rapidbyte_fast.errors import CodecError

CODECS = {"none": 0, "lz4": 1, "zstd": 2}
HEADER_SIZE = 16

_NAMES = {cid: name for name, cid in CODECS.items()}
# (lowest, highest, what 0 means) per codec id; every level fits the header's signed byte.
_LEVELS = {0: (0, 0, 0), 1: (0, 127, 1), 2: (-128, 22, 3)}

cdef extern from *:
    """
    #define RB_HDR 16
    #define RB_U32_MAX 0xFFFFFFFFu
    #define RB_LZ4_MAX_INPUT 0x7E000000  /* LZ4_MAX_INPUT_SIZE: the largest block liblz4 takes */
    #define RB_ZSTD_CONTENTSIZE_ERROR (0ULL - 2)  /* ZSTD_CONTENTSIZE_UNKNOWN is one above */
    """
    const Py_ssize_t HDR "RB_HDR"
    const size_t U32_MAX "RB_U32_MAX"
    const size_t LZ4_MAX_INPUT "RB_LZ4_MAX_INPUT"
    const unsigned long long ZSTD_CONTENTSIZE_ERROR "RB_ZSTD_CONTENTSIZE_ERROR"

ctypedef void* (*new_ctx_fn)() noexcept nogil
ctypedef size_t (*free_ctx_fn)(void* ctx) noexcept nogil
ctypedef size_t (*zstd_compress_fn)(void* cctx, void* dst, size_t cap, const void* src,
                                    size_t n, int level) noexcept nogil
ctypedef size_t (*zstd_decompress_fn)(void* dctx, void* dst, size_t cap, const void* src,
                                      size_t n) noexcept nogil
ctypedef size_t (*zstd_bound_fn)(size_t n) noexcept nogil
ctypedef unsigned (*zstd_is_error_fn)(size_t code) noexcept nogil
ctypedef const char* (*zstd_error_name_fn)(size_t code) noexcept nogil
ctypedef unsigned long long (*zstd_content_size_fn)(const void* src, size_t n) noexcept nogil
ctypedef size_t (*zstd_frame_size_fn)(const void* src, size_t n) noexcept nogil
ctypedef int (*lz4_sizeof_state_fn)() noexcept nogil
ctypedef int (*lz4_compress_fn)(void* state, const char* src, char* dst, int n, int cap,
                                int acceleration) noexcept nogil
ctypedef int (*lz4_decompress_fn)(const char* src, char* dst, int n, int cap) noexcept nogil
ctypedef int (*lz4_bound_fn)(int n) noexcept nogil
ctypedef unsigned long (*zlib_crc32_fn)(unsigned long crc, const unsigned char* buf,
                                        unsigned int n) noexcept nogil
ctypedef uint32_t (*deflate_crc32_fn)(uint32_t crc, const void* buf, size_t n) noexcept nogil

cdef new_ctx_fn ZSTD_createCCtx = NULL
cdef free_ctx_fn ZSTD_freeCCtx = NULL
cdef new_ctx_fn ZSTD_createDCtx = NULL
cdef free_ctx_fn ZSTD_freeDCtx = NULL
cdef zstd_compress_fn ZSTD_compressCCtx = NULL
cdef zstd_decompress_fn ZSTD_decompressDCtx = NULL
cdef zstd_bound_fn ZSTD_compressBound = NULL
cdef zstd_is_error_fn ZSTD_isError = NULL
cdef zstd_error_name_fn ZSTD_getErrorName = NULL
cdef zstd_content_size_fn ZSTD_getFrameContentSize = NULL
cdef zstd_frame_size_fn ZSTD_findFrameCompressedSize = NULL
cdef lz4_sizeof_state_fn LZ4_sizeofState = NULL
cdef lz4_compress_fn LZ4_compress_fast_extState = NULL
cdef lz4_decompress_fn LZ4_decompress_safe = NULL
cdef lz4_bound_fn LZ4_compressBound = NULL
cdef zlib_crc32_fn zlib_crc32 = NULL
cdef deflate_crc32_fn libdeflate_crc32 = NULL

cdef const unsigned char* ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
cdef const char* EMPTY = b""

_ZSTD = native_libs.load("zstd", "libzstd.so.1", (
    "ZSTD_createCCtx", "ZSTD_freeCCtx", "ZSTD_createDCtx", "ZSTD_freeDCtx",
    "ZSTD_compressCCtx", "ZSTD_decompressDCtx", "ZSTD_compressBound", "ZSTD_isError",
    "ZSTD_getErrorName", "ZSTD_getFrameContentSize", "ZSTD_findFrameCompressedSize",
))
_LZ4 = native_libs.load("lz4", "liblz4.so.1", (
    "LZ4_sizeofState", "LZ4_compress_fast_extState", "LZ4_decompress_safe",
    "LZ4_compressBound",
))
# Both compute the zlib CRC-32 (the Python twin uses zlib.crc32); libdeflate's is ~3x faster
# (PCLMUL), which matters next to lz4's decompression speed.
_DEFLATE = native_libs.load("deflate", "libdeflate.so.0", ("libdeflate_crc32",))
_ZLIB = native_libs.load("z", "libz.so.1", ("crc32",))


cdef void _bind() noexcept:
    global ZSTD_createCCtx, ZSTD_freeCCtx, ZSTD_createDCtx, ZSTD_freeDCtx
    global ZSTD_compressCCtx, ZSTD_decompressDCtx, ZSTD_compressBound, ZSTD_isError
    global ZSTD_getErrorName, ZSTD_getFrameContentSize, ZSTD_findFrameCompressedSize
    global LZ4_sizeofState, LZ4_compress_fast_extState, LZ4_decompress_safe, LZ4_compressBound
    global zlib_crc32, libdeflate_crc32
    if _ZSTD.available:
        a = _ZSTD.addresses
        ZSTD_createCCtx = <new_ctx_fn><uintptr_t>a["ZSTD_createCCtx"]
        ZSTD_freeCCtx = <free_ctx_fn><uintptr_t>a["ZSTD_freeCCtx"]
        ZSTD_createDCtx = <new_ctx_fn><uintptr_t>a["ZSTD_createDCtx"]
        ZSTD_freeDCtx = <free_ctx_fn><uintptr_t>a["ZSTD_freeDCtx"]
        ZSTD_compressCCtx = <zstd_compress_fn><uintptr_t>a["ZSTD_compressCCtx"]
        ZSTD_decompressDCtx = <zstd_decompress_fn><uintptr_t>a["ZSTD_decompressDCtx"]
        ZSTD_compressBound = <zstd_bound_fn><uintptr_t>a["ZSTD_compressBound"]
        ZSTD_isError = <zstd_is_error_fn><uintptr_t>a["ZSTD_isError"]
        ZSTD_getErrorName = <zstd_error_name_fn><uintptr_t>a["ZSTD_getErrorName"]
        ZSTD_getFrameContentSize = <zstd_content_size_fn><uintptr_t>a["ZSTD_getFrameContentSize"]
        ZSTD_findFrameCompressedSize = (
            <zstd_frame_size_fn><uintptr_t>a["ZSTD_findFrameCompressedSize"]
        )
    if _LZ4.available:
        a = _LZ4.addresses
        LZ4_sizeofState = <lz4_sizeof_state_fn><uintptr_t>a["LZ4_sizeofState"]
        LZ4_compress_fast_extState = <lz4_compress_fn><uintptr_t>a["LZ4_compress_fast_extState"]
        LZ4_decompress_safe = <lz4_decompress_fn><uintptr_t>a["LZ4_decompress_safe"]
        LZ4_compressBound = <lz4_bound_fn><uintptr_t>a["LZ4_compressBound"]
    if _DEFLATE.available:
        libdeflate_crc32 = <deflate_crc32_fn><uintptr_t>_DEFLATE.addresses["libdeflate_crc32"]
    if _ZLIB.available:
        zlib_crc32 = <zlib_crc32_fn><uintptr_t>_ZLIB.addresses["crc32"]


_bind()

# Why each codec cannot be used, or None; every codec needs a crc32 (libdeflate or libz).
_CRC = _DEFLATE if _DEFLATE.available else _ZLIB
_UNAVAILABLE = {
    cid: next((lib.missing for lib in libs if not lib.available), None)
    for cid, libs in ((0, (_CRC,)), (1, (_CRC, _LZ4)), (2, (_CRC, _ZSTD)))
}

cdef Py_ssize_t _created = 0


cdef class _ThreadContexts:
    """The calling thread's native contexts, created on first use and freed with the thread."""

    cdef void* zstd_c
    cdef void* zstd_d
    cdef void* lz4_state

    def __dealloc__(self):
        if self.zstd_c != NULL:
            ZSTD_freeCCtx(self.zstd_c)
        if self.zstd_d != NULL:
            ZSTD_freeDCtx(self.zstd_d)
        free(self.lz4_state)


_tls = threading.local()


cdef _ThreadContexts _contexts():
    ctx = getattr(_tls, "ctx", None)
    if ctx is None:
        ctx = _tls.ctx = _ThreadContexts()
    return ctx


cdef void* _compress_ctx(_ThreadContexts ctx, int cid) except NULL:
    global _created
    if cid == 1:
        if ctx.lz4_state == NULL:
            ctx.lz4_state = malloc(LZ4_sizeofState())
            if ctx.lz4_state == NULL:
                raise MemoryError()
            _created += 1
        return ctx.lz4_state
    if ctx.zstd_c == NULL:
        ctx.zstd_c = ZSTD_createCCtx()
        if ctx.zstd_c == NULL:
            raise MemoryError()
        _created += 1
    return ctx.zstd_c


cdef void* _zstd_dctx(_ThreadContexts ctx) except NULL:
    global _created
    if ctx.zstd_d == NULL:
        ctx.zstd_d = ZSTD_createDCtx()
        if ctx.zstd_d == NULL:
            raise MemoryError()
        _created += 1
    return ctx.zstd_d


cdef int _codec_id(object codec) except -1:
    cid = CODECS.get(codec)
    if cid is None:
        raise CodecError(f"unknown codec {codec!r}: use 'none', 'lz4' or 'zstd'")
    return cid


cdef int _effective_level(object codec, int cid, object level) except? -1000:
    # ``level`` stays a Python object until range-checked, so any int gives CodecError.
    lo, hi, default = _LEVELS[cid]
    if not lo <= level <= hi:
        raise CodecError(f"{codec} level {level} is out of range {lo}..{hi}")
    return level or default


cdef int _require(int cid) except -1:
    missing = _UNAVAILABLE[cid]
    if missing is not None:
        raise CodecError(f"cannot use codec {_NAMES[cid]}: {missing}")
    return 0


cdef inline uint32_t _crc32(const unsigned char* p, size_t n) noexcept nogil:
    if libdeflate_crc32 != NULL:
        return libdeflate_crc32(0, p, n)
    return <uint32_t>zlib_crc32(0, p, <unsigned int>n)  # n <= U32_MAX: frames are u32-sized


cdef inline void _put_u32(unsigned char* p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = v >> 24


cdef inline uint32_t _get_u32(const unsigned char* p) noexcept nogil:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef unsigned char* _grow_exported(bytearray out, Py_ssize_t start, Py_ssize_t extra,
                                   Py_buffer* dv) except NULL:
    """Grow ``out`` by ``extra`` bytes and export it writable; returns where to write. The
    export stops other threads from resizing ``out`` while the GIL is released (the caller
    releases ``dv``)."""
    PyByteArray_Resize(out, start + extra)
    try:
        PyObject_GetBuffer(out, dv, PyBUF_WRITABLE)
    except BaseException:
        PyByteArray_Resize(out, start)
        raise
    return <unsigned char*>dv.buf + start


def context_id(codec, level=0) -> int:
    """Address of the calling thread's native compression context for ``codec`` (created if
    needed); 0 for ``none``, which needs no context."""
    cdef int cid = _codec_id(codec)
    _effective_level(codec, cid, level)
    if cid == 0:
        return 0
    _require(cid)
    return <uintptr_t>_compress_ctx(_contexts(), cid)


def contexts_created() -> int:
    """How many native contexts this module has created, all threads."""
    return _created


def compress(codec, data, bytearray out not None, level=0) -> int:
    """Append one frame holding ``data`` compressed with ``codec`` to ``out``; return the
    number of bytes appended. ``level`` 0 is the codec default."""
    cdef int cid = _codec_id(codec)
    cdef int eff = _effective_level(codec, cid, level)
    cdef Py_buffer src
    _require(cid)
    PyObject_GetBuffer(data, &src, PyBUF_SIMPLE)
    try:
        return _compress(cid, eff, <const unsigned char*>src.buf, src.len, out)
    finally:
        PyBuffer_Release(&src)


cdef Py_ssize_t _compress(int cid, int eff, const unsigned char* src, Py_ssize_t n,
                          bytearray out) except -1:
    cdef size_t limit = LZ4_MAX_INPUT if cid == 1 else U32_MAX
    cdef void* state = NULL
    cdef size_t bound, m = 0, r = 0
    cdef int lz4_n = 0
    cdef Py_ssize_t start = PyByteArray_GET_SIZE(out)
    cdef Py_buffer dv
    cdef unsigned char* dst
    cdef bint failed = False
    if <size_t>n > limit:
        raise CodecError(f"{_NAMES[cid]} cannot frame {n} bytes: the limit is {limit}")
    if n == 0:
        src = <const unsigned char*>EMPTY  # buffers may hand out NULL for zero bytes
    if cid == 0:
        bound = n
    else:
        state = _compress_ctx(_contexts(), cid)
        bound = LZ4_compressBound(<int>n) if cid == 1 else ZSTD_compressBound(n)
    dst = _grow_exported(out, start, HDR + <Py_ssize_t>bound, &dv)
    with nogil:
        if cid == 0:
            memcpy(dst + HDR, src, n)
            m = n
        elif cid == 1:
            lz4_n = LZ4_compress_fast_extState(
                state, <const char*>src, <char*>dst + HDR, <int>n, <int>bound, eff)
            failed = lz4_n <= 0
            m = <size_t>lz4_n
        else:
            r = ZSTD_compressCCtx(state, dst + HDR, bound, src, n, eff)
            failed = ZSTD_isError(r) != 0
            m = r
        if not failed and m <= U32_MAX:
            dst[0] = b'R'
            dst[1] = b'B'
            dst[2] = <unsigned char>cid
            dst[3] = <unsigned char><signed char>eff
            _put_u32(dst + 4, <uint32_t>n)
            _put_u32(dst + 8, <uint32_t>m)
            _put_u32(dst + 12, _crc32(dst + HDR, m))
    PyBuffer_Release(&dv)
    if failed or m > U32_MAX:
        PyByteArray_Resize(out, start)
        if failed and cid == 2:
            why = ZSTD_getErrorName(r).decode()
            raise CodecError(f"zstd failed to compress {n} bytes: {why}")
        if failed:
            raise CodecError(f"lz4 failed to compress {n} bytes")
        raise CodecError(f"{_NAMES[cid]} payload of {m} bytes exceeds the frame limit of {U32_MAX}")
    PyByteArray_Resize(out, start + HDR + <Py_ssize_t>m)
    return HDR + m


cdef int _header(const unsigned char* f, Py_ssize_t n) except -1:
    """Validate a frame's header; return its codec id."""
    if n < HDR:
        raise CodecError(f"codec frame truncated: {n} bytes, the header alone is {HDR}")
    if f[0] != b'R' or f[1] != b'B':
        raise CodecError(f"codec frame has bad magic 0x{f[:2].hex()}, expected 0x5242")
    if f[2] > 2:
        raise CodecError(f"codec frame has unknown codec id {f[2]}")
    return f[2]


def frame_info(frame) -> tuple:
    """(codec name, raw size, payload size) from a frame's header; only the header is read."""
    cdef Py_buffer fv
    cdef const unsigned char* f
    PyObject_GetBuffer(frame, &fv, PyBUF_SIMPLE)
    try:
        f = <const unsigned char*>fv.buf
        cid = _header(f, fv.len)
        return _NAMES[cid], _get_u32(f + 4), _get_u32(f + 8)
    finally:
        PyBuffer_Release(&fv)


def decompress(frame, bytearray out not None) -> int:
    """Validate one whole frame and append its raw bytes to ``out``; return bytes appended."""
    cdef Py_buffer fv
    PyObject_GetBuffer(frame, &fv, PyBUF_SIMPLE)
    try:
        return _decompress(<const unsigned char*>fv.buf, fv.len, out)
    finally:
        PyBuffer_Release(&fv)


cdef object _corrupt(int cid, uint32_t raw):
    return CodecError(
        f"codec frame {_NAMES[cid]} payload is corrupt: it does not decompress to "
        f"the {raw} bytes the header says"
    )


cdef Py_ssize_t _decompress(const unsigned char* f, Py_ssize_t n, bytearray out) except -1:
    cdef int cid = _header(f, n)
    cdef uint32_t raw = _get_u32(f + 4)
    cdef uint32_t size = _get_u32(f + 8)
    cdef uint32_t crc = _get_u32(f + 12)
    cdef uint32_t actual
    cdef Py_ssize_t present = n - HDR
    cdef const unsigned char* payload = f + HDR
    cdef unsigned long long content
    cdef void* dctx = NULL
    cdef Py_ssize_t start
    cdef Py_buffer dv
    cdef unsigned char* dst
    cdef size_t r = 0
    cdef bint ok = False
    if present < size:
        raise CodecError(
            f"codec frame truncated: header says {size} payload bytes, {present} present"
        )
    if present > size:
        raise CodecError(f"codec frame has {present - size} bytes after its {size}-byte payload")
    if cid == 0 and raw != size:
        raise CodecError(
            f"codec frame size mismatch: codec none with {raw} raw bytes carries "
            f"a {size}-byte payload"
        )
    _require(cid)
    with nogil:
        actual = _crc32(payload, size)
    if actual != crc:
        raise CodecError(
            f"codec frame checksum mismatch: header says {crc:08x}, payload has {actual:08x}"
        )
    if cid == 1:
        # A valid block is never longer than LZ4_compressBound(raw); this also keeps both
        # sizes inside liblz4's int arguments.
        if raw > LZ4_MAX_INPUT or size > raw + raw // 255 + 16:
            raise _corrupt(cid, raw)
    elif cid == 2:
        # Exactly one zstd frame whose content size matches the header, so both twins agree
        # on every crafted payload whatever zstd version each one links.
        if size < 4 or memcmp(payload, ZSTD_MAGIC, 4) != 0:
            raise _corrupt(cid, raw)
        content = ZSTD_getFrameContentSize(payload, size)
        if content >= ZSTD_CONTENTSIZE_ERROR:
            raise _corrupt(cid, raw)
        if content != raw:
            raise CodecError(
                f"codec frame size mismatch: header says {raw} raw bytes, "
                f"zstd payload says {content}"
            )
        if ZSTD_findFrameCompressedSize(payload, size) != size:
            raise _corrupt(cid, raw)
        dctx = _zstd_dctx(_contexts())
    start = PyByteArray_GET_SIZE(out)
    dst = _grow_exported(out, start, raw, &dv)
    with nogil:
        if cid == 0:
            memcpy(dst, payload, size)
            ok = True
        elif cid == 1:
            ok = LZ4_decompress_safe(
                <const char*>payload, <char*>dst, <int>size, <int>raw) == <int>raw
        else:
            r = ZSTD_decompressDCtx(dctx, dst, raw, payload, size)
            ok = ZSTD_isError(r) == 0 and r == raw
    PyBuffer_Release(&dv)
    if not ok:
        PyByteArray_Resize(out, start)
        raise _corrupt(cid, raw)
    return raw
