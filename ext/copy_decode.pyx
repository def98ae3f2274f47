"""Postgres COPY BINARY stream → Arrow column sinks, and the COPY OUT reader (compiled twin).

Same API, bytes and errors as ``rapidbyte_fast._py.copy_decode``. ``decode`` makes two
passes over the complete tuples of a chunk, both without the GIL: a scan that checks the
framing and adds up each column's bytes, then (after one resize of every sink) a fill that
converts values through raw pointers. ``read_copy`` drains many libpq CopyData messages per
call by calling ``PQgetCopyData`` directly (addresses from ``rapidbyte_fast.libpq``).
"""
from cpython.bytearray cimport (
    PyByteArray_AS_STRING, PyByteArray_CheckExact, PyByteArray_GET_SIZE, PyByteArray_Resize,
)
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport (
    INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN, int16_t, int32_t, int64_t, uintptr_t,
)
from libc.string cimport memcpy, memset

from rapidbyte_fast.copy_format import copy_failed, data_error, parse_header  # noqa: F401

include "kinds.pxi"

KINDS = kinds_dict()

cdef extern from "Python.h":
    ctypedef struct PyByteArrayObject:
        Py_ssize_t ob_alloc  # bytes allocated (CPython's bytearray)

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    static inline uint16_t rb_be16(const unsigned char *p) {
        uint16_t v; memcpy(&v, p, 2); return __builtin_bswap16(v);
    }
    static inline uint32_t rb_be32(const unsigned char *p) {
        uint32_t v; memcpy(&v, p, 4); return __builtin_bswap32(v);
    }
    static inline uint64_t rb_be64(const unsigned char *p) {
        uint64_t v; memcpy(&v, p, 8); return __builtin_bswap64(v);
    }
    static inline void rb_st16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }
    static inline void rb_st32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
    static inline void rb_st64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

    /* Numeric binary send format: int16 ndigits, int16 weight, uint16 sign, int16 dscale,
       then ndigits base-10000 digits, most significant first. */
    #define RB_NUMERIC_POS 0x0000
    #define RB_NUMERIC_NEG 0x4000
    #define RB_NUMERIC_NAN 0xC000
    #define RB_NUMERIC_PINF 0xD000
    #define RB_NUMERIC_NINF 0xF000

    /* What numeric_recv accepts, apart from the digit values. */
    static int rb_numeric_head_ok(const unsigned char *p, int32_t len) {
        if (len < 8) return 0;
        int16_t nd = (int16_t)rb_be16(p);
        uint16_t sign = rb_be16(p + 4);
        int16_t dscale = (int16_t)rb_be16(p + 6);
        if (nd < 0 || len != 8 + 2 * (int32_t)nd) return 0;
        if (sign != RB_NUMERIC_POS && sign != RB_NUMERIC_NEG && sign != RB_NUMERIC_NAN
            && sign != RB_NUMERIC_PINF && sign != RB_NUMERIC_NINF) return 0;
        return dscale >= 0 && dscale <= 0x3FFF;
    }

    static int rb_numeric_valid(const unsigned char *p, int32_t len) {
        if (!rb_numeric_head_ok(p, len)) return 0;
        int nd = (int16_t)rb_be16(p);
        for (int i = 0; i < nd; i++)
            if (rb_be16(p + 8 + 2 * i) >= 10000) return 0;
        return 1;
    }

    /* Length of numeric_out's text (0 for a malformed header; digits are checked later). */
    static int64_t rb_numeric_text_len(const unsigned char *p, int32_t len) {
        if (!rb_numeric_head_ok(p, len)) return 0;
        int nd = (int16_t)rb_be16(p), weight = (int16_t)rb_be16(p + 2);
        uint16_t sign = rb_be16(p + 4);
        int dscale = (int16_t)rb_be16(p + 6);
        if (sign == RB_NUMERIC_NAN) return 3;
        if (sign == RB_NUMERIC_PINF) return 8;
        if (sign == RB_NUMERIC_NINF) return 9;
        int64_t n = sign == RB_NUMERIC_NEG;
        if (weight < 0) {
            n += 1;
        } else {
            unsigned first = nd > 0 ? rb_be16(p + 8) : 0;
            n += (first >= 1000 ? 4 : first >= 100 ? 3 : first >= 10 ? 2 : 1) + 4 * (int64_t)weight;
        }
        if (dscale > 0) n += 1 + dscale;
        return n;
    }

    /* Whether n bytes are UTF-8 as Python's strict decoder (RFC 3629) reads it: no overlong
       forms, surrogates or code points past U+10FFFF; ASCII runs are skipped 8 at a time. */
    static int rb_utf8_valid(const unsigned char *s, int64_t n) {
        int64_t i = 0;
        while (i < n) {
            if (n - i >= 8) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (!(w & 0x8080808080808080ULL)) { i += 8; continue; }
            }
            unsigned c = s[i];
            if (c < 0x80) { i++; continue; }
            int len = c >= 0xC2 && c < 0xE0 ? 2 : c >= 0xE0 && c < 0xF0 ? 3
                      : c >= 0xF0 && c < 0xF5 ? 4 : 0;
            if (len == 0 || n - i < len) return 0;
            unsigned c1 = s[i + 1];
            if ((c1 & 0xC0) != 0x80) return 0;
            if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0)
                || (c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 >= 0x90)) return 0;
            for (int k = 2; k < len; k++)
                if ((s[i + k] & 0xC0) != 0x80) return 0;
            i += len;
        }
        return 1;
    }

    /* numeric_out (get_str_from_var) of a valid numeric; returns the bytes written. */
    static int64_t rb_numeric_text(const unsigned char *p, unsigned char *out) {
        int nd = (int16_t)rb_be16(p), weight = (int16_t)rb_be16(p + 2);
        uint16_t sign = rb_be16(p + 4);
        int dscale = (int16_t)rb_be16(p + 6);
        const unsigned char *digits = p + 8;
        unsigned char *cp = out;
        int d;
        if (sign == RB_NUMERIC_NAN) { memcpy(out, "NaN", 3); return 3; }
        if (sign == RB_NUMERIC_PINF) { memcpy(out, "Infinity", 8); return 8; }
        if (sign == RB_NUMERIC_NINF) { memcpy(out, "-Infinity", 9); return 9; }
        if (sign == RB_NUMERIC_NEG) *cp++ = '-';
        if (weight < 0) {
            d = weight + 1;
            *cp++ = '0';
        } else {
            for (d = 0; d <= weight; d++) {
                unsigned dig = d < nd ? rb_be16(digits + 2 * d) : 0;
                int putit = d > 0;
                unsigned d1;
                d1 = dig / 1000; dig -= d1 * 1000; putit |= d1 > 0;
                if (putit) *cp++ = (unsigned char)('0' + d1);
                d1 = dig / 100; dig -= d1 * 100; putit |= d1 > 0;
                if (putit) *cp++ = (unsigned char)('0' + d1);
                d1 = dig / 10; dig -= d1 * 10; putit |= d1 > 0;
                if (putit) *cp++ = (unsigned char)('0' + d1);
                *cp++ = (unsigned char)('0' + dig);
            }
        }
        if (dscale > 0) {
            *cp++ = '.';
            for (int i = 0; i < dscale; d++, i += 4) {
                unsigned dig = (d >= 0 && d < nd) ? rb_be16(digits + 2 * d) : 0;
                unsigned char four[4] = {
                    (unsigned char)('0' + dig / 1000), (unsigned char)('0' + dig / 100 % 10),
                    (unsigned char)('0' + dig / 10 % 10), (unsigned char)('0' + dig % 10)};
                int take = dscale - i < 4 ? dscale - i : 4;  /* never past the value's end */
                memcpy(cp, four, take);
                cp += take;
            }
        }
        return cp - out;
    }

    typedef unsigned __int128 rb_u128;

    static rb_u128 rb_pow10(int e) {
        rb_u128 v = 1;
        while (e-- > 0) v *= 10;
        return v;
    }

    /* A valid numeric as a little-endian decimal128 (value * 10^scale) with |v| < 10^precision
       (1..38), NaN as 10^38 + 1 and ±Infinity as ±10^38 (column_plan's sentinels, beyond any
       precision); returns 0, or 1 when it is inexact or too large. */
    static int rb_numeric_decimal(const unsigned char *p, int precision, int scale,
                                  unsigned char *out) {
        int nd = (int16_t)rb_be16(p), weight = (int16_t)rb_be16(p + 2);
        uint16_t sign = rb_be16(p + 4);
        const unsigned char *digits = p + 8;
        rb_u128 acc = 0;
        if (sign != RB_NUMERIC_POS && sign != RB_NUMERIC_NEG) {
            acc = rb_pow10(38) + (sign == RB_NUMERIC_NAN);
            if (sign == RB_NUMERIC_NINF) acc = (rb_u128)0 - acc;
            memcpy(out, &acc, 16);
            return 0;
        }
        /* Trailing zero words would only inflate the accumulator. */
        while (nd > 0 && rb_be16(digits + 2 * (nd - 1)) == 0) nd--;
        if (nd > 0) {
            /* Power of ten of the last word's units digit once scaled. */
            int64_t e = 4 * ((int64_t)weight - (nd - 1)) + scale;
            unsigned last = rb_be16(digits + 2 * (nd - 1));
            unsigned last_mul = 10000;
            if (e < 0) {
                if (e <= -4) return 1;
                unsigned pk = e == -1 ? 10 : e == -2 ? 100 : 1000;
                if (last % pk) return 1;
                last /= pk;
                last_mul = 10000 / pk;
                e = 0;
            }
            for (int i = 0; i < nd - 1; i++) {
                if (__builtin_mul_overflow(acc, (rb_u128)10000, &acc)) return 1;
                acc += rb_be16(digits + 2 * i);  /* acc*10000 leaves room for < 10000 */
            }
            if (__builtin_mul_overflow(acc, (rb_u128)last_mul, &acc)) return 1;
            if (__builtin_add_overflow(acc, (rb_u128)last, &acc)) return 1;
            if (e > 0) {
                if (e > 38 || __builtin_mul_overflow(acc, rb_pow10((int)e), &acc)) return 1;
            }
            if (acc >= rb_pow10(precision)) return 1;
        }
        if (sign == RB_NUMERIC_NEG) acc = (rb_u128)0 - acc;
        memcpy(out, &acc, 16);
        return 0;
    }
    """
    unsigned int rb_be16(const unsigned char* p) nogil
    unsigned int rb_be32(const unsigned char* p) nogil
    unsigned long long rb_be64(const unsigned char* p) nogil
    void rb_st16(unsigned char* p, unsigned int v) nogil
    void rb_st32(unsigned char* p, unsigned int v) nogil
    void rb_st64(unsigned char* p, unsigned long long v) nogil
    bint rb_numeric_valid(const unsigned char* p, int32_t n) nogil
    int64_t rb_numeric_text_len(const unsigned char* p, int32_t n) nogil
    int64_t rb_numeric_text(const unsigned char* p, unsigned char* out) nogil
    int rb_numeric_decimal(const unsigned char* p, int precision, int scale,
                           unsigned char* out) nogil
    bint rb_utf8_valid(const unsigned char* s, int64_t n) nogil


# Mirrors the E_* codes of rapidbyte_fast.copy_format (which words the messages).
cdef enum:
    E_FIELD_COUNT = 1
    E_FIELD_LENGTH = 2
    E_TOO_LARGE = 3
    E_JSONB_VERSION = 4
    E_DATE_RANGE = 5
    E_TIMESTAMP_RANGE = 6
    E_INTERVAL_RANGE = 7
    E_NUMERIC_MALFORMED = 8
    E_NUMERIC_RANGE = 9
    E_ARRAY_MALFORMED = 10
    E_ARRAY_DIMS = 11
    E_ARRAY_LBOUND = 12
    E_INVALID_UTF8 = 13

cdef enum:
    # Kinds of this twin's own, never in a plan: TEXT / JSONB whose values must be valid
    # UTF-8 (ColumnPlan.validate_utf8), so that unchecked text pays no test per value.
    K_TEXT_UTF8 = 101
    K_JSONB_UTF8 = 102

cdef enum:
    DATE_OFFSET = 10957  # days 1970-01-01 → 2000-01-01
    ARRAY_MAX_DIMS = 6

cdef int64_t TS_OFFSET = 946684800000000  # µs 1970-01-01 → 2000-01-01


# One column's sinks (an ARRAY column has a second Col for its elements, ``child``).
cdef struct Col:
    int kind
    int wire        # bytes of a non-NULL field on the wire, 0 = variable
    int width       # bytes per value in the data sink, 0 = varlena (offsets + data) or ARRAY
    int precision
    int scale
    int64_t room        # data bytes the sink can take before int32 offsets overflow
    int64_t items_room  # (child) elements the list offsets can still address
    int64_t total   # scan: data bytes the varlena values of the scanned rows need
    int64_t items   # scan (child): elements of the scanned rows
    int64_t off     # fill: length of the data sink so far (ARRAY: child elements so far)
    Py_ssize_t n    # fill (child): elements written by this call
    Col* child
    unsigned char* v
    unsigned char* o
    unsigned char* d


cdef struct Fault:
    int code
    int col
    Py_ssize_t row       # index among the rows of this call
    int elem             # array element, -1 for the field itself
    int64_t value
    const unsigned char* field
    int32_t len


cdef inline int _wire_width(int kind) noexcept nogil:
    if kind == K_BOOL:
        return 1
    if kind == K_INT2:
        return 2
    if kind == K_INT4 or kind == K_FLOAT4 or kind == K_DATE:
        return 4
    if kind == K_INT8 or kind == K_FLOAT8 or kind == K_TIME or kind == K_TIMESTAMP \
            or kind == K_TIMESTAMPTZ:
        return 8
    if kind == K_INTERVAL or kind == K_UUID:
        return 16
    return 0


cdef inline int64_t _varlena_bytes(int kind, const unsigned char* p, int32_t n) noexcept nogil:
    if kind == K_JSONB or kind == K_JSONB_UTF8:
        return n - 1 if n > 0 else 0
    if kind == K_NUMERIC_TEXT:
        return rb_numeric_text_len(p, n)
    return n


cdef inline void _fault(Fault* f, int code, int col, Py_ssize_t row, int64_t value) noexcept nogil:
    f.code = code
    f.col = col
    f.row = row
    f.elem = -1
    f.value = value


cdef int _array_scan(const unsigned char* p, int32_t n, Col* ch, int sign, bint bounded,
                     int64_t* value, int* elem) noexcept nogil:
    """Check the framing of a binary array (as ``array_elements`` of the Python twin does)
    and add (``sign`` 1) or take back (-1) its elements in the child's totals; returns 0 or
    an E_* code (totals untouched). ``bounded``: E_TOO_LARGE when adding would pass the
    child's room (``elem``: the element whose data passes it, -1 for the element count)."""
    cdef int32_t ndim, flags, count, lbound, m, e
    cdef int64_t q = 20, total = 0
    cdef int over = -1
    if n < 12:
        return E_ARRAY_MALFORMED
    ndim = <int32_t>rb_be32(p)
    flags = <int32_t>rb_be32(p + 4)
    if (flags != 0 and flags != 1) or ndim < 0 or ndim > ARRAY_MAX_DIMS:
        return E_ARRAY_MALFORMED
    if ndim == 0:
        return 0 if n == 12 else E_ARRAY_MALFORMED
    if ndim > 1:
        value[0] = ndim
        return E_ARRAY_DIMS
    if n < 20:
        return E_ARRAY_MALFORMED
    count = <int32_t>rb_be32(p + 12)
    lbound = <int32_t>rb_be32(p + 16)
    if count < 0:
        return E_ARRAY_MALFORMED
    if count and lbound != 1:
        value[0] = lbound
        return E_ARRAY_LBOUND
    for e in range(count):
        if n - q < 4:
            return E_ARRAY_MALFORMED
        m = <int32_t>rb_be32(p + q)
        q += 4
        if m == -1:
            continue
        if m < 0 or n - q < m:
            return E_ARRAY_MALFORMED
        if ch.wire and m != ch.wire:
            value[0] = m
            elem[0] = e
            return E_FIELD_LENGTH
        if not ch.width:
            total += _varlena_bytes(ch.kind, p + q, m)
            if bounded and over < 0 and ch.total + total > ch.room:
                over = e
        q += m
    if q != n:
        return E_ARRAY_MALFORMED
    if bounded and (ch.items + count > ch.items_room or over >= 0):
        elem[0] = -1 if ch.items + count > ch.items_room else over
        return E_TOO_LARGE
    ch.total += sign * total
    ch.items += sign * count
    return 0


