"""JSON pages → Arrow column sinks (compiled twin of ``rapidbyte_fast._py.json_decode``; same
API, bytes and status codes).

Every scan runs without the GIL over the page's bytes: ``survey`` checks the syntax and
tallies each column's value classes and raw bytes, and ``fill`` (after one resize of every
sink to what the survey counted) converts values straight into the sinks. Keys are matched
by their raw bytes against the key table, the key after the last match first (records of
one API list their keys in the same order), so a lookup is one ``memcmp``.
"""
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from libc.stdint cimport int32_t, int64_t, uint16_t, uint64_t
from libc.stdlib cimport free, malloc, realloc, strtod
from libc.string cimport memcmp, memcpy, memset

OK, MALFORMED, UNKNOWN_KEY, DUP_KEY, MISMATCH, NOT_OBJECT, TOO_DEEP = range(7)
V_NULL, V_BOOL, V_INT, V_FLOAT, V_STR, V_DATE, V_TS, V_OBJ, V_ARR, V_BIGINT = (
    1 << i for i in range(10))
K_BOOL, K_INT8, K_FLOAT8, K_TEXT, K_DATE, K_TIMESTAMPTZ, K_NUMERIC_TEXT, K_JSONB = (
    1, 4, 6, 7, 9, 12, 16, 17)
PATH_SEP = b"\x1f"
MAX_DEPTH = 1024
MAX_FLATTEN_DEPTH = 64

cdef enum:
    S_OK = 0
    S_MALFORMED = 1
    S_UNKNOWN_KEY = 2
    S_DUP_KEY = 3
    S_MISMATCH = 4
    S_NOT_OBJECT = 5
    S_TOO_DEEP = 6

cdef enum:
    C_NULL = 1
    C_BOOL = 2
    C_INT = 4
    C_FLOAT = 8
    C_STR = 16
    C_DATE = 32
    C_TS = 64
    C_OBJ = 128
    C_ARR = 256
    C_BIGINT = 512

cdef enum:
    KB_BOOL = 1
    KB_INT8 = 4
    KB_FLOAT8 = 6
    KB_TEXT = 7
    KB_DATE = 9
    KB_TIMESTAMPTZ = 12
    KB_NUMERIC_TEXT = 16
    KB_JSONB = 17

cdef enum:
    C_MAX_DEPTH = 1024
    C_MAX_FLATTEN_DEPTH = 64

cdef unsigned char STR_STOP[256]   # bytes a string scan must look at: '"', '\\', controls
cdef int _c
for _c in range(256):
    STR_STOP[_c] = 1 if _c < 32 or _c == 34 or _c == 92 else 0

cdef int DAYS_IN_MONTH[12]
DAYS_IN_MONTH[:] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


cdef struct Scan:
    const unsigned char *b
    Py_ssize_t end
    const unsigned char *blob
    const int32_t *offs
    const int32_t *cols
    Py_ssize_t nkeys
    Py_ssize_t hint
    bint flatten
    bint filling
    bint classify           # survey: tell date and date-time strings from other strings
    bint dates              # the value being scanned: classify its strings
    int64_t dt              # the date (days) or date-time (µs) the last classified string held
    bint escaped            # the last scalar string read has escapes (else it is copied as is)
    char *path              # the flattened key prefix (joined raw keys + separators)
    Py_ssize_t path_cap
    uint16_t *masks
    int64_t *sizes
    const unsigned char *kinds
    Py_ssize_t ncols
    int64_t row
    int64_t *seen
    unsigned char **valid   # fill: each column's validity bytes, at this page's row 0
    unsigned char **data    # fill: fixed-width values at row 0; varlena: the data buffer
    int32_t **offsets       # fill (varlena): the offset slot ending row 0
    int64_t *dlen           # fill (varlena): bytes in the data buffer
    int status
    Py_ssize_t err_pos
    Py_ssize_t err_col
    Py_ssize_t unk_plen     # UNKNOWN_KEY: prefix length in path, and the key's bytes
    Py_ssize_t unk_key
    Py_ssize_t unk_klen


cdef inline Py_ssize_t fail(Scan *s, int status, Py_ssize_t pos) noexcept nogil:
    s.status = status
    s.err_pos = pos
    return -1


cdef inline bint is_ws(unsigned char c) noexcept nogil:
    return c == 32 or c == 9 or c == 10 or c == 13


cdef inline bint is_digit(unsigned char c) noexcept nogil:
    return 48 <= c <= 57


cdef inline Py_ssize_t ws(Scan *s, Py_ssize_t i) noexcept nogil:
    while i < s.end and is_ws(s.b[i]):
        i += 1
    return i


