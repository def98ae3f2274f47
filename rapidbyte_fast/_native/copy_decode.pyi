"""Postgres COPY BINARY stream → Arrow column sinks, and the COPY OUT reader (compiled twin
of ``rapidbyte_fast._py.copy_decode``; same API, bytes and errors)."""
from psycopg import pq

from rapidbyte_fast.column_plan import ColumnPlan, ColumnSinks

#: Kind name → code as compiled in (mirror of ``column_plan.Kind``).
KINDS: dict[str, int]

def parse_header(buf: bytes | bytearray | memoryview) -> int:
    """Length of the COPY BINARY header at the start of ``buf`` (0: need more bytes);
    DataError on a bad signature, OIDs or unknown critical flags."""

def decode(
    plan: ColumnPlan, src: bytes | bytearray | memoryview, pos: int, end: int,
    sinks: ColumnSinks, max_rows: int,
) -> tuple[int, bool]:
    """Append the complete tuples of ``src[pos:end]`` to ``sinks``; ``(new_pos, saw_trailer)``.

    At most ``max_rows`` rows per call; the trailer is consumed even after ``max_rows``.
    DataError (column and stream row named, sinks restored) on a bad tuple or value, and on
    an ARRAY value that is not 1-D with lower bound 1.
    """

def read_copy(pgconn: pq.abc.PGconn, out: bytearray, target: int) -> tuple[int, bool]:
    """Append whole COPY OUT messages to ``out`` until ``target`` bytes or the end of the
    copy; ``(bytes_appended, done)``. After ``done`` collect ``pgconn.get_result()``.
    SourceError (``out`` restored) when libpq loses the connection."""