cdef Py_ssize_t _scan(
    const unsigned char* s, Py_ssize_t pos, Py_ssize_t end, Col* cols, int ncols,
    Py_ssize_t max_rows, Py_ssize_t* nrows, bint* trailer, Fault* f, bint bounded,
) noexcept nogil:
    """Framing pass: count the complete tuples from ``pos`` and add up varlena bytes.
    ``bounded`` (the rare second pass when the totals passed a sink's room): stop before the
    row that would pass it (a fault if it is the first row). Called with constant
    ``bounded``, so the compiler makes a copy without the checks for the common pass."""
    cdef Py_ssize_t rows = 0, q
    cdef int c, nfields, code, elem
    cdef int32_t n
    cdef int64_t value, add
    cdef Col* col
    while end - pos >= 2:
        nfields = <int16_t>rb_be16(s + pos)
        if nfields == -1:
            trailer[0] = True
            pos += 2
            break
        if rows == max_rows:
            break
        if nfields != ncols:
            _fault(f, E_FIELD_COUNT, -1, rows, nfields)
            break
        q = pos + 2
        c = 0
        while c < ncols:
            if end - q < 4:
                break
            n = <int32_t>rb_be32(s + q)
            q += 4
            col = &cols[c]
            if n < 0:
                if n != -1:
                    _fault(f, E_FIELD_LENGTH, c, rows, n)
                    break
                c += 1
                continue
            if col.wire and n != col.wire:
                _fault(f, E_FIELD_LENGTH, c, rows, n)
                break
            if end - q < n:
                break
            if col.kind == K_ARRAY:
                value = 0
                elem = -1
                code = _array_scan(s + q, n, col.child, 1, bounded, &value, &elem)
                if code:
                    if code != E_TOO_LARGE or rows == 0:  # else the caller cuts the batch
                        _fault(f, code, c, rows, value)
                        f.elem = elem
                    break
            elif not col.width:
                add = _varlena_bytes(col.kind, s + q, n)
                if bounded and col.total + add > col.room:
                    if rows == 0:
                        _fault(f, E_TOO_LARGE, c, rows, 0)
                    break
                col.total += add
            q += n
            c += 1
        if c < ncols:  # incomplete, or a bad field c
            _unscan(s + pos + 2, cols, c)
            break
        pos = q
        rows += 1
    nrows[0] = rows
    return pos