cdef inline int hexval(unsigned char c) noexcept nogil:
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


cdef int hex4(Scan *s, Py_ssize_t i) noexcept nogil:
    """The code unit of the 4 hex digits at ``b[i]`` (-1 and MALFORMED at i - 2 if not)."""
    cdef int v = 0, k, h
    if i + 4 > s.end:
        fail(s, S_MALFORMED, i - 2)
        return -1
    for k in range(4):
        h = hexval(s.b[i + k])
        if h < 0:
            fail(s, S_MALFORMED, i - 2)
            return -1
        v = v * 16 + h
    return v


cdef Py_ssize_t string_end(Scan *s, Py_ssize_t i, bint *escaped) noexcept nogil:
    """``b[i]`` is '"': the position after the closing quote (checked), or -1."""
    cdef Py_ssize_t j = i + 1
    cdef const unsigned char *b = s.b
    cdef unsigned char c, e
    cdef int cp, low
    escaped[0] = False
    while True:
        while j < s.end and not STR_STOP[b[j]]:
            j += 1
        if j >= s.end:
            return fail(s, S_MALFORMED, j)
        c = b[j]
        if c == 34:
            return j + 1
        if c < 32:
            return fail(s, S_MALFORMED, j)
        if c != 92:
            j += 1
            continue
        escaped[0] = True
        if j + 1 >= s.end:
            return fail(s, S_MALFORMED, j)
        e = b[j + 1]
        if e == 34 or e == 92 or e == 47 or e == 98 or e == 102 or e == 110 or e == 114 \
                or e == 116:
            j += 2
            continue
        if e != 117:
            return fail(s, S_MALFORMED, j)
        cp = hex4(s, j + 2)
        if cp < 0:
            return -1
        if 0xDC00 <= cp <= 0xDFFF:
            return fail(s, S_MALFORMED, j)
        if 0xD800 <= cp <= 0xDBFF:
            if not (j + 7 < s.end and b[j + 6] == 92 and b[j + 7] == 117):
                return fail(s, S_MALFORMED, j)
            low = hex4(s, j + 8)
            if low < 0:
                return -1
            if not (0xDC00 <= low <= 0xDFFF):
                return fail(s, S_MALFORMED, j + 6)
            j += 12
        else:
            j += 6


cdef Py_ssize_t unescape(const unsigned char *p, Py_ssize_t n, unsigned char *out) noexcept nogil:
    """UTF-8 of the checked string content ``p[:n]``; returns the bytes written."""
    cdef Py_ssize_t k = 0, o = 0
    cdef unsigned char c, e
    cdef uint64_t cp, low
    while k < n:
        c = p[k]
        if c != 92:
            out[o] = c
            o += 1
            k += 1
            continue
        e = p[k + 1]
        if e != 117:
            out[o] = (34 if e == 34 else 92 if e == 92 else 47 if e == 47 else 8 if e == 98
                      else 12 if e == 102 else 10 if e == 110 else 13 if e == 114 else 9)
            o += 1
            k += 2
            continue
        cp = (hexval(p[k + 2]) << 12) | (hexval(p[k + 3]) << 8) | (hexval(p[k + 4]) << 4) \
            | hexval(p[k + 5])
        k += 6
        if 0xD800 <= cp <= 0xDBFF:
            low = (hexval(p[k + 2]) << 12) | (hexval(p[k + 3]) << 8) \
                | (hexval(p[k + 4]) << 4) | hexval(p[k + 5])
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
            k += 6
        if cp < 0x80:
            out[o] = <unsigned char>cp
            o += 1
        elif cp < 0x800:
            out[o] = <unsigned char>(0xC0 | (cp >> 6))
            out[o + 1] = <unsigned char>(0x80 | (cp & 0x3F))
            o += 2
        elif cp < 0x10000:
            out[o] = <unsigned char>(0xE0 | (cp >> 12))
            out[o + 1] = <unsigned char>(0x80 | ((cp >> 6) & 0x3F))
            out[o + 2] = <unsigned char>(0x80 | (cp & 0x3F))
            o += 3
        else:
            out[o] = <unsigned char>(0xF0 | (cp >> 18))
            out[o + 1] = <unsigned char>(0x80 | ((cp >> 12) & 0x3F))
            out[o + 2] = <unsigned char>(0x80 | ((cp >> 6) & 0x3F))
            out[o + 3] = <unsigned char>(0x80 | (cp & 0x3F))
            o += 4
    return o


