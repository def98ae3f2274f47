# PostgreSQL text forms of Arrow values, shared (cimported) by copy_encode.pyx and
# insert_sql.pyx; rapidbyte_fast/_py/value_text.py is the Python mirror, value for value.
#
# Every put_* function writes at a raw pointer with room already reserved by the caller
# (see fixed_text_bound) and returns the number of bytes written. Values that PostgreSQL
# would reject are reported through ERR_* codes; the Python side words the message.

from libc.stdint cimport int16_t, int32_t, int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy, memset
from libc.stdio cimport snprintf
from libc.stdlib cimport free, malloc
from libc.math cimport isinf, isnan

include "kinds.pxi"

cdef extern from *:
    """
    /* Byte-wise loads/stores: endian-independent; GCC and clang merge them into
       single (byte-swapping) moves. */
    static inline uint32_t rb_le32(const unsigned char *p) {
        return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
             | ((uint32_t)p[3] << 24);
    }
    static inline uint16_t rb_le16(const unsigned char *p) {
        return (uint16_t)(p[0] | (p[1] << 8));
    }
    static inline uint64_t rb_le64(const unsigned char *p) {
        return (uint64_t)rb_le32(p) | ((uint64_t)rb_le32(p + 4) << 32);
    }
    static inline void rb_be16(unsigned char *p, uint16_t v) {
        p[0] = (unsigned char)(v >> 8); p[1] = (unsigned char)v;
    }
    static inline void rb_be32(unsigned char *p, uint32_t v) {
        p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
        p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
    }
    static inline void rb_be64(unsigned char *p, uint64_t v) {
        rb_be32(p, (uint32_t)(v >> 32)); rb_be32(p + 4, (uint32_t)v);
    }
    static inline float rb_f32(uint32_t bits) { float f; memcpy(&f, &bits, 4); return f; }
    static inline double rb_f64(uint64_t bits) { double d; memcpy(&d, &bits, 8); return d; }
    static const char rb_digit_pairs[201] =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
        "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    static const char rb_hex[17] = "0123456789abcdef";
    /* Stand-in data pointer for absent or empty buffers (never dereferenced for a byte
       that matters, but keeps memcpy/memchr away from NULL). */
    static const unsigned char rb_empty[8] = {0};

    /* |v| rounded half-to-even to P (1..17) significant digits, as printf's %.*g does:
       *n in [10^(P-1), 10^P) and *x the decimal exponent of its first digit. Exact with
       128-bit integers for normal doubles with |v| * 10^(P-1-x) computable in 128 bits
       (about 1e-6 .. 1e38 for P = 17); returns 0 otherwise, for the snprintf path. */
    static const uint64_t rb_pow10[20] = {
        1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL,
        100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL,
        10000000000000ULL, 100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
        100000000000000000ULL, 1000000000000000000ULL, 10000000000000000000ULL};
    #ifdef __SIZEOF_INT128__
    static inline int rb_round_sig(double v, int P, uint64_t *n, int *x) {
        uint64_t bits, m;
        int be, e, xe, k, attempt;
        unsigned __int128 q, r, half, big;
        memcpy(&bits, &v, 8);
        be = (int)((bits >> 52) & 0x7FF);
        if (be == 0 || be == 0x7FF) return 0;
        m = (bits & ((1ULL << 52) - 1)) | (1ULL << 52);
        e = be - 1075;                       /* |v| = m * 2^e */
        xe = (int)floor((be - 1023) * 0.30102999566398120);  /* true exponent or one less */
        for (attempt = 0; attempt < 3; attempt++) {
            k = P - 1 - xe;                  /* q = round(|v| * 10^k) */
            r = 0;
            half = 1;
            if (k >= 0) {
                if (k > 22) return 0;
                big = (unsigned __int128)m * rb_pow10[k / 2] * rb_pow10[k - k / 2];
                if (e >= 0) {
                    if (e > 8 || k > 2) return 0;
                    q = big << e;
                } else {
                    if (-e > 126) return 0;
                    q = big >> -e;
                    r = big & ((((unsigned __int128)1) << -e) - 1);
                    half = ((unsigned __int128)1) << (-e - 1);
                }
            } else {
                if (e > 74 || -k > 38) return 0;
                big = (unsigned __int128)rb_pow10[-k / 2] * rb_pow10[-k - -k / 2];
                q = ((unsigned __int128)m << e) / big;
                r = ((unsigned __int128)m << e) % big;
                half = big / 2;
            }
            if (r > half || (r == half && r != 0 && (q & 1))) q++;
            if (q >= rb_pow10[P]) { xe++; continue; }
            if (q < rb_pow10[P - 1]) { xe--; continue; }
            *n = (uint64_t)q;
            *x = xe;
            return 1;
        }
        return 0;
    }
    #else
    static inline int rb_round_sig(double v, int P, uint64_t *n, int *x) { return 0; }
    #endif
    """
    uint32_t rb_le32(const unsigned char* p) noexcept nogil
    uint16_t rb_le16(const unsigned char* p) noexcept nogil
    uint64_t rb_le64(const unsigned char* p) noexcept nogil
    void rb_be16(unsigned char* p, uint16_t v) noexcept nogil
    void rb_be32(unsigned char* p, uint32_t v) noexcept nogil
    void rb_be64(unsigned char* p, uint64_t v) noexcept nogil
    float rb_f32(uint32_t bits) noexcept nogil
    double rb_f64(uint64_t bits) noexcept nogil
    const char rb_digit_pairs[201]
    const char rb_hex[17]
    const unsigned char rb_empty[8]
    const uint64_t rb_pow10[20]
    int rb_round_sig(double v, int P, uint64_t* n, int* x) noexcept nogil