cdef bint _past_room(Col* cols, int ncols) noexcept nogil:
    """Whether the scanned totals pass a sink's room; if so they are reset for a bounded
    scan."""
    cdef bint past = False
    cdef Col* ch
    for c in range(ncols):
        ch = cols[c].child
        past |= cols[c].total > cols[c].room or (
            ch != NULL and (ch.total > ch.room or ch.items > ch.items_room))
    if past:
        for c in range(ncols):
            cols[c].total = 0
            if cols[c].child != NULL:
                cols[c].child.total = 0
                cols[c].child.items = 0
    return past


cdef void _unscan(const unsigned char* p, Col* cols, int nfields) noexcept nogil:
    """Take the first ``nfields`` fields of a tuple that is not decoded (incomplete, or with
    a bad field) back out of the totals, which must fit the decoded rows exactly."""
    cdef int32_t n
    cdef int64_t value
    cdef int elem
    for c in range(nfields):
        n = <int32_t>rb_be32(p)
        p += 4
        if n >= 0:
            if cols[c].kind == K_ARRAY:
                _array_scan(p, n, cols[c].child, -1, False, &value, &elem)
            elif not cols[c].width:
                cols[c].total -= _varlena_bytes(cols[c].kind, p, n)
            p += n


cdef inline void _put_null(Col* col, Py_ssize_t k) noexcept nogil:
    """NULL as value ``k`` of this call."""
    col.v[k] = 0
    if col.width:
        memset(col.d, 0, col.width)
        col.d += col.width
    else:
        rb_st32(col.o + 4 * k, <unsigned int>col.off)


