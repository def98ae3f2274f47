"""PostgreSQL text forms of Arrow values, shared by the COPY and INSERT Python twins.

The Python twin of ``ext/value_text.pxd``, value for value. What the compiled kernels share
with the twins (call checks, buffer readers, error wording) is in ``kernel_inputs``.

Every column reader works on a row range and returns ``(cells, err)``: the cells up to the
first bad value and ``err = (row, code)`` for it (``None`` when all rows are fine), so a
caller can report the first bad cell in row-major order exactly like the compiled loops.
"""
from __future__ import annotations

import math

from ..column_plan import (
    DECIMAL_NAN, DECIMAL_NEG_INF, DECIMAL_POS_INF, INTERVAL_NEG_INF, INTERVAL_POS_INF,
    VARLENA_KINDS, Kind,
)
from ..kernel_inputs import (
    ERR_DATE_RANGE, ERR_INTERVAL_NANOS, ERR_NUL, ERR_NUMERIC_RANGE, ERR_NUMERIC_TEXT,
    ERR_TIME_RANGE, ERR_TIMESTAMP_RANGE, decimal_values, fixed_values, interval_values,
    list_offsets, nulls, raw_fixed, varlena_values,
)

# PostgreSQL's valid ranges, in Arrow's Unix-epoch units (DATE_END is exclusive).
UNIX_DATE_MIN = -2_440_588
UNIX_DATE_END = 2_145_042_906
UNIX_TS_MIN = -210_866_803_200_000_000
USECS_PER_DAY = 86_400_000_000
DATE_POS_INF, DATE_NEG_INF = 2**31 - 1, -(2**31)
TS_POS_INF, TS_NEG_INF = 2**63 - 1, -(2**63)

# Numeric sign words of the binary format (also the result tags of parse_numeric).
NUMERIC_POS, NUMERIC_NEG = 0x0000, 0x4000
NUMERIC_NAN, NUMERIC_PINF, NUMERIC_NINF = 0xC000, 0xD000, 0xF000
NUMERIC_INT_DIGITS_MAX = 131_072
NUMERIC_DSCALE_MAX = 16_383

_NUMERIC_SPECIAL = {b"NaN": NUMERIC_NAN, b"Infinity": NUMERIC_PINF, b"-Infinity": NUMERIC_NINF}
#: decimal128 sentinel → (numeric sign word, text) of NaN and ±Infinity.
DECIMAL_SPECIAL = {DECIMAL_NAN: (NUMERIC_NAN, "NaN"), DECIMAL_POS_INF: (NUMERIC_PINF, "Infinity"),
                   DECIMAL_NEG_INF: (NUMERIC_NINF, "-Infinity")}
#: Arrow interval sentinel → text of PostgreSQL 17's ±infinity.
INTERVAL_SPECIAL = {INTERVAL_POS_INF: "infinity", INTERVAL_NEG_INF: "-infinity"}
_DIGITS = frozenset(b"0123456789")


# ---------------------------------------------------------------- errors in row-major order

def first_error(errs: list[tuple | None]) -> tuple[int, int, int, int] | None:
    """``(row, col, code, elem)`` of the first bad cell in row-major order, from per-column
    errors ``(row, code)`` or ``(row, code, elem)`` (elem: element index of an ARRAY cell)."""
    found = [(e[0], i, e[1], e[2] if len(e) > 2 else -1)
             for i, e in enumerate(errs) if e is not None]
    return min(found) if found else None


# ---------------------------------------------------------------- value checks

def date_error(d: int) -> int:
    if d in (DATE_POS_INF, DATE_NEG_INF) or UNIX_DATE_MIN <= d < UNIX_DATE_END:
        return 0
    return ERR_DATE_RANGE


def time_error(us: int) -> int:
    return 0 if 0 <= us <= USECS_PER_DAY else ERR_TIME_RANGE


def interval_error(value: tuple[int, int, int]) -> int:
    """Error code of an Arrow interval (months, days, ns): ns must be whole microseconds,
    unless the value is a ±infinity sentinel."""
    return ERR_INTERVAL_NANOS if value[2] % 1000 and value not in INTERVAL_SPECIAL else 0


def timestamp_error(us: int) -> int:
    return 0 if us == TS_NEG_INF or us >= UNIX_TS_MIN else ERR_TIMESTAMP_RANGE


