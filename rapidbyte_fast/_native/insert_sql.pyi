"""Arrow column buffers → one multi-row INSERT statement (stub of the compiled
ext/insert_sql.pyx; the Python twin is rapidbyte_fast/_py/insert_sql.py).

Literals assume ``standard_conforming_strings = on``. Bad values raise
``rapidbyte_fast.errors.DataError`` naming the column and row, with ``out`` truncated back
to its entry length; a malformed call raises ValueError.
"""
from rapidbyte_fast.column_plan import ColumnPlan

KINDS: dict[str, int]

def build_insert(plan: ColumnPlan, cols: list[tuple], start: int, stop: int, out: bytearray,
                 prefix: bytes, suffix: bytes, max_rows: int,
                 max_bytes: int) -> tuple[int, int]:
    """Append ``prefix (row),(row)... suffix`` for rows from ``start``: stops after
    ``max_rows`` rows, at ``stop``, or once the statement (suffix included) reaches
    ``max_bytes``, always taking at least one row. Returns (rows, bytes appended); (0, 0)
    with nothing appended when ``start == stop``."""
