"""Arrow column buffers → PostgreSQL ``COPY ... FROM STDIN`` rows (binary or text format).

Pure-Python twin of ``ext/copy_encode.pyx``: identical bytes, return values and errors.
Works column by column (each column's cells for the whole range), then interleaves rows;
``out`` is only appended to once every cell is known to be good.
"""
from __future__ import annotations

import struct

from ..column_plan import PG_EPOCH_OFFSET_DAYS, PG_EPOCH_OFFSET_US, ColumnPlan, Kind
from .. import kernel_inputs as ki
from . import value_text as vt

_NULL = b"\xff\xff\xff\xff"
_LEN = struct.Struct(">i").pack
_STRING_KINDS = (Kind.TEXT, Kind.JSONB, Kind.NUMERIC_TEXT)
_WIDTH_HEADER = {Kind.INT2: _LEN(2), Kind.INT4: _LEN(4), Kind.INT8: _LEN(8),
                 Kind.FLOAT4: _LEN(4), Kind.FLOAT8: _LEN(8)}


def encode_binary(plan: ColumnPlan, cols: list[tuple], start: int, stop: int,
                  out: bytearray) -> int:
    """Append COPY BINARY tuples for rows [start, stop) to ``out``; returns bytes appended.

    No file header or trailer: the caller writes COPY_BINARY_HEADER / COPY_BINARY_TRAILER.
    """
    ki.check_call(plan, cols, start, stop)
    ki.check_offsets(cols, start, stop)
    columns = [binary_cells(col, start, stop, oid) for col, oid in zip(cols, plan.elem_oids)]
    _raise_first(plan, cols, columns)
    head = struct.pack(">h", len(cols))
    data = b"".join(head + b"".join(row) for row in _rows(columns, stop - start))
    out += data
    return len(data)


def encode_text(plan: ColumnPlan, cols: list[tuple], start: int, stop: int,
                out: bytearray) -> int:
    """Append COPY TEXT lines for rows [start, stop) to ``out``; returns bytes appended."""
    ki.check_call(plan, cols, start, stop)
    ki.check_offsets(cols, start, stop)
    columns = []
    for col in cols:
        cells, err = vt.text_cells(col, start, stop)
        escape = col[0] in _STRING_KINDS or col[0] in (Kind.BYTEA, Kind.ARRAY)
        columns.append(([b"\\N" if c is None else _escape(c) if escape else c for c in cells],
                        err))
    _raise_first(plan, cols, columns)
    data = b"".join(b"\t".join(row) + b"\n" for row in _rows(columns, stop - start))
    out += data
    return len(data)


def _rows(columns: list[tuple[list, object]], n: int):
    return zip(*(cells for cells, _ in columns)) if columns else [()] * n


def _raise_first(plan: ColumnPlan, cols: list[tuple], columns: list[tuple[list, object]]) -> None:
    first = vt.first_error([err for _, err in columns])
    if first is not None:
        row, col, code, elem = first
        raise ki.data_error(plan, cols, col, row, code, elem)


def _escape(b: bytes) -> bytes:
    if b"\\" in b:
        b = b.replace(b"\\", b"\\\\")
    return b.replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def numeric_binary(sign: int, ip: str, fp: str, dscale: int) -> bytes:
    """A numeric field (length word included): base-10000 groups of the integer and fraction
    digit strings, leading and trailing zero groups stripped, as numeric_send does."""
    if sign in (vt.NUMERIC_NAN, vt.NUMERIC_PINF, vt.NUMERIC_NINF):
        return struct.pack(">iHhHh", 8, 0, 0, sign, 0)
    lead = -len(ip) % 4
    digits = "0" * lead + ip + fp + "0" * (-len(fp) % 4)
    groups = [int(digits[k:k + 4]) for k in range(0, len(digits), 4)]
    first = next((k for k, g in enumerate(groups) if g), len(groups))
    last = next((k for k in range(len(groups) - 1, -1, -1) if groups[k]), -1)
    groups = groups[first:last + 1]
    weight = (lead + len(ip)) // 4 - 1 - first
    if not groups:
        weight, sign = 0, vt.NUMERIC_POS
    n = len(groups)
    return struct.pack(f">iHhHh{n}H", 8 + 2 * n, n, weight, sign, dscale, *groups)


