"""Postgres COPY BINARY stream → Arrow column sinks, and the COPY OUT reader (Python twin).

Reference implementation of ``rapidbyte_fast._native.copy_decode``: same API, same bytes in
the sinks, same return values, same ``DataError`` messages. A tuple's framing (field count,
field lengths) is checked before its values, and problems are reported in stream order, so
both twins name the same first problem however the stream is cut into chunks (the compiled
twin frames a whole chunk first, then converts the rows before the first framing error).
"""
from __future__ import annotations

import struct

from psycopg import OperationalError, pq

from ..column_plan import (
    DECIMAL_NAN, DECIMAL_NEG_INF, DECIMAL_POS_INF, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN,
    INTERVAL_NEG_INF, INTERVAL_POS_INF, PG_EPOCH_OFFSET_DAYS, PG_EPOCH_OFFSET_US, VARLENA_KINDS,
    ColumnPlan, ColumnSinks, Kind,
)
from ..copy_format import (
    E_ARRAY_DIMS, E_ARRAY_LBOUND, E_ARRAY_MALFORMED, E_DATE_RANGE, E_FIELD_COUNT,
    E_FIELD_LENGTH, E_INTERVAL_RANGE, E_INVALID_UTF8, E_JSONB_VERSION, E_NUMERIC_MALFORMED,
    E_NUMERIC_RANGE, E_TIMESTAMP_RANGE, E_TOO_LARGE, copy_failed, data_error,
)
from ..copy_format import parse_header  # noqa: F401  (part of the kernel's API)

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_LE_I32 = struct.Struct("<i")
_INTERVAL = struct.Struct(">qii")
_LE_INTERVAL = struct.Struct("<iiq")
_NUMERIC_HEAD = struct.Struct(">hhHh")
_U16 = struct.Struct(">H")
_pack_offset = _LE_I32.pack

#: Bytes a non-NULL field of each fixed-width kind has on the wire (NUMERIC varies).
WIRE_WIDTH = {
    Kind.BOOL: 1, Kind.INT2: 2, Kind.INT4: 4, Kind.INT8: 8, Kind.FLOAT4: 4, Kind.FLOAT8: 8,
    Kind.DATE: 4, Kind.TIME: 8, Kind.TIMESTAMP: 8, Kind.TIMESTAMPTZ: 8, Kind.INTERVAL: 16,
    Kind.UUID: 16,
}
#: Bytes one value takes in a fixed-width sink (what a NULL row is padded with).
_SINK_WIDTH = {**WIRE_WIDTH, Kind.NUMERIC: 16}

NUMERIC_POS, NUMERIC_NEG = 0x0000, 0x4000
NUMERIC_NAN, NUMERIC_PINF, NUMERIC_NINF = 0xC000, 0xD000, 0xF000
_NUMERIC_SPECIAL = {NUMERIC_NAN: "NaN", NUMERIC_PINF: "Infinity", NUMERIC_NINF: "-Infinity"}
_DECIMAL_SPECIAL = {NUMERIC_NAN: DECIMAL_NAN, NUMERIC_PINF: DECIMAL_POS_INF,
                    NUMERIC_NINF: DECIMAL_NEG_INF}
#: The (time µs, days, months) of interval_send's ±infinity and their Arrow sentinels.
_INTERVAL_INF = {(INT64_MAX, INT32_MAX, INT32_MAX): INTERVAL_POS_INF,
                 (INT64_MIN, INT32_MIN, INT32_MIN): INTERVAL_NEG_INF}
_NUMERIC_DSCALE_MASK = 0x3FFF

#: Most dimensions a PostgreSQL array has (MAXDIM).
ARRAY_MAX_DIMS = 6


