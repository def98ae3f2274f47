"""Arrow column buffers → PostgreSQL COPY FROM STDIN rows (stub of the compiled
ext/copy_encode.pyx; the Python twin is rapidbyte_fast/_py/copy_encode.py).

``cols`` is ``column_inputs(batch, plan)``. A value PostgreSQL would reject (NUL in text,
out-of-range date/time/timestamp, sub-microsecond interval, malformed numeric text) raises
``rapidbyte_fast.errors.DataError`` naming the column and row (and the element of an
ARRAY value), with ``out`` truncated back to its entry length. A malformed call (row range, buffer sizes) raises ValueError.
"""
from rapidbyte_fast.column_plan import ColumnPlan

KINDS: dict[str, int]

def encode_binary(plan: ColumnPlan, cols: list[tuple], start: int, stop: int,
                  out: bytearray) -> int:
    """Append COPY BINARY tuples for rows [start, stop); return bytes appended (no file
    header or trailer: COPY_BINARY_HEADER / COPY_BINARY_TRAILER are the caller's)."""

def encode_text(plan: ColumnPlan, cols: list[tuple], start: int, stop: int,
                out: bytearray) -> int:
    """Append COPY TEXT lines for rows [start, stop); return bytes appended."""
