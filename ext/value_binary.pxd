# PostgreSQL binary (send/recv) forms of Arrow values, shared (cimported) by copy_encode.pyx
# (COPY BINARY fields) and array_params.pyx (elements of binary array parameters); the Python
# mirror is ``binary_cells`` in rapidbyte_fast/_py/copy_encode.py.
#
# Every put_* function writes a length-prefixed field at a raw pointer with room reserved by
# the caller (column_binary_bound) and returns the bytes written; a value PostgreSQL would
# reject sets an ERR_* code instead.

from value_text cimport *


cdef inline Py_ssize_t put_numeric_bin(unsigned char* q, uint16_t sign, const unsigned char* ip,
                                       Py_ssize_t ni, const unsigned char* fp, Py_ssize_t nf,
                                       int dscale) noexcept nogil:
    """A numeric field (length word included) from integer and fraction digit strings,
    base-10000 groups with leading and trailing zero groups stripped, as numeric_send does."""
    cdef Py_ssize_t lead = (4 - ni % 4) % 4, ngroups = (lead + ni + nf + 3) // 4
    cdef Py_ssize_t weight = (lead + ni) // 4 - 1, nd = 0, zeros = 0, g, t, k
    cdef unsigned val
    cdef unsigned char* digits = q + 12
    if sign == NUMERIC_NAN or sign == NUMERIC_PINF or sign == NUMERIC_NINF:
        ngroups = 0
        weight = 0
        dscale = 0
    for g in range(ngroups):
        val = 0
        for t in range(4):
            k = 4 * g + t - lead
            val *= 10
            if 0 <= k < ni:
                val += ip[k] - 48
            elif ni <= k < ni + nf:
                val += fp[k - ni] - 48
        if val == 0:
            if nd == 0:
                weight -= 1
            else:
                zeros += 1      # written only if a non-zero group follows: never past the end
            continue
        memset(digits + 2 * nd, 0, 2 * zeros)
        nd += zeros
        zeros = 0
        rb_be16(digits + 2 * nd, <uint16_t>val)
        nd += 1
    if nd == 0 and sign != NUMERIC_NAN and sign != NUMERIC_PINF and sign != NUMERIC_NINF:
        weight = 0
        sign = NUMERIC_POS
    rb_be32(q, <uint32_t>(8 + 2 * nd))
    rb_be16(q + 4, <uint16_t>nd)
    rb_be16(q + 6, <uint16_t><int16_t>weight)
    rb_be16(q + 8, sign)
    rb_be16(q + 10, <uint16_t>dscale)
    return 12 + 2 * nd


cdef inline Py_ssize_t put_numeric_u64(unsigned char* q, bint neg, uint64_t m,
                                       int scale) noexcept nogil:
    """put_numeric_bin of a decimal128 with scale >= 0 whose magnitude ``m``, padded to a
    multiple of 4 fraction digits, fits 64 bits: groups straight from the integer."""
    cdef int pad = (4 - scale % 4) % 4
    cdef Py_ssize_t frac = (scale + pad) // 4, n = 0, low = 0, k
    cdef uint16_t groups[5]
    m *= rb_pow10[pad]
    while m:
        groups[n] = <uint16_t>(m % 10000)
        m //= 10000
        n += 1
    while low < n and groups[low] == 0:
        low += 1
    for k in range(n - low):
        rb_be16(q + 12 + 2 * k, groups[n - 1 - k])
    rb_be32(q, <uint32_t>(8 + 2 * (n - low)))
    rb_be16(q + 4, <uint16_t>(n - low))
    rb_be16(q + 6, <uint16_t><int16_t>(n - 1 - frac if n else 0))
    rb_be16(q + 8, NUMERIC_NEG if neg and n else NUMERIC_POS)
    rb_be16(q + 10, <uint16_t>scale)
    return 12 + 2 * (n - low)


cdef inline Py_ssize_t column_binary_bound(const Col* c, Py_ssize_t start,
                                           Py_ssize_t stop) noexcept nogil:
    cdef Py_ssize_t n = stop - start
    cdef int kind = c.kind
    if kind == K_BOOL:
        return 5 * n
    if kind == K_INT2:
        return 6 * n
    if kind == K_INT4 or kind == K_FLOAT4 or kind == K_DATE:
        return 8 * n
    if kind == K_INT8 or kind == K_FLOAT8 or kind == K_TIME or kind == K_TIMESTAMP \
            or kind == K_TIMESTAMPTZ:
        return 12 * n
    if kind == K_INTERVAL or kind == K_UUID:
        return 20 * n
    if kind == K_NUMERIC:
        return 36 * n                       # 39 digits span at most 11 non-zero-led groups
    if kind == K_NUMERIC_TEXT:
        return 16 * n + str_bytes(c, start, stop)
    if kind == K_ARRAY:                     # length, 1-D header, elements
        return 24 * n + column_binary_bound(c.child, list_at(c, start), list_at(c, stop))
    return 5 * n + str_bytes(c, start, stop)    # TEXT, BYTEA, JSONB (+1 version byte)


cdef inline Py_ssize_t put_decimal_bin(unsigned char* q, const unsigned char* v,
                                       int scale) noexcept nogil:
    """A decimal128 as a numeric field (length word included), the general case."""
    cdef unsigned char digits[40 + MAX_DECIMAL_SCALE]
    cdef Py_ssize_t n, ni
    cdef bint neg
    n = decimal_digits(v, scale, digits, &ni, &neg)
    return put_numeric_bin(q, NUMERIC_NEG if neg else NUMERIC_POS, digits, ni, digits + ni,
                           n - ni, scale if scale > 0 else 0)


