"""Arrow column buffers → PostgreSQL binary arrays, the parameters of ``INSERT ... SELECT *
FROM unnest($1::int4[], ...)`` (stub of the compiled ext/array_params.pyx; the Python twin
is rapidbyte_fast/_py/array_params.py).

``cols`` is ``column_inputs(batch, plan)``, with no ARRAY column. Each array is what
array_send writes: ndim 1 (0 for no rows), the has-null flag, the element type OID, the
length and lower bound 1, then every element as its COPY BINARY field (length -1: NULL). A
value PostgreSQL would reject raises ``rapidbyte_fast.errors.DataError`` naming the column
and row (the first such cell in row-major order), with every output truncated back to its
entry length. A malformed call raises ValueError (TypeError for an output that is not a
bytearray).
"""
from rapidbyte_fast.column_plan import ColumnPlan

KINDS: dict[str, int]

def encode_arrays(plan: ColumnPlan, cols: list[tuple], oids: tuple[int, ...], start: int,
                  stop: int, outs: list[bytearray]) -> int:
    """Append to ``outs[k]`` the binary array (element type ``oids[k]``) of rows
    [start, stop) of column ``k``; return the bytes appended to all of them."""