def parse_numeric(text: bytes) -> tuple[int, bytes, bytes] | int:
    """``(sign, integer_digits, fraction_digits)`` of a numeric text, or an error code.

    ``sign`` is one of the NUMERIC_* words; digits are empty for NaN and the infinities.
    """
    special = _NUMERIC_SPECIAL.get(text)
    if special is not None:
        return special, b"", b""
    sign = NUMERIC_POS
    body = text
    if body[:1] in (b"-", b"+"):
        sign = NUMERIC_NEG if body[:1] == b"-" else NUMERIC_POS
        body = body[1:]
    ip, dot, fp = body.partition(b".")
    if not (ip or fp) or not _DIGITS.issuperset(ip) or not _DIGITS.issuperset(fp):
        return ERR_NUMERIC_TEXT
    if len(ip.lstrip(b"0")) > NUMERIC_INT_DIGITS_MAX or len(fp) > NUMERIC_DSCALE_MAX:
        return ERR_NUMERIC_RANGE
    return sign, ip, fp


# ---------------------------------------------------------------- text forms

def civil_from_days(z: int) -> tuple[int, int, int]:
    """(year, month, day) of a day count since 1970-01-01, proleptic Gregorian, year 0 = 1 BC.

    Howard Hinnant's algorithm; integer-only so it covers every int32/int64 input.
    """
    z += 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, d


def _ymd(days: int) -> tuple[str, bool]:
    y, m, d = civil_from_days(days)
    bc = y <= 0
    return f"{1 - y if bc else y:04d}-{m:02d}-{d:02d}", bc


def _clock(us: int) -> str:
    secs, frac = divmod(us, 1_000_000)
    mins, s = divmod(secs, 60)
    h, mi = divmod(mins, 60)
    return f"{h:02d}:{mi:02d}:{s:02d}.{frac:06d}"


def fmt_date(d: int) -> str:
    if d == DATE_POS_INF:
        return "infinity"
    if d == DATE_NEG_INF:
        return "-infinity"
    ymd, bc = _ymd(d)
    return ymd + " BC" if bc else ymd


def fmt_time(us: int) -> str:
    return _clock(us)


def fmt_timestamp(us: int, tz: bool) -> str:
    if us == TS_POS_INF:
        return "infinity"
    if us == TS_NEG_INF:
        return "-infinity"
    days, rem = divmod(us, USECS_PER_DAY)
    ymd, bc = _ymd(days)
    return f"{ymd} {_clock(rem)}{'+00' if tz else ''}{' BC' if bc else ''}"


def fmt_interval(months: int, days: int, ns: int) -> str:
    if (months, days, ns) in INTERVAL_SPECIAL:
        return INTERVAL_SPECIAL[months, days, ns]
    # Explicit signs on every field: under IntervalStyle=sql_standard a lone leading '-'
    # would otherwise apply to all fields. The time part as [+-]H:MM:SS.ffffff: PostgreSQL
    # before 15 reads a "N microseconds" field as a 32-bit integer.
    us = ns // 1000
    h, rest = divmod(abs(us), 3_600_000_000)
    m, rest = divmod(rest, 60_000_000)
    s, rest = divmod(rest, 1_000_000)
    sign = "-" if us < 0 else "+"
    return f"{months:+d} mons {days:+d} days {sign}{h}:{m:02d}:{s:02d}.{rest:06d}"


def fmt_float(v: float, digits: int) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return "%.*g" % (digits, v)


def fmt_uuid(b: bytes) -> str:
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def decimal_digits(v: int, scale: int) -> tuple[bool, str, str]:
    """(negative, integer digits, fraction digits) of unscaled ``v`` at ``scale``.

    Negative scales append zeros; integer digits are '' when the value is below 1.
    """
    digits = str(abs(v)) if v else ""
    if scale <= 0:
        return v < 0, digits + "0" * -scale if digits else "", ""
    if len(digits) > scale:
        return v < 0, digits[:-scale], digits[-scale:]
    return v < 0, "", digits.rjust(scale, "0")


def fmt_decimal(v: int, scale: int) -> str:
    if v in DECIMAL_SPECIAL:
        return DECIMAL_SPECIAL[v][1]
    neg, ip, fp = decimal_digits(v, scale)
    return ("-" if neg else "") + (ip or "0") + ("." + fp if fp else "")


# ---------------------------------------------------------------- per-column text cells

_FMT = {
    Kind.FLOAT4: lambda v: fmt_float(v, 9), Kind.FLOAT8: lambda v: fmt_float(v, 17),
    Kind.DATE: fmt_date, Kind.TIME: fmt_time,
    Kind.TIMESTAMP: lambda v: fmt_timestamp(v, False),
    Kind.TIMESTAMPTZ: lambda v: fmt_timestamp(v, True),
}
_CHECK = {Kind.DATE: date_error, Kind.TIME: time_error, Kind.TIMESTAMP: timestamp_error,
          Kind.TIMESTAMPTZ: timestamp_error}