cdef inline int _put(Col* col, const unsigned char* p, int32_t n, Py_ssize_t k, Fault* f,
                     int c, Py_ssize_t r) noexcept nogil:
    """Convert one non-NULL value into ``col``'s sinks as value ``k`` of this call (row
    ``r``, column ``c``); 1 (and ``f`` set) on a bad value."""
    cdef int kind = col.kind
    cdef int32_t days, months
    cdef int64_t v, us
    col.v[k] = 1
    if kind == K_TEXT or kind == K_BYTEA:
        memcpy(col.d, p, n)
        col.d += n
        col.off += n
    elif kind == K_INT4 or kind == K_FLOAT4:
        rb_st32(col.d, rb_be32(p))
        col.d += 4
    elif kind == K_INT8 or kind == K_FLOAT8 or kind == K_TIME:
        rb_st64(col.d, rb_be64(p))
        col.d += 8
    elif kind == K_BOOL:
        col.d[0] = p[0] != 0
        col.d += 1
    elif kind == K_INT2:
        rb_st16(col.d, rb_be16(p))
        col.d += 2
    elif kind == K_TIMESTAMP or kind == K_TIMESTAMPTZ:
        v = <int64_t>rb_be64(p)
        if v != INT64_MAX and v != INT64_MIN:
            if v > INT64_MAX - TS_OFFSET:
                _fault(f, E_TIMESTAMP_RANGE, c, r, v)
                return 1
            v += TS_OFFSET
        rb_st64(col.d, <unsigned long long>v)
        col.d += 8
    elif kind == K_DATE:
        days = <int32_t>rb_be32(p)
        if days != INT32_MAX and days != INT32_MIN:
            if days > INT32_MAX - DATE_OFFSET:
                _fault(f, E_DATE_RANGE, c, r, days)
                return 1
            days += DATE_OFFSET
        rb_st32(col.d, <unsigned int>days)
        col.d += 4
    elif kind == K_INTERVAL:
        us = <int64_t>rb_be64(p)
        days = <int32_t>rb_be32(p + 8)
        months = <int32_t>rb_be32(p + 12)
        if (us == INT64_MAX and days == INT32_MAX and months == INT32_MAX) or (
                us == INT64_MIN and days == INT32_MIN and months == INT32_MIN):
            v = us      # PostgreSQL 17's ±infinity: every field at its extreme
        elif us > INT64_MAX // 1000 or us < -(INT64_MAX // 1000):
            _fault(f, E_INTERVAL_RANGE, c, r, us)
            return 1
        else:
            v = us * 1000
        rb_st32(col.d, <unsigned int>months)
        rb_st32(col.d + 4, <unsigned int>days)
        rb_st64(col.d + 8, <unsigned long long>v)
        col.d += 16
    elif kind == K_UUID:
        memcpy(col.d, p, 16)
        col.d += 16
    elif kind == K_NUMERIC:
        if not rb_numeric_valid(p, n):
            _fault(f, E_NUMERIC_MALFORMED, c, r, 0)
            return 1
        if rb_numeric_decimal(p, col.precision, col.scale, col.d):
            _fault(f, E_NUMERIC_RANGE, c, r, 0)
            f.field = p
            f.len = n
            return 1
        col.d += 16
    elif kind == K_NUMERIC_TEXT:
        if not rb_numeric_valid(p, n):
            _fault(f, E_NUMERIC_MALFORMED, c, r, 0)
            return 1
        v = rb_numeric_text(p, col.d)
        col.d += v
        col.off += v
    elif kind == K_JSONB or kind == K_JSONB_UTF8:
        if n == 0 or p[0] != 1:
            _fault(f, E_JSONB_VERSION, c, r, p[0] if n else -1)
            return 1
        if kind == K_JSONB_UTF8 and not _utf8(p + 1, n - 1, f, c, r):
            return 1
        memcpy(col.d, p + 1, n - 1)
        col.d += n - 1
        col.off += n - 1
    elif kind == K_TEXT_UTF8:
        if not _utf8(p, n, f, c, r):
            return 1
        memcpy(col.d, p, n)
        col.d += n
        col.off += n
    if not col.width:   # the scan kept col.off within INT32_MAX
        rb_st32(col.o + 4 * k, <unsigned int>col.off)
    return 0


