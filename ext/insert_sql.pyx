"""Arrow column buffers → one multi-row ``INSERT ... VALUES`` statement.

Compiled twin of ``rapidbyte_fast/_py/insert_sql.py``. Columns are resolved once per call;
literals are written straight into ``out`` with the GIL released (no per-value objects).
``out`` grows only when a row's worst-case size does not fit the room reserved so far.
"""
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from libc.stdlib cimport free

from value_text cimport *

from rapidbyte_fast.kernel_inputs import check_call, data_error, offsets_error

KINDS = kinds_dict()

ctypedef struct Cursor:
    Py_ssize_t row          # next row to write
    Py_ssize_t pos          # statement bytes so far (prefix included)
    Py_ssize_t rows         # rows written


cdef inline Py_ssize_t put_sql_quoted(unsigned char* q, const unsigned char* s,
                                      Py_ssize_t n) noexcept nogil:
    """'...' with every quote doubled (standard_conforming_strings: backslashes stay)."""
    cdef unsigned char* q0 = q
    cdef const unsigned char* end = s + n
    cdef const unsigned char* hit
    cdef Py_ssize_t k
    q[0] = 39
    q += 1
    while True:
        hit = <const unsigned char*>memchr(s, 39, end - s)
        if hit == NULL:
            memcpy(q, s, end - s)
            q += end - s
            break
        k = hit + 1 - s
        memcpy(q, s, k)
        q[k] = 39
        q += k + 1
        s = hit + 1
    q[0] = 39
    return q + 1 - q0


cdef inline Py_ssize_t literal_bound(int kind, int scale) noexcept nogil:
    """Most bytes of one literal, besides twice the value bytes of varlena kinds."""
    cdef Py_ssize_t w
    if kind == K_BOOL:
        return 5
    if kind == K_BYTEA:
        w = 4
    elif is_string_kind(kind):
        w = 2
    elif kind == K_INT2 or kind == K_INT4 or kind == K_INT8:
        w = fixed_text_bound(kind, scale)
    else:
        w = fixed_text_bound(kind, scale) + 2
    return w if w > 4 else 4               # NULL


cdef int write_rows(const Col* cs, Py_ssize_t ncols, Py_ssize_t row_fixed, Py_ssize_t limit,
                    unsigned char* stmt, Py_ssize_t cap, Py_ssize_t reserve,
                    Py_ssize_t max_bytes, Cursor* cur, Failure* fail,
                    Py_ssize_t* need) noexcept nogil:
    """Append rows until ``limit`` or ``max_bytes``: 0 done, 1 out of room (``need`` bytes
    for the next row), -1 bad value (``fail``)."""
    cdef unsigned char* q
    cdef const unsigned char* s
    cdef const Col* c
    cdef Py_ssize_t i, k, n, bound, elem = -1
    cdef int kind, code = 0
    while cur.row < limit:
        i = cur.row
        bound = row_fixed
        for k in range(ncols):
            if cs[k].kind == K_BYTEA or is_string_kind(cs[k].kind):
                bound += 2 * str_at(&cs[k], i, &s)
            elif cs[k].kind == K_ARRAY:
                bound += array_text_bound(&cs[k], i, i + 1)
        if cur.pos + bound + reserve > cap:
            need[0] = bound
            return 1
        q = stmt + cur.pos
        if cur.rows:
            q[0] = 44
            q += 1
        q[0] = 40
        q += 1
        for k in range(ncols):
            c = &cs[k]
            if k:
                q[0] = 44
                q += 1
            if is_null(c, i):
                memcpy(q, b"NULL", 4)
                q += 4
                continue
            kind = c.kind
            if is_string_kind(kind):
                n = str_at(c, i, &s)
                code = string_error(kind, s, n)
                if not code:
                    q += put_sql_quoted(q, s, n)
            elif kind == K_INT4 or kind == K_INT8 or kind == K_INT2:
                q += put_fixed_text(q, c, i, &code)
            elif kind == K_BOOL:
                n = c.offset + i
                if (c.data[n >> 3] >> (n & 7)) & 1:
                    memcpy(q, b"true", 4)
                    q += 4
                else:
                    memcpy(q, b"false", 5)
                    q += 5
            elif kind == K_BYTEA:
                n = str_at(c, i, &s)
                memcpy(q, b"'\\x", 3)
                q += 3 + put_hex(q + 3, s, n)
                q[0] = 39
                q += 1
            elif kind == K_ARRAY:
                q[0] = 39
                q += 1 + put_array_text(q + 1, c, i, OUTER_SQL, &code, &elem)
                q[0] = 39
                q += 1
            else:
                q[0] = 39
                q += 1 + put_fixed_text(q + 1, c, i, &code)
                q[0] = 39
                q += 1
            if code:
                fail.col = k
                fail.row = i
                fail.code = code
                fail.elem = elem
                return -1
        q[0] = 41
        cur.pos = q + 1 - stmt
        cur.rows += 1
        cur.row += 1
        if cur.pos + reserve >= max_bytes:
            break
    return 0


