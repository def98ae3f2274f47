"""JSON pages → Arrow column sinks, without a Python object per value (pure-Python twin of
``ext/json_decode.pyx``; same API, same bytes, same status codes).

A page holds records: a JSON array of objects (``ndjson=False``), or objects separated by
whitespace (``ndjson=True``). Three calls, each returning a status code and positions:

* ``locate`` finds the value at a path of raw (still escaped) object keys in a document;
* ``survey`` checks a page's syntax, counts its records, ORs each column's value classes
  (``V_*`` bits) into ``masks`` and writes each column's raw value bytes into ``sizes``
  (an upper bound of what ``fill`` appends), or names the first key not in the key table;
* ``fill`` appends a surveyed page to column sinks (one validity byte per row, int32
  offsets and data for varlena kinds, little-endian fixed-width values otherwise), each
  column converted to its kind: ``BOOL``, ``INT8``, ``FLOAT8``, ``DATE``, ``TIMESTAMPTZ``,
  ``TEXT`` (strings unescaped, other values as their JSON text), ``NUMERIC_TEXT`` (numbers
  or strings as text) and ``JSONB`` (every value as its JSON text). A value of another
  class is ``MISMATCH``; sinks are restored to their entry lengths on any error.

The key table names each column by its raw key path (flattened object keys joined by
``PATH_SEP``): ``blob`` holds the paths back to back, ``offs`` their int32 start offsets
(one more than there are keys) and ``cols`` each key's int32 column. With ``flatten`` an
object value is not a value: its keys continue the path. Strings are checked fully by
``survey`` (escapes, control characters, surrogate pairs); UTF-8 validity is checked by the
caller on the finished arrays.
"""
from __future__ import annotations

import struct

OK, MALFORMED, UNKNOWN_KEY, DUP_KEY, MISMATCH, NOT_OBJECT, TOO_DEEP = range(7)

V_NULL, V_BOOL, V_INT, V_FLOAT, V_STR, V_DATE, V_TS, V_OBJ, V_ARR, V_BIGINT = (
    1 << i for i in range(10))

#: Column kinds (the ``column_plan.Kind`` codes this kernel fills).
K_BOOL, K_INT8, K_FLOAT8, K_TEXT, K_DATE, K_TIMESTAMPTZ, K_NUMERIC_TEXT, K_JSONB = (
    1, 4, 6, 7, 9, 12, 16, 17)
_WIDTH = {K_BOOL: 1, K_INT8: 8, K_FLOAT8: 8, K_DATE: 4, K_TIMESTAMPTZ: 8}

#: Joins the raw keys of a flattened path (a raw control byte cannot occur in a JSON key).
PATH_SEP = b"\x1f"
#: Deepest nesting of arrays and objects (deeper documents are refused with TOO_DEEP).
MAX_DEPTH = 1024
#: Deepest nesting of flattened objects.
MAX_FLATTEN_DEPTH = 64