cdef inline bint _utf8(const unsigned char* p, int32_t n, Fault* f, int c,
                       Py_ssize_t r) noexcept nogil:
    """Whether a text value is valid UTF-8; sets ``f`` when it is not."""
    if rb_utf8_valid(p, n):
        return True
    _fault(f, E_INVALID_UTF8, c, r, 0)
    f.field = p
    f.len = n
    return False


cdef int _put_array(Col* col, const unsigned char* p, Fault* f, int c,
                    Py_ssize_t r) noexcept nogil:
    """Append a framed (checked by ``_array_scan``) 1-D array's elements to the child."""
    cdef Col* ch = col.child
    cdef int32_t count = 0, m, e
    cdef const unsigned char* q = p + 12
    if <int32_t>rb_be32(p):
        count = <int32_t>rb_be32(p + 12)
        q = p + 20
    for e in range(count):
        m = <int32_t>rb_be32(q)
        q += 4
        if m < 0:
            _put_null(ch, ch.n + e)
            continue
        if _put(ch, q, m, ch.n + e, f, c, r):
            f.elem = e
            return 1
        q += m
    ch.n += count
    col.v[r] = 1
    col.off += count
    rb_st32(col.o + 4 * r, <unsigned int>col.off)
    return 0


cdef void _fill(
    const unsigned char* p, Py_ssize_t nrows, Col* cols, int ncols, Fault* f,
) noexcept nogil:
    """Value pass over ``nrows`` framed tuples; stops at the first bad value (``f``)."""
    cdef Py_ssize_t r
    cdef int c
    cdef int32_t n
    cdef Col* col
    for r in range(nrows):
        p += 2
        for c in range(ncols):
            col = &cols[c]
            n = <int32_t>rb_be32(p)
            p += 4
            if n < 0:
                _put_null(col, r)
                continue
            if col.kind == K_ARRAY:
                if _put_array(col, p, f, c, r):
                    return
            elif _put(col, p, n, r, f, c, r):
                return
            p += n