cdef Py_ssize_t number_end(Scan *s, Py_ssize_t i, int *cls) noexcept nogil:
    cdef Py_ssize_t j = i
    cdef const unsigned char *b = s.b
    cdef bint neg = False, big = False
    cdef uint64_t v = 0, limit
    cdef unsigned d
    if j < s.end and b[j] == 45:
        neg = True
        j += 1
    if j >= s.end or not is_digit(b[j]):
        return fail(s, S_MALFORMED, j)
    limit = (<uint64_t>1 << 63) if neg else ((<uint64_t>1 << 63) - 1)
    if b[j] == 48:
        j += 1
    else:
        while j < s.end and is_digit(b[j]):
            d = b[j] - 48
            if v > (limit - d) // 10:
                big = True
            else:
                v = v * 10 + d
            j += 1
    cls[0] = C_BIGINT if big else C_INT
    if j < s.end and b[j] == 46:
        j = digit_run(s, j + 1)
        cls[0] = C_FLOAT
    if j >= 0 and j < s.end and (b[j] == 101 or b[j] == 69):
        j += 1
        if j < s.end and (b[j] == 43 or b[j] == 45):
            j += 1
        j = digit_run(s, j)
        cls[0] = C_FLOAT
    return j


cdef inline Py_ssize_t digit_run(Scan *s, Py_ssize_t j) noexcept nogil:
    """The end of the one or more digits at ``b[j]``; -1 (MALFORMED) when there are none."""
    if j >= s.end or not is_digit(s.b[j]):
        return fail(s, S_MALFORMED, j)
    while j < s.end and is_digit(s.b[j]):
        j += 1
    return j


cdef inline int64_t days_from_civil(int64_t y, int64_t m, int64_t d) noexcept nogil:
    y -= m <= 2
    cdef int64_t era = y // 400   # y >= 0 here (years start at 1)
    cdef int64_t yoe = y - era * 400
    cdef int64_t doy = (153 * (m + 9 if m <= 2 else m - 3) + 2) // 5 + d - 1
    cdef int64_t doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline int digits(const unsigned char *p, Py_ssize_t n, Py_ssize_t i, int k) noexcept nogil:
    cdef int v = 0, x
    if i + k > n:
        return -1
    for x in range(k):
        if not is_digit(p[i + x]):
            return -1
        v = v * 10 + p[i + x] - 48
    return v


cdef int parse_datetime(const unsigned char *p, Py_ssize_t n, int64_t *out) noexcept nogil:
    """C_DATE (days) or C_TS (µs, UTC) for an ISO 8601 date or date-time, else 0."""
    cdef int y, mo, d, hh, mm, ss = 0, oh, om = 0, k, sign
    cdef int64_t frac = 0, days, secs, offset = 0
    cdef Py_ssize_t i
    cdef bint leap
    if n < 10:
        return 0
    y = digits(p, n, 0, 4)
    mo = digits(p, n, 5, 2)
    d = digits(p, n, 8, 2)
    if y < 1 or mo < 1 or mo > 12 or d < 1 or p[4] != 45 or p[7] != 45:
        return 0
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if d > DAYS_IN_MONTH[mo - 1] + (1 if mo == 2 and leap else 0):
        return 0
    days = days_from_civil(y, mo, d)
    if n == 10:
        out[0] = days
        return C_DATE
    if not (p[10] == 84 or p[10] == 116 or p[10] == 32):
        return 0
    hh = digits(p, n, 11, 2)
    mm = digits(p, n, 14, 2)
    if n < 16 or hh < 0 or hh > 23 or mm < 0 or mm > 59 or p[13] != 58:
        return 0
    i = 16
    if i < n and p[i] == 58:
        ss = digits(p, n, 17, 2)
        if ss < 0 or ss > 59:
            return 0
        i = 19
        if i < n and (p[i] == 46 or p[i] == 44):
            i += 1
            k = 0
            while i < n and is_digit(p[i]):
                if k == 9:
                    return 0
                if k < 6:
                    frac = frac * 10 + p[i] - 48
                k += 1
                i += 1
            if k == 0:
                return 0
            while k < 6:
                frac *= 10
                k += 1
    if i < n and (p[i] == 90 or p[i] == 122):
        i += 1
    elif i < n and (p[i] == 43 or p[i] == 45):
        sign = -1 if p[i] == 45 else 1
        oh = digits(p, n, i + 1, 2)
        i += 3
        if i < n and p[i] == 58:
            om = digits(p, n, i + 1, 2)
            i += 3
        elif i < n:
            om = digits(p, n, i, 2)
            i += 2
        if oh < 0 or oh > 23 or om < 0 or om > 59:
            return 0
        offset = sign * (oh * 3600 + om * 60)
    if i != n:
        return 0
    secs = days * 86400 + hh * 3600 + mm * 60 + ss - offset
    out[0] = secs * 1000000 + frac
    return C_TS


