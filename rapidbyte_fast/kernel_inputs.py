"""Arrow inputs of the encoder kernels, as both twins take them: the checks of a call's
buffers, readers of those buffers, and the DataErrors that name a bad cell.

Not a twin: the compiled encoders (ext/copy_encode.pyx, ext/insert_sql.pyx,
ext/array_params.pyx) and their Python twins validate a call and word an error through these
cold-path helpers, so both reject the same inputs with the same message. ``located_error``
is also how the decoders and the load error reports name a cell.
"""
from __future__ import annotations

import struct


from .column_plan import FIXED_WIDTH, VARLENA_KINDS, ColumnPlan, Kind
from .deferred import deferred
from .errors import DataError

np = deferred("numpy")

# Bad-value codes of the encoders (ext/value_text.pxd mirrors them in its ERR_* enum).
ERR_NUL = 1
ERR_DATE_RANGE = 2
ERR_TIME_RANGE = 3
ERR_TIMESTAMP_RANGE = 4
ERR_INTERVAL_NANOS = 5
ERR_NUMERIC_TEXT = 6
ERR_NUMERIC_RANGE = 7

REASONS = {
    ERR_NUL: "text contains a NUL byte, which PostgreSQL text cannot hold",
    ERR_DATE_RANGE: "date out of PostgreSQL's range (4714-11-24 BC .. 5874897-12-31)",
    ERR_TIME_RANGE: "time of day outside 00:00:00 .. 24:00:00",
    ERR_TIMESTAMP_RANGE: "timestamp before PostgreSQL's minimum (4714-11-24 00:00:00 BC)",
    ERR_INTERVAL_NANOS: "interval nanoseconds are not a whole number of microseconds",
    ERR_NUMERIC_TEXT: "not a plain decimal numeric text (digits, one '.', NaN, Infinity)",
    ERR_NUMERIC_RANGE: "numeric exceeds PostgreSQL's limits (131072 digits before the "
                       "point, 16383 after)",
}

#: Decimal scales PostgreSQL's numeric accepts.
MAX_DECIMAL_SCALE = 1000
_OFFSET = struct.Struct("<i").unpack_from
_LE = {Kind.INT2: "<i2", Kind.INT4: "<i4", Kind.INT8: "<i8", Kind.FLOAT4: "<f4",
       Kind.FLOAT8: "<f8", Kind.DATE: "<i4", Kind.TIME: "<i8", Kind.TIMESTAMP: "<i8",
       Kind.TIMESTAMPTZ: "<i8"}


# ---------------------------------------------------------------- calls and errors

def check_call(plan: ColumnPlan, cols: list[tuple], start: int, stop: int,
               reads: int | None = None) -> None:
    """Validate a kernel call's shape before any buffer is read: row range, buffer sizes,
    decimal scales. O(columns): the order of the offsets in between is each kernel's check
    (``check_offsets`` here, a C loop in the compiled twins), except that of an ARRAY
    column's list offsets, which must be in order before its elements can be checked.

    ``reads`` is the end of the rows the call may actually read (default ``stop``).
    """
    last = stop if reads is None else reads
    if len(cols) != len(plan.names):
        raise ValueError(f"{len(cols)} column inputs for a plan of {len(plan.names)} columns")
    for i, col in enumerate(cols):
        _check_column(plan.names[i], i, col, start, stop, last)