cdef int _grow(bytearray b, Py_ssize_t extra) except -1:
    """Append ``extra`` bytes to a sink, reserving as much again as it holds when it must
    move: a sink grows by one chunk's share per call, and growing it exactly made every call
    reallocate and copy the whole sink (a quarter of a 1M-row read's decode time, perf)."""
    cdef Py_ssize_t size = PyByteArray_GET_SIZE(b)
    if not extra:
        return 0
    if size + extra >= (<PyByteArrayObject*>b).ob_alloc:
        PyByteArray_Resize(b, size + max(extra, size))
    # (a resize down to at least half the allocation keeps it)
    PyByteArray_Resize(b, size + extra)
    return 0


cdef unsigned char* _end(bytearray b, Py_ssize_t mark):
    return <unsigned char*>PyByteArray_AS_STRING(b) + mark


cdef int _init_col(Col* col, int kind, int precision, int scale, bint check_utf8,
                   Py_ssize_t data_len, Py_ssize_t items, str name) except -1:
    """Set up ``col`` (``data_len``: its data sink's length, ``items``: a child's elements
    already in the batch)."""
    if not K_BOOL <= kind <= K_ARRAY:
        raise ValueError(f"{kind} is not a valid Kind")
    col.kind = kind
    col.wire = _wire_width(kind)
    col.width = 16 if kind == K_NUMERIC else col.wire
    col.precision = precision
    col.scale = scale
    if check_utf8 and kind == K_TEXT:
        col.kind = K_TEXT_UTF8
    elif check_utf8 and kind == K_JSONB:
        col.kind = K_JSONB_UTF8
    col.room = INT32_MAX - data_len
    col.items_room = INT32_MAX - items
    col.total = 0
    col.items = 0
    col.n = 0
    col.child = NULL
    if kind == K_NUMERIC and not 1 <= precision <= 38:
        raise ValueError(
            f"column {name!r}: decimal128 precision must be 1..38, got {precision}")
    return 0