cdef Py_ssize_t scalar(Scan *s, Py_ssize_t i, int *cls) noexcept nogil:
    cdef const unsigned char *b = s.b
    cdef Py_ssize_t j
    cdef bint escaped
    cdef int64_t ignored
    cdef unsigned char c
    if i >= s.end:
        return fail(s, S_MALFORMED, i)
    c = b[i]
    if c == 34:
        j = string_end(s, i, &escaped)
        if j < 0:
            return -1
        s.escaped = escaped
        cls[0] = 0 if escaped or not s.dates else parse_datetime(b + i + 1, j - i - 2, &s.dt)
        if cls[0] == 0:
            cls[0] = C_STR
        return j
    if c == 45 or is_digit(c):
        return number_end(s, i, cls)
    if c == 116 and i + 4 <= s.end and memcmp(b + i, b"true", 4) == 0:
        cls[0] = C_BOOL
        return i + 4
    if c == 102 and i + 5 <= s.end and memcmp(b + i, b"false", 5) == 0:
        cls[0] = C_BOOL
        return i + 5
    if c == 110 and i + 4 <= s.end and memcmp(b + i, b"null", 4) == 0:
        cls[0] = C_NULL
        return i + 4
    return fail(s, S_MALFORMED, i)


cdef Py_ssize_t member_value(Scan *s, Py_ssize_t j) noexcept nogil:
    """``b[j]`` starts a member: the position of its value."""
    cdef bint escaped
    if j >= s.end or s.b[j] != 34:
        return fail(s, S_MALFORMED, j)
    j = string_end(s, j, &escaped)
    if j < 0:
        return -1
    return value_after_key(s, j)


cdef inline Py_ssize_t value_after_key(Scan *s, Py_ssize_t j) noexcept nogil:
    """``b[j]`` follows a member's key: the position of its value (after the colon)."""
    j = ws(s, j)
    if j >= s.end or s.b[j] != 58:
        return fail(s, S_MALFORMED, j)
    return ws(s, j + 1)


cdef Py_ssize_t skip(Scan *s, Py_ssize_t i, int *cls) noexcept nogil:
    """The end of the value at ``b[i]`` (checked), its class in ``cls``; -1 on error."""
    cdef const unsigned char *b = s.b
    cdef unsigned char stack[C_MAX_DEPTH]
    cdef int depth = 0, ignored
    cdef Py_ssize_t j = i
    if i >= s.end or not (b[i] == 91 or b[i] == 123):
        return scalar(s, i, cls)
    cls[0] = C_ARR if b[i] == 91 else C_OBJ
    s.dates = False   # strings inside a container are never classified
    while True:
        if j < s.end and (b[j] == 91 or b[j] == 123):
            if depth >= C_MAX_DEPTH:
                return fail(s, S_TOO_DEEP, j)
            stack[depth] = 93 if b[j] == 91 else 125
            depth += 1
            j = ws(s, j + 1)
            if j < s.end and b[j] == stack[depth - 1]:
                depth -= 1
                j += 1
            else:
                if stack[depth - 1] == 125:
                    j = member_value(s, j)
                    if j < 0:
                        return -1
                continue
        else:
            j = scalar(s, j, &ignored)
            if j < 0:
                return -1
        while True:
            if depth == 0:
                return j
            j = ws(s, j)
            if j < s.end and b[j] == 44:
                j = ws(s, j + 1)
                if stack[depth - 1] == 125:
                    j = member_value(s, j)
                    if j < 0:
                        return -1
                break
            if j < s.end and b[j] == stack[depth - 1]:
                depth -= 1
                j += 1
                continue
            return fail(s, S_MALFORMED, j)


cdef Py_ssize_t lookup(Scan *s, Py_ssize_t plen, const unsigned char *key,
                       Py_ssize_t klen) noexcept nogil:
    """The column of the raw path ``path[:plen] + key``, or -1."""
    cdef Py_ssize_t k, n = s.nkeys, tries
    cdef int32_t a
    k = s.hint if s.hint < n else 0
    for tries in range(n):
        a = s.offs[k]
        if (s.offs[k + 1] - a == plen + klen
                and memcmp(s.blob + a, s.path, plen) == 0
                and memcmp(s.blob + a + plen, key, klen) == 0):
            s.hint = k + 1
            return s.cols[k]
        k += 1
        if k == n:
            k = 0
    return -1


