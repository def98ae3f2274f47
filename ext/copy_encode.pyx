"""Arrow column buffers → PostgreSQL ``COPY ... FROM STDIN`` rows (binary or text format).

Compiled twin of ``rapidbyte_fast/_py/copy_encode.py``. Each call sizes ``out`` once from an
O(columns) upper bound, writes every row through a raw pointer with the GIL released, and
shrinks ``out`` to the bytes written (or back to its entry length on a DataError).
"""
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from libc.stdlib cimport free

from value_text cimport *
from value_binary cimport *

from rapidbyte_fast.kernel_inputs import check_call, data_error, offsets_error

KINDS = kinds_dict()

# COPY text escape letter per byte (0 = copied as is).
cdef unsigned char COPY_ESC[256]
memset(COPY_ESC, 0, 256)
COPY_ESC[92] = 92       # backslash
COPY_ESC[9] = 116       # tab -> \t
COPY_ESC[10] = 110      # newline -> \n
COPY_ESC[13] = 114      # carriage return -> \r

cdef inline bint any_special8(uint64_t w) noexcept nogil:
    """Whether any byte of ``w`` is a backslash or below 0x0E (tab, LF, CR; the rare
    other control bytes merely take the byte-wise path)."""
    cdef uint64_t ones = 0x01010101
    ones |= ones << 32
    cdef uint64_t x = w ^ (0x5C * ones)
    return ((((x - ones) & ~x) | ((w - 14 * ones) & ~w)) & (0x80 * ones)) != 0


cdef inline Py_ssize_t put_copy_escaped(unsigned char* q, const unsigned char* s,
                                        Py_ssize_t n) noexcept nogil:
    cdef unsigned char* q0 = q
    cdef Py_ssize_t k = 0, end
    cdef uint64_t w
    cdef unsigned char b, e
    while k < n:
        if k + 8 <= n:
            memcpy(&w, s + k, 8)
            if not any_special8(w):
                memcpy(q, &w, 8)
                q += 8
                k += 8
                continue
            end = k + 8
        else:
            end = n
        while k < end:
            b = s[k]
            e = COPY_ESC[b]
            if e:
                q[0] = 92
                q[1] = e
                q += 2
            else:
                q[0] = b
                q += 1
            k += 1
    return q - q0


# ------------------------------------------------------------------ binary format

cdef Py_ssize_t binary_bound(const Col* cs, Py_ssize_t ncols, Py_ssize_t start,
                             Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t total = 2 * (stop - start), k
    for k in range(ncols):
        total += column_binary_bound(&cs[k], start, stop)
    return total


cdef Py_ssize_t write_binary(const Col* cs, Py_ssize_t ncols, Py_ssize_t start,
                             Py_ssize_t stop, unsigned char* out, Failure* fail) noexcept nogil:
    cdef unsigned char* q = out
    cdef Py_ssize_t i, k, n
    cdef int code = 0
    cdef Py_ssize_t elem = -1
    for i in range(start, stop):
        rb_be16(q, <uint16_t>ncols)
        q += 2
        for k in range(ncols):
            if cs[k].kind == K_ARRAY:
                n = put_array_binary(q, &cs[k], i, &code, &elem)
            else:
                n = put_binary_field(q, &cs[k], i, &code)
            if code:
                fail.col = k
                fail.row = i
                fail.code = code
                fail.elem = elem
                return -1
            q += n
    return q - out


# ------------------------------------------------------------------ text format

cdef Py_ssize_t text_bound(const Col* cs, Py_ssize_t ncols, Py_ssize_t start,
                           Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t n = stop - start, total = n * (ncols if ncols else 1), k, w
    cdef int kind
    for k in range(ncols):
        kind = cs[k].kind
        if kind == K_BYTEA:
            total += 3 * n + 2 * str_bytes(&cs[k], start, stop)
        elif kind == K_ARRAY:
            total += array_text_bound(&cs[k], start, stop)
        elif is_string_kind(kind):
            total += 2 * n + 2 * str_bytes(&cs[k], start, stop)
        else:
            w = fixed_text_bound(kind, cs[k].scale)
            total += n * (w if w > 2 else 2)
    return total


cdef Py_ssize_t write_text(const Col* cs, Py_ssize_t ncols, Py_ssize_t start,
                           Py_ssize_t stop, unsigned char* out, Failure* fail) noexcept nogil:
    cdef unsigned char* q = out
    cdef const unsigned char* s
    cdef const Col* c
    cdef Py_ssize_t i, k, n, elem = -1
    cdef int kind, code = 0
    for i in range(start, stop):
        for k in range(ncols):
            c = &cs[k]
            if k:
                q[0] = 9
                q += 1
            if is_null(c, i):
                q[0] = 92
                q[1] = 78
                q += 2
                continue
            kind = c.kind
            if is_string_kind(kind):
                n = str_at(c, i, &s)
                if c.check_strings:
                    code = string_error(kind, s, n)
                if not code:
                    q += put_copy_escaped(q, s, n)
            elif kind == K_BYTEA:
                n = str_at(c, i, &s)
                memcpy(q, b"\\\\x", 3)
                q += 3 + put_hex(q + 3, s, n)
            elif kind == K_ARRAY:
                q += put_array_text(q, c, i, OUTER_COPY, &code, &elem)
            else:
                q += put_fixed_text(q, c, i, &code)
            if code:
                fail.col = k
                fail.row = i
                fail.code = code
                fail.elem = elem
                return -1
        q[0] = 10
        q += 1
    return q - out


# ------------------------------------------------------------------ entry points

ctypedef Py_ssize_t (*bound_fn)(const Col*, Py_ssize_t, Py_ssize_t, Py_ssize_t) noexcept nogil
ctypedef Py_ssize_t (*write_fn)(const Col*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                unsigned char*, Failure*) noexcept nogil


cdef Py_ssize_t encode(plan, list cols, Py_ssize_t start, Py_ssize_t stop, bytearray out,
                       bound_fn bound, write_fn write) except -1:
    check_call(plan, cols, start, stop)
    cdef Py_ssize_t ncols = len(cols), base = PyByteArray_GET_SIZE(out), written = 0, bad
    cdef Failure fail
    cdef unsigned char* dst
    cdef list keep = []
    cdef Col* cs = new_cols(cols, keep, plan.elem_oids)
    try:
        with nogil:
            bad = ready_cols(cs, ncols, start, stop)
            if bad < 0:
                written = bound(cs, ncols, start, stop)
        if bad >= 0:
            raise offsets_error(bad)
        PyByteArray_Resize(out, base + written)
        dst = <unsigned char*>PyByteArray_AS_STRING(out) + base
        with nogil:
            written = write(cs, ncols, start, stop, dst, &fail)
        if written < 0:
            PyByteArray_Resize(out, base)
            raise data_error(plan, cols, fail.col, fail.row, fail.code, fail.elem)
        PyByteArray_Resize(out, base + written)
        return written
    finally:
        free(cs)


def encode_binary(plan, cols, Py_ssize_t start, Py_ssize_t stop, bytearray out) -> int:
    """Append COPY BINARY tuples for rows [start, stop) to ``out``; returns bytes appended.

    No file header or trailer: the caller writes COPY_BINARY_HEADER / COPY_BINARY_TRAILER.
    """
    return encode(plan, list(cols), start, stop, out, binary_bound, write_binary)


def encode_text(plan, cols, Py_ssize_t start, Py_ssize_t stop, bytearray out) -> int:
    """Append COPY TEXT lines for rows [start, stop) to ``out``; returns bytes appended."""
    return encode(plan, list(cols), start, stop, out, text_bound, write_text)