def decode(plan, src, Py_ssize_t pos, Py_ssize_t end, sinks, Py_ssize_t max_rows):
    """Append the complete tuples of ``src[pos:end]`` to ``sinks``; see the Python twin."""
    cdef const unsigned char[::1] view = src
    if not 0 <= pos <= end <= view.shape[0]:
        raise ValueError(f"invalid range [{pos}, {end}) of a {view.shape[0]}-byte buffer")
    if max_rows < 0:
        raise ValueError(f"max_rows must be >= 0, got {max_rows}")
    cdef bytes kinds = plan.kind_bytes
    cdef int ncols = len(kinds), c, k
    cdef tuple lists = (sinks.valid, sinks.offsets, sinks.data, sinks.child_valid,
                        sinks.child_offsets, sinks.child_data)
    cdef list marks = []
    cdef Py_ssize_t nrows = 0, new_pos
    cdef bint trailer = False, check_utf8 = plan.validate_utf8
    cdef Fault scan_fault, fill_fault
    cdef const unsigned char* s = &view[0] if view.shape[0] else NULL
    cdef Col* cols = <Col*>PyMem_Malloc(max(2 * ncols, 1) * sizeof(Col))
    cdef Col* col
    cdef Col* ch
    if cols == NULL:
        raise MemoryError()
    memset(&scan_fault, 0, sizeof(Fault))
    memset(&fill_fault, 0, sizeof(Fault))
    try:
        for c in range(ncols):
            for k in range(6):
                if not PyByteArray_CheckExact(lists[k][c]):
                    raise TypeError("ColumnSinks buffers must be bytearrays")
            _init_col(&cols[c], kinds[c], plan.precisions[c], plan.scales[c], check_utf8,
                      PyByteArray_GET_SIZE(lists[2][c]), 0, plan.names[c])
            if kinds[c] == K_ARRAY:
                cols[c].child = &cols[ncols + c]
                if plan.elem_kinds[c] == K_ARRAY:
                    raise ValueError(f"column {plan.names[c]!r}: arrays of arrays")
                _init_col(cols[c].child, plan.elem_kinds[c], plan.precisions[c],
                          plan.scales[c], check_utf8, PyByteArray_GET_SIZE(lists[5][c]),
                          PyByteArray_GET_SIZE(lists[3][c]), plan.names[c])
        with nogil:
            new_pos = _scan(s, pos, end, cols, ncols, max_rows, &nrows, &trailer, &scan_fault,
                            False)
            if _past_room(cols, ncols):
                nrows = 0
                trailer = False
                memset(&scan_fault, 0, sizeof(Fault))
                new_pos = _scan(s, pos, end, cols, ncols, max_rows, &nrows, &trailer,
                                &scan_fault, True)
        if nrows:
            try:
                for c in range(ncols):
                    col = &cols[c]
                    marks.append(tuple([PyByteArray_GET_SIZE(lists[k][c]) for k in range(6)]))
                    _grow(lists[0][c], nrows)
                    if col.width:
                        _grow(lists[2][c], nrows * col.width)
                    else:
                        _grow(lists[1][c], 4 * nrows)
                        _grow(lists[2][c], col.total)
                    col.v = _end(lists[0][c], marks[c][0])
                    col.o = _end(lists[1][c], marks[c][1])
                    col.d = _end(lists[2][c], marks[c][2])
                    col.off = marks[c][2]
                    ch = col.child
                    if ch != NULL:
                        col.off = marks[c][3]
                        _grow(lists[3][c], ch.items)
                        if ch.width:
                            _grow(lists[5][c], ch.items * ch.width)
                        else:
                            _grow(lists[4][c], 4 * ch.items)
                            _grow(lists[5][c], ch.total)
                        ch.v = _end(lists[3][c], marks[c][3])
                        ch.o = _end(lists[4][c], marks[c][4])
                        ch.d = _end(lists[5][c], marks[c][5])
                        ch.off = marks[c][5]
            except BaseException:
                _truncate(marks, lists)
                raise
            with nogil:
                _fill(s + pos, nrows, cols, ncols, &fill_fault)
            if not fill_fault.code:  # the scan's totals must be exactly what was written
                for c in range(ncols):
                    ch = cols[c].child
                    if cols[c].d != _end(lists[2][c], PyByteArray_GET_SIZE(lists[2][c])) or (
                            ch != NULL and ch.d != _end(lists[5][c],
                                                        PyByteArray_GET_SIZE(lists[5][c]))):
                        _truncate(marks, lists)
                        raise AssertionError(f"column {plan.names[c]!r}: scan and fill disagree")
        if fill_fault.code or scan_fault.code:
            _truncate(marks, lists)
            raise _error(plan, &fill_fault if fill_fault.code else &scan_fault, sinks.rows)
    finally:
        PyMem_Free(cols)
    sinks.rows += nrows
    return new_pos, trailer