cdef inline void store32(unsigned char *p, int64_t v) noexcept nogil:
    cdef int32_t x = <int32_t>v
    memcpy(p, &x, 4)


cdef int convert(Scan *s, Py_ssize_t col, Py_ssize_t i, Py_ssize_t j, int cls) noexcept nogil:
    """Write one value into column ``col`` of row ``s.row``; 0, or -1 on MISMATCH."""
    cdef int kind = s.kinds[col]
    cdef const unsigned char *b = s.b
    cdef int64_t iv, r = s.row
    cdef uint64_t u
    cdef double fv
    cdef char small[64]
    cdef char *tmp
    cdef Py_ssize_t n, k
    cdef unsigned char *dst
    if cls == C_NULL:
        return 0
    if kind == KB_JSONB or kind == KB_TEXT or kind == KB_NUMERIC_TEXT:
        dst = s.data[col] + s.dlen[col]
        if cls == C_STR or cls == C_DATE or cls == C_TS:
            if kind == KB_JSONB:
                n = j - i
                memcpy(dst, b + i, n)
            elif s.escaped:
                n = unescape(b + i + 1, j - i - 2, dst)
            else:   # (most strings: one memcpy instead of a byte loop)
                n = j - i - 2
                memcpy(dst, b + i + 1, n)
        elif kind == KB_NUMERIC_TEXT and not (cls == C_INT or cls == C_BIGINT or cls == C_FLOAT):
            return -1
        else:
            n = j - i
            memcpy(dst, b + i, n)
        s.dlen[col] += n
    elif kind == KB_BOOL and cls == C_BOOL:
        s.data[col][r] = 1 if b[i] == 116 else 0
    elif kind == KB_INT8 and cls == C_INT:
        u = 0
        k = i + 1 if b[i] == 45 else i
        while k < j:
            u = u * 10 + (b[k] - 48)
            k += 1
        iv = <int64_t>(0 - u) if b[i] == 45 else <int64_t>u
        memcpy(s.data[col] + 8 * r, &iv, 8)
    elif kind == KB_FLOAT8 and (cls == C_INT or cls == C_BIGINT or cls == C_FLOAT):
        n = j - i
        if n < 64:
            tmp = &small[0]
        else:
            tmp = <char *>malloc(n + 1)
        if tmp == NULL:
            return -1
        memcpy(tmp, b + i, n)
        tmp[n] = 0
        fv = strtod(tmp, NULL)
        if n >= 64:
            free(tmp)
        memcpy(s.data[col] + 8 * r, &fv, 8)
    elif kind == KB_DATE and cls == C_DATE:
        store32(s.data[col] + 4 * r, s.dt)
    elif kind == KB_TIMESTAMPTZ and (cls == C_DATE or cls == C_TS):
        iv = s.dt
        if cls == C_DATE:
            iv = iv * 86400 * 1000000
        memcpy(s.data[col] + 8 * r, &iv, 8)
    else:
        return -1
    s.valid[col][r] = 1
    return 0


cdef Py_ssize_t member(Scan *s, Py_ssize_t plen, Py_ssize_t kstart, Py_ssize_t klen,
                       Py_ssize_t kend, Py_ssize_t i) noexcept nogil:
    cdef int cls, kind
    cdef Py_ssize_t j
    cdef Py_ssize_t col = lookup(s, plen, s.b + kstart, klen)
    if col < 0:
        if not s.filling:
            s.unk_plen = plen
            s.unk_key = kstart
            s.unk_klen = klen
            return fail(s, S_UNKNOWN_KEY, kend)
        s.dates = False
        return skip(s, i, &cls)
    if not s.filling:
        s.dates = s.classify
        j = skip(s, i, &cls)
        if j >= 0:
            s.masks[col] |= <uint16_t>cls
            s.sizes[col] += j - i
        return j
    if s.seen[col] == s.row:
        s.err_col = col
        return fail(s, S_DUP_KEY, i)
    s.seen[col] = s.row
    kind = s.kinds[col]
    s.dates = kind == KB_DATE or kind == KB_TIMESTAMPTZ   # only they care what a string holds
    j = skip(s, i, &cls)
    if j < 0:
        return -1
    if convert(s, col, i, j, cls) < 0:
        s.err_col = col
        return fail(s, S_MISMATCH, i)
    return j