def build_insert(plan, cols, Py_ssize_t start, Py_ssize_t stop, bytearray out,
                 bytes prefix, bytes suffix, Py_ssize_t max_rows,
                 Py_ssize_t max_bytes) -> tuple:
    """Append one ``prefix (row),(row)... suffix`` statement for rows from ``start``.

    Stops after ``max_rows`` rows, at ``stop``, or once the statement (suffix included)
    reaches ``max_bytes``; always takes at least one row. Returns (rows, bytes appended);
    (0, 0) and nothing appended when ``start == stop``.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    cols = list(cols)
    cdef Py_ssize_t ncols = len(cols), base = PyByteArray_GET_SIZE(out), k
    cdef Py_ssize_t limit = start + (max_rows if max_rows < stop - start else stop - start)
    check_call(plan, cols, start, stop, limit)
    if start == stop:
        return 0, 0
    cdef Py_ssize_t npre = len(prefix), nsuf = len(suffix), row_fixed = 3, cap, need = 0
    cdef Py_ssize_t varlena = 0
    cdef Cursor cur
    cdef Failure fail
    cdef int status
    cdef unsigned char* stmt
    cdef list keep = []
    cdef Col* cs = new_cols(cols, keep, plan.elem_oids)
    try:
        k = ready_cols(cs, ncols, start, limit)
        if k >= 0:
            raise offsets_error(k)
        for k in range(ncols):
            row_fixed += 1 + literal_bound(cs[k].kind, cs[k].scale)
            if cs[k].kind == K_BYTEA or is_string_kind(cs[k].kind):
                varlena += 2 * str_bytes(&cs[k], start, limit)
            elif cs[k].kind == K_ARRAY:
                varlena += array_text_bound(&cs[k], start, limit)
        cap = npre + nsuf + min(row_fixed * (limit - start) + varlena,
                                max(max_bytes, 0) + row_fixed + 4096)
        cur.row = start
        cur.pos = npre
        cur.rows = 0
        PyByteArray_Resize(out, base + cap)
        try:
            memcpy(PyByteArray_AS_STRING(out) + base, <const char*>prefix, npre)
            while True:
                stmt = <unsigned char*>PyByteArray_AS_STRING(out) + base
                with nogil:
                    status = write_rows(cs, ncols, row_fixed, limit, stmt, cap, nsuf,
                                        max_bytes, &cur, &fail, &need)
                if status != 1:
                    break
                cap = max(2 * cap, cur.pos + need + nsuf)
                PyByteArray_Resize(out, base + cap)
            if status < 0:
                raise data_error(plan, cols, fail.col, fail.row, fail.code, fail.elem)
        except BaseException:
            PyByteArray_Resize(out, base)
            raise
        memcpy(PyByteArray_AS_STRING(out) + base + cur.pos, <const char*>suffix, nsuf)
        PyByteArray_Resize(out, base + cur.pos + nsuf)
        return cur.rows, cur.pos + nsuf
    finally:
        free(cs)