cdef _truncate(list marks, tuple lists):
    for c, mark in enumerate(marks):
        for k in range(6):
            del lists[k][c][mark[k]:]


cdef object _error(plan, Fault* f, Py_ssize_t row0):
    cdef bytearray text
    if f.code == E_NUMERIC_RANGE:
        text = bytearray(rb_numeric_text_len(f.field, f.len))
        rb_numeric_text(f.field, <unsigned char*>PyByteArray_AS_STRING(text))
        return data_error(plan, f.code, f.col, row0 + f.row, 0, text.decode("ascii"), f.elem)
    if f.code == E_INVALID_UTF8:
        return data_error(plan, f.code, f.col, row0 + f.row, 0,
                          (<const char*>f.field)[:f.len], f.elem)
    return data_error(plan, f.code, f.col, row0 + f.row, f.value, "", f.elem)


ctypedef int (*PQgetCopyData_f)(void* conn, char** buffer, int async_) noexcept nogil
ctypedef void (*PQfreemem_f)(void* ptr) noexcept nogil
ctypedef const char* (*PQerrorMessage_f)(const void* conn) noexcept nogil

cdef PQgetCopyData_f _PQgetCopyData = NULL
cdef PQfreemem_f _PQfreemem = NULL
cdef PQerrorMessage_f _PQerrorMessage = NULL


cdef int _load_libpq() except -1:
    global _PQgetCopyData, _PQfreemem, _PQerrorMessage
    if _PQgetCopyData != NULL:
        return 0
    from rapidbyte_fast.libpq import addresses

    addr = addresses()
    _PQfreemem = <PQfreemem_f><uintptr_t>addr["PQfreemem"]
    _PQerrorMessage = <PQerrorMessage_f><uintptr_t>addr["PQerrorMessage"]
    _PQgetCopyData = <PQgetCopyData_f><uintptr_t>addr["PQgetCopyData"]
    return 0


#: Room reserved beyond ``target`` so that the message that crosses it rarely regrows ``out``;
#: a huge ``target`` is not reserved up front beyond RESERVE_MAX (``out`` grows as needed).
cdef Py_ssize_t SLACK = 64 * 1024
cdef Py_ssize_t RESERVE_MAX = 16 * 1024 * 1024


def read_copy(pgconn, bytearray out not None, Py_ssize_t target):
    """Append whole COPY OUT data messages to ``out`` until ``target`` bytes were appended
    or the COPY ended; returns ``(bytes_appended, done)``. See the Python twin for the
    contract (after ``done`` the caller collects ``pgconn.get_result()``)."""
    _load_libpq()
    cdef uintptr_t ptr = pgconn.pgconn_ptr or 0
    if not ptr:
        raise copy_failed(b"the connection is closed")
    cdef void* conn = <void*>ptr
    cdef Py_ssize_t start = PyByteArray_GET_SIZE(out), used = start, cap
    cdef char* buf = NULL
    cdef int n = 0
    cdef bint done = False, failed = False, grow_failed = False
    cdef char* base
    if target <= 0:
        return 0, False
    PyByteArray_Resize(out, start + min(target, RESERVE_MAX) + SLACK)
    cap = PyByteArray_GET_SIZE(out)
    base = PyByteArray_AS_STRING(out)
    with nogil:
        while used - start < target:
            n = _PQgetCopyData(conn, &buf, 0)
            if n > 0:
                if used + n > cap:
                    with gil:
                        try:
                            PyByteArray_Resize(out, max(2 * cap, used + n + SLACK))
                            cap = PyByteArray_GET_SIZE(out)
                            base = PyByteArray_AS_STRING(out)
                        except BaseException:
                            grow_failed = True
                    if grow_failed:
                        _PQfreemem(buf)
                        break
                memcpy(base + used, buf, n)
                used += n
                _PQfreemem(buf)
            elif n == -1:
                done = True
                break
            else:
                failed = True
                break
    if grow_failed or failed:
        PyByteArray_Resize(out, start)
        if grow_failed:
            raise MemoryError(f"cannot grow the COPY buffer beyond {cap} bytes")
        raise copy_failed(_PQerrorMessage(conn))
    PyByteArray_Resize(out, used)
    return used - start, done
