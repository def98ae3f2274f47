"""JSON pages → Arrow column sinks (compiled twin of ``rapidbyte_fast._py.json_decode``; same
API, bytes and status codes)."""

OK: int
MALFORMED: int
UNKNOWN_KEY: int
DUP_KEY: int
MISMATCH: int
NOT_OBJECT: int
TOO_DEEP: int
V_NULL: int
V_BOOL: int
V_INT: int
V_FLOAT: int
V_STR: int
V_DATE: int
V_TS: int
V_OBJ: int
V_ARR: int
V_BIGINT: int
K_BOOL: int
K_INT8: int
K_FLOAT8: int
K_TEXT: int
K_DATE: int
K_TIMESTAMPTZ: int
K_NUMERIC_TEXT: int
K_JSONB: int
PATH_SEP: bytes
MAX_DEPTH: int
MAX_FLATTEN_DEPTH: int

def locate(buf: bytes | bytearray | memoryview, pos: int, end: int,
           path: tuple[bytes, ...], measure: bool = True) -> tuple[int, int, int]:
    """(OK, start, end) of the value at ``path`` (raw keys) in the document ``buf[pos:end]``;
    (UNKNOWN_KEY, depth of the missing key, 0) when a key is missing or its parent is not
    an object; (MALFORMED | TOO_DEEP, byte offset, 0) for a bad document up to the value;
    the end is -1 unless ``measure``."""

def survey(buf: bytes | bytearray | memoryview, pos: int, end: int, ndjson: bool,
           blob: bytes, offs: bytes, cols: bytes, flatten: bool, masks: bytearray,
           sizes: bytearray, unknown: bytearray, classify: bool = True) -> tuple[int, int, int]:
    """Check the records at ``buf[pos:end]``: (status, records, byte offset or, on OK,
    where the records end); ORs value classes
    into ``masks``, writes raw value bytes per column to ``sizes``, the unknown key path to
    ``unknown``; without ``classify`` strings are all V_STR."""

def fill(buf: bytes | bytearray | memoryview, pos: int, end: int, ndjson: bool, blob: bytes,
         offs: bytes, cols: bytes, flatten: bool, kinds: bytes, records: int, sizes: bytes,
         valid: list[bytearray], offsets: list[bytearray], data: list[bytearray],
         ) -> tuple[int, int, int, int]:
    """Append the surveyed page to the sinks: (status, rows or failing row, offset or, on
    OK, where the records end, column)."""