cdef inline Py_ssize_t put_binary_field(unsigned char* q, const Col* c, Py_ssize_t i,
                                        int* code) noexcept nogil:
    """The length-prefixed binary field of row ``i`` (NULL: length -1) of a non-ARRAY
    column; on a bad value sets ``code`` and what was written is garbage."""
    cdef const unsigned char* s
    cdef Py_ssize_t j, n
    cdef int kind
    cdef int32_t d
    cdef int64_t v
    cdef uint64_t hi, lo
    cdef bint neg
    cdef uint16_t special
    cdef NumText nt
    if is_null(c, i):
        rb_be32(q, 0xFFFFFFFF)
        return 4
    kind = c.kind
    j = c.offset + i
    if kind == K_INT4 or kind == K_FLOAT4:
        rb_be32(q, 4)
        rb_be32(q + 4, rb_le32(c.data + 4 * j))
        return 8
    if kind == K_INT8 or kind == K_FLOAT8:
        rb_be32(q, 8)
        rb_be64(q + 4, rb_le64(c.data + 8 * j))
        return 12
    if kind == K_TEXT or kind == K_BYTEA:
        n = str_at(c, i, &s)
        if c.check_strings and memchr(s, 0, n) != NULL:
            code[0] = ERR_NUL
            return 0
        rb_be32(q, <uint32_t>n)
        memcpy(q + 4, s, n)
        return 4 + n
    if kind == K_TIMESTAMP or kind == K_TIMESTAMPTZ:
        v = <int64_t>rb_le64(c.data + 8 * j)
        code[0] = timestamp_error(v)
        if not code[0] and v != TS_POS_INF and v != TS_NEG_INF:
            v -= PG_EPOCH_OFFSET_US
        rb_be32(q, 8)
        rb_be64(q + 4, <uint64_t>v)
        return 12
    if kind == K_BOOL:
        rb_be32(q, 1)
        q[4] = (c.data[j >> 3] >> (j & 7)) & 1
        return 5
    if kind == K_INT2:
        rb_be32(q, 2)
        rb_be16(q + 4, rb_le16(c.data + 2 * j))
        return 6
    if kind == K_DATE:
        d = <int32_t>rb_le32(c.data + 4 * j)
        code[0] = date_error(d)
        if not code[0] and d != DATE_POS_INF and d != DATE_NEG_INF:
            d -= PG_EPOCH_OFFSET_DAYS
        rb_be32(q, 4)
        rb_be32(q + 4, <uint32_t>d)
        return 8
    if kind == K_TIME:
        v = <int64_t>rb_le64(c.data + 8 * j)
        code[0] = time_error(v)
        rb_be32(q, 8)
        rb_be64(q + 4, <uint64_t>v)
        return 12
    if kind == K_INTERVAL:
        s = c.data + 16 * j
        v = <int64_t>rb_le64(s + 8)
        if interval_special(s):
            pass                    # ±infinity: interval_send's time part is the extreme too
        elif v % 1000:
            code[0] = ERR_INTERVAL_NANOS
        else:
            v //= 1000
        rb_be32(q, 16)
        rb_be64(q + 4, <uint64_t>v)
        rb_be32(q + 12, rb_le32(s + 4))
        rb_be32(q + 16, rb_le32(s))
        return 20
    if kind == K_UUID:
        rb_be32(q, 16)
        memcpy(q + 4, c.data + 16 * j, 16)
        return 20
    if kind == K_NUMERIC:
        neg = decimal_magnitude(c.data + 16 * j, &hi, &lo)
        if hi == 0 and lo <= rb_pow10[19] // 1000 and c.scale >= 0:
            return put_numeric_u64(q, neg, lo, c.scale)
        special = decimal_special(neg, hi, lo)
        if special:
            return put_numeric_bin(q, special, NULL, 0, NULL, 0, 0)
        return put_decimal_bin(q, c.data + 16 * j, c.scale)
    if kind == K_NUMERIC_TEXT:
        n = str_at(c, i, &s)
        code[0] = parse_numeric(s, n, &nt)
        if code[0]:
            return 0
        return put_numeric_bin(q, nt.sign, nt.ip, nt.ni, nt.fp, nt.nf, <int>nt.nf)
    # JSONB
    n = str_at(c, i, &s)
    if c.check_strings and memchr(s, 0, n) != NULL:
        code[0] = ERR_NUL
        return 0
    rb_be32(q, <uint32_t>(n + 1))
    q[4] = 1
    memcpy(q + 5, s, n)
    return 5 + n


cdef inline Py_ssize_t put_array_binary(unsigned char* q, const Col* c, Py_ssize_t i,
                                        int* code, Py_ssize_t* elem) noexcept nogil:
    """array_send of a 1-D array with lower bound 1 (``{}``: no dimension); NULL: -1."""
    cdef const Col* ch = c.child
    cdef Py_ssize_t a = list_at(c, i), b = list_at(c, i + 1), e, n = 12
    cdef bint has_null = False
    if is_null(c, i):
        rb_be32(q, 0xFFFFFFFF)
        return 4
    if b > a:
        for e in range(a, b):
            has_null |= is_null(ch, e)
        rb_be32(q + 16, <uint32_t>(b - a))
        rb_be32(q + 20, 1)
        n = 20
        for e in range(a, b):
            n += put_binary_field(q + 4 + n, ch, e, code)
            if code[0]:
                elem[0] = e
                return 0
    rb_be32(q, <uint32_t>n)
    rb_be32(q + 4, 1 if b > a else 0)
    rb_be32(q + 8, has_null)
    rb_be32(q + 12, c.elem_oid)
    return 4 + n