def numeric_text(field: bytes) -> str | None:
    """``numeric_out`` text of a numeric in binary send format (None when malformed)."""
    parts = _numeric_parts(field)
    if parts is None:
        return None
    weight, sign, dscale, digits = parts
    special = _NUMERIC_SPECIAL.get(sign)
    if special is not None:
        return special
    out = ["-"] if sign == NUMERIC_NEG else []
    if weight < 0:
        d = weight + 1
        out.append("0")
    else:
        out.append(str(digits[0] if digits else 0))
        out.extend(f"{digits[d] if d < len(digits) else 0:04d}" for d in range(1, weight + 1))
        d = weight + 1
    if dscale > 0:
        frac = "".join(
            f"{digits[d + i] if 0 <= d + i < len(digits) else 0:04d}"
            for i in range((dscale + 3) // 4)
        )
        out.append("." + frac[:dscale])
    return "".join(out)


def _numeric_text_len(field: bytes) -> int:
    """Length of ``numeric_text(field)`` from the header alone (0 for a malformed header;
    the digits are checked when the value is converted)."""
    head = _numeric_head(field)
    if head is None:
        return 0
    ndigits, weight, sign, dscale = head
    if sign in _NUMERIC_SPECIAL:
        return len(_NUMERIC_SPECIAL[sign])
    n = 1 if sign == NUMERIC_NEG else 0
    if weight < 0:
        n += 1
    else:
        first = _U16.unpack_from(field, 8)[0] if ndigits else 0
        n += len(str(min(first, 9999))) + 4 * weight
    return n + (1 + dscale if dscale > 0 else 0)


def _numeric_head(field: bytes) -> tuple[int, int, int, int] | None:
    """(ndigits, weight, sign, dscale) when the header is one numeric_recv accepts."""
    if len(field) < 8:
        return None
    ndigits, weight, sign, dscale = _NUMERIC_HEAD.unpack_from(field)
    if ndigits < 0 or len(field) != 8 + 2 * ndigits:
        return None
    if sign not in (NUMERIC_POS, NUMERIC_NEG) and sign not in _NUMERIC_SPECIAL:
        return None
    if dscale < 0 or dscale & _NUMERIC_DSCALE_MASK != dscale:
        return None
    return ndigits, weight, sign, dscale


def _numeric_parts(field: bytes) -> tuple[int, int, int, tuple[int, ...]] | None:
    """(weight, sign, dscale, base-10000 digits) of a valid wire numeric, else None.

    Valid is what ``numeric_recv`` accepts: consistent length, known sign, dscale in range,
    digits below 10000.
    """
    head = _numeric_head(field)
    if head is None:
        return None
    ndigits, weight, sign, dscale = head
    digits = struct.unpack_from(f">{ndigits}H", field, 8)
    if any(d >= 10000 for d in digits):
        return None
    return weight, sign, dscale, digits


def _numeric_unscaled(field: bytes, precision: int, scale: int) -> int | str:
    """The decimal128 integer (value × 10^scale; NaN and ±Infinity as their sentinels);
    the value's text when it is not exact or does not fit ``precision`` digits."""
    weight, sign, _, digits = _numeric_parts(field)  # type: ignore[misc]
    if sign in _DECIMAL_SPECIAL:
        return _DECIMAL_SPECIAL[sign]
    mag = 0
    for d in digits:
        mag = mag * 10000 + d
    exp = 4 * (weight - len(digits) + 1) + scale
    if exp >= 0:
        mag *= 10 ** exp
    else:
        mag, rest = divmod(mag, 10 ** -exp)
        if rest:
            return numeric_text(field)  # type: ignore[return-value]
    if mag >= 10 ** precision:
        return numeric_text(field)  # type: ignore[return-value]
    return -mag if sign == NUMERIC_NEG else mag


def decode(
    plan: ColumnPlan, src: bytes | bytearray | memoryview, pos: int, end: int,
    sinks: ColumnSinks, max_rows: int,
) -> tuple[int, bool]:
    """Append the complete tuples of ``src[pos:end]`` (COPY BINARY, header already skipped)
    to ``sinks``; returns ``(new_pos, saw_trailer)``.

    Stops at the first incomplete tuple (call again from ``new_pos`` with more bytes), after
    ``max_rows`` rows appended by this call, or after the trailer (``new_pos`` is then just
    past it; the trailer is recognised even when ``max_rows`` rows were already decoded).
    A bad tuple raises DataError naming column and stream row (``sinks.rows`` + index), with
    every sink truncated back to its length on entry and ``sinks.rows`` unchanged.
    The compiled twin releases the GIL: no other thread may touch ``src`` or the sinks
    during the call. Text is copied as sent (the connection's client_encoding must be UTF8),
    checked to be UTF-8 first when ``plan.validate_utf8`` (a SQL_ASCII source). A row that
    would take a column's data (or an array column's element count) past 2^31 - 1 ends the
    call before it; as the first row of a call it is a DataError.
    """
    buf = memoryview(src).cast("B")
    if not 0 <= pos <= end <= len(buf):
        raise ValueError(f"invalid range [{pos}, {end}) of a {len(buf)}-byte buffer")
    if max_rows < 0:
        raise ValueError(f"max_rows must be >= 0, got {max_rows}")
    kinds = [Kind(k) for k in plan.kinds]
    ncols = len(kinds)
    for c, kind in enumerate(kinds):
        if kind == Kind.ARRAY and Kind(plan.elem_kinds[c]) == Kind.ARRAY:
            raise ValueError(f"column {plan.names[c]!r}: arrays of arrays")
        numeric = kind == Kind.NUMERIC or (kind == Kind.ARRAY
                                           and plan.elem_kinds[c] == Kind.NUMERIC)
        if numeric and not 1 <= plan.precisions[c] <= 38:
            raise ValueError(f"column {plan.names[c]!r}: decimal128 precision must be 1..38, "
                             f"got {plan.precisions[c]}")
    widths = [WIRE_WIDTH.get(k, 0) for k in kinds]
    elem_widths = [WIRE_WIDTH.get(Kind(e), 0) if k == Kind.ARRAY else 0
                   for k, e in zip(kinds, plan.elem_kinds)]
    sink_lists = (sinks.valid, sinks.offsets, sinks.data, sinks.child_valid,
                  sinks.child_offsets, sinks.child_data)
    marks = [tuple(len(b) for b in col) for col in zip(*sink_lists)]
    row0 = sinks.rows
    rows = 0
    trailer = False
    unpack_i16, unpack_i32 = _I16.unpack_from, _I32.unpack_from
    try:
        while end - pos >= 2:
            nfields = unpack_i16(buf, pos)[0]
            if nfields == -1:
                trailer = True
                pos += 2
                break
            if rows == max_rows:
                break
            if nfields != ncols:
                raise data_error(plan, E_FIELD_COUNT, -1, row0 + rows, nfields)
            fields: list = []
            q = pos + 2
            for c in range(ncols):
                if end - q < 4:
                    break
                n = unpack_i32(buf, q)[0]
                q += 4
                if n < 0:
                    if n != -1:
                        raise data_error(plan, E_FIELD_LENGTH, c, row0 + rows, n)
                    fields.append(None)
                    continue
                if widths[c] and n != widths[c]:
                    raise data_error(plan, E_FIELD_LENGTH, c, row0 + rows, n)
                if end - q < n:
                    break
                field = bytes(buf[q:q + n])
                if kinds[c] == Kind.ARRAY:
                    elements, err = array_elements(field, elem_widths[c])
                    if err is not None:
                        code, value, elem = err
                        raise data_error(plan, code, c, row0 + rows, value, elem=elem)
                    over = _array_overflow(plan, sinks, c, elements)
                    fields.append(elements)
                else:
                    over = _overflow(kinds[c], sinks.data[c], field)
                    fields.append(field)
                if over is not None:  # the column would pass 2^31 - 1 bytes (or elements)
                    if rows:
                        break  # as the compiled scan does: the caller cuts the batch here
                    raise data_error(plan, E_TOO_LARGE, c, row0 + rows, elem=over)
                q += n
            else:
                for c, field in enumerate(fields):
                    _append(plan, sinks, kinds[c], c, row0 + rows, field)
                pos = q
                rows += 1
                continue
            break
    except BaseException:
        for mark, *bufs in zip(marks, *sink_lists):
            for m, b in zip(mark, bufs):
                del b[m:]
        raise
    sinks.rows += rows
    return pos, trailer


def _varlena_bytes(kind: Kind, field: bytes) -> int:
    """Bytes a value of a varlena kind adds to its data sink (0 for fixed-width kinds)."""
    if kind in (Kind.TEXT, Kind.BYTEA):
        return len(field)
    if kind == Kind.JSONB:
        return max(len(field) - 1, 0)
    if kind == Kind.NUMERIC_TEXT:
        return _numeric_text_len(field)
    return 0


def _overflow(kind: Kind, data: bytearray, field: bytes) -> int | None:
    """-1 when ``field`` would take the data sink past int32 offsets, else None."""
    return -1 if len(data) + _varlena_bytes(kind, field) > INT32_MAX else None


def _array_overflow(plan: ColumnPlan, sinks: ColumnSinks, c: int,
                    elements: list) -> int | None:
    """Where an array value would take column ``c`` past int32 offsets: -1 for its element
    count (the list offsets), the index of the element that passes for the element data;
    None when it fits."""
    if len(sinks.child_valid[c]) + len(elements) > INT32_MAX:
        return -1
    kind = Kind(plan.elem_kinds[c])
    total = len(sinks.child_data[c])
    for e, element in enumerate(elements):
        if element is not None:
            total += _varlena_bytes(kind, element)
            if total > INT32_MAX:
                return e
    return None


def array_elements(field: bytes, elem_width: int) -> tuple[list | None, tuple | None]:
    """The element fields (None = NULL) of a 1-D binary array with lower bound 1, or
    ``(None, (code, value, element))`` for an array that is malformed or of another shape.

    ``elem_width`` is the wire width of a fixed-width element kind (0: any length).
    """
    n = len(field)
    if n < 12:
        return None, (E_ARRAY_MALFORMED, 0, -1)
    ndim, flags = _I32.unpack_from(field, 0)[0], _I32.unpack_from(field, 4)[0]
    if flags not in (0, 1) or ndim < 0 or ndim > ARRAY_MAX_DIMS:
        return None, (E_ARRAY_MALFORMED, 0, -1)
    if ndim == 0:
        return ([], None) if n == 12 else (None, (E_ARRAY_MALFORMED, 0, -1))
    if ndim > 1:
        return None, (E_ARRAY_DIMS, ndim, -1)
    if n < 20:
        return None, (E_ARRAY_MALFORMED, 0, -1)
    count, lbound = _I32.unpack_from(field, 12)[0], _I32.unpack_from(field, 16)[0]
    if count < 0:
        return None, (E_ARRAY_MALFORMED, 0, -1)
    if count and lbound != 1:
        return None, (E_ARRAY_LBOUND, lbound, -1)
    elements: list[bytes | None] = []
    q = 20
    for e in range(count):
        if n - q < 4:
            return None, (E_ARRAY_MALFORMED, 0, -1)
        m = _I32.unpack_from(field, q)[0]
        q += 4
        if m == -1:
            elements.append(None)
            continue
        if m < 0 or n - q < m:
            return None, (E_ARRAY_MALFORMED, 0, -1)
        if elem_width and m != elem_width:
            return None, (E_FIELD_LENGTH, m, e)
        elements.append(field[q:q + m])
        q += m
    if q != n:
        return None, (E_ARRAY_MALFORMED, 0, -1)
    return elements, None


def _append(
    plan: ColumnPlan, sinks: ColumnSinks, kind: Kind, c: int, row: int, field,
) -> None:
    """Append one field (None = NULL; an ARRAY's list of element fields) of column ``c``."""
    if kind != Kind.ARRAY:
        err = _put(kind, plan.precisions[c], plan.scales[c], plan.validate_utf8,
                   sinks.valid[c], sinks.offsets[c], sinks.data[c], field)
        if err is not None:
            raise data_error(plan, err[0], c, row, err[1], err[2])
        return
    child_valid = sinks.child_valid[c]
    if field is not None:
        elem = Kind(plan.elem_kinds[c])
        for e, value in enumerate(field):
            err = _put(elem, plan.precisions[c], plan.scales[c], plan.validate_utf8,
                       child_valid, sinks.child_offsets[c], sinks.child_data[c], value)
            if err is not None:
                raise data_error(plan, err[0], c, row, err[1], err[2], elem=e)
    sinks.valid[c].append(0 if field is None else 1)
    sinks.offsets[c] += _pack_offset(len(child_valid))


def _put(kind: Kind, precision: int, scale: int, check_utf8: bool, valid: bytearray,
         offsets: bytearray, data: bytearray,
         field: bytes | None) -> tuple[int, int, str | bytes] | None:
    """Append one value (None = NULL) to sinks of ``kind`` (the framing made sure it fits);
    ``(code, value, text)`` of a problem instead (the caller truncates the sinks)."""
    if field is None:
        valid.append(0)
        if kind in VARLENA_KINDS:
            offsets += _pack_offset(len(data))
        else:
            data += bytes(_SINK_WIDTH[kind])
        return None
    valid.append(1)
    if kind == Kind.TEXT and check_utf8 and not _is_utf8(field):
        return E_INVALID_UTF8, 0, field
    if kind in (Kind.TEXT, Kind.BYTEA):
        data += field
    elif kind == Kind.BOOL:
        data.append(1 if field[0] else 0)
    elif kind in (Kind.INT2, Kind.INT4, Kind.INT8, Kind.FLOAT4, Kind.FLOAT8, Kind.TIME):
        data += field[::-1]  # bytes reversed: NaN payloads and -0.0 survive bit for bit
    elif kind == Kind.DATE:
        days = _I32.unpack(field)[0]
        if days not in (INT32_MAX, INT32_MIN):
            if days > INT32_MAX - PG_EPOCH_OFFSET_DAYS:
                return E_DATE_RANGE, days, ""
            days += PG_EPOCH_OFFSET_DAYS
        data += days.to_bytes(4, "little", signed=True)
    elif kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
        us = int.from_bytes(field, "big", signed=True)
        if us not in (INT64_MAX, INT64_MIN):
            if us > INT64_MAX - PG_EPOCH_OFFSET_US:
                return E_TIMESTAMP_RANGE, us, ""
            us += PG_EPOCH_OFFSET_US
        data += us.to_bytes(8, "little", signed=True)
    elif kind == Kind.INTERVAL:
        wire = _INTERVAL.unpack(field)
        if wire in _INTERVAL_INF:
            data += _LE_INTERVAL.pack(*_INTERVAL_INF[wire])
        else:
            us, days, months = wire
            if not INT64_MIN <= us * 1000 <= INT64_MAX:
                return E_INTERVAL_RANGE, us, ""
            data += _LE_INTERVAL.pack(months, days, us * 1000)
    elif kind == Kind.UUID:
        data += field
    elif kind == Kind.NUMERIC:
        if _numeric_parts(field) is None:
            return E_NUMERIC_MALFORMED, 0, ""
        value = _numeric_unscaled(field, precision, scale)
        if isinstance(value, str):
            return E_NUMERIC_RANGE, 0, value
        data += value.to_bytes(16, "little", signed=True)
    elif kind == Kind.NUMERIC_TEXT:
        text = numeric_text(field)
        if text is None:
            return E_NUMERIC_MALFORMED, 0, ""
        data += text.encode("ascii")
    elif kind == Kind.JSONB:
        if not field or field[0] != 1:
            return E_JSONB_VERSION, field[0] if field else -1, ""
        if check_utf8 and not _is_utf8(field[1:]):
            return E_INVALID_UTF8, 0, field[1:]
        data += field[1:]
    else:
        raise AssertionError(f"unknown kind {kind}")
    if kind in VARLENA_KINDS:
        offsets += _pack_offset(len(data))
    return None


def _is_utf8(text: bytes) -> bool:
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_copy(pgconn: pq.abc.PGconn, out: bytearray, target: int) -> tuple[int, bool]:
    """Append whole COPY OUT data messages to ``out`` until ``target`` bytes were appended
    or the COPY ended; returns ``(bytes_appended, done)``.

    ``pgconn`` has already sent ``COPY ... TO STDOUT (FORMAT binary)`` and received
    PGRES_COPY_OUT. ``done`` is True once libpq reported the end of the copy; the caller
    must then call ``pgconn.get_result()`` (until it returns None) for the command status,
    which is also where an error raised by the query mid-stream shows up. A broken
    connection raises SourceError with libpq's message and ``out`` truncated back.
    """
    if pgconn.pgconn_ptr is None:
        raise copy_failed(b"the connection is closed")
    start = len(out)
    try:
        while len(out) - start < target:
            n, data = pgconn.get_copy_data(0)
            if n == -1:
                return len(out) - start, True
            out += data
    except OperationalError:
        del out[start:]
        raise copy_failed(pgconn.error_message) from None
    return len(out) - start, False
