"""Arrow column buffers → PostgreSQL binary arrays (array_send), one per column: the
parameters of ``INSERT ... SELECT * FROM unnest($1::int4[], $2::text[], ...)``.

Compiled twin of ``rapidbyte_fast/_py/array_params.py``. The elements are the COPY BINARY
fields of copy_encode (ext/value_binary.pxd). Each call sizes every output once from an
O(columns) upper bound, writes with the GIL released, and shrinks the outputs to the bytes
written (or back to their entry lengths on a DataError).
"""
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from libc.stdlib cimport calloc, free

from value_text cimport *
from value_binary cimport *

from rapidbyte_fast.kernel_inputs import check_array_call, data_error, offsets_error

KINDS = kinds_dict()

# ndim, has-null flag, element type OID, then the dimension's length and lower bound.
cdef enum:
    HEADER = 20


cdef Py_ssize_t write_array(unsigned char* q, const Col* c, uint32_t oid, Py_ssize_t start,
                            Py_ssize_t stop, Failure* fail) noexcept nogil:
    """array_send of rows [start, stop) of a non-ARRAY column (no rows: ``{}``, no
    dimension); -1 with ``fail.row`` / ``fail.code`` set at the first bad value."""
    cdef Py_ssize_t i, n = HEADER
    cdef bint has_null = False
    cdef int code = 0
    if stop == start:
        rb_be32(q, 0)
        rb_be32(q + 4, 0)
        rb_be32(q + 8, oid)
        return 12
    for i in range(start, stop):
        has_null |= is_null(c, i)
        n += put_binary_field(q + n, c, i, &code)
        if code:
            fail.row = i
            fail.code = code
            return -1
    rb_be32(q, 1)
    rb_be32(q + 4, has_null)
    rb_be32(q + 8, oid)
    rb_be32(q + 12, <uint32_t>(stop - start))
    rb_be32(q + 16, 1)
    return n


cdef Py_ssize_t write_arrays(const Col* cs, const uint32_t* oids, Py_ssize_t ncols,
                             Py_ssize_t start, Py_ssize_t stop, unsigned char** dst,
                             Py_ssize_t* written, Failure* fail) noexcept nogil:
    """Every column's array; on bad values -1 with ``fail`` at the first in row-major order
    (as COPY would meet it): once a column fails at row r, later columns only look at the
    rows before r."""
    cdef Py_ssize_t k, total = 0, limit = stop
    cdef Failure f
    f.row = -1
    f.code = 0
    fail.row = -1
    for k in range(ncols):
        written[k] = write_array(dst[k], &cs[k], oids[k], start, limit, &f)
        if written[k] < 0:
            fail.col = k
            fail.row = f.row
            fail.code = f.code
            fail.elem = -1
            limit = f.row
        else:
            total += written[k]
    return -1 if fail.row >= 0 else total


def encode_arrays(plan, cols, tuple oids, Py_ssize_t start, Py_ssize_t stop, outs) -> int:
    """Append to ``outs[k]`` the binary array (1-D, lower bound 1, element type ``oids[k]``)
    of rows [start, stop) of column ``k``; returns the bytes appended to all of them."""
    cdef list cl = list(cols), ol = list(outs), keep = []
    check_array_call(plan, cl, oids, start, stop, ol)
    cdef Py_ssize_t ncols = len(cl), k, total = -1, bad, grown = 0
    cdef Failure fail
    cdef Col* cs = new_cols(cl, keep, plan.elem_oids)
    # per column: element OID, entry length, bound, then bytes written, write position
    cdef uint32_t* oid_of = <uint32_t*>calloc(ncols + 1, sizeof(uint32_t))
    cdef Py_ssize_t* base = <Py_ssize_t*>calloc(3 * ncols + 1, sizeof(Py_ssize_t))
    cdef unsigned char** dst = <unsigned char**>calloc(ncols + 1, sizeof(unsigned char*))
    cdef Py_ssize_t* bound = base + ncols
    cdef Py_ssize_t* written = base + 2 * ncols
    try:
        if oid_of == NULL or base == NULL or dst == NULL:
            raise MemoryError()
        for k in range(ncols):
            oid_of[k] = oids[k]
            base[k] = PyByteArray_GET_SIZE(ol[k])
        with nogil:
            bad = ready_cols(cs, ncols, start, stop)
            for k in range(ncols if bad < 0 else 0):
                bound[k] = HEADER + column_binary_bound(&cs[k], start, stop)
        if bad >= 0:
            raise offsets_error(bad)
        for k in range(ncols):
            PyByteArray_Resize(ol[k], base[k] + bound[k])
            grown = k + 1
            dst[k] = <unsigned char*>PyByteArray_AS_STRING(ol[k]) + base[k]
        with nogil:
            total = write_arrays(cs, oid_of, ncols, start, stop, dst, written, &fail)
        if total < 0:
            raise data_error(plan, cl, fail.col, fail.row, fail.code)
        for k in range(ncols):
            PyByteArray_Resize(ol[k], base[k] + written[k])
        return total
    finally:
        if total < 0:     # (shrinking never fails)
            for k in range(grown):
                PyByteArray_Resize(ol[k], base[k])
        free(cs)
        free(oid_of)
        free(base)
        free(dst)
