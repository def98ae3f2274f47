"""Arrow column buffers → PostgreSQL binary arrays (array_send), one per column: the
parameters of ``INSERT ... SELECT * FROM unnest($1::int4[], $2::text[], ...)``.

Pure-Python twin of ``ext/array_params.pyx``: identical bytes, return values and errors. The
elements are copy_encode's COPY BINARY fields; the outputs are only appended to once every
value is known to be good.
"""
from __future__ import annotations

import struct

from .. import kernel_inputs as ki
from ..column_plan import ColumnPlan
from . import value_text as vt
from .copy_encode import binary_cells

_NULL = b"\xff\xff\xff\xff"


def encode_arrays(plan: ColumnPlan, cols: list[tuple], oids: tuple[int, ...], start: int,
                  stop: int, outs: list[bytearray]) -> int:
    """Append to ``outs[k]`` the binary array (1-D, lower bound 1, element type ``oids[k]``)
    of rows [start, stop) of column ``k``; returns the bytes appended to all of them."""
    cols, outs = list(cols), list(outs)
    ki.check_array_call(plan, cols, oids, start, stop, outs)
    ki.check_offsets(cols, start, stop)
    columns = [binary_cells(col, start, stop) for col in cols]
    first = vt.first_error([err for _, err in columns])
    if first is not None:
        row, col, code, _ = first
        raise ki.data_error(plan, cols, col, row, code)
    total = 0
    for out, (cells, _), oid in zip(outs, columns, oids):
        if cells:
            head = struct.pack(">iiIii", 1, _NULL in cells, oid, len(cells), 1)
        else:
            head = struct.pack(">iiI", 0, 0, oid)
        data = head + b"".join(cells)
        out += data
        total += len(data)
    return total