_WS = b" \t\n\r"
_DIGITS = b"0123456789"
_INT64_MAX = 2**63 - 1
_ESCAPES = {ord('"'): b'"', ord("\\"): b"\\", ord("/"): b"/", ord("b"): b"\b",
            ord("f"): b"\f", ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t"}
_HEX = b"0123456789abcdefABCDEF"
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class _Fail(Exception):
    """Unwinds a scan to its entry point (private to this twin; never escapes it)."""

    def __init__(self, status: int, pos: int, col: int = -1) -> None:
        super().__init__(status, pos)
        self.status, self.pos, self.col = status, pos, col


def _ws(b: bytes, i: int, end: int) -> int:
    while i < end and b[i] in _WS:
        i += 1
    return i


def _string_end(b: bytes, i: int, end: int) -> int:
    """``b[i]`` is the opening quote; the position after the closing one. Checks escapes,
    control characters and surrogate pairs."""
    j = i + 1
    while True:
        if j >= end:
            raise _Fail(MALFORMED, j)
        c = b[j]
        if c == 0x22:
            return j + 1
        if c < 0x20:
            raise _Fail(MALFORMED, j)
        if c != 0x5C:
            j += 1
            continue
        if j + 1 >= end:
            raise _Fail(MALFORMED, j)
        e = b[j + 1]
        if e in _ESCAPES:
            j += 2
            continue
        if e != 0x75:  # 'u'
            raise _Fail(MALFORMED, j)
        cp = _hex4(b, j + 2, end)
        if 0xDC00 <= cp <= 0xDFFF:
            raise _Fail(MALFORMED, j)
        if 0xD800 <= cp <= 0xDBFF:
            if not (j + 7 < end and b[j + 6] == 0x5C and b[j + 7] == 0x75):
                raise _Fail(MALFORMED, j)
            low = _hex4(b, j + 8, end)
            if not 0xDC00 <= low <= 0xDFFF:
                raise _Fail(MALFORMED, j + 6)
            j += 12
        else:
            j += 6


def _hex4(b: bytes, i: int, end: int) -> int:
    if i + 4 > end or any(c not in _HEX for c in b[i:i + 4]):
        raise _Fail(MALFORMED, i - 2)
    return int(b[i:i + 4], 16)


def _unescape(b: bytes, i: int, j: int) -> bytes:
    """The UTF-8 bytes of the checked string content ``b[i:j]`` (quotes excluded)."""
    if 0x5C not in b[i:j]:
        return b[i:j]
    out = bytearray()
    k = i
    while k < j:
        c = b[k]
        if c != 0x5C:
            out.append(c)
            k += 1
            continue
        e = b[k + 1]
        if e != 0x75:
            out += _ESCAPES[e]
            k += 2
            continue
        cp = int(b[k + 2:k + 6], 16)
        k += 6
        if 0xD800 <= cp <= 0xDBFF:
            cp = 0x10000 + ((cp - 0xD800) << 10) + (int(b[k + 2:k + 6], 16) - 0xDC00)
            k += 6
        out += chr(cp).encode("utf-8")
    return bytes(out)


def _number_end(b: bytes, i: int, end: int) -> tuple[int, int]:
    """(end, V_INT | V_BIGINT | V_FLOAT) of the number starting at ``b[i]``."""
    j = i
    if j < end and b[j] == 0x2D:
        j += 1
    if j >= end or b[j] not in _DIGITS:
        raise _Fail(MALFORMED, j)
    if b[j] == 0x30:
        j += 1
    else:
        while j < end and b[j] in _DIGITS:
            j += 1
    cls = V_INT
    if j < end and b[j] == 0x2E:
        j = _digit_run(b, j + 1, end)
        cls = V_FLOAT
    if j < end and b[j] in b"eE":
        j += 1
        if j < end and b[j] in b"+-":
            j += 1
        j = _digit_run(b, j, end)
        cls = V_FLOAT
    if cls == V_INT and not -_INT64_MAX - 1 <= int(b[i:j]) <= _INT64_MAX:
        cls = V_BIGINT
    return j, cls


def _digit_run(b: bytes, j: int, end: int) -> int:
    """The end of the one or more digits at ``b[j]`` (MALFORMED when there are none)."""
    if j >= end or b[j] not in _DIGITS:
        raise _Fail(MALFORMED, j)
    while j < end and b[j] in _DIGITS:
        j += 1
    return j


def _days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + 9 if m <= 2 else m - 3) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _digits(s: bytes, i: int, n: int) -> int:
    """The value of the ``n`` ASCII digits at ``s[i]``, or -1."""
    if i + n > len(s):
        return -1
    v = 0
    for c in s[i:i + n]:
        if c not in _DIGITS:
            return -1
        v = v * 10 + c - 48
    return v