# Error codes, mirrored by ERR_* in rapidbyte_fast/kernel_inputs.py (which words them).
cdef enum:
    ERR_NUL = 1
    ERR_DATE_RANGE = 2
    ERR_TIME_RANGE = 3
    ERR_TIMESTAMP_RANGE = 4
    ERR_INTERVAL_NANOS = 5
    ERR_NUMERIC_TEXT = 6
    ERR_NUMERIC_RANGE = 7

# PostgreSQL's valid ranges in Arrow's Unix-epoch units, epoch shifts, sentinels.
cdef enum:
    UNIX_DATE_MIN = -2440588
    UNIX_DATE_END = 2145042906
    PG_EPOCH_OFFSET_DAYS = 10957
    DATE_POS_INF = 2147483647
    DATE_NEG_INF = -2147483647 - 1
    NUMERIC_POS = 0x0000
    NUMERIC_NEG = 0x4000
    NUMERIC_NAN = 0xC000
    NUMERIC_PINF = 0xD000
    NUMERIC_NINF = 0xF000
    NUMERIC_INT_DIGITS_MAX = 131072
    NUMERIC_DSCALE_MAX = 16383
    MAX_DECIMAL_SCALE = 1000

cdef extern from *:
    """
    #define RB_UNIX_TS_MIN (-INT64_C(210866803200000000))
    #define RB_USECS_PER_DAY INT64_C(86400000000)
    #define RB_PG_EPOCH_OFFSET_US INT64_C(946684800000000)
    #define RB_TS_POS_INF INT64_MAX
    #define RB_TS_NEG_INF INT64_MIN
    /* 10^38 as hi:lo 64-bit halves: |decimal128 sentinel| of ±Infinity (NaN is 10^38 + 1). */
    #define RB_DEC_SENTINEL_HI UINT64_C(0x4B3B4CA85A86C47A)
    #define RB_DEC_SENTINEL_LO UINT64_C(0x098A224000000000)
    """
    const int64_t UNIX_TS_MIN "RB_UNIX_TS_MIN"
    const int64_t USECS_PER_DAY "RB_USECS_PER_DAY"
    const int64_t PG_EPOCH_OFFSET_US "RB_PG_EPOCH_OFFSET_US"
    const int64_t TS_POS_INF "RB_TS_POS_INF"
    const int64_t TS_NEG_INF "RB_TS_NEG_INF"
    const uint64_t DEC_SENTINEL_HI "RB_DEC_SENTINEL_HI"
    const uint64_t DEC_SENTINEL_LO "RB_DEC_SENTINEL_LO"


# One column of one call, resolved from column_inputs() before the row loop.
ctypedef struct Col:
    int kind
    int scale
    Py_ssize_t offset                 # Arrow array offset (applies to bitmap and values)
    const unsigned char* validity     # NULL when the column has no nulls
    const unsigned char* offsets      # varlena kinds: LE int32 offsets; ARRAY: list offsets
    const unsigned char* data
    bint check_strings                # string values need the per-value NUL/parse check
    Col* child                        # ARRAY: the element column
    uint32_t elem_oid                 # ARRAY: element type OID (binary format)


# The first bad cell met by a row loop (reported by the caller with the GIL held).
ctypedef struct Failure:
    Py_ssize_t col
    Py_ssize_t row
    int code
    Py_ssize_t elem                   # bad element of an ARRAY cell (element array index)


# ------------------------------------------------------------------ loading inputs

cdef inline int buffer_ptr(object buf, list keep, const unsigned char** ptr) except -1:
    cdef const unsigned char[::1] view
    ptr[0] = rb_empty
    if buf is not None:
        view = memoryview(buf).cast("B")        # pa.Buffer exports format 'b'
        keep.append(view)       # the export must outlive the nogil loop
        if view.shape[0]:
            ptr[0] = &view[0]
    return 0


cdef inline int load_col(tuple col, Col* out, list keep) except -1:
    kind, scale, length, offset, validity, offsets, data = col
    out.kind = kind
    out.scale = scale
    out.offset = offset
    out.check_strings = kind == K_NUMERIC_TEXT
    out.child = NULL
    out.elem_oid = 0
    buffer_ptr(offsets, keep, &out.offsets)
    buffer_ptr(None if kind == K_ARRAY else data, keep, &out.data)
    buffer_ptr(validity, keep, &out.validity)
    if validity is None:
        out.validity = NULL
    return 0


