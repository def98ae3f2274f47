"""pgoutput change stream → COPY-binary change rows per relation (compiled twin).

Same API, bytes, events and errors as ``rapidbyte_fast._py.pgoutput`` (its docstring has the
row layout). ``feed`` walks the messages without the GIL: relations are found in a small C
array (the last one hit is tried first), each change's tuples are framed into per-relation
scratch arrays, the row's size is bounded before it is written, and the GIL is taken back
only to grow a relation's output buffer (doubling) and, at the end, to trim it to size.
Text values are parsed into the send format by the C converters below.
"""
from cpython.bytearray cimport (
    PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize,
)
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport (
    INT64_MAX, INT64_MIN, int16_t, int32_t, int64_t, uint16_t, uint32_t, uint64_t,
)
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from rapidbyte_fast.sources.cdc.protocol import fault

include "kinds.pxi"

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #include <stdlib.h>
    #include <math.h>

    static inline uint16_t pg_be16(const unsigned char *p) {
        uint16_t v; memcpy(&v, p, 2); return __builtin_bswap16(v);
    }
    static inline uint32_t pg_be32(const unsigned char *p) {
        uint32_t v; memcpy(&v, p, 4); return __builtin_bswap32(v);
    }
    static inline uint64_t pg_be64(const unsigned char *p) {
        uint64_t v; memcpy(&v, p, 8); return __builtin_bswap64(v);
    }
    static inline void pg_st16(unsigned char *p, uint16_t v) {
        v = __builtin_bswap16(v); memcpy(p, &v, 2);
    }
    static inline void pg_st32(unsigned char *p, uint32_t v) {
        v = __builtin_bswap32(v); memcpy(p, &v, 4);
    }
    static inline void pg_st64(unsigned char *p, uint64_t v) {
        v = __builtin_bswap64(v); memcpy(p, &v, 8);
    }

    typedef __int128 pg_i128;
    #define PG_I32_MIN (-2147483647 - 1)
    #define PG_I32_MAX 2147483647
    #define PG_I64_MAX ((int64_t)0x7FFFFFFFFFFFFFFFLL)
    #define PG_I64_MIN (-PG_I64_MAX - 1)
    #define PG_US_PER_DAY ((int64_t)86400000000LL)
    /* integer components (interval fields, clock hours) at or above this are refused */
    #define PG_BIG 1000000000000000000LL
    #define PG_YEAR_MAX 1000000000LL

    static inline int pg_digit(unsigned char c) { return c >= '0' && c <= '9'; }
    static inline int pg_hex(unsigned char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }
    static inline int pg_eq(const unsigned char *s, size_t n, const char *lit) {
        size_t m = strlen(lit);
        return n == m && memcmp(s, lit, m) == 0;
    }

    /* Digits s[*p..] (at least one) into *v, capped: *big set when the value reaches cap. */
    static int pg_digits(const unsigned char *s, size_t n, size_t *p, int64_t cap,
                         int64_t *v, int *big) {
        size_t q = *p;
        int64_t acc = 0;
        *big = 0;
        if (q >= n || !pg_digit(s[q])) return 0;
        while (q < n && pg_digit(s[q])) {
            if (!*big) {
                acc = acc * 10 + (s[q] - '0');
                if (acc >= cap) *big = 1;
            }
            q++;
        }
        *p = q;
        *v = acc;
        return 1;
    }

    /* [+-]?digits in [lo, hi] */
    static int pg_int(const unsigned char *s, size_t n, int64_t lo, int64_t hi, int64_t *out) {
        size_t p = 0;
        int neg = 0;
        uint64_t acc = 0;
        if (p < n && (s[p] == '+' || s[p] == '-')) { neg = s[p] == '-'; p++; }
        if (p >= n) return 0;
        for (; p < n; p++) {
            if (!pg_digit(s[p])) return 0;
            if (acc > (UINT64_MAX - 9) / 10) return 0;   /* beyond any int64 */
            acc = acc * 10 + (s[p] - '0');
        }
        if (neg) {
            if (acc > (uint64_t)PG_I64_MAX + 1) return 0;
            int64_t v = acc == (uint64_t)PG_I64_MAX + 1 ? PG_I64_MIN : -(int64_t)acc;
            if (v < lo) return 0;
            *out = v;
        } else {
            if (acc > (uint64_t)hi) return 0;
            *out = (int64_t)acc;
        }
        return 1;
    }

    /* NaN | -?Infinity | [+-]?(d+.?d*|.d+)([eE][+-]?d+)?
       0 none, 1 number, 2 NaN, 3 +inf, 4 -inf */
    static int pg_float_form(const unsigned char *s, size_t n) {
        size_t p = 0, d = 0;
        if (pg_eq(s, n, "NaN")) return 2;
        if (pg_eq(s, n, "Infinity")) return 3;
        if (pg_eq(s, n, "-Infinity")) return 4;
        if (p < n && (s[p] == '+' || s[p] == '-')) p++;
        while (p < n && pg_digit(s[p])) { p++; d++; }
        if (p < n && s[p] == '.') {
            p++;
            while (p < n && pg_digit(s[p])) { p++; d++; }
        }
        if (!d) return 0;
        if (p < n && (s[p] == 'e' || s[p] == 'E')) {
            p++;
            if (p < n && (s[p] == '+' || s[p] == '-')) p++;
            if (p >= n || !pg_digit(s[p])) return 0;
            while (p < n && pg_digit(s[p])) p++;
        }
        return p == n;
    }

    static int pg_float(const unsigned char *s, size_t n, double *out) {
        int form = pg_float_form(s, n);
        if (form == 0) return 0;
        if (form == 2) { uint64_t b = 0x7FF8000000000000ULL; memcpy(out, &b, 8); return 1; }
        if (form == 3) { *out = HUGE_VAL; return 1; }
        if (form == 4) { *out = -HUGE_VAL; return 1; }
        char stack[64];
        char *z = n < sizeof stack ? stack : (char *)malloc(n + 1);
        if (z == NULL) return 0;
        memcpy(z, s, n);
        z[n] = 0;
        *out = strtod(z, NULL);
        if (z != stack) free(z);
        return 1;
    }

    static int64_t pg_numeric(const unsigned char *s, size_t n, unsigned char *out) {
        size_t p = 0, ws, we, fs = 0, fe = 0;
        int neg = 0;
        if (pg_eq(s, n, "NaN") || pg_eq(s, n, "Infinity") || pg_eq(s, n, "-Infinity")) {
            pg_st16(out, 0); pg_st16(out + 2, 0);
            pg_st16(out + 4, s[0] == 'N' ? 0xC000 : s[0] == 'I' ? 0xD000 : 0xF000);
            pg_st16(out + 6, 0);
            return 8;
        }
        if (p < n && (s[p] == '+' || s[p] == '-')) { neg = s[p] == '-'; p++; }
        if (p >= n || !pg_digit(s[p])) return -1;
        while (p < n && s[p] == '0') p++;
        ws = p;
        while (p < n && pg_digit(s[p])) p++;
        we = p;
        if (p < n && s[p] == '.') {
            p++;
            fs = p;
            while (p < n && pg_digit(s[p])) p++;
            fe = p;
            if (fe == fs) return -1;
        }
        if (p != n) return -1;
        size_t lw = we - ws, dscale = fe - fs;
        if (dscale > 0x3FFF) return -1;
        size_t pad_left = (4 - lw % 4) % 4, pad_right = (4 - dscale % 4) % 4;
        size_t total = pad_left + lw + dscale + pad_right, ngroups = total / 4;
        int64_t weight = (int64_t)((pad_left + lw) / 4) - 1;
        size_t first = ngroups, last = 0, g, i;
        unsigned char *digits = out + 8;
        for (g = 0; g < ngroups; g++) {
            unsigned v = 0;
            for (i = 4 * g; i < 4 * g + 4; i++) {
                unsigned d = 0;
                if (i >= pad_left && i < pad_left + lw) d = s[ws + i - pad_left] - '0';
                else if (i >= pad_left + lw && i < pad_left + lw + dscale)
                    d = s[fs + i - pad_left - lw] - '0';
                v = v * 10 + d;
            }
            if (v) {
                if (first == ngroups) first = g;
                last = g + 1;
            }
            if (first != ngroups) pg_st16(digits + 2 * (g - first), (uint16_t)v);
        }
        size_t nd = first == ngroups ? 0 : last - first;
        if (nd > 0x7FFF) return -1;
        if (nd) weight -= (int64_t)first; else weight = 0;
        if (weight < -0x8000 || weight > 0x7FFF) return -1;
        pg_st16(out, (uint16_t)nd);
        pg_st16(out + 2, (uint16_t)(int16_t)weight);
        pg_st16(out + 4, neg && nd ? 0x4000 : 0);
        pg_st16(out + 6, (uint16_t)dscale);
        return 8 + 2 * (int64_t)nd;
    }

    static int64_t pg_days_from_civil(int64_t y, int64_t m, int64_t d) {
        y -= m <= 2;
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        int64_t yoe = y - era * 400;
        int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 730425;
    }

    static int pg_month_days(int64_t y, int64_t m) {
        if (m == 2) return (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) ? 29 : 28;
        return (m == 4 || m == 6 || m == 9 || m == 11) ? 30 : 31;
    }

    /* Y{4,}-MM-DD at s[*p..]; days from 2000-01-01 (bc: the year is BC) */
    static int pg_ymd(const unsigned char *s, size_t n, size_t *p, int bc, int64_t *days) {
        size_t q = *p, start = q;
        int64_t y, mo, d;
        int big;
        if (!pg_digits(s, n, &q, PG_YEAR_MAX, &y, &big) || q - start < 4) return 0;
        if (big) return 0;
        if (q + 6 > n || s[q] != '-' || !pg_digit(s[q + 1]) || !pg_digit(s[q + 2])
            || s[q + 3] != '-' || !pg_digit(s[q + 4]) || !pg_digit(s[q + 5])) return 0;
        mo = (s[q + 1] - '0') * 10 + (s[q + 2] - '0');
        d = (s[q + 4] - '0') * 10 + (s[q + 5] - '0');
        if (y == 0 || mo < 1 || mo > 12) return 0;
        if (bc) y = 1 - y;
        if (d < 1 || d > pg_month_days(y, mo)) return 0;
        *days = pg_days_from_civil(y, mo, d);
        *p = q + 6;
        return 1;
    }

    /* ":DD" at s[*p..] */
    static int pg_colon2(const unsigned char *s, size_t n, size_t *p, int64_t *v) {
        size_t q = *p;
        if (q + 3 > n || s[q] != ':' || !pg_digit(s[q + 1]) || !pg_digit(s[q + 2])) return 0;
        *v = (s[q + 1] - '0') * 10 + (s[q + 2] - '0');
        *p = q + 3;
        return 1;
    }

    /* ".f{1,6}" at s[*p..] as microseconds (0 and nothing read when absent) */
    static int64_t pg_frac(const unsigned char *s, size_t n, size_t *p) {
        size_t q = *p;
        int64_t frac = 0;
        int k = 0;
        if (q + 1 >= n || s[q] != '.' || !pg_digit(s[q + 1])) return 0;
        q++;
        while (q < n && pg_digit(s[q]) && k < 6) { frac = frac * 10 + (s[q] - '0'); q++; k++; }
        for (; k < 6; k++) frac *= 10;
        *p = q;
        return frac;
    }

    /* HH:MM:SS(.f{1,6})? at s[*p..] */
    static int pg_clock(const unsigned char *s, size_t n, size_t *p, int max_hour, int64_t *us) {
        size_t q = *p;
        int i;
        if (q + 8 > n) return 0;
        for (i = 0; i < 8; i++) {
            if (i == 2 || i == 5) { if (s[q + i] != ':') return 0; }
            else if (!pg_digit(s[q + i])) return 0;
        }
        int64_t h = (s[q] - '0') * 10 + (s[q + 1] - '0');
        int64_t mi = (s[q + 3] - '0') * 10 + (s[q + 4] - '0');
        int64_t sec = (s[q + 6] - '0') * 10 + (s[q + 7] - '0');
        q += 8;
        int64_t frac = pg_frac(s, n, &q);
        if (h > max_hour || mi > 59 || sec > 59) return 0;
        int64_t v = ((h * 60 + mi) * 60 + sec) * 1000000 + frac;
        if (v > 86400000000LL) return 0;   /* 24:00:00 is the only time past 23:59:59.999999 */
        *us = v;
        *p = q;
        return 1;
    }

    static int pg_ends_bc(const unsigned char *s, size_t n) {
        return n >= 3 && memcmp(s + n - 3, " BC", 3) == 0;
    }

    static int pg_date(const unsigned char *s, size_t n, int32_t *out) {
        if (pg_eq(s, n, "infinity")) { *out = PG_I32_MAX; return 1; }
        if (pg_eq(s, n, "-infinity")) { *out = PG_I32_MIN; return 1; }
        int bc = pg_ends_bc(s, n);
        size_t m = bc ? n - 3 : n, p = 0;
        int64_t days;
        if (!pg_ymd(s, m, &p, bc, &days) || p != m) return 0;
        if (days <= PG_I32_MIN || days >= PG_I32_MAX) return 0;
        *out = (int32_t)days;
        return 1;
    }

    static int pg_timestamp(const unsigned char *s, size_t n, int tz, int64_t *out) {
        if (pg_eq(s, n, "infinity")) { *out = PG_I64_MAX; return 1; }
        if (pg_eq(s, n, "-infinity")) { *out = PG_I64_MIN; return 1; }
        int bc = pg_ends_bc(s, n);
        size_t m = bc ? n - 3 : n, p = 0;
        int64_t days, us, offset = 0;
        if (!pg_ymd(s, m, &p, bc, &days) || p >= m || s[p] != ' ') return 0;
        p++;
        if (!pg_clock(s, m, &p, 23, &us)) return 0;
        if (tz) {
            int sign;
            int64_t oh, om = 0, os = 0;
            if (p >= m || (s[p] != '+' && s[p] != '-')) return 0;
            sign = s[p] == '-' ? -1 : 1;
            p++;
            if (p + 2 > m || !pg_digit(s[p]) || !pg_digit(s[p + 1])) return 0;
            oh = (s[p] - '0') * 10 + (s[p + 1] - '0');
            p += 2;
            if (p < m) {
                if (!pg_colon2(s, m, &p, &om)) return 0;
                if (p < m && !pg_colon2(s, m, &p, &os)) return 0;
            }
            if (om > 59 || os > 59) return 0;
            offset = sign * (oh * 3600 + om * 60 + os);
        }
        if (p != m) return 0;
        pg_i128 total = (pg_i128)days * PG_US_PER_DAY + us - (pg_i128)offset * 1000000;
        if (total <= (pg_i128)PG_I64_MIN || total >= (pg_i128)PG_I64_MAX) return 0;
        *out = (int64_t)total;
        return 1;
    }

    /* IntervalStyle postgres: ([+-]?N (year|years|mon|mons|day|days) )* [[+-]?H+:MM:SS(.f)] */
    static int64_t pg_interval(const unsigned char *s, size_t n, unsigned char *out) {
        pg_i128 months = 0, days = 0, us = 0;
        size_t p = 0;
        int seen = 0;
        while (p < n) {
            size_t q = p;
            int neg = 0, big;
            int64_t v;
            if (s[q] == '+' || s[q] == '-') { neg = s[q] == '-'; q++; }
            size_t dstart = q;
            if (!pg_digits(s, n, &q, PG_BIG, &v, &big)) return -1;
            if (q < n && s[q] == ' ') {
                /* a unit */
                size_t u = q + 1, ulen = 0;
                while (u + ulen < n && s[u + ulen] >= 'a' && s[u + ulen] <= 'z') ulen++;
                pg_i128 sv = neg ? -(pg_i128)v : (pg_i128)v;
                if (big) return -1;
                if (pg_eq(s + u, ulen, "year") || pg_eq(s + u, ulen, "years")) months += 12 * sv;
                else if (pg_eq(s + u, ulen, "mon") || pg_eq(s + u, ulen, "mons")) months += sv;
                else if (pg_eq(s + u, ulen, "day") || pg_eq(s + u, ulen, "days")) days += sv;
                else return -1;
                seen = 1;
                p = u + ulen;
            } else if (q < n && s[q] == ':') {
                /* the clock, last */
                int64_t mi, sec, frac = 0;
                if (big) return -1;
                (void)dstart;
                if (q + 6 > n || !pg_digit(s[q + 1]) || !pg_digit(s[q + 2]) || s[q + 3] != ':'
                    || !pg_digit(s[q + 4]) || !pg_digit(s[q + 5])) return -1;
                mi = (s[q + 1] - '0') * 10 + (s[q + 2] - '0');
                sec = (s[q + 4] - '0') * 10 + (s[q + 5] - '0');
                q += 6;
                frac = pg_frac(s, n, &q);
                if (q != n || mi > 59 || sec > 59) return -1;
                us = (((pg_i128)v * 60 + mi) * 60 + sec) * 1000000 + frac;
                if (neg) us = -us;
                seen = 1;
                p = n;
                break;
            } else {
                return -1;
            }
            if (p < n) {
                if (s[p] != ' ') return -1;
                p++;
                if (p == n) return -1;
            }
        }
        if (!seen) return -1;
        if (months < PG_I32_MIN || months > PG_I32_MAX || days < PG_I32_MIN || days > PG_I32_MAX
            || us < (pg_i128)PG_I64_MIN || us > (pg_i128)PG_I64_MAX) return -1;
        pg_st64(out, (uint64_t)(int64_t)us);
        pg_st32(out + 8, (uint32_t)(int32_t)days);
        pg_st32(out + 12, (uint32_t)(int32_t)months);
        return 16;
    }

    static int64_t pg_uuid(const unsigned char *s, size_t n, unsigned char *out) {
        size_t i, k = 0;
        if (n != 36) return -1;
        for (i = 0; i < 36; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23) {
                if (s[i] != '-') return -1;
                continue;
            }
            if (pg_hex(s[i]) < 0) return -1;
        }
        for (i = 0; i < 36; i++) {
            if (s[i] == '-') continue;
            int hi = pg_hex(s[i]), lo = pg_hex(s[i + 1]);
            out[k++] = (unsigned char)(hi * 16 + lo);
            i++;
        }
        return 16;
    }

    static int64_t pg_bytea(const unsigned char *s, size_t n, unsigned char *out) {
        size_t i;
        if (n < 2 || s[0] != '\\\\' || s[1] != 'x' || (n - 2) % 2) return -1;
        for (i = 2; i < n; i += 2) {
            int hi = pg_hex(s[i]), lo = pg_hex(s[i + 1]);
            if (hi < 0 || lo < 0) return -1;
            out[(i - 2) / 2] = (unsigned char)(hi * 16 + lo);
        }
        return (int64_t)(n - 2) / 2;
    }
    """
    uint32_t pg_be32(const unsigned char* p) noexcept nogil
    uint16_t pg_be16(const unsigned char* p) noexcept nogil
    uint64_t pg_be64(const unsigned char* p) noexcept nogil
    void pg_st16(unsigned char* p, uint16_t v) noexcept nogil
    void pg_st32(unsigned char* p, uint32_t v) noexcept nogil
    void pg_st64(unsigned char* p, uint64_t v) noexcept nogil
    bint pg_int(const unsigned char* s, size_t n, int64_t lo, int64_t hi,
                int64_t* out) noexcept nogil
    bint pg_float(const unsigned char* s, size_t n, double* out) noexcept nogil
    int64_t pg_numeric(const unsigned char* s, size_t n, unsigned char* out) noexcept nogil
    bint pg_date(const unsigned char* s, size_t n, int32_t* out) noexcept nogil
    bint pg_timestamp(const unsigned char* s, size_t n, int tz, int64_t* out) noexcept nogil
    bint pg_clock(const unsigned char* s, size_t n, size_t* p, int max_hour,
                  int64_t* us) noexcept nogil
    int64_t pg_interval(const unsigned char* s, size_t n, unsigned char* out) noexcept nogil
    int64_t pg_uuid(const unsigned char* s, size_t n, unsigned char* out) noexcept nogil
    int64_t pg_bytea(const unsigned char* s, size_t n, unsigned char* out) noexcept nogil
    bint pg_digit(unsigned char c) noexcept nogil
    bint pg_eq(const unsigned char* s, size_t n, const char* lit) noexcept nogil
    bint isinf(double x) noexcept nogil


# Events and faults: the values of rapidbyte_fast.sources.cdc.protocol (tests compare them).
cdef enum:
    EV_MORE = 0
    EV_RELATION = 1
    EV_TYPE = 2
    EV_ORIGIN = 3
    EV_LIMIT = 4
    EV_TOO_LARGE = 5
    EV_END = 6

cdef enum:
    F_FRAMING = 1
    F_TRUNCATED = 2
    F_UNKNOWN_MESSAGE = 3
    F_UNKNOWN_RELATION = 4
    F_COLUMN_COUNT = 5
    F_TUPLE_KIND = 6
    F_BINARY_VALUE = 7
    F_TEXT_VALUE = 8
    F_OUTSIDE_TXN = 9
    F_NO_MEMORY = 100   # internal: an output buffer could not grow (MemoryError)

cdef enum:
    N_META = 5   # fields after the relation's columns (op, lsn, seq, commit_ts, unchanged)

META_FIELDS = N_META
EVENTS = {"EV_MORE": EV_MORE, "EV_RELATION": EV_RELATION, "EV_TYPE": EV_TYPE,
          "EV_ORIGIN": EV_ORIGIN, "EV_LIMIT": EV_LIMIT, "EV_TOO_LARGE": EV_TOO_LARGE,
          "EV_END": EV_END}


cdef int64_t _text_wire(int kind, const unsigned char* s, Py_ssize_t n,
                        unsigned char* out) noexcept nogil:
    """Send format of a scalar text value into ``out`` (room: 8 * n + 64); -1 when the text
    is not one."""
    cdef int64_t v
    cdef int32_t d
    cdef double f
    cdef float f4
    cdef size_t p = 0
    if kind == K_TEXT:
        memcpy(out, s, n)
        return n
    if kind == K_JSONB:
        out[0] = 1
        memcpy(out + 1, s, n)
        return n + 1
    if kind == K_INT2:
        if not pg_int(s, n, -32768, 32767, &v):
            return -1
        pg_st16(out, <uint16_t>v)
        return 2
    if kind == K_INT4:
        if not pg_int(s, n, -2147483648, 2147483647, &v):
            return -1
        pg_st32(out, <uint32_t>v)
        return 4
    if kind == K_INT8:
        if not pg_int(s, n, INT64_MIN, INT64_MAX, &v):
            return -1
        pg_st64(out, <uint64_t>v)
        return 8
    if kind == K_BOOL:
        if n == 1 and (s[0] == b't' or s[0] == b'f'):
            out[0] = s[0] == b't'
            return 1
        return -1
    if kind == K_FLOAT8:
        if not pg_float(s, n, &f):
            return -1
        memcpy(&v, &f, 8)
        pg_st64(out, <uint64_t>v)
        return 8
    if kind == K_FLOAT4:
        if not pg_float(s, n, &f):
            return -1
        f4 = <float>f
        if isinf(f4) and not isinf(f):
            return -1
        memcpy(&d, &f4, 4)
        pg_st32(out, <uint32_t>d)
        return 4
    if kind == K_BYTEA:
        return pg_bytea(s, n, out)
    if kind == K_NUMERIC or kind == K_NUMERIC_TEXT:
        return pg_numeric(s, n, out)
    if kind == K_DATE:
        if not pg_date(s, n, &d):
            return -1
        pg_st32(out, <uint32_t>d)
        return 4
    if kind == K_TIME:
        if not pg_clock(s, n, &p, 24, &v) or p != <size_t>n:
            return -1
        pg_st64(out, <uint64_t>v)
        return 8
    if kind == K_TIMESTAMP or kind == K_TIMESTAMPTZ:
        if not pg_timestamp(s, n, kind == K_TIMESTAMPTZ, &v):
            return -1
        pg_st64(out, <uint64_t>v)
        return 8
    if kind == K_INTERVAL:
        return pg_interval(s, n, out)
    if kind == K_UUID:
        return pg_uuid(s, n, out)
    return -1


cdef bint _int32_text(const unsigned char* s, size_t a, size_t b, int32_t* out) noexcept nogil:
    cdef int64_t v
    if not pg_int(s + a, b - a, -2147483648, 2147483647, &v):
        return False
    out[0] = <int32_t>v
    return True


cdef size_t _signed_digits(const unsigned char* s, size_t n, size_t p,
                           unsigned char end) noexcept nogil:
    """Past ``[+-]?digits`` and the ``end`` byte after them at ``s[p:]``; 0 when not there."""
    if p < n and (s[p] == b'+' or s[p] == b'-'):
        p += 1
    if p >= n or not pg_digit(s[p]):
        return 0
    while p < n and pg_digit(s[p]):
        p += 1
    if p >= n or s[p] != end:
        return 0
    return p + 1


cdef int64_t _array_wire(int elem_kind, uint32_t elem_oid, const unsigned char* s,
                         Py_ssize_t n, unsigned char* out) noexcept nogil:
    """Send format of a 1-D ``array_out`` text (see the Python twin); -1 when it is none."""
    cdef size_t p = 0, q, start, a, b
    cdef int ndim = 1, nulls = 0
    cdef int32_t lbound = 1, count = 0
    cdef int64_t w
    cdef unsigned char* o
    cdef unsigned char* scratch
    cdef bint first_dim = True
    if n and s[0] == b'[':
        ndim = 0
        while p < <size_t>n and s[p] == b'[':
            a = p + 1
            p = _signed_digits(s, n, a, b':')
            if not p:
                return -1
            b = p - 1
            p = _signed_digits(s, n, p, b']')
            if not p:
                return -1
            if first_dim:
                if not _int32_text(s, a, b, &lbound):
                    return -1
                first_dim = False
            ndim += 1
        if p >= <size_t>n or s[p] != b'=':
            return -1
        p += 1
    if p >= <size_t>n or s[p] != b'{':
        return -1
    if p + 1 < <size_t>n and s[p + 1] == b'{' and ndim < 2:
        ndim = 2
    if ndim > 1:
        pg_st32(out, <uint32_t>ndim)
        pg_st32(out + 4, 0)
        pg_st32(out + 8, elem_oid)
        return 12
    p += 1
    if p + 1 == <size_t>n and s[p] == b'}':
        pg_st32(out, 0)
        pg_st32(out + 4, 0)
        pg_st32(out + 8, elem_oid)
        return 12
    o = out + 20
    while True:
        if p >= <size_t>n:
            return -1
        if s[p] == b'"':
            # unescape into the output, then convert in place from a copy
            p += 1
            start = p
            scratch = o + 4
            q = 0
            while p < <size_t>n and s[p] != b'"':
                if s[p] == b'\\':
                    p += 1
                    if p >= <size_t>n:
                        return -1
                scratch[q] = s[p]
                q += 1
                p += 1
            if p >= <size_t>n:
                return -1
            p += 1
            w = _element(elem_kind, scratch, q, o)
            if w < 0:
                return -1
            o += w
        else:
            start = p
            while p < <size_t>n and s[p] != b',' and s[p] != b'}':
                if s[p] == b'"' or s[p] == b'\\' or s[p] == b'{':
                    return -1
                p += 1
            if p == start:
                return -1
            if p - start == 4 and (s[start] | 0x20) == b'n' and (s[start + 1] | 0x20) == b'u' \
                    and (s[start + 2] | 0x20) == b'l' and (s[start + 3] | 0x20) == b'l':
                pg_st32(o, 0xFFFFFFFF)
                o += 4
                nulls = 1
            else:
                w = _element(elem_kind, s + start, p - start, o)
                if w < 0:
                    return -1
                o += w
        count += 1
        if p >= <size_t>n:
            return -1
        if s[p] == b',':
            p += 1
            continue
        if s[p] != b'}':
            return -1
        p += 1
        break
    if p != <size_t>n:
        return -1
    pg_st32(out, 1)
    pg_st32(out + 4, nulls)
    pg_st32(out + 8, elem_oid)
    pg_st32(out + 12, <uint32_t>count)
    pg_st32(out + 16, <uint32_t>lbound)
    return o - out


cdef int64_t _element(int kind, const unsigned char* s, size_t n, unsigned char* o) noexcept nogil:
    """One array element (length + send format) at ``o``; ``s`` may lie inside ``o``'s room
    (an unescaped quoted element), so it is converted from a copy when they overlap."""
    cdef unsigned char tmp[256]
    cdef unsigned char* src = <unsigned char*>s
    cdef unsigned char* heap = NULL
    cdef int64_t w
    if s >= o and s < o + 4 + 8 * n + 64:
        if n <= 256:
            src = tmp
        else:
            heap = <unsigned char*>malloc(n)
            if heap == NULL:
                return -1
            src = heap
        memcpy(src, s, n)
    w = _text_wire(kind, src, n, o + 4)
    free(heap)
    if w < 0:
        return -1
    pg_st32(o, <uint32_t>w)
    return w + 4


cdef struct Rel:
    uint32_t oid
    int ncols
    int nkeys
    int index          # into Decoder._info (table name, column names, out)
    bint skip
    unsigned char* kinds
    unsigned char* elem_kinds
    uint32_t* elem_oids
    unsigned char* text_only
    int* keys
    # per-column value spans of the new and the old tuple of the change being decoded
    unsigned char* mark_new
    const unsigned char** ptr_new
    int32_t* len_new
    unsigned char* mark_old
    const unsigned char** ptr_old
    int32_t* len_old
    # output (valid during feed)
    unsigned char* base
    Py_ssize_t used
    Py_ssize_t cap
    long stamp
    Py_ssize_t mark


cdef struct Fault:
    int code
    int col
    int kind
    int64_t value
    const unsigned char* text
    Py_ssize_t text_len
    Rel* rel


cdef void _free_rel(Rel* r) noexcept:
    PyMem_Free(r.kinds)
    PyMem_Free(r.elem_kinds)
    PyMem_Free(r.elem_oids)
    PyMem_Free(r.text_only)
    PyMem_Free(r.keys)
    PyMem_Free(r.mark_new)
    PyMem_Free(<void*>r.ptr_new)
    PyMem_Free(r.len_new)
    PyMem_Free(r.mark_old)
    PyMem_Free(<void*>r.ptr_old)
    PyMem_Free(r.len_old)


cdef inline void _set(Fault* f, int code, Rel* rel, int col, int kind,
                      int64_t value) noexcept nogil:
    f.code = code
    f.rel = rel
    f.col = col
    f.kind = kind
    f.value = value


cdef class Decoder:
    """Decoding state of one change stream (see the Python twin)."""

    cdef Rel* _rels
    cdef int _nrels
    cdef int _cap
    cdef int _last
    cdef list _info
    cdef long _serial
    cdef public bint in_txn
    cdef public uint32_t xid
    cdef public uint64_t commit_lsn
    cdef public int64_t commit_ts
    cdef public int64_t seq
    cdef public Py_ssize_t msg_start, msg_end
    cdef public uint64_t msg_lsn
    cdef public uint32_t msg_oid
    cdef public int64_t window_bytes, window_changes, window_txns
    cdef public uint64_t end_lsn, last_commit_lsn
    cdef public int64_t last_commit_ts
    cdef public int64_t messages
    cdef int64_t _txn_bytes, _txn_changes

    def __cinit__(self):
        self._rels = NULL
        self._nrels = self._cap = 0
        self._last = -1
        self._info = []
        self._serial = 0

    def __init__(self):
        self.in_txn = False
        self.xid = 0
        self.commit_lsn = 0
        self.commit_ts = 0
        self.seq = 0
        self.msg_start = self.msg_end = 0
        self.msg_lsn = 0
        self.msg_oid = 0
        self.messages = 0
        self.reset_window()

    def __dealloc__(self):
        for i in range(self._nrels):
            _free_rel(&self._rels[i])
        PyMem_Free(self._rels)

    def reset_window(self):
        """Start a new window (the caller has taken every ``out`` buffer's rows)."""
        self.window_bytes = self.window_changes = self.window_txns = 0
        self.end_lsn = self.last_commit_lsn = 0
        self.last_commit_ts = 0
        self._txn_bytes = self._txn_changes = 0

    def set_relation(self, uint32_t oid, str table, tuple names, bytes kinds, bytes elem_kinds,
                     tuple elem_oids, bytes text_only, tuple keys, out):
        """Register (or replace) relation ``oid``; see the Python twin."""
        cdef int n = len(names), i, slot = -1
        cdef Rel r
        if not (len(kinds) == len(elem_kinds) == len(elem_oids) == len(text_only) == n):
            raise ValueError(f"relation {table}: column specs of different lengths")
        if any(not 0 <= k < n for k in keys):
            raise ValueError(f"relation {table}: key index out of range")
        if out is not None and type(out) is not bytearray:
            raise TypeError("out must be a bytearray")
        memset(&r, 0, sizeof(Rel))
        r.oid = oid
        r.ncols = n
        r.nkeys = len(keys)
        r.skip = out is None
        r.stamp = -1
        r.kinds = <unsigned char*>PyMem_Malloc(n + 1)
        r.elem_kinds = <unsigned char*>PyMem_Malloc(n + 1)
        r.elem_oids = <uint32_t*>PyMem_Malloc(4 * n + 4)
        r.text_only = <unsigned char*>PyMem_Malloc(n + 1)
        r.keys = <int*>PyMem_Malloc(sizeof(int) * (r.nkeys + 1))
        r.mark_new = <unsigned char*>PyMem_Malloc(n + 1)
        r.ptr_new = <const unsigned char**>PyMem_Malloc(sizeof(void*) * (n + 1))
        r.len_new = <int32_t*>PyMem_Malloc(4 * n + 4)
        r.mark_old = <unsigned char*>PyMem_Malloc(n + 1)
        r.ptr_old = <const unsigned char**>PyMem_Malloc(sizeof(void*) * (n + 1))
        r.len_old = <int32_t*>PyMem_Malloc(4 * n + 4)
        if (r.kinds == NULL or r.elem_kinds == NULL or r.elem_oids == NULL
                or r.text_only == NULL or r.keys == NULL or r.mark_new == NULL
                or r.ptr_new == NULL or r.len_new == NULL or r.mark_old == NULL
                or r.ptr_old == NULL or r.len_old == NULL):
            _free_rel(&r)
            raise MemoryError()
        for i in range(n):
            r.kinds[i] = kinds[i]
            r.elem_kinds[i] = elem_kinds[i]
            r.elem_oids[i] = elem_oids[i]
            r.text_only[i] = text_only[i]
        for i in range(r.nkeys):
            r.keys[i] = keys[i]
        for i in range(self._nrels):
            if self._rels[i].oid == oid:
                slot = i
                break
        if slot < 0:
            if self._nrels == self._cap:
                new = <Rel*>PyMem_Malloc(sizeof(Rel) * (2 * self._cap + 4))
                if new == NULL:
                    _free_rel(&r)
                    raise MemoryError()
                if self._nrels:
                    memcpy(new, self._rels, sizeof(Rel) * self._nrels)
                PyMem_Free(self._rels)
                self._rels = new
                self._cap = 2 * self._cap + 4
            slot = self._nrels
            self._nrels += 1
            r.index = len(self._info)
            self._info.append((table, tuple(names), out))
        else:
            if self._info[self._rels[slot].index][2] is out:
                # re-sent mid-transaction: rollback must still find the transaction's rows
                r.stamp = self._rels[slot].stamp
                r.mark = self._rels[slot].mark
            # the entry is replaced, not appended: the old buffer (a window the apply may
            # be done with) is not kept alive by the decoder
            r.index = self._rels[slot].index
            self._info[r.index] = (table, tuple(names), out)
            _free_rel(&self._rels[slot])
        self._rels[slot] = r

    def rollback(self):
        """Drop the rows of the open transaction and close it; see the Python twin."""
        cdef Rel* r
        for i in range(self._nrels):
            r = &self._rels[i]
            if r.stamp == self._serial and not r.skip:
                out = self._info[r.index][2]
                del out[r.mark:]
                r.stamp = -1
        self.window_bytes = self._txn_bytes
        self.window_changes = self._txn_changes
        self.in_txn = False

    def feed(self, src, Py_ssize_t pos, Py_ssize_t end, int64_t max_bytes, int64_t max_changes):
        """Decode the complete messages of ``src[pos:end]``; see the Python twin."""
        cdef const unsigned char[::1] view = memoryview(src).cast("B")
        if not 0 <= pos <= end <= view.shape[0]:
            raise ValueError(f"invalid range [{pos}, {end}) of a {view.shape[0]}-byte buffer")
        cdef const unsigned char* s = &view[0] if view.shape[0] else NULL
        cdef Fault f
        cdef int event = EV_MORE, i
        cdef int t = 0
        cdef uint64_t lsn = 0
        cdef Rel* r
        memset(&f, 0, sizeof(Fault))
        for i in range(self._nrels):
            r = &self._rels[i]
            if not r.skip:
                out = self._info[r.index][2]
                r.used = r.cap = PyByteArray_GET_SIZE(out)
                r.base = <unsigned char*>PyByteArray_AS_STRING(out)
        try:
            with nogil:
                pos = self._walk(s, pos, end, max_bytes, max_changes, &event, &t, &lsn, &f)
        finally:
            for i in range(self._nrels):
                r = &self._rels[i]
                if not r.skip:
                    out = self._info[r.index][2]
                    if PyByteArray_GET_SIZE(out) != r.used:
                        PyByteArray_Resize(out, r.used)
        if f.code == F_NO_MEMORY:
            raise MemoryError(f"cannot grow the change rows of {self._info[f.rel.index][0]}")
        if f.code:
            table = column = ""
            if f.rel != NULL:
                table = self._info[f.rel.index][0]
                if f.col >= 0:
                    column = self._info[f.rel.index][1][f.col]
            text = (<const char*>f.text)[:f.text_len] if f.text != NULL else b""
            raise fault(f.code, lsn, t, table, column, f.kind, f.value, text)
        return pos, event

    cdef Py_ssize_t _walk(self, const unsigned char* s, Py_ssize_t pos, Py_ssize_t end,
                          int64_t max_bytes, int64_t max_changes, int* event, int* mtype,
                          uint64_t* mlsn, Fault* f) noexcept nogil:
        cdef int16_t nfields
        cdef int32_t n1, n2
        cdef uint64_t lsn
        cdef Py_ssize_t start
        cdef int ev
        while end - pos >= 2:
            nfields = <int16_t>pg_be16(s + pos)
            if nfields == -1:
                event[0] = EV_END
                return pos + 2
            if end - pos < 18:
                break
            n1 = <int32_t>pg_be32(s + pos + 2)
            lsn = pg_be64(s + pos + 6)
            n2 = <int32_t>pg_be32(s + pos + 14)
            if nfields != 2 or n1 != 8 or n2 < 1:
                mlsn[0] = lsn if n1 == 8 else 0
                mtype[0] = 0
                _set(f, F_FRAMING, NULL, -1, 0, 0)
                return pos
            if end - pos - 18 < n2:
                break
            start = pos + 18
            self.msg_start = start
            self.msg_end = start + n2
            self.msg_lsn = lsn
            mlsn[0] = lsn
            mtype[0] = s[start]
            ev = self._message(s + start, n2, max_bytes, max_changes, f)
            if f.code:
                return pos
            pos = start + n2
            self.messages += 1
            if ev != EV_MORE:
                event[0] = ev
                return pos
        event[0] = EV_MORE
        return pos

    cdef Rel* _find(self, uint32_t oid) noexcept nogil:
        cdef int i
        if self._last >= 0 and self._rels[self._last].oid == oid:
            return &self._rels[self._last]
        for i in range(self._nrels):
            if self._rels[i].oid == oid:
                self._last = i
                return &self._rels[i]
        return NULL

    cdef int _message(self, const unsigned char* m, Py_ssize_t n, int64_t max_bytes,
                      int64_t max_changes, Fault* f) noexcept nogil:
        cdef int t = m[0]
        cdef Rel* r
        cdef Rel* last
        cdef int32_t nrels, i
        if t == b'B':
            if n != 21:
                _set(f, F_TRUNCATED, NULL, -1, 0, 0)
                return EV_MORE
            self.commit_lsn = pg_be64(m + 1)
            self.commit_ts = <int64_t>pg_be64(m + 9)
            self.xid = pg_be32(m + 17)
            self.in_txn = True
            self.seq = 0
            self._serial += 1
            self._txn_bytes = self.window_bytes
            self._txn_changes = self.window_changes
            return EV_MORE
        if t == b'C':
            if n != 26:
                _set(f, F_TRUNCATED, NULL, -1, 0, 0)
                return EV_MORE
            if not self.in_txn:
                _set(f, F_OUTSIDE_TXN, NULL, -1, 0, 0)
                return EV_MORE
            self.in_txn = False
            self.window_txns += 1
            self.last_commit_lsn = pg_be64(m + 2)
            self.end_lsn = pg_be64(m + 10)
            self.last_commit_ts = <int64_t>pg_be64(m + 18)
            if self.window_bytes >= max_bytes or self.window_changes >= max_changes:
                return EV_LIMIT
            return EV_MORE
        if t == b'R':
            return EV_RELATION
        if t == b'Y':
            return EV_TYPE
        if t == b'O':
            return EV_ORIGIN
        if t == b'I' or t == b'U' or t == b'D' or t == b'T':
            if not self.in_txn:
                _set(f, F_OUTSIDE_TXN, NULL, -1, 0, 0)
                return EV_MORE
            if t == b'T':
                if n < 6:
                    _set(f, F_TRUNCATED, NULL, -1, 0, 0)
                    return EV_MORE
                nrels = <int32_t>pg_be32(m + 1)
                if nrels < 0 or n != 6 + 4 * <Py_ssize_t>nrels:
                    _set(f, F_TRUNCATED, NULL, -1, 0, 0)
                    return EV_MORE
                for i in range(nrels):
                    if self._find(pg_be32(m + 6 + 4 * i)) == NULL:
                        _set(f, F_UNKNOWN_RELATION, NULL, -1, 0, pg_be32(m + 6 + 4 * i))
                        return EV_MORE
                last = NULL
                for i in range(nrels):
                    r = self._find(pg_be32(m + 6 + 4 * i))
                    if not r.skip:
                        if self._row(r, b'T', False, False, f):
                            return EV_MORE
                        last = r
                r = last
            else:
                r = self._change(t, m, n, f)
                if f.code:
                    return EV_MORE
            if r != NULL and self.window_bytes > max_bytes:
                self.msg_oid = r.oid
                return EV_TOO_LARGE
            return EV_MORE
        _set(f, F_UNKNOWN_MESSAGE, NULL, -1, 0, 0)
        return EV_MORE

    cdef Rel* _change(self, int t, const unsigned char* m, Py_ssize_t n, Fault* f) noexcept nogil:
        cdef Rel* r
        cdef Py_ssize_t p = 5
        cdef int marker
        cdef bint has_old = False
        if n < 5:
            _set(f, F_TRUNCATED, NULL, -1, 0, 0)
            return NULL
        r = self._find(pg_be32(m + 1))
        if r == NULL:
            _set(f, F_UNKNOWN_RELATION, NULL, -1, 0, pg_be32(m + 1))
            return NULL
        if n <= p:
            _set(f, F_TRUNCATED, r, -1, 0, 0)
            return NULL
        marker = m[p]
        if t == b'D' or (t == b'U' and (marker == b'K' or marker == b'O')):
            if marker != b'K' and marker != b'O':
                _set(f, F_TUPLE_KIND, r, -1, 0, marker)
                return NULL
            p = _tuple(m, n, p + 1, r, r.mark_old, r.ptr_old, r.len_old, f)
            if p < 0:
                return NULL
            has_old = True
            if t == b'U':
                if n <= p:
                    _set(f, F_TRUNCATED, r, -1, 0, 0)
                    return NULL
                marker = m[p]
        if t != b'D':
            if marker != b'N':
                _set(f, F_TUPLE_KIND, r, -1, 0, marker)
                return NULL
            p = _tuple(m, n, p + 1, r, r.mark_new, r.ptr_new, r.len_new, f)
            if p < 0:
                return NULL
        if p != n:
            _set(f, F_TRUNCATED, r, -1, 0, 0)
            return NULL
        if r.skip:
            return NULL
        if t == b'D':
            # the old tuple is the row
            if self._row(r, b'D', True, False, f):
                return NULL
        elif self._row(r, b'I' if t == b'I' else b'U', False, has_old, f):
            return NULL
        return r

    cdef int _row(self, Rel* r, int op, bint old_as_row, bint with_old, Fault* f) noexcept nogil:
        """Append one change row to ``r``'s output; 1 (``f`` set, output untouched) on a bad
        value. ``old_as_row``: the row's values are the old tuple (delete); ``with_old``: the
        old key fields come from the old tuple (update); no tuple at all for op T."""
        cdef int ncols = r.ncols, c, k, nbytes = (r.ncols + 7) // 8
        cdef const unsigned char* mk = NULL
        cdef const unsigned char** vp = NULL
        cdef int32_t* vl = NULL
        cdef int64_t need = 2 + 4 * (ncols + N_META + r.nkeys) + 1 + 24 + nbytes
        cdef unsigned char* o
        cdef unsigned char* bitmap
        cdef bint any_u = False
        cdef bint values = op != b'T'
        cdef int64_t w
        if values:
            if old_as_row:
                mk = r.mark_old
                vp = r.ptr_old
                vl = r.len_old
            else:
                mk = r.mark_new
                vp = r.ptr_new
                vl = r.len_new
            for c in range(ncols):
                need += _bound(mk[c], vl[c])
        if with_old:
            for k in range(r.nkeys):
                need += _bound(r.mark_old[r.keys[k]], r.len_old[r.keys[k]])
        if r.used + need > r.cap:
            if self._grow(r, need):
                _set(f, F_NO_MEMORY, r, -1, 0, 0)
                return 1
        o = r.base + r.used
        pg_st16(o, <uint16_t>(ncols + N_META + r.nkeys))
        o += 2
        bitmap = NULL
        for c in range(ncols):
            if not values:
                pg_st32(o, 0xFFFFFFFF)
                o += 4
                continue
            if mk[c] == b'u':
                any_u = True
            w = _field(r, c, mk[c], vp[c], vl[c], o, f)
            if w < 0:
                return 1
            o += w
        pg_st32(o, 1)
        o[4] = op
        o += 5
        pg_st32(o, 8)
        pg_st64(o + 4, self.commit_lsn)
        pg_st32(o + 12, 8)
        pg_st64(o + 16, <uint64_t>self.seq)
        pg_st32(o + 24, 8)
        pg_st64(o + 28, <uint64_t>self.commit_ts)
        o += 36
        if any_u:
            pg_st32(o, nbytes)
            memset(o + 4, 0, nbytes)
            for c in range(ncols):
                if mk[c] == b'u':
                    o[4 + (c >> 3)] |= 1 << (c & 7)
            o += 4 + nbytes
        else:
            pg_st32(o, 0xFFFFFFFF)
            o += 4
        for k in range(r.nkeys):
            if not with_old:
                pg_st32(o, 0xFFFFFFFF)
                o += 4
                continue
            c = r.keys[k]
            w = _field(r, c, r.mark_old[c], r.ptr_old[c], r.len_old[c], o, f)
            if w < 0:
                return 1
            o += w
        if r.stamp != self._serial:
            r.stamp = self._serial
            r.mark = r.used
        w = o - (r.base + r.used)
        r.used += w
        self.seq += 1
        self.window_bytes += w
        self.window_changes += 1
        return 0

    cdef int _grow(self, Rel* r, int64_t need) noexcept nogil:
        cdef bint failed = False
        with gil:
            out = self._info[r.index][2]
            try:
                PyByteArray_Resize(out, max(2 * r.cap, r.used + need, 4096))
                r.cap = PyByteArray_GET_SIZE(out)
                r.base = <unsigned char*>PyByteArray_AS_STRING(out)
            except BaseException:   # MemoryError, or BufferError: out is exported
                failed = True
        return failed


cdef inline int64_t _bound(int marker, int32_t n) noexcept nogil:
    """Most bytes a value's field takes in a row (text may grow when parsed)."""
    if marker == b't':
        return 4 + 8 * <int64_t>n + 64
    if marker == b'b':
        return 4 + <int64_t>n
    return 4


cdef Py_ssize_t _tuple(const unsigned char* m, Py_ssize_t n, Py_ssize_t p, Rel* r,
                       unsigned char* mk, const unsigned char** vp, int32_t* vl,
                       Fault* f) noexcept nogil:
    """Frame the TupleData at ``m[p:]`` into the spans; the position after it, or -1."""
    cdef int16_t ncols
    cdef int c, marker
    cdef int32_t len_
    if n - p < 2:
        _set(f, F_TRUNCATED, r, -1, 0, 0)
        return -1
    ncols = <int16_t>pg_be16(m + p)
    p += 2
    if ncols != r.ncols:
        _set(f, F_COLUMN_COUNT, r, -1, 0, ncols)
        return -1
    for c in range(ncols):
        if n <= p:
            _set(f, F_TRUNCATED, r, c, 0, 0)
            return -1
        marker = m[p]
        p += 1
        mk[c] = marker
        vl[c] = 0
        if marker == b'n' or marker == b'u':
            continue
        if marker != b't' and marker != b'b':
            _set(f, F_TUPLE_KIND, r, c, 0, marker)
            return -1
        if n - p < 4:
            _set(f, F_TRUNCATED, r, c, 0, 0)
            return -1
        len_ = <int32_t>pg_be32(m + p)
        p += 4
        if len_ < 0 or n - p < len_:
            _set(f, F_TRUNCATED, r, c, 0, 0)
            return -1
        vp[c] = m + p
        vl[c] = len_
        p += len_
    return p


cdef int64_t _field(Rel* r, int c, int marker, const unsigned char* v, int32_t n,
                    unsigned char* o, Fault* f) noexcept nogil:
    """Column ``c``'s COPY-binary field at ``o``; its size, or -1 (``f`` set)."""
    cdef int kind = r.kinds[c]
    cdef int64_t w
    if marker == b'n' or marker == b'u':
        pg_st32(o, 0xFFFFFFFF)
        return 4
    if marker == b'b':
        if r.text_only[c]:
            _set(f, F_BINARY_VALUE, r, c, kind, 0)
            return -1
        pg_st32(o, <uint32_t>n)
        memcpy(o + 4, v, n)
        return 4 + n
    if kind == K_ARRAY:
        w = _array_wire(r.elem_kinds[c], r.elem_oids[c], v, n, o + 4)
    else:
        w = _text_wire(kind, v, n, o + 4)
    if w < 0:
        _set(f, F_TEXT_VALUE, r, c, kind, 0)
        f.text = v
        f.text_len = n
        return -1
    pg_st32(o, <uint32_t>w)
    return 4 + w