def parse_datetime(s: bytes) -> tuple[int, int]:
    """(V_DATE, days since 1970-01-01) for ``YYYY-MM-DD``, (V_TS, µs since the epoch, UTC)
    for ``YYYY-MM-DD[T ]HH:MM[:SS[.f]][Z|±HH[[:]MM]]`` (no zone: UTC; fraction digits past
    microseconds are cut), else (0, 0)."""
    n = len(s)
    y, mo, d = _digits(s, 0, 4), _digits(s, 5, 2), _digits(s, 8, 2)
    if n < 10 or y < 1 or mo < 1 or mo > 12 or d < 1 or s[4] != 0x2D or s[7] != 0x2D:
        return 0, 0
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if d > _DAYS_IN_MONTH[mo - 1] + (mo == 2 and leap):
        return 0, 0
    days = _days_from_civil(y, mo, d)
    if n == 10:
        return V_DATE, days
    if s[10] not in b"Tt ":
        return 0, 0
    hh, mm = _digits(s, 11, 2), _digits(s, 14, 2)
    if n < 16 or hh < 0 or hh > 23 or mm < 0 or mm > 59 or s[13] != 0x3A:
        return 0, 0
    i, ss, frac = 16, 0, 0
    if i < n and s[i] == 0x3A:
        ss = _digits(s, 17, 2)
        if ss < 0 or ss > 59:
            return 0, 0
        i = 19
        if i < n and s[i] in b".,":
            i += 1
            k = 0
            while i < n and s[i] in _DIGITS:
                if k == 9:
                    return 0, 0
                if k < 6:
                    frac = frac * 10 + s[i] - 48
                k += 1
                i += 1
            if k == 0:
                return 0, 0
            frac *= 10 ** (6 - min(k, 6))
    offset = 0
    if i < n and s[i] in b"Zz":
        i += 1
    elif i < n and s[i] in b"+-":
        sign = -1 if s[i] == 0x2D else 1
        oh, om = _digits(s, i + 1, 2), 0
        i += 3
        if i < n and s[i] == 0x3A:
            om = _digits(s, i + 1, 2)
            i += 3
        elif i < n:
            om = _digits(s, i, 2)
            i += 2
        if oh < 0 or oh > 23 or om < 0 or om > 59:
            return 0, 0
        offset = sign * (oh * 3600 + om * 60)
    if i != n:
        return 0, 0
    secs = days * 86400 + hh * 3600 + mm * 60 + ss - offset
    return V_TS, secs * 1_000_000 + frac


class _Keys:
    """The key table: raw path → column."""

    def __init__(self, blob: bytes, offs: bytes, cols: bytes) -> None:
        n = len(cols) // 4
        o = struct.unpack(f"<{n + 1}i", offs[:4 * (n + 1)]) if n else (0,)
        c = struct.unpack(f"<{n}i", cols[:4 * n]) if n else ()
        self.by_path = {}
        for k in range(n):
            self.by_path.setdefault(bytes(blob[o[k]:o[k + 1]]), c[k])