def string_error(kind: int, b: bytes) -> int:
    """Error code of a TEXT / JSONB / NUMERIC_TEXT value (0 when it can be loaded)."""
    if kind == Kind.NUMERIC_TEXT:
        parsed = parse_numeric(b)
        return parsed if isinstance(parsed, int) else 0
    return ERR_NUL if b"\x00" in b else 0


def text_cells(col: tuple, start: int, stop: int) -> tuple[list[bytes | None], tuple | None]:
    """PostgreSQL text input form of rows [start, stop) (None = NULL), up to the first error.

    BOOL is ``t``/``f``, BYTEA ``\\x`` + hex, strings their raw bytes, ARRAY the array
    literal; no quoting or COPY escaping is applied (that is the caller's format).
    """
    kind = col[0]
    if kind == Kind.ARRAY:
        return array_cells(col, start, stop)
    null = nulls(col, start, stop)
    if kind in VARLENA_KINDS:
        vals: list = varlena_values(col, start, stop)
        if kind == Kind.BYTEA:
            cells = [b"\\x" + v.hex().encode() for v in vals]
        else:
            cells = vals
            for k, v in enumerate(vals):
                err = (null is None or not null[k]) and string_error(kind, v)
                if err:
                    return _masked(cells[:k], null), (start + k, err)
        return _masked(cells, null), None
    if kind == Kind.INTERVAL:
        cells, err = [], None
        for value in interval_values(col, start, stop):
            if interval_error(value) and (null is None or not null[len(cells)]):
                err = (start + len(cells), ERR_INTERVAL_NANOS)
                break
            cells.append(fmt_interval(*value).encode())
        return _masked(cells, null), err
    if kind == Kind.UUID:
        return _masked([fmt_uuid(b).encode() for b in raw_fixed(col, start, stop)], null), None
    if kind == Kind.NUMERIC:
        scale = col[1]
        cells = [fmt_decimal(v, scale).encode() for v in decimal_values(col, start, stop)]
        return _masked(cells, null), None
    vals = fixed_values(col, start, stop)
    if kind == Kind.BOOL:
        return _masked([b"t" if v else b"f" for v in vals], null), None
    if kind in (Kind.INT2, Kind.INT4, Kind.INT8):
        return _masked([str(v).encode() for v in vals], null), None
    check = _CHECK.get(kind)
    err = None
    if check is not None:
        for k, v in enumerate(vals):
            code = check(v)
            if code and (null is None or not null[k]):
                vals, err = vals[:k], (start + k, code)
                break
    fmt = _FMT[kind]
    return _masked([fmt(v).encode() for v in vals], null), err


_ARRAY_SPECIAL = frozenset(b'"\\{},') | frozenset(b" \t\n\r\v\f")


def array_cells(col: tuple, start: int, stop: int) -> tuple[list[bytes | None], tuple | None]:
    """Array literals (``{1,NULL,"a b"}``, quoted as array_out does) of rows [start, stop);
    the error is ``(row, code, element)``, element indexing the whole element array."""
    cells: list[bytes | None] = []
    for elems, err in array_rows(col, start, stop, text_cells):
        if err is not None:
            return cells, err
        cells.append(None if elems is None else b"{" + b",".join(
            b"NULL" if e is None else array_element(e) for e in elems) + b"}")
    return cells, None


def array_rows(col: tuple, start: int, stop: int, cells_of):
    """``(element cells or None for a NULL row, None)`` per row of an ARRAY column, the
    cells made by ``cells_of(element column, start, stop)`` (a ``text_cells``-like reader)
    over the whole element range at once; the first bad element ends the rows with
    ``(None, (row, code, element))``. Elements under NULL rows are never reported."""
    null = nulls(col, start, stop)
    offs = list_offsets(col, start, stop)
    base = offs[0]
    elems, err = cells_of(col[6], base, offs[-1])
    for k in range(stop - start):
        if null is not None and null[k]:
            yield None, None
            continue
        if err is not None and err[0] < offs[k + 1]:   # the first bad one, or after it
            part, row_err = cells_of(col[6], offs[k], offs[k + 1])
            if row_err is not None:
                yield None, (start + k, row_err[1], row_err[0])
                return
        else:
            part = elems[offs[k] - base:offs[k + 1] - base]
        yield part, None


def array_element(text: bytes) -> bytes:
    """One element of an array literal: double-quoted (with ``\\`` escapes) when array_in
    would otherwise misread it."""
    if text and text.upper() != b"NULL" and _ARRAY_SPECIAL.isdisjoint(text):
        return text
    return b'"' + text.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _masked(cells: list, null: list[bool] | None) -> list:
    """``cells`` with NULL rows replaced by None (null slots may hold any bytes)."""
    if null is None:
        return cells
    return [None if n else c for c, n in zip(cells, null)]
