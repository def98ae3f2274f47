"""Walk COPY BINARY tuple headers without decoding values (compiled twin).

Same API, results and errors as ``rapidbyte_fast._py.copy_scan``; the walk runs without the
GIL.
"""
from libc.stdint cimport int16_t, int32_t, uint16_t, uint32_t
from libc.string cimport memcpy

from rapidbyte_fast.errors import DataError


cdef inline int32_t _be32(const unsigned char *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return <int32_t>(((v & 0xFF) << 24) | ((v & 0xFF00) << 8) | ((v >> 8) & 0xFF00) | (v >> 24))


cdef inline int16_t _be16(const unsigned char *p) noexcept nogil:
    return <int16_t>(<uint16_t>((p[0] << 8) | p[1]))


def scan(src, Py_ssize_t pos, Py_ssize_t end):
    """Count complete tuples in ``src[pos:end]``: ``(pos after the last, rows, saw_trailer)``."""
    cdef const unsigned char[::1] view = memoryview(src).cast("B")
    if not (0 <= pos <= end <= view.shape[0]):
        raise ValueError(f"bad range [{pos}, {end}) for a buffer of {view.shape[0]} bytes")
    cdef const unsigned char *p = &view[0] if view.shape[0] else NULL
    cdef Py_ssize_t rows = 0, q, bad_value = 0
    cdef int16_t nfields, f
    cdef int32_t length
    cdef int status = 0  # 0 incomplete/end, 1 trailer, 2 bad field count, 3 bad length
    with nogil:
        while end - pos >= 2:
            nfields = _be16(p + pos)
            if nfields == -1:
                pos += 2
                status = 1
                break
            if nfields < 0:
                status = 2
                bad_value = nfields
                break
            q = pos + 2
            for f in range(nfields):
                if end - q < 4:
                    q = -1
                    break
                length = _be32(p + q)
                q += 4
                if length < -1:
                    status = 3
                    bad_value = length
                    break
                if length > 0:
                    if end - q < length:
                        q = -1
                        break
                    q += length
            if status or q < 0:
                break
            pos = q
            rows += 1
    if status == 2:
        raise DataError(f"COPY tuple {rows + 1} in chunk: invalid field count {bad_value}")
    if status == 3:
        raise DataError(f"COPY tuple {rows + 1} in chunk: invalid field length {bad_value}")
    return pos, rows, status == 1