class _Scan:
    """One pass over a page: ``survey`` (``sinks`` None) or ``fill``."""

    def __init__(self, b: bytes, end: int, keys: _Keys, flatten: bool, ncols: int) -> None:
        self.b, self.end, self.keys, self.flatten = b, end, keys, flatten
        self.masks = [0] * ncols
        self.sizes = [0] * ncols
        self.unknown = b""
        self.kinds: bytes = b""
        self.row = 0
        self.seen = [-1] * ncols
        self.cells: list[list] = [[] for _ in range(ncols)]
        self.filling = False
        self.classify = True
        self.dates = False

    # -- structure -----------------------------------------------------------------------
    def scalar(self, i: int) -> tuple[int, int]:
        """(end, class) of the string, number or literal at ``b[i]``."""
        b, end = self.b, self.end
        if i >= end:
            raise _Fail(MALFORMED, i)
        c = b[i]
        if c == 0x22:
            j = _string_end(b, i, end)
            if not self.dates or 0x5C in b[i + 1:j - 1]:
                return j, V_STR
            return j, parse_datetime(b[i + 1:j - 1])[0] or V_STR
        if c == 0x2D or 0x30 <= c <= 0x39:
            return _number_end(b, i, end)
        for word, cls in ((b"true", V_BOOL), (b"false", V_BOOL), (b"null", V_NULL)):
            if b.startswith(word, i) and i + len(word) <= end:
                return i + len(word), cls
        raise _Fail(MALFORMED, i)

    def key(self, j: int) -> int:
        """``b[j]`` starts a member: the position of its value."""
        b, end = self.b, self.end
        if j >= end or b[j] != 0x22:
            raise _Fail(MALFORMED, j)
        j = _ws(b, _string_end(b, j, end), end)
        if j >= end or b[j] != 0x3A:
            raise _Fail(MALFORMED, j)
        return _ws(b, j + 1, end)

    def skip(self, i: int) -> tuple[int, int]:
        """(end, class) of the value at ``b[i]``, checked, without building anything."""
        b, end = self.b, self.end
        if i >= end or b[i] not in b"[{":
            return self.scalar(i)
        cls = V_ARR if b[i] == 0x5B else V_OBJ
        self.dates = False   # strings inside a container are never classified
        stack: list[int] = []
        j = i
        while True:
            if j < end and b[j] in b"[{":  # open a container
                if len(stack) >= MAX_DEPTH:
                    raise _Fail(TOO_DEEP, j)
                stack.append(0x5D if b[j] == 0x5B else 0x7D)
                j = _ws(b, j + 1, end)
                if j < end and b[j] == stack[-1]:
                    stack.pop()
                    j += 1
                else:
                    if stack[-1] == 0x7D:
                        j = self.key(j)
                    continue
            else:
                j = self.scalar(j)[0]
            while True:  # after a value: ',' or the closing bracket
                if not stack:
                    return j, cls
                j = _ws(b, j, end)
                if j < end and b[j] == 0x2C:
                    j = _ws(b, j + 1, end)
                    if stack[-1] == 0x7D:
                        j = self.key(j)
                    break
                if j < end and b[j] == stack[-1]:
                    stack.pop()
                    j += 1
                    continue
                raise _Fail(MALFORMED, j)

    def records(self, pos: int, ndjson: bool) -> int:
        """Visit every record of the page; returns where the records end (the end of the
        array or object; anything after it is not read)."""
        b, end = self.b, self.end
        i = _ws(b, pos, end)
        if not ndjson:
            if i < end and b[i] == 0x7B:  # a single object is one record
                return self.record(i)
            if i >= end or b[i] != 0x5B:
                raise _Fail(MALFORMED, i)
            i = _ws(b, i + 1, end)
            if i < end and b[i] == 0x5D:
                return i + 1
        while True:
            if ndjson and i >= end:
                return i
            if i >= end:
                raise _Fail(MALFORMED, i)
            if b[i] != 0x7B:
                self.skip(i)
                raise _Fail(NOT_OBJECT, i)
            i = _ws(b, self.record(i), end)
            if ndjson:
                continue
            if i < end and b[i] == 0x2C:
                i = _ws(b, i + 1, end)
                continue
            if i >= end or b[i] != 0x5D:
                raise _Fail(MALFORMED, i)
            return i + 1

    def record(self, i: int) -> int:
        j = self.object(i, b"", 0)
        if self.filling:
            for c, seen in enumerate(self.seen):
                if seen != self.row:
                    self.cells[c].append(None)
        self.row += 1
        return j

    def object(self, i: int, prefix: bytes, depth: int) -> int:
        """``b[i]`` is '{': visit its members; returns the position after '}'."""
        b, end = self.b, self.end
        j = _ws(b, i + 1, end)
        if j < end and b[j] == 0x7D:
            return j + 1
        while True:
            if j >= end or b[j] != 0x22:
                raise _Fail(MALFORMED, j)
            kend = _string_end(b, j, end)
            path = prefix + b[j + 1:kend - 1]
            j = self.key(j)
            if self.flatten and j < end and b[j] == 0x7B:
                if depth + 1 >= MAX_FLATTEN_DEPTH:
                    raise _Fail(TOO_DEEP, j)
                j = self.object(j, path + PATH_SEP, depth + 1)
            else:
                j = self.member(path, kend, j)
            j = _ws(b, j, end)
            if j < end and b[j] == 0x2C:
                j = _ws(b, j + 1, end)
                continue
            if j < end and b[j] == 0x7D:
                return j + 1
            raise _Fail(MALFORMED, j)

    def member(self, path: bytes, key_end: int, i: int) -> int:
        col = self.keys.by_path.get(path)
        if col is None:
            if not self.filling:
                self.unknown = path
                raise _Fail(UNKNOWN_KEY, key_end)
            self.dates = False
            return self.skip(i)[0]
        if not self.filling:
            self.dates = self.classify
            j, cls = self.skip(i)
            self.masks[col] |= cls
            self.sizes[col] += j - i
            return j
        if self.seen[col] == self.row:
            raise _Fail(DUP_KEY, i, col)
        self.seen[col] = self.row
        self.dates = self.kinds[col] in (K_DATE, K_TIMESTAMPTZ)
        j, cls = self.skip(i)
        cell = self.convert(col, i, j, cls)
        if cell is _MISMATCH:
            raise _Fail(MISMATCH, i, col)
        self.cells[col].append(cell)
        return j

    # -- values --------------------------------------------------------------------------
    def convert(self, col: int, i: int, j: int, cls: int):
        """The sink bytes of one value (None for NULL); MISMATCH when it does not fit."""
        if cls == V_NULL:
            return None
        b, kind = self.b, self.kinds[col]
        if kind == K_JSONB:
            return b[i:j]
        if kind in (K_TEXT, K_NUMERIC_TEXT):
            if cls in (V_STR, V_DATE, V_TS):
                return _unescape(b, i + 1, j - 1)
            if kind == K_TEXT or cls in (V_INT, V_BIGINT, V_FLOAT):
                return b[i:j]
        elif kind == K_BOOL and cls == V_BOOL:
            return b"\x01" if b[i] == 0x74 else b"\x00"
        elif kind == K_INT8 and cls == V_INT:
            return struct.pack("<q", int(b[i:j]))
        elif kind == K_FLOAT8 and cls in (V_INT, V_BIGINT, V_FLOAT):
            return struct.pack("<d", float(b[i:j]))
        elif kind == K_DATE and cls == V_DATE:
            return struct.pack("<i", parse_datetime(b[i + 1:j - 1])[1])
        elif kind == K_TIMESTAMPTZ and cls in (V_DATE, V_TS):
            what, v = parse_datetime(b[i + 1:j - 1])
            return struct.pack("<q", v * 86_400_000_000 if what == V_DATE else v)
        return _MISMATCH