def binary_cells(col: tuple, start: int, stop: int,
                 elem_oid: int = 0) -> tuple[list[bytes], tuple | None]:
    """Length-prefixed binary fields (send format; NULL: length -1) of rows [start, stop), up
    to the first bad value, and that value's ``(row, code[, element])``."""
    kind = col[0]
    if kind == Kind.ARRAY:
        return _array_cells(col, start, stop, elem_oid)
    null = ki.nulls(col, start, stop)

    def first_bad(vals: list, check) -> tuple[list, tuple | None]:
        for k, v in enumerate(vals):
            code = check(v)
            if code and (null is None or not null[k]):
                return vals[:k], (start + k, code)
        return vals, None

    err = None
    if kind in (Kind.TEXT, Kind.BYTEA, Kind.JSONB):
        vals = ki.varlena_values(col, start, stop)
        if kind != Kind.BYTEA:
            vals, err = first_bad(vals, lambda b: vt.string_error(kind, b))
        version = b"\x01" if kind == Kind.JSONB else b""
        cells = [_LEN(len(v) + len(version)) + version + v for v in vals]
    elif kind == Kind.NUMERIC_TEXT:
        parsed, err = first_bad([vt.parse_numeric(v) for v in ki.varlena_values(col, start,
                                                                                  stop)],
                                lambda p: p if isinstance(p, int) else 0)
        cells = [_NULL if isinstance(p, int)
                 else numeric_binary(p[0], p[1].decode(), p[2].decode(), len(p[2]))
                 for p in parsed]
    elif kind in _WIDTH_HEADER:
        head = _WIDTH_HEADER[kind]
        cells = [head + raw[::-1] for raw in ki.raw_fixed(col, start, stop)]
    elif kind == Kind.BOOL:
        cells = [b"\x00\x00\x00\x01\x01" if v else b"\x00\x00\x00\x01\x00"
                 for v in ki.fixed_values(col, start, stop)]
    elif kind == Kind.DATE:
        vals, err = first_bad(ki.fixed_values(col, start, stop), vt.date_error)
        cells = [struct.pack(">ii", 4, v if v in (vt.DATE_POS_INF, vt.DATE_NEG_INF)
                             or vt.date_error(v) else v - PG_EPOCH_OFFSET_DAYS) for v in vals]
    elif kind == Kind.TIME:
        vals, err = first_bad(ki.fixed_values(col, start, stop), vt.time_error)
        cells = [struct.pack(">iq", 8, v) if not vt.time_error(v) else _NULL for v in vals]
    elif kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
        vals, err = first_bad(ki.fixed_values(col, start, stop), vt.timestamp_error)
        cells = [struct.pack(">iq", 8, v if v in (vt.TS_POS_INF, vt.TS_NEG_INF)
                             or vt.timestamp_error(v) else v - PG_EPOCH_OFFSET_US) for v in vals]
    elif kind == Kind.INTERVAL:
        vals, err = first_bad(ki.interval_values(col, start, stop), vt.interval_error)
        cells = [struct.pack(">iqii", 16, ns if (m, d, ns) in vt.INTERVAL_SPECIAL else ns // 1000,
                             d, m) for m, d, ns in vals]
    elif kind == Kind.UUID:
        cells = [b"\x00\x00\x00\x10" + raw for raw in ki.raw_fixed(col, start, stop)]
    else:  # NUMERIC
        scale = col[1]
        cells = []
        for v in ki.decimal_values(col, start, stop):
            if v in vt.DECIMAL_SPECIAL:
                cells.append(numeric_binary(vt.DECIMAL_SPECIAL[v][0], "", "", 0))
                continue
            neg, ip, fp = vt.decimal_digits(v, scale)
            cells.append(numeric_binary(vt.NUMERIC_NEG if neg else vt.NUMERIC_POS, ip, fp,
                                        max(scale, 0)))
    if null is not None:
        cells = [_NULL if n else c for c, n in zip(cells, null)]
    return cells, err


def _array_cells(col: tuple, start: int, stop: int,
                 elem_oid: int) -> tuple[list[bytes], tuple | None]:
    """Binary arrays (array_send: 1-D, lower bound 1; ``{}`` has no dimension) per row; the
    error is ``(row, code, element)``, element indexing the whole element array."""
    cells = []
    for elems, err in vt.array_rows(col, start, stop, binary_cells):
        if err is not None:
            return cells, err
        if elems is None:
            cells.append(_NULL)
            continue
        if elems:
            body = struct.pack(">iiIii", 1, _NULL in elems, elem_oid, len(elems), 1)
        else:
            body = struct.pack(">iiI", 0, 0, elem_oid)
        body += b"".join(elems)
        cells.append(_LEN(len(body)) + body)
    return cells, None