def _check_column(name: str, i: int, col: tuple, start: int, stop: int, last: int) -> None:
    kind, scale, length, offset, validity, offsets, data = col
    if not 0 <= start <= stop <= length:
        raise ValueError(f"row range [{start}, {stop}) outside column of {length} rows")
    if offset < 0:
        raise ValueError(f"negative array offset {offset}")
    end = offset + length
    if validity is not None and validity.size * 8 < end:
        raise ValueError(f"validity bitmap of column {i} is too short")
    if kind in VARLENA_KINDS or kind == Kind.ARRAY:
        if offsets is None or offsets.size < 4 * (end + 1):
            raise ValueError(f"offsets buffer of column {i} is too short")
        first = _OFFSET(offsets, 4 * (offset + start))[0]
        top = _OFFSET(offsets, 4 * (offset + last))[0]
        if first < 0 or top < first:
            raise offsets_error(i)
        if kind == Kind.ARRAY:
            if not isinstance(data, tuple) or data[0] in (Kind.ARRAY, 0):
                raise ValueError(f"column {i}: an ARRAY input needs an element column input")
            if top > data[2]:
                raise ValueError(f"element column of column {i} is too short")
            if not _ordered(col, start, last, deep=False):
                raise offsets_error(i)
            _check_column(name, i, data, first, top, top)
        elif top > (0 if data is None else data.size):
            raise ValueError(f"data buffer of column {i} is too short")
    else:
        width = FIXED_WIDTH.get(kind)
        if width is None:
            raise ValueError(f"unknown kind {kind} for column {i}")
        need = (end + 7) // 8 if kind == Kind.BOOL else end * width
        if need and (data is None or data.size < need):
            raise ValueError(f"data buffer of column {i} is too short")
        if kind == Kind.NUMERIC and not -MAX_DECIMAL_SCALE <= scale <= MAX_DECIMAL_SCALE:
            raise DataError(f"column {name!r}: decimal scale {scale} outside "
                            f"PostgreSQL's range [-1000, 1000]")


def check_offsets(cols: list[tuple], start: int, stop: int) -> None:
    """Raise offsets_error unless the offsets of rows [start, stop) never decrease (for an
    ARRAY column: its list offsets and its elements' offsets)."""
    for i, col in enumerate(cols):
        if not _ordered(col, start, stop, deep=True):
            raise offsets_error(i)


def _ordered(col: tuple, start: int, stop: int, deep: bool) -> bool:
    if (col[0] not in VARLENA_KINDS and col[0] != Kind.ARRAY) or stop <= start:
        return True
    offs = np.frombuffer(col[5], dtype="<i4", count=col[3] + stop + 1)[col[3] + start:]
    if np.any(offs[1:] < offs[:-1]):
        return False
    return not (deep and col[0] == Kind.ARRAY) or _ordered(col[6], int(offs[0]),
                                                           int(offs[-1]), deep)


def offsets_error(col: int) -> ValueError:
    return ValueError(f"offsets of column {col} are not monotonic")


def data_error(plan: ColumnPlan, cols: list[tuple], col: int, row: int, code: int,
               elem: int = -1) -> DataError:
    """The DataError for a bad cell (``elem``: index of the bad element of an ARRAY cell,
    among the elements of the whole element array): names the column and row, previews
    the value."""
    element = ""
    target, at = cols[col], row
    if elem >= 0:
        first = _OFFSET(target[5], 4 * (target[3] + row))[0]
        element = f", array element {elem - first + 1}"
        target, at = target[6], elem
    return located_error(plan.names[col], row,
                         f"{element}: {REASONS[code]} (value: {_preview(target, at)})")


def located_error(column: str, row: int, detail: str, prefix: str = "",
                  sqlstate: str | None = None, cls: type[DataError] = DataError) -> DataError:
    """``cls(prefix + "column 'c', row N" + detail)`` (a DataError) keeping ``column``,
    ``row`` and ``detail`` as fields, so that a caller can restate the row (``load_errors``)."""
    return cls(f"{prefix}column {column!r}, row {row}{detail}", column=column, row=row,
               detail=detail, sqlstate=sqlstate)


def _preview(col: tuple, row: int) -> str:
    kind = col[0]
    if kind in VARLENA_KINDS:
        raw = varlena_values(col, row, row + 1)[0]
        text = raw.decode("utf-8", "replace")
        return repr(text[:40] + ("..." if len(text) > 40 else ""))
    if kind == Kind.INTERVAL:
        months, days, nanos = interval_values(col, row, row + 1)[0]
        return f"{months} months {days} days {nanos} ns"
    unit = {Kind.DATE: " days since 1970-01-01", Kind.TIME: " us since midnight",
            Kind.TIMESTAMP: " us since 1970-01-01", Kind.TIMESTAMPTZ: " us since 1970-01-01"}
    return f"{fixed_values(col, row, row + 1)[0]}{unit.get(kind, '')}"