_MISMATCH = object()


def _bytes(buf) -> bytes:
    return buf if type(buf) is bytes else bytes(buf)


def locate(buf, pos: int, end: int, path: tuple[bytes, ...],
           measure: bool = True) -> tuple[int, int, int]:
    """(OK, start, end) of the value at ``path`` (raw keys) in the document ``buf[pos:end]``
    (end -1 unless ``measure``: the value is not read); (UNKNOWN_KEY, depth of the missing
    key, 0) when a key is missing or its parent is not an object; (MALFORMED | TOO_DEEP,
    byte offset, 0) for a bad document up to the value. An empty path is the document."""
    b = _bytes(buf)
    scan = _Scan(b, end, _Keys(b"", b"", b""), False, 0)
    try:
        i = _ws(b, pos, end)
        for depth, key in enumerate(path):
            if i >= end or b[i] != 0x7B:
                if i < end:
                    scan.skip(i)
                    return UNKNOWN_KEY, depth, 0
                raise _Fail(MALFORMED, i)
            j = _ws(b, i + 1, end)
            found = -1
            if j < end and b[j] == 0x7D:
                return UNKNOWN_KEY, depth, 0
            while found < 0:
                if j >= end or b[j] != 0x22:
                    raise _Fail(MALFORMED, j)
                kend = _string_end(b, j, end)
                hit = b[j + 1:kend - 1] == key
                j = _ws(b, kend, end)
                if j >= end or b[j] != 0x3A:
                    raise _Fail(MALFORMED, j)
                j = _ws(b, j + 1, end)
                if hit:
                    found = j
                    break
                j = _ws(b, scan.skip(j)[0], end)
                if j < end and b[j] == 0x2C:
                    j = _ws(b, j + 1, end)
                    continue
                if j < end and b[j] == 0x7D:
                    return UNKNOWN_KEY, depth, 0
                raise _Fail(MALFORMED, j)
            i = found
        return OK, i, scan.skip(i)[0] if measure else -1
    except _Fail as f:
        return f.status, f.pos, 0