cdef inline int load_cols(list cols, Col* out, list keep, tuple elem_oids) except -1:
    """Fill ``out`` from column_inputs() tuples (already checked by check_call); ``out`` has
    room for 2 * len(cols) Cols, the element column of ARRAY column k going to len(cols) + k."""
    cdef Py_ssize_t k, n = len(cols)
    for k in range(n):
        load_col(cols[k], &out[k], keep)
        if out[k].kind == K_ARRAY:
            out[k].child = &out[n + k]
            out[k].elem_oid = elem_oids[k]
            load_col(cols[k][6], out[k].child, keep)
    return 0


cdef inline Col* new_cols(list cols, list keep, tuple elem_oids) except NULL:
    """A malloc'ed Col array loaded by ``load_cols`` (the caller frees it)."""
    cdef Py_ssize_t n = len(cols)
    cdef Col* cs = <Col*>malloc((2 * n if n else 1) * sizeof(Col))
    if cs == NULL:
        raise MemoryError()
    try:
        load_cols(cols, cs, keep, elem_oids)
    except BaseException:
        free(cs)
        raise
    return cs


cdef inline bint is_string_kind(int kind) noexcept nogil:
    return kind == K_TEXT or kind == K_JSONB or kind == K_NUMERIC_TEXT


cdef inline bint is_null(const Col* c, Py_ssize_t i) noexcept nogil:
    cdef Py_ssize_t j
    if c.validity == NULL:
        return False
    j = c.offset + i
    return not ((c.validity[j >> 3] >> (j & 7)) & 1)


cdef inline Py_ssize_t str_at(const Col* c, Py_ssize_t i, const unsigned char** s) noexcept nogil:
    cdef const unsigned char* o = c.offsets + 4 * (c.offset + i)
    cdef int32_t a = <int32_t>rb_le32(o)
    s[0] = c.data + a
    return <int32_t>rb_le32(o + 4) - a


cdef inline Py_ssize_t list_at(const Col* c, Py_ssize_t i) noexcept nogil:
    """First element (index into the element column) of row ``i`` of an ARRAY column."""
    return <int32_t>rb_le32(c.offsets + 4 * (c.offset + i))


