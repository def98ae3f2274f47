"""Walk COPY BINARY tuple headers without decoding values (pure-Python twin).

The passthrough path forwards raw COPY bytes from source to destination; this only counts
the complete tuples in a chunk and finds where the last one ends (and the trailer).
"""
from __future__ import annotations

from ..errors import DataError


def scan(src, pos: int, end: int) -> tuple[int, int, bool]:
    """Count complete tuples in ``src[pos:end]``: ``(pos after the last, rows, saw_trailer)``."""
    mv = memoryview(src).cast("B")
    if not 0 <= pos <= end <= len(mv):
        raise ValueError(f"bad range [{pos}, {end}) for a buffer of {len(mv)} bytes")
    rows = 0
    while end - pos >= 2:
        nfields = int.from_bytes(mv[pos:pos + 2], "big", signed=True)
        if nfields == -1:
            return pos + 2, rows, True
        if nfields < 0:
            raise DataError(f"COPY tuple {rows + 1} in chunk: invalid field count {nfields}")
        q = pos + 2
        for _ in range(nfields):
            if end - q < 4:
                return pos, rows, False
            length = int.from_bytes(mv[q:q + 4], "big", signed=True)
            q += 4
            if length < -1:
                raise DataError(f"COPY tuple {rows + 1} in chunk: invalid field length {length}")
            if length > 0:
                if end - q < length:
                    return pos, rows, False
                q += length
        pos = q
        rows += 1
    return pos, rows, False