cdef Py_ssize_t object_(Scan *s, Py_ssize_t i, Py_ssize_t plen, int depth) noexcept nogil:
    """``b[i]`` is '{': visit its members under the prefix ``path[:plen]``."""
    cdef const unsigned char *b = s.b
    cdef Py_ssize_t j = ws(s, i + 1), kstart, kend, need
    cdef bint escaped
    cdef char *grown
    if j < s.end and b[j] == 125:
        return j + 1
    while True:
        if j >= s.end or b[j] != 34:
            return fail(s, S_MALFORMED, j)
        kstart = j + 1
        kend = string_end(s, j, &escaped)
        if kend < 0:
            return -1
        j = value_after_key(s, kend)   # (the key is scanned once)
        if j < 0:
            return -1
        if s.flatten and j < s.end and b[j] == 123:
            if depth + 1 >= C_MAX_FLATTEN_DEPTH:
                return fail(s, S_TOO_DEEP, j)
            need = plen + (kend - 1 - kstart) + 1
            if need > s.path_cap:
                grown = <char *>realloc(s.path, need * 2)
                if grown == NULL:
                    return fail(s, S_TOO_DEEP, j)
                s.path, s.path_cap = grown, need * 2
            memcpy(s.path + plen, b + kstart, kend - 1 - kstart)
            s.path[need - 1] = 0x1f
            j = object_(s, j, need, depth + 1)
        else:
            j = member(s, plen, kstart, kend - 1 - kstart, kend, j)
        if j < 0:
            return -1
        j = ws(s, j)
        if j < s.end and b[j] == 44:
            j = ws(s, j + 1)
            continue
        if j < s.end and b[j] == 125:
            return j + 1
        return fail(s, S_MALFORMED, j)


cdef Py_ssize_t record(Scan *s, Py_ssize_t i) noexcept nogil:
    cdef Py_ssize_t j = object_(s, i, 0, 0), c
    if j < 0:
        return -1
    if s.filling:
        for c in range(s.ncols):
            if s.offsets[c] != NULL:
                s.offsets[c][s.row] = <int32_t>s.dlen[c]
    s.row += 1
    return j


cdef Py_ssize_t records(Scan *s, Py_ssize_t pos, bint ndjson) noexcept nogil:
    """Visit every record; where the records end (a JSON array or object ends before
    ``s.end``: what follows is not read), or -1."""
    cdef const unsigned char *b = s.b
    cdef Py_ssize_t i = ws(s, pos)
    cdef int ignored
    if not ndjson:
        if i < s.end and b[i] == 123:
            return record(s, i)
        if i >= s.end or b[i] != 91:
            return fail(s, S_MALFORMED, i)
        i = ws(s, i + 1)
        if i < s.end and b[i] == 93:
            return i + 1
    while True:
        if ndjson and i >= s.end:
            return i
        if i >= s.end:
            return fail(s, S_MALFORMED, i)
        if b[i] != 123:
            if skip(s, i, &ignored) < 0:
                return -1
            return fail(s, S_NOT_OBJECT, i)
        i = record(s, i)
        if i < 0:
            return -1
        i = ws(s, i)
        if ndjson:
            continue
        if i < s.end and b[i] == 44:
            i = ws(s, i + 1)
            continue
        if i >= s.end or b[i] != 93:
            return fail(s, S_MALFORMED, i)
        return i + 1


cdef int init(Scan *s, const unsigned char[::1] buf, Py_ssize_t end,
              const unsigned char[::1] blob, const unsigned char[::1] offs,
              const unsigned char[::1] cols, bint flatten) except -1:
    memset(s, 0, sizeof(Scan))
    if end > buf.shape[0] or end < 0:
        raise ValueError("end is past the buffer")
    s.b = &buf[0] if buf.shape[0] else <const unsigned char *>b""
    s.end = end
    s.nkeys = cols.shape[0] // 4
    s.blob = &blob[0] if blob.shape[0] else <const unsigned char *>b""
    s.offs = <const int32_t *>&offs[0] if offs.shape[0] else NULL
    s.cols = <const int32_t *>&cols[0] if cols.shape[0] else NULL
    s.flatten = flatten
    s.path_cap = 256
    s.path = <char *>malloc(s.path_cap)
    if s.path == NULL:
        raise MemoryError()
    return 0


cdef int check_cols(Scan *s, Py_ssize_t ncols) except -1:
    cdef Py_ssize_t k
    for k in range(s.nkeys):
        if not 0 <= s.cols[k] < ncols:
            free(s.path)
            raise ValueError("the key table names a column past the sinks")
    return 0


