"""Arrow column buffers → one multi-row ``INSERT ... VALUES`` statement.

Pure-Python twin of ``ext/insert_sql.pyx``: identical bytes, return values and errors.
Literals assume ``standard_conforming_strings = on``: quotes are doubled, backslashes kept.
"""
from __future__ import annotations

from ..column_plan import ColumnPlan, Kind
from .. import kernel_inputs as ki
from . import value_text as vt

_UNQUOTED = (Kind.INT2, Kind.INT4, Kind.INT8)
_QUOTED = (Kind.TEXT, Kind.JSONB, Kind.NUMERIC_TEXT, Kind.ARRAY)
_MAX_CHUNK = 65_536


def build_insert(plan: ColumnPlan, cols: list[tuple], start: int, stop: int, out: bytearray,
                 prefix: bytes, suffix: bytes, max_rows: int,
                 max_bytes: int) -> tuple[int, int]:
    """Append one ``prefix (row),(row)... suffix`` statement for rows from ``start``.

    Stops after ``max_rows`` rows, at ``stop``, or once the statement (suffix included)
    reaches ``max_bytes``; always takes at least one row. Returns (rows, bytes appended);
    (0, 0) and nothing appended when ``start == stop``.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    limit = start + min(max_rows, stop - start)
    ki.check_call(plan, cols, start, stop, limit)
    ki.check_offsets(cols, start, limit)
    if start == stop:
        return 0, 0
    parts = [prefix]
    size = len(prefix) + len(suffix)
    row = start
    chunk = 64  # rows formatted per pass: grows, so a small max_bytes wastes little work
    while row < limit:
        end = min(limit, row + chunk)
        chunk = min(2 * chunk, _MAX_CHUNK)
        columns = [_literals(col, row, end) for col in cols]
        lists = [cells for cells, _ in columns]
        for values in zip(*lists) if lists else [()] * (end - row):
            text = (b",(" if row > start else b"(") + b",".join(values) + b")"
            parts.append(text)
            size += len(text)
            row += 1
            if size >= max_bytes:
                break
        else:
            first = vt.first_error([err for _, err in columns])
            if first is not None:
                bad_row, col, code, elem = first
                raise ki.data_error(plan, cols, col, bad_row, code, elem)
            continue
        break
    parts.append(suffix)
    stmt = b"".join(parts)
    out += stmt
    return row - start, len(stmt)


def _literals(col: tuple, start: int, stop: int) -> tuple[list[bytes], tuple | None]:
    """SQL literals of rows [start, stop), up to the first bad value."""
    kind = col[0]
    cells, err = vt.text_cells(col, start, stop)
    if kind in _UNQUOTED:
        lits = [b"NULL" if c is None else c for c in cells]
    elif kind == Kind.BOOL:
        lits = [b"NULL" if c is None else b"true" if c == b"t" else b"false" for c in cells]
    elif kind in _QUOTED:
        lits = [b"NULL" if c is None else b"'" + c.replace(b"'", b"''") + b"'" for c in cells]
    else:
        lits = [b"NULL" if c is None else b"'" + c + b"'" for c in cells]
    return lits, err