def survey(buf, pos: int, end: int, ndjson: bool, blob: bytes, offs: bytes, cols: bytes,
           flatten: bool, masks: bytearray, sizes: bytearray, unknown: bytearray,
           classify: bool = True) -> tuple[int, int, int]:
    """Check the records at ``buf[pos:end]``: (status, records, byte offset); on OK the
    offset is where the records end (a JSON array or object ends before ``end``).

    ORs each column's value classes into ``masks`` (uint16 per column) and writes each
    column's raw value bytes to ``sizes`` (int64 per column). On UNKNOWN_KEY ``unknown``
    holds the raw key path and the offset is the key's end; on NOT_OBJECT, MALFORMED or
    TOO_DEEP it is where the fault is. ``masks`` and ``sizes`` are untouched on error.
    Without ``classify`` every string counts as V_STR (dates are not told apart).
    """
    b = _bytes(buf)
    ncols = len(masks) // 2
    scan = _Scan(b, end, _Keys(blob, offs, cols), flatten, ncols)
    scan.classify = classify
    del unknown[:]
    try:
        stop = scan.records(pos, ndjson)
    except _Fail as f:
        unknown += scan.unknown
        return f.status, scan.row, f.pos
    old = struct.unpack(f"<{ncols}H", masks)
    masks[:] = struct.pack(f"<{ncols}H", *(m | n for m, n in zip(old, scan.masks)))
    sizes[:] = struct.pack(f"<{ncols}q", *scan.sizes)
    return OK, scan.row, stop


def fill(buf, pos: int, end: int, ndjson: bool, blob: bytes, offs: bytes, cols: bytes,
         flatten: bool, kinds: bytes, records: int, sizes: bytes, valid: list,
         offsets: list, data: list) -> tuple[int, int, int, int]:
    """Append the surveyed page ``buf[pos:end]`` (``records`` records, ``sizes`` from its
    survey) to the sinks: (status, rows appended or the failing row, byte offset, column);
    on OK the offset is where the records end.
    Keys not in the table are skipped. Sinks are restored on MISMATCH and DUP_KEY."""
    b = _bytes(buf)
    ncols = len(kinds)
    scan = _Scan(b, end, _Keys(blob, offs, cols), flatten, ncols)
    scan.filling, scan.kinds = True, kinds
    try:
        stop = scan.records(pos, ndjson)
    except _Fail as f:
        return f.status, scan.row, f.pos, f.col
    for c, kind in enumerate(kinds):
        cells = scan.cells[c]
        valid[c] += bytes(0 if v is None else 1 for v in cells)
        width = _WIDTH.get(kind)
        if width:
            data[c] += b"".join(bytes(width) if v is None else v for v in cells)
            continue
        last = struct.unpack_from("<i", offsets[c], len(offsets[c]) - 4)[0]
        ends = []
        for v in cells:
            if v is not None:
                last += len(v)
                data[c] += v
            ends.append(last)
        offsets[c] += struct.pack(f"<{len(ends)}i", *ends)
    return OK, records, stop, -1