def locate(buf, Py_ssize_t pos, Py_ssize_t end, tuple path, bint measure=True):
    """(OK, start, end) of the value at ``path`` (raw keys) in the document ``buf[pos:end]``
    (end -1 unless ``measure``: the value is not read); (UNKNOWN_KEY, depth of the missing
    key, 0) when a key is missing or its parent is not an object; (MALFORMED | TOO_DEEP,
    byte offset, 0) for a bad document up to the value. An empty path is the document."""
    cdef const unsigned char[::1] view = memoryview(buf).cast("B")
    cdef Scan s
    cdef Py_ssize_t i, j, found, depth = 0, kend, klen
    cdef int cls
    cdef bytes key
    cdef const unsigned char *kp
    cdef bint escaped, hit
    init(&s, view, end, b"", b"", b"", False)
    try:
        i = ws(&s, pos)
        for key in path:
            kp = key
            klen = len(key)
            with nogil:
                found = -2
                if i >= s.end or s.b[i] != 123:
                    if i < s.end:
                        found = -3 if skip(&s, i, &cls) >= 0 else -1
                    else:
                        found = fail(&s, S_MALFORMED, i)
                else:
                    j = ws(&s, i + 1)
                    if j < s.end and s.b[j] == 125:
                        found = -3
                    while found == -2:
                        if j >= s.end or s.b[j] != 34:
                            found = fail(&s, S_MALFORMED, j)
                            break
                        kend = string_end(&s, j, &escaped)
                        if kend < 0:
                            found = -1
                            break
                        hit = kend - j - 2 == klen and memcmp(s.b + j + 1, kp, klen) == 0
                        j = member_value(&s, j)
                        if j < 0:
                            found = -1
                            break
                        if hit:
                            found = j
                            break
                        j = skip(&s, j, &cls)
                        if j < 0:
                            found = -1
                            break
                        j = ws(&s, j)
                        if j < s.end and s.b[j] == 44:
                            j = ws(&s, j + 1)
                            continue
                        if j < s.end and s.b[j] == 125:
                            found = -3
                            break
                        found = fail(&s, S_MALFORMED, j)
            if found == -3:
                return UNKNOWN_KEY, depth, 0
            if found < 0:
                return s.status, s.err_pos, 0
            i = found
            depth += 1
        if not measure:
            return OK, i, -1
        with nogil:
            j = skip(&s, i, &cls)
        if j < 0:
            return s.status, s.err_pos, 0
        return OK, i, j
    finally:
        free(s.path)


def survey(buf, Py_ssize_t pos, Py_ssize_t end, bint ndjson, blob, offs, cols, bint flatten,
           bytearray masks, bytearray sizes, bytearray unknown, bint classify=True):
    """Check the records at ``buf[pos:end]``: (status, records, byte offset); on OK the
    offset is where the records end (a JSON array or object ends before ``end``).

    ORs each column's value classes into ``masks`` (uint16 per column) and writes each
    column's raw value bytes to ``sizes`` (int64 per column). On UNKNOWN_KEY ``unknown``
    holds the raw key path and the offset is the key's end; on NOT_OBJECT, MALFORMED or
    TOO_DEEP it is where the fault is. ``masks`` and ``sizes`` are untouched on error.
    Without ``classify`` every string counts as V_STR (dates are not told apart).
    """
    cdef const unsigned char[::1] view = memoryview(buf).cast("B")
    cdef Scan s
    cdef Py_ssize_t ncols = PyByteArray_GET_SIZE(masks) // 2, n, c
    cdef uint16_t *out_masks = <uint16_t *>PyByteArray_AS_STRING(masks)
    init(&s, view, end, blob, offs, cols, flatten)
    s.classify = classify
    check_cols(&s, ncols)
    s.masks = <uint16_t *>malloc(2 * ncols + 2)
    s.sizes = <int64_t *>malloc(8 * ncols + 8)
    try:
        if s.masks == NULL or s.sizes == NULL:
            raise MemoryError()
        memset(s.masks, 0, 2 * ncols)
        memset(s.sizes, 0, 8 * ncols)
        del unknown[:]
        with nogil:
            n = records(&s, pos, ndjson)
        if n < 0:
            if s.status == S_UNKNOWN_KEY:
                unknown += s.path[:s.unk_plen]
                unknown += (<const char *>s.b)[s.unk_key:s.unk_key + s.unk_klen]
            return s.status, s.row, s.err_pos
        for c in range(ncols):
            out_masks[c] |= s.masks[c]
        PyByteArray_Resize(sizes, 8 * ncols)
        memcpy(PyByteArray_AS_STRING(sizes), s.sizes, 8 * ncols)
        return OK, s.row, n
    finally:
        free(s.path)
        free(s.masks)
        free(s.sizes)


cdef inline int width_of(int kind) noexcept nogil:
    if kind == KB_BOOL:
        return 1
    if kind == KB_DATE:
        return 4
    if kind == KB_INT8 or kind == KB_FLOAT8 or kind == KB_TIMESTAMPTZ:
        return 8
    return 0