cdef inline Py_ssize_t str_bytes(const Col* c, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """Total bytes of the values of rows [start, stop) of a varlena column."""
    return (<int32_t>rb_le32(c.offsets + 4 * (c.offset + stop))
            - <int32_t>rb_le32(c.offsets + 4 * (c.offset + start)))


cdef inline bint offsets_ordered(const Col* c, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """False when a varlena or ARRAY column's offsets (or its elements') decrease within
    rows [start, stop)."""
    cdef const unsigned char* o = c.offsets + 4 * (c.offset + start)
    cdef int32_t prev, cur
    cdef Py_ssize_t k
    cdef bint ok = True
    if c.kind != K_BYTEA and c.kind != K_ARRAY and not is_string_kind(c.kind):
        return True
    prev = <int32_t>rb_le32(o)
    for k in range(1, stop - start + 1):
        cur = <int32_t>rb_le32(o + 4 * k)
        ok &= cur >= prev
        prev = cur
    if ok and c.kind == K_ARRAY and stop > start:
        return offsets_ordered(c.child, list_at(c, start), list_at(c, stop))
    return ok


cdef inline void mark_string_checks(Col* c, Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """Per-value NUL checks only for columns whose rows hold a NUL somewhere (one memchr)."""
    cdef const unsigned char* s
    if c.kind == K_TEXT or c.kind == K_JSONB:
        str_at(c, start, &s)
        c.check_strings = memchr(s, 0, str_bytes(c, start, stop)) != NULL
    elif c.kind == K_ARRAY:
        mark_string_checks(c.child, list_at(c, start), list_at(c, stop))


cdef inline Py_ssize_t ready_cols(Col* cs, Py_ssize_t ncols, Py_ssize_t start,
                                  Py_ssize_t stop) noexcept nogil:
    """Before an encoder's row loop over rows [start, stop): the first column whose offsets
    decrease (the caller raises offsets_error), else -1, with every column's per-value
    string checks marked."""
    cdef Py_ssize_t k
    for k in range(ncols):
        if not offsets_ordered(&cs[k], start, stop):
            return k
        mark_string_checks(&cs[k], start, stop)
    return -1


# ------------------------------------------------------------------ value checks

cdef inline int date_error(int32_t d) noexcept nogil:
    if d == DATE_POS_INF or d == DATE_NEG_INF or UNIX_DATE_MIN <= d < UNIX_DATE_END:
        return 0
    return ERR_DATE_RANGE


cdef inline int time_error(int64_t us) noexcept nogil:
    return 0 if 0 <= us <= USECS_PER_DAY else ERR_TIME_RANGE


cdef inline int timestamp_error(int64_t us) noexcept nogil:
    return 0 if us == TS_NEG_INF or us >= UNIX_TS_MIN else ERR_TIMESTAMP_RANGE


ctypedef struct NumText:
    uint16_t sign                     # a NUMERIC_* word
    const unsigned char* ip           # integer digits
    Py_ssize_t ni
    const unsigned char* fp           # fraction digits
    Py_ssize_t nf


cdef inline Py_ssize_t count_digits(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k = 0
    while k < n and 48 <= s[k] <= 57:
        k += 1
    return k


cdef inline int parse_numeric(const unsigned char* s, Py_ssize_t n, NumText* r) noexcept nogil:
    """Split a numeric text (sign, digits, '.', digits; or NaN/±Infinity); 0 or an ERR_*."""
    cdef Py_ssize_t k = 0, lz = 0
    r.ni = r.nf = 0
    r.ip = r.fp = s
    if n == 3 and memcmp(s, b"NaN", 3) == 0:
        r.sign = NUMERIC_NAN
        return 0
    if n == 8 and memcmp(s, b"Infinity", 8) == 0:
        r.sign = NUMERIC_PINF
        return 0
    if n == 9 and memcmp(s, b"-Infinity", 9) == 0:
        r.sign = NUMERIC_NINF
        return 0
    r.sign = NUMERIC_POS
    if n and (s[0] == 45 or s[0] == 43):            # '-' / '+'
        r.sign = NUMERIC_NEG if s[0] == 45 else NUMERIC_POS
        k = 1
    r.ip = s + k
    r.ni = count_digits(r.ip, n - k)
    k += r.ni
    r.fp = s + k
    if k < n and s[k] == 46:                        # '.'
        k += 1
        r.fp = s + k
        r.nf = count_digits(r.fp, n - k)
        k += r.nf
    if k != n or r.ni + r.nf == 0:
        return ERR_NUMERIC_TEXT
    while lz < r.ni and r.ip[lz] == 48:
        lz += 1
    if r.ni - lz > NUMERIC_INT_DIGITS_MAX or r.nf > NUMERIC_DSCALE_MAX:
        return ERR_NUMERIC_RANGE
    return 0


cdef inline int string_error(int kind, const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """0 when a TEXT / JSONB / NUMERIC_TEXT value can be loaded, else an ERR_* code."""
    cdef NumText nt
    if kind == K_NUMERIC_TEXT:
        return parse_numeric(s, n, &nt)
    return ERR_NUL if memchr(s, 0, n) != NULL else 0


# ------------------------------------------------------------------ number formatting

cdef inline Py_ssize_t put_u64(unsigned char* p, uint64_t v) noexcept nogil:
    cdef unsigned char tmp[20]
    cdef int k = 20
    cdef uint64_t q
    cdef unsigned r
    while v >= 100:
        q = v // 100
        r = <unsigned>(v - q * 100)
        k -= 2
        tmp[k] = rb_digit_pairs[2 * r]
        tmp[k + 1] = rb_digit_pairs[2 * r + 1]
        v = q
    if v >= 10:
        k -= 2
        tmp[k] = rb_digit_pairs[2 * v]
        tmp[k + 1] = rb_digit_pairs[2 * v + 1]
    else:
        k -= 1
        tmp[k] = <unsigned char>(48 + v)
    memcpy(p, tmp + k, 20 - k)
    return 20 - k


cdef inline uint64_t magnitude(int64_t v) noexcept nogil:
    return (<uint64_t>0) - <uint64_t>v if v < 0 else <uint64_t>v


cdef inline Py_ssize_t put_i64(unsigned char* p, int64_t v) noexcept nogil:
    if v < 0:
        p[0] = 45
        return 1 + put_u64(p + 1, magnitude(v))
    return put_u64(p, <uint64_t>v)


cdef inline Py_ssize_t put_signed(unsigned char* p, int64_t v) noexcept nogil:
    """Like put_i64 but always with a sign character ('+0' for zero)."""
    p[0] = 45 if v < 0 else 43
    return 1 + put_u64(p + 1, magnitude(v))


cdef inline void put_2(unsigned char* p, unsigned v) noexcept nogil:
    p[0] = rb_digit_pairs[2 * v]
    p[1] = rb_digit_pairs[2 * v + 1]


cdef inline Py_ssize_t put_pad4(unsigned char* p, uint64_t v) noexcept nogil:
    """At least four digits, zero-padded (years)."""
    if v >= 10000:
        return put_u64(p, v)
    put_2(p, <unsigned>(v // 100))
    put_2(p + 2, <unsigned>(v % 100))
    return 4


cdef inline Py_ssize_t put_g(unsigned char* p, uint64_t n, int x, int digits) noexcept nogil:
    """printf's %g layout of the ``digits``-digit significand ``n`` with exponent ``x``."""
    cdef unsigned char d[20]
    cdef int nd, k = 0
    put_u64(d, n)
    nd = digits
    while nd > 1 and d[nd - 1] == 48:       # %g drops trailing zeros
        nd -= 1
    if x < -4 or x >= digits:
        p[0] = d[0]
        k = 1
        if nd > 1:
            p[1] = 46
            memcpy(p + 2, d + 1, nd - 1)
            k = nd + 1
        p[k] = 101
        p[k + 1] = 45 if x < 0 else 43
        if -10 < x < 10:
            p[k + 2] = 48
            k += 1
        return k + 2 + put_u64(p + k + 2, <uint64_t>(-x if x < 0 else x))
    if x < 0:
        memcpy(p, b"0.", 2)
        memset(p + 2, 48, -x - 1)
        memcpy(p + 1 - x, d, nd)
        return 1 - x + nd
    memcpy(p, d, x + 1)
    if nd > x + 1:
        p[x + 1] = 46
        memcpy(p + x + 2, d + x + 1, nd - x - 1)
        return nd + 1
    return x + 1


cdef inline Py_ssize_t put_double(unsigned char* p, double v, int digits) noexcept nogil:
    """NaN / Infinity / -Infinity, else exactly printf's (and Python's) '%.{digits}g'.

    Exact 128-bit rounding covers everyday magnitudes; the rest goes through snprintf
    (room for the NUL it writes is part of fixed_text_bound).
    """
    cdef int n, k, x
    cdef uint64_t sig
    cdef Py_ssize_t sign
    if isnan(v):
        memcpy(p, b"NaN", 3)
        return 3
    if isinf(v):
        if v > 0:
            memcpy(p, b"Infinity", 8)
            return 8
        memcpy(p, b"-Infinity", 9)
        return 9
    if rb_round_sig(v, digits, &sig, &x):
        sign = 0
        if v < 0:
            p[0] = 45
            sign = 1
        return sign + put_g(p + sign, sig, x, digits)
    n = snprintf(<char*>p, 32, b"%.*g", digits, v)
    for k in range(n):
        if p[k] == 44:              # a ',' decimal point from a non-C LC_NUMERIC
            p[k] = 46
    return n


# ------------------------------------------------------------------ dates and times

cdef inline void civil_from_days(int64_t z, int64_t* y, unsigned* m, unsigned* d) noexcept nogil:
    """Howard Hinnant's days -> proleptic Gregorian (year 0 = 1 BC), any int64 day count
    that is not within 719468 of INT64_MIN."""
    cdef int64_t era, doe, yoe, doy, mp
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d[0] = <unsigned>(doy - (153 * mp + 2) // 5 + 1)
    m[0] = <unsigned>(mp + 3 if mp < 10 else mp - 9)
    y[0] = yoe + era * 400 + (1 if m[0] <= 2 else 0)


cdef inline Py_ssize_t put_ymd(unsigned char* p, int64_t days, bint* bc) noexcept nogil:
    cdef int64_t y
    cdef unsigned m, d
    cdef Py_ssize_t n
    civil_from_days(days, &y, &m, &d)
    bc[0] = y <= 0
    n = put_pad4(p, <uint64_t>(1 - y if y <= 0 else y))
    p[n] = 45
    put_2(p + n + 1, m)
    p[n + 3] = 45
    put_2(p + n + 4, d)
    return n + 6


cdef inline Py_ssize_t put_clock(unsigned char* p, int64_t us) noexcept nogil:
    """HH:MM:SS.ffffff for 0 <= us <= 24h."""
    cdef int64_t secs = us // 1000000
    cdef unsigned frac = <unsigned>(us - secs * 1000000)
    put_2(p, <unsigned>(secs // 3600))
    p[2] = 58
    put_2(p + 3, <unsigned>((secs // 60) % 60))
    p[5] = 58
    put_2(p + 6, <unsigned>(secs % 60))
    p[8] = 46
    put_2(p + 9, frac // 10000)
    put_2(p + 11, (frac // 100) % 100)
    put_2(p + 13, frac % 100)
    return 15


cdef inline Py_ssize_t put_infinity(unsigned char* p, bint negative) noexcept nogil:
    """'infinity' or '-infinity' (dates, timestamps, intervals)."""
    if negative:
        memcpy(p, b"-infinity", 9)
        return 9
    memcpy(p, b"infinity", 8)
    return 8


cdef inline Py_ssize_t put_date(unsigned char* p, int32_t d) noexcept nogil:
    cdef bint bc
    cdef Py_ssize_t n
    if d == DATE_POS_INF:
        return put_infinity(p, False)
    if d == DATE_NEG_INF:
        return put_infinity(p, True)
    n = put_ymd(p, d, &bc)
    if bc:
        memcpy(p + n, b" BC", 3)
        n += 3
    return n


cdef inline Py_ssize_t put_timestamp(unsigned char* p, int64_t us, bint tz) noexcept nogil:
    cdef int64_t days, rem
    cdef bint bc
    cdef Py_ssize_t n
    if us == TS_POS_INF:
        return put_infinity(p, False)
    if us == TS_NEG_INF:
        return put_infinity(p, True)
    days = us // USECS_PER_DAY
    rem = us - days * USECS_PER_DAY
    if rem < 0:
        rem += USECS_PER_DAY
        days -= 1
    n = put_ymd(p, days, &bc)
    p[n] = 32
    n += 1 + put_clock(p + n + 1, rem)
    if tz:
        memcpy(p + n, b"+00", 3)
        n += 3
    if bc:
        memcpy(p + n, b" BC", 3)
        n += 3
    return n


cdef inline Py_ssize_t put_interval(unsigned char* p, int32_t months, int32_t days,
                                    int64_t us) noexcept nogil:
    # Explicit signs on every field: under IntervalStyle=sql_standard a lone leading '-'
    # would otherwise apply to all fields. The time part as [+-]H:MM:SS.ffffff: PostgreSQL
    # before 15 reads a "N microseconds" field as a 32-bit integer.
    cdef Py_ssize_t n = put_signed(p, months)
    cdef uint64_t m = magnitude(us)
    memcpy(p + n, b" mons ", 6)
    n += 6
    n += put_signed(p + n, days)
    memcpy(p + n, b" days ", 6)
    n += 6
    p[n] = 45 if us < 0 else 43
    n += 1 + put_u64(p + n + 1, m // (<uint64_t>3600 * 1000000))
    p[n] = 58
    put_2(p + n + 1, <unsigned>(m // 60000000 % 60))
    p[n + 3] = 58
    put_2(p + n + 4, <unsigned>(m // 1000000 % 60))
    p[n + 6] = 46
    m %= 1000000
    put_2(p + n + 7, <unsigned>(m // 10000))
    put_2(p + n + 9, <unsigned>(m // 100 % 100))
    put_2(p + n + 11, <unsigned>(m % 100))
    return n + 13


cdef inline Py_ssize_t put_hex(unsigned char* p, const unsigned char* s,
                               Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(n):
        p[2 * k] = rb_hex[s[k] >> 4]
        p[2 * k + 1] = rb_hex[s[k] & 15]
    return 2 * n


cdef inline Py_ssize_t put_uuid(unsigned char* p, const unsigned char* s) noexcept nogil:
    put_hex(p, s, 4)
    p[8] = 45
    put_hex(p + 9, s + 4, 2)
    p[13] = 45
    put_hex(p + 14, s + 6, 2)
    p[18] = 45
    put_hex(p + 19, s + 8, 2)
    p[23] = 45
    put_hex(p + 24, s + 10, 6)
    return 36


# ------------------------------------------------------------------ decimal128

cdef inline int u128_digits(uint64_t hi, uint64_t lo, unsigned char* buf) noexcept nogil:
    """Decimal digits of the unsigned 128-bit hi:lo, no leading zeros ('' for 0)."""
    cdef uint32_t limb[4]
    cdef uint64_t chunks[5]
    cdef uint64_t cur, rem
    cdef int nc = 0, j, k, n
    if hi == 0:
        return 0 if lo == 0 else <int>put_u64(buf, lo)
    limb[0] = <uint32_t>(hi >> 32)
    limb[1] = <uint32_t>hi
    limb[2] = <uint32_t>(lo >> 32)
    limb[3] = <uint32_t>lo
    while limb[0] | limb[1] | limb[2] | limb[3]:
        rem = 0
        for j in range(4):
            cur = (rem << 32) | limb[j]
            limb[j] = <uint32_t>(cur // 1000000000)
            rem = cur - <uint64_t>limb[j] * 1000000000
        chunks[nc] = rem
        nc += 1
    n = <int>put_u64(buf, chunks[nc - 1])
    for j in range(nc - 2, -1, -1):
        cur = chunks[j]
        for k in range(8, -1, -1):
            buf[n + k] = <unsigned char>(48 + cur % 10)
            cur //= 10
        n += 9
    return n


cdef inline bint decimal_magnitude(const unsigned char* v, uint64_t* hi,
                                   uint64_t* lo) noexcept nogil:
    """|x| of a decimal128 (16 LE bytes, two's complement) as hi:lo; returns x < 0."""
    lo[0] = rb_le64(v)
    hi[0] = rb_le64(v + 8)
    if not (hi[0] >> 63):
        return False
    lo[0] = ~lo[0] + 1
    hi[0] = ~hi[0] + (1 if lo[0] == 0 else 0)
    return True


cdef inline uint16_t decimal_special(bint neg, uint64_t hi, uint64_t lo) noexcept nogil:
    """The numeric sign word (NaN, ±Infinity) a decimal128 sentinel stands for (column_plan:
    NaN = 10^38 + 1, ±Infinity = ±10^38), given its sign and magnitude; 0 for other values."""
    if hi != DEC_SENTINEL_HI:
        return 0
    if lo == DEC_SENTINEL_LO:
        return NUMERIC_NINF if neg else NUMERIC_PINF
    return NUMERIC_NAN if lo == DEC_SENTINEL_LO + 1 and not neg else 0


cdef inline Py_ssize_t put_special(unsigned char* p, uint16_t sign) noexcept nogil:
    """The text of a numeric sign word NaN / ±Infinity."""
    if sign == NUMERIC_NAN:
        memcpy(p, b"NaN", 3)
        return 3
    if sign == NUMERIC_PINF:
        memcpy(p, b"Infinity", 8)
        return 8
    memcpy(p, b"-Infinity", 9)
    return 9


cdef inline int interval_special(const unsigned char* v) noexcept nogil:
    """1 / -1 when an Arrow interval (16 LE bytes) is the ±infinity sentinel (every field at
    its max / min, PostgreSQL 17), else 0."""
    cdef int32_t months = <int32_t>rb_le32(v), days = <int32_t>rb_le32(v + 4)
    cdef int64_t ns = <int64_t>rb_le64(v + 8)
    if ns == TS_POS_INF and months == DATE_POS_INF and days == DATE_POS_INF:
        return 1
    if ns == TS_NEG_INF and months == DATE_NEG_INF and days == DATE_NEG_INF:
        return -1
    return 0


cdef inline int decimal_digits(const unsigned char* v, int scale, unsigned char* buf,
                               Py_ssize_t* ni, bint* neg) noexcept nogil:
    """Digits of a decimal128 (16 LE bytes) at ``scale`` as integer digits ++ fraction
    digits in ``buf`` (room: 40 + |scale|); returns the total count, sets ``ni``.

    Negative scales append zeros; a value below 1 has no integer digits and a
    zero-padded fraction.
    """
    cdef uint64_t lo, hi
    cdef unsigned char tmp[40]
    cdef int n, pad
    neg[0] = decimal_magnitude(v, &hi, &lo)
    n = u128_digits(hi, lo, tmp)
    if scale <= 0:
        if n == 0:
            ni[0] = 0
            return 0
        memcpy(buf, tmp, n)
        memset(buf + n, 48, -scale)
        ni[0] = n - scale
        return n - scale
    pad = scale - n if n < scale else 0
    memset(buf, 48, pad)
    memcpy(buf + pad, tmp, n)
    ni[0] = n + pad - scale
    return n + pad


cdef inline Py_ssize_t put_decimal(unsigned char* p, const unsigned char* v,
                                   int scale) noexcept nogil:
    cdef unsigned char digits[40 + MAX_DECIMAL_SCALE]
    cdef Py_ssize_t ni, k = 0
    cdef bint neg
    cdef uint64_t hi = rb_le64(v + 8), lo
    cdef int n
    if hi == DEC_SENTINEL_HI or hi == ~DEC_SENTINEL_HI:   # maybe ±10^38 (+1): a sentinel
        neg = decimal_magnitude(v, &hi, &lo)
        if decimal_special(neg, hi, lo):
            return put_special(p, decimal_special(neg, hi, lo))
    n = decimal_digits(v, scale, digits, &ni, &neg)
    if neg:
        p[k] = 45
        k += 1
    if ni == 0:
        p[k] = 48
        k += 1
    else:
        memcpy(p + k, digits, ni)
        k += ni
    if n > ni:
        p[k] = 46
        memcpy(p + k + 1, digits + ni, n - ni)
        k += 1 + n - ni
    return k


# ------------------------------------------------------------------ fixed kinds as text

cdef inline Py_ssize_t fixed_text_bound(int kind, int scale) noexcept nogil:
    """Most bytes put_fixed_text writes for a kind (+1 where snprintf adds a NUL)."""
    if kind == K_BOOL:
        return 1
    if kind == K_INT2:
        return 6
    if kind == K_INT4:
        return 11
    if kind == K_INT8:
        return 20
    if kind == K_FLOAT4:
        return 17
    if kind == K_FLOAT8:
        return 26
    if kind == K_DATE:
        return 16
    if kind == K_TIME:
        return 15
    if kind == K_TIMESTAMP or kind == K_TIMESTAMPTZ:
        return 36
    if kind == K_INTERVAL:
        return 72
    if kind == K_UUID:
        return 36
    if kind == K_NUMERIC:
        return 44 + (scale if scale >= 0 else -scale)
    return 0


cdef inline Py_ssize_t put_fixed_text(unsigned char* p, const Col* c, Py_ssize_t i,
                                      int* err) noexcept nogil:
    """Text input form of a non-varlena value (BOOL as t/f); sets ``err`` for bad values."""
    cdef Py_ssize_t j = c.offset + i
    cdef const unsigned char* v
    cdef int kind = c.kind
    cdef int32_t d
    cdef int64_t us
    if kind == K_BOOL:
        p[0] = 116 if (c.data[j >> 3] >> (j & 7)) & 1 else 102
        return 1
    elif kind == K_INT4:
        return put_i64(p, <int32_t>rb_le32(c.data + 4 * j))
    elif kind == K_INT8:
        return put_i64(p, <int64_t>rb_le64(c.data + 8 * j))
    elif kind == K_INT2:
        return put_i64(p, <int16_t>rb_le16(c.data + 2 * j))
    elif kind == K_FLOAT8:
        return put_double(p, rb_f64(rb_le64(c.data + 8 * j)), 17)
    elif kind == K_FLOAT4:
        return put_double(p, rb_f32(rb_le32(c.data + 4 * j)), 9)
    elif kind == K_DATE:
        d = <int32_t>rb_le32(c.data + 4 * j)
        err[0] = date_error(d)
        return 0 if err[0] else put_date(p, d)
    elif kind == K_TIME:
        us = <int64_t>rb_le64(c.data + 8 * j)
        err[0] = time_error(us)
        return 0 if err[0] else put_clock(p, us)
    elif kind == K_TIMESTAMP or kind == K_TIMESTAMPTZ:
        us = <int64_t>rb_le64(c.data + 8 * j)
        err[0] = timestamp_error(us)
        return 0 if err[0] else put_timestamp(p, us, kind == K_TIMESTAMPTZ)
    elif kind == K_INTERVAL:
        v = c.data + 16 * j
        us = <int64_t>rb_le64(v + 8)         # nanoseconds until checked
        if interval_special(v):
            return put_infinity(p, us < 0)
        if us % 1000:
            err[0] = ERR_INTERVAL_NANOS
            return 0
        return put_interval(p, <int32_t>rb_le32(v), <int32_t>rb_le32(v + 4), us // 1000)
    elif kind == K_UUID:
        return put_uuid(p, c.data + 16 * j)
    elif kind == K_NUMERIC:
        return put_decimal(p, c.data + 16 * j, c.scale)
    return 0


# ------------------------------------------------------------------ arrays as text

# How an array literal is embedded: escaped for COPY text, or inside a SQL '...' literal.
cdef enum:
    OUTER_COPY = 1
    OUTER_SQL = 2


cdef inline Py_ssize_t put_outer(unsigned char* q, unsigned char b, int outer) noexcept nogil:
    """One byte of an array literal, escaped for where the literal goes."""
    if outer == OUTER_COPY:
        if b == 92 or b == 9 or b == 10 or b == 13:
            q[0] = 92
            q[1] = 92 if b == 92 else 116 if b == 9 else 110 if b == 10 else 114
            return 2
    elif b == 39:
        q[0] = 39
        q[1] = 39
        return 2
    q[0] = b
    return 1


cdef inline bint array_needs_quotes(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """array_out's rule: empty, NULL in any case, or holding '"', backslash, braces, the
    ',' delimiter or white space."""
    cdef Py_ssize_t k
    cdef unsigned char b
    if n == 0:
        return True
    if n == 4 and (s[0] | 32) == 110 and (s[1] | 32) == 117 and (s[2] | 32) == 108 \
            and (s[3] | 32) == 108:
        return True
    for k in range(n):
        b = s[k]
        if b == 34 or b == 92 or b == 123 or b == 125 or b == 44 or b == 32 or 9 <= b <= 13:
            return True
    return False


cdef inline Py_ssize_t put_array_elem(unsigned char* q, const unsigned char* s, Py_ssize_t n,
                                      int outer) noexcept nogil:
    cdef unsigned char* q0 = q
    cdef Py_ssize_t k
    if not array_needs_quotes(s, n):
        for k in range(n):
            q += put_outer(q, s[k], outer)
        return q - q0
    q[0] = 34
    q += 1
    for k in range(n):
        if s[k] == 34 or s[k] == 92:
            q += put_outer(q, 92, outer)
        q += put_outer(q, s[k], outer)
    q[0] = 34
    return q + 1 - q0


cdef inline Py_ssize_t array_text_bound(const Col* c, Py_ssize_t start,
                                        Py_ssize_t stop) noexcept nogil:
    """Most bytes put_array_text writes for rows [start, stop) (braces and SQL quotes too)."""
    cdef const Col* ch = c.child
    cdef Py_ssize_t a = list_at(c, start), b = list_at(c, stop), w
    if ch.kind == K_BYTEA:
        return 4 * (stop - start) + 8 * (b - a) + 2 * str_bytes(ch, a, b)
    if is_string_kind(ch.kind):
        return 4 * (stop - start) + 7 * (b - a) + 4 * str_bytes(ch, a, b)
    w = fixed_text_bound(ch.kind, ch.scale)
    return 4 * (stop - start) + (b - a) * (3 + (w if w > 4 else 4))


cdef inline Py_ssize_t put_array_text(unsigned char* p, const Col* c, Py_ssize_t i, int outer,
                               int* code, Py_ssize_t* elem) noexcept nogil:
    """The array literal of row ``i`` (quoted as array_out does); on a bad element sets
    ``code`` and ``elem`` (what was written is then garbage)."""
    cdef const Col* ch = c.child
    cdef unsigned char scratch[48 + MAX_DECIMAL_SCALE]
    cdef const unsigned char* s
    cdef unsigned char* q = p
    cdef Py_ssize_t a = list_at(c, i), b = list_at(c, i + 1), e, n
    cdef int kind = ch.kind
    q[0] = 123
    q += 1
    for e in range(a, b):
        if e > a:
            q[0] = 44
            q += 1
        if is_null(ch, e):
            memcpy(q, b"NULL", 4)
            q += 4
            continue
        if is_string_kind(kind):
            n = str_at(ch, e, &s)
            if ch.check_strings:
                code[0] = string_error(kind, s, n)
            if code[0]:
                elem[0] = e
                return 0
            q += put_array_elem(q, s, n, outer)
        elif kind == K_BYTEA:
            n = str_at(ch, e, &s)
            q[0] = 34
            q += 1
            q += put_outer(q, 92, outer)
            q += put_outer(q, 92, outer)
            q[0] = 120
            q += 1 + put_hex(q + 1, s, n)
            q[0] = 34
            q += 1
        else:
            n = put_fixed_text(scratch, ch, e, code)
            if code[0]:
                elem[0] = e
                return 0
            q += put_array_elem(q, scratch, n, outer)
    q[0] = 125
    return q + 1 - p