# ---------------------------------------------------------------- reading Arrow buffers

def nulls(col: tuple, start: int, stop: int) -> list[bool] | None:
    """Per-row null flags of rows [start, stop), or None when the column has no nulls."""
    validity, offset = col[4], col[3]
    if validity is None:
        return None
    bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
    return (bits[offset + start:offset + stop] == 0).tolist()


def fixed_values(col: tuple, start: int, stop: int) -> list:
    """Values of a BOOL / integer / float / date-time column (ints, floats, bools)."""
    kind, offset, data = col[0], col[3], col[6]
    lo, hi = offset + start, offset + stop
    if lo == hi:
        return []
    if kind == Kind.BOOL:
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        return (bits[lo:hi] == 1).tolist()
    return np.frombuffer(data, dtype=_LE[kind], count=hi)[lo:].tolist()


def raw_fixed(col: tuple, start: int, stop: int) -> list[bytes]:
    """The little-endian element bytes of a fixed-width column, one per row."""
    width = FIXED_WIDTH[col[0]]
    buf = memoryview(col[6]) if col[6] is not None else memoryview(b"")
    lo = (col[3] + start) * width
    return [bytes(buf[k:k + width]) for k in range(lo, lo + (stop - start) * width, width)]


def varlena_values(col: tuple, start: int, stop: int) -> list[bytes]:
    """The bytes of each row of a varlena column."""
    offset, offsets, data = col[3], col[5], col[6]
    offs = np.frombuffer(offsets, dtype="<i4", count=offset + stop + 1)[offset + start:].tolist()
    buf = bytes(memoryview(data)[offs[0]:offs[-1]]) if data is not None else b""
    base = offs[0]
    return [buf[a - base:b - base] for a, b in zip(offs, offs[1:])]


def interval_values(col: tuple, start: int, stop: int) -> list[tuple[int, int, int]]:
    """(months, days, nanoseconds) per row of an INTERVAL column."""
    rec = np.dtype([("m", "<i4"), ("d", "<i4"), ("ns", "<i8")])
    arr = np.frombuffer(col[6], dtype=rec, count=col[3] + stop)[col[3] + start:]
    return list(zip(arr["m"].tolist(), arr["d"].tolist(), arr["ns"].tolist()))


def decimal_values(col: tuple, start: int, stop: int) -> list[int]:
    """Unscaled signed integers of a decimal128 column."""
    return [int.from_bytes(b, "little", signed=True) for b in raw_fixed(col, start, stop)]


def list_offsets(col: tuple, start: int, stop: int) -> list[int]:
    """Element offsets of rows [start, stop] of an ARRAY column (stop - start + 1 values)."""
    return np.frombuffer(col[5], dtype="<i4", count=col[3] + stop + 1)[col[3] + start:].tolist()


def check_array_call(plan: ColumnPlan, cols: list[tuple], oids: tuple[int, ...],
                     start: int, stop: int, outs: list) -> None:
    """``check_call`` for the array parameter encoders (array_params), plus one element type
    OID and one bytearray per column, and no ARRAY column: an array of arrays is a
    multidimensional array to PostgreSQL, which ``unnest`` would flatten."""
    check_call(plan, cols, start, stop)
    if len(oids) != len(cols) or len(outs) != len(cols):
        raise ValueError(f"{len(oids)} element OIDs and {len(outs)} outputs for "
                         f"{len(cols)} columns")
    for i, col in enumerate(cols):
        if col[0] == Kind.ARRAY:
            raise ValueError(f"column {i} is an ARRAY: arrays of arrays have no binary "
                             "array parameter")
        if not 0 < oids[i] < 2**32:
            raise ValueError(f"element type OID {oids[i]} of column {i} is not an OID")
        if not isinstance(outs[i], bytearray):
            raise TypeError(f"output {i} is a {type(outs[i]).__name__}, not a bytearray")