def fill(buf, Py_ssize_t pos, Py_ssize_t end, bint ndjson, blob, offs, cols, bint flatten,
         bytes kinds, Py_ssize_t records_, sizes, list valid, list offsets, list data):
    """Append the surveyed page ``buf[pos:end]`` (``records`` records, ``sizes`` from its
    survey) to the sinks: (status, rows appended or the failing row, byte offset, column);
    on OK the offset is where the records end. Keys not in the table are skipped. Sinks are
    restored on MISMATCH and DUP_KEY."""
    cdef const unsigned char[::1] view = memoryview(buf).cast("B")
    cdef const unsigned char[::1] size_view = memoryview(sizes).cast("B")
    cdef Scan s
    cdef Py_ssize_t ncols = len(kinds), c, n
    cdef Py_ssize_t *valid0 = NULL
    cdef Py_ssize_t *data0 = NULL
    cdef Py_ssize_t *offs0 = NULL
    cdef int w
    cdef int64_t size
    cdef bytearray v, o, d
    init(&s, view, end, blob, offs, cols, flatten)
    check_cols(&s, ncols)
    if (size_view.shape[0] < 8 * ncols or len(valid) < ncols or len(offsets) < ncols
            or len(data) < ncols):
        free(s.path)
        raise ValueError("sizes and sinks need an entry per column")
    s.filling = True
    s.kinds = <const unsigned char *><const char *>kinds
    s.ncols = ncols
    s.seen = <int64_t *>malloc(8 * ncols + 8)
    s.valid = <unsigned char **>malloc(sizeof(void *) * (ncols + 1))
    s.data = <unsigned char **>malloc(sizeof(void *) * (ncols + 1))
    s.offsets = <int32_t **>malloc(sizeof(void *) * (ncols + 1))
    s.dlen = <int64_t *>malloc(8 * ncols + 8)
    valid0 = <Py_ssize_t *>malloc(sizeof(Py_ssize_t) * (ncols + 1))
    data0 = <Py_ssize_t *>malloc(sizeof(Py_ssize_t) * (ncols + 1))
    offs0 = <Py_ssize_t *>malloc(sizeof(Py_ssize_t) * (ncols + 1))
    try:
        if (s.seen == NULL or s.valid == NULL or s.data == NULL or s.offsets == NULL
                or s.dlen == NULL or valid0 == NULL or data0 == NULL or offs0 == NULL):
            raise MemoryError()
        for c in range(ncols):
            v, o, d = valid[c], offsets[c], data[c]
            valid0[c] = PyByteArray_GET_SIZE(v)
            offs0[c] = PyByteArray_GET_SIZE(o)
            data0[c] = PyByteArray_GET_SIZE(d)
        for c in range(ncols):
            v, o, d = valid[c], offsets[c], data[c]
            w = width_of(kinds[c])
            memcpy(&size, &size_view[8 * c], 8)
            PyByteArray_Resize(v, valid0[c] + records_)
            s.valid[c] = <unsigned char *>PyByteArray_AS_STRING(v) + valid0[c]
            memset(s.valid[c], 0, records_)
            s.seen[c] = -1
            if w:
                PyByteArray_Resize(d, data0[c] + w * records_)
                s.data[c] = <unsigned char *>PyByteArray_AS_STRING(d) + data0[c]
                memset(s.data[c], 0, w * records_)
                s.offsets[c] = NULL
            else:
                PyByteArray_Resize(d, data0[c] + size)
                PyByteArray_Resize(o, offs0[c] + 4 * records_)
                s.data[c] = <unsigned char *>PyByteArray_AS_STRING(d)
                s.dlen[c] = data0[c]
                s.offsets[c] = <int32_t *>(PyByteArray_AS_STRING(o) + offs0[c])
        with nogil:
            n = records(&s, pos, ndjson)
        if n < 0:
            for c in range(ncols):
                PyByteArray_Resize(valid[c], valid0[c])
                PyByteArray_Resize(offsets[c], offs0[c])
                PyByteArray_Resize(data[c], data0[c])
            return s.status, s.row, s.err_pos, s.err_col if s.status in (
                S_MISMATCH, S_DUP_KEY) else -1
        for c in range(ncols):
            if s.offsets[c] != NULL:
                PyByteArray_Resize(data[c], s.dlen[c])
        return OK, s.row, n, -1
    finally:
        free(s.path)
        free(s.seen)
        free(s.valid)
        free(s.data)
        free(s.offsets)
        free(s.dlen)
        free(valid0)
        free(data0)
        free(offs0)
