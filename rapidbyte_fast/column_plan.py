"""Column plans: the per-column encoding decisions every kernel receives, resolved once per table.

A plan is a tuple of ``Kind`` codes plus a decimal scale per column. Kernels (compiled and
Python twins alike) never look at Arrow or Postgres type objects; they get:

* for encoding (Arrow → bytes): ``column_inputs(batch)``, one ``(kind, scale, length,
  offset, validity, offsets, data)`` tuple per column, where the three buffers are the Arrow
  buffers (``pa.Buffer``, read through the buffer protocol; ``None`` when absent);
* for decoding (bytes → Arrow): ``ColumnSinks``, caller-owned ``bytearray`` triples per
  column that the kernel appends to: ``valid`` (one byte per row, 1 = value, 0 = NULL),
  ``offsets`` (little-endian int32, starting with 0, varlena kinds only) and ``data``
  (fixed-width little-endian values, one byte per row for BOOL, raw bytes for varlena kinds;
  NULL rows write zeros / repeat the offset). ``ColumnSinks.finish()`` turns them into arrays.

Physical Arrow layout per kind (what ``data`` holds):

=============  =====================================  =====================================
kind           Arrow type                             element
=============  =====================================  =====================================
BOOL           bool                                   1 byte 0/1 in sinks, bit-packed in Arrow
INT2/4/8       int16/int32/int64                      LE integer
FLOAT4/8       float32/float64                        LE IEEE
TEXT           utf8                                   utf-8 bytes (also json, xml, inet, ...)
BYTEA          binary                                 raw bytes
DATE           date32                                 int32 days since 1970-01-01;
                                                      ±infinity = INT32_MAX / INT32_MIN
TIME           time64[us]                             int64 µs since midnight
TIMESTAMP      timestamp[us]                          int64 µs since 1970; ±infinity =
TIMESTAMPTZ    timestamp[us, UTC]                     INT64_MAX / INT64_MIN
INTERVAL       month_day_nano_interval                int32 months, int32 days, int64 ns;
                                                      ±infinity = all three at max / min
UUID           fixed_size_binary(16)                  16 raw bytes (network order)
NUMERIC        decimal128(p, s)                       LE two's-complement int128, scale s;
                                                      NaN = 10^38 + 1, ±Infinity = ±10^38
NUMERIC_TEXT   utf8                                   canonical numeric text ('NaN' etc.)
JSONB          utf8                                   json text (wire: version byte 1 + text)
ARRAY          list<element kind's type>              see below
=============  =====================================  =====================================

ARRAY columns are 1-D Postgres arrays with lower bound 1 (``{}`` is the empty list). The plan
names the element kind (``elem_kinds``; a NUMERIC element uses the column's precision and
scale) and the element type OID that the binary array format carries (``elem_oids``). Their
``column_inputs`` tuple is ``(ARRAY, 0, length, offset, validity, list_offsets, child)`` where
``child`` is the element array's own input tuple. Their sinks are ``valid`` and ``offsets``
(the list's int32 offsets) plus ``child_valid``, ``child_offsets`` and ``child_data`` laid out
like a column of the element kind.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import IntEnum

from .deferred import deferred

np = deferred("numpy")
pa = deferred("pyarrow")

#: Seconds and days between the Unix epoch and the PostgreSQL epoch (2000-01-01).
PG_EPOCH_OFFSET_US = 946_684_800_000_000
PG_EPOCH_OFFSET_DAYS = 10_957
INT32_MAX, INT32_MIN = 2**31 - 1, -(2**31)
INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)

#: decimal128 sentinels for numeric(p,s) NaN and ±Infinity: unscaled values beyond any
#: precision <= 38 (decimal128 has no NaN), ordered as PostgreSQL orders them.
DECIMAL_POS_INF, DECIMAL_NEG_INF, DECIMAL_NAN = 10**38, -(10**38), 10**38 + 1
#: month_day_nano_interval sentinels for PostgreSQL 17's ±infinity intervals (every field
#: at its extreme, as interval_send writes them).
INTERVAL_POS_INF = (INT32_MAX, INT32_MAX, INT64_MAX)
INTERVAL_NEG_INF = (INT32_MIN, INT32_MIN, INT64_MIN)

#: COPY binary framing.
COPY_BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
COPY_BINARY_HEADER = COPY_BINARY_SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_BINARY_TRAILER = b"\xff\xff"


class Kind(IntEnum):
    """Wire/Arrow encoding of one column. Values are mirrored in ext/kinds.pxi."""

    BOOL = 1
    INT2 = 2
    INT4 = 3
    INT8 = 4
    FLOAT4 = 5
    FLOAT8 = 6
    TEXT = 7
    BYTEA = 8
    DATE = 9
    TIME = 10
    TIMESTAMP = 11
    TIMESTAMPTZ = 12
    INTERVAL = 13
    UUID = 14
    NUMERIC = 15
    NUMERIC_TEXT = 16
    JSONB = 17
    ARRAY = 18


VARLENA_KINDS = frozenset({Kind.TEXT, Kind.BYTEA, Kind.NUMERIC_TEXT, Kind.JSONB})
FIXED_WIDTH = {
    Kind.BOOL: 1, Kind.INT2: 2, Kind.INT4: 4, Kind.INT8: 8, Kind.FLOAT4: 4, Kind.FLOAT8: 8,
    Kind.DATE: 4, Kind.TIME: 8, Kind.TIMESTAMP: 8, Kind.TIMESTAMPTZ: 8, Kind.INTERVAL: 16,
    Kind.UUID: 16, Kind.NUMERIC: 16,
}


@dataclass(frozen=True)
class ColumnPlan:
    """Encoding decisions for the columns of one table, in column order."""

    names: tuple[str, ...]
    kinds: tuple[int, ...]
    scales: tuple[int, ...]
    precisions: tuple[int, ...]
    elem_kinds: tuple[int, ...] = ()   # ARRAY columns: element kind; 0 elsewhere (or empty)
    elem_oids: tuple[int, ...] = ()    # ARRAY columns: element type OID; 0 elsewhere
    #: The decoders check that text is UTF-8: the source does not guarantee it (SQL_ASCII).
    validate_utf8: bool = False

    def __post_init__(self) -> None:
        for name in ("elem_kinds", "elem_oids"):
            if not getattr(self, name):
                object.__setattr__(self, name, (0,) * len(self.names))

    @property
    def kind_bytes(self) -> bytes:
        """The kinds packed one byte per column (the compiled kernels' view)."""
        return bytes(self.kinds)

    def arrow_type(self, i: int) -> pa.DataType:
        """Arrow type produced for column ``i``."""
        if self.kinds[i] == Kind.ARRAY:
            return pa.list_(arrow_type_for(Kind(self.elem_kinds[i]), self.precisions[i],
                                           self.scales[i]))
        return arrow_type_for(Kind(self.kinds[i]), self.precisions[i], self.scales[i])


def arrow_type_for(kind: Kind, precision: int = 0, scale: int = 0) -> pa.DataType:
    """Arrow type of a kind (decimal precision/scale only matter for NUMERIC)."""
    if kind == Kind.NUMERIC:
        return pa.decimal128(precision, scale)
    return _arrow_types()[kind]


@functools.cache
def _arrow_types() -> dict[Kind, pa.DataType]:
    return {
        Kind.BOOL: pa.bool_(),
        Kind.INT2: pa.int16(),
        Kind.INT4: pa.int32(),
        Kind.INT8: pa.int64(),
        Kind.FLOAT4: pa.float32(),
        Kind.FLOAT8: pa.float64(),
        Kind.TEXT: pa.utf8(),
        Kind.BYTEA: pa.binary(),
        Kind.DATE: pa.date32(),
        Kind.TIME: pa.time64("us"),
        Kind.TIMESTAMP: pa.timestamp("us"),
        Kind.TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),
        Kind.INTERVAL: pa.month_day_nano_interval(),
        Kind.UUID: pa.binary(16),
        Kind.NUMERIC_TEXT: pa.utf8(),
        Kind.JSONB: pa.utf8(),
    }


def kind_for_arrow(t: pa.DataType) -> tuple[Kind, int, int]:
    """(kind, precision, scale) for an Arrow type; raises KeyError for unsupported types."""
    if pa.types.is_decimal(t):
        return Kind.NUMERIC, t.precision, t.scale
    if pa.types.is_timestamp(t):
        return (Kind.TIMESTAMPTZ if t.tz else Kind.TIMESTAMP), 0, 0
    for kind, at in _arrow_types().items():
        if kind not in (Kind.NUMERIC_TEXT, Kind.JSONB, Kind.TIMESTAMPTZ) and at == t:
            return kind, 0, 0
    raise KeyError(str(t))


def column_inputs(batch: pa.RecordBatch | pa.Table, plan: ColumnPlan) -> list[tuple]:
    """Per-column ``(kind, scale, length, offset, validity, offsets, data)`` for encoders.

    ``batch`` columns must already have the plan's physical types (see ``conform``).
    """
    out = []
    for i, col in enumerate(batch.columns):
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        out.append(_inputs(arr, plan.kinds[i], plan.elem_kinds[i], plan.scales[i]))
    return out


def _inputs(arr: pa.Array, kind: int, elem_kind: int, scale: int) -> tuple:
    bufs = arr.buffers()
    validity = bufs[0] if arr.null_count else None
    if kind == Kind.ARRAY:
        child = _inputs(arr.values, elem_kind, 0, scale)
        return (kind, 0, len(arr), arr.offset, validity, bufs[1], child)
    if kind in VARLENA_KINDS:
        offsets, data = bufs[1], bufs[2]
    else:
        offsets, data = None, bufs[1]
    return (kind, scale, len(arr), arr.offset, validity, offsets, data)


class ColumnSinks:
    """Caller-owned output buffers that decoders append rows to, turned into Arrow arrays."""

    __slots__ = ("plan", "valid", "offsets", "data", "child_valid", "child_offsets",
                 "child_data", "rows")

    def __init__(self, plan: ColumnPlan) -> None:
        self.plan = plan
        self.reset()

    def reset(self) -> None:
        """Start a new batch (fresh buffers: finished arrays keep the old ones alive)."""
        kinds, elems = self.plan.kinds, self.plan.elem_kinds
        self.valid = [bytearray() for _ in kinds]
        self.offsets = [bytearray(4) if k in VARLENA_KINDS or k == Kind.ARRAY else bytearray()
                        for k in kinds]
        self.data = [bytearray() for _ in kinds]
        self.child_valid = [bytearray() for _ in kinds]
        self.child_offsets = [bytearray(4) if k == Kind.ARRAY and e in VARLENA_KINDS
                              else bytearray() for k, e in zip(kinds, elems)]
        self.child_data = [bytearray() for _ in kinds]
        self.rows = 0

    def nbytes(self) -> int:
        """Bytes held so far (the batch-size cut uses it)."""
        return sum(len(b) for sinks in (self.data, self.offsets, self.child_data,
                                        self.child_offsets) for b in sinks)

    def finish(self) -> list[pa.Array]:
        """Arrays for the rows appended since the last reset, then reset."""
        plan = self.plan
        arrays = []
        for i, kind in enumerate(plan.kinds):
            if kind == Kind.ARRAY:
                elem = Kind(plan.elem_kinds[i])
                child = _array(arrow_type_for(elem, plan.precisions[i], plan.scales[i]), elem,
                               self.child_valid[i], self.child_offsets[i], self.child_data[i])
                arrays.append(_array(plan.arrow_type(i), kind, self.valid[i], self.offsets[i],
                                     b"", child))
            else:
                arrays.append(_array(plan.arrow_type(i), Kind(kind), self.valid[i],
                                     self.offsets[i], self.data[i]))
        self.reset()
        return arrays


def _array(t: pa.DataType, kind: Kind, valid: bytearray, offsets: bytearray, data: bytearray,
           child: pa.Array | None = None) -> pa.Array:
    """An Arrow array from one column's sinks (one validity byte per value)."""
    flags = np.frombuffer(valid, dtype=np.uint8)
    n = len(flags)
    nulls = n - int(np.count_nonzero(flags))
    vbuf = pa.py_buffer(np.packbits(flags, bitorder="little")) if nulls else None
    if kind == Kind.ARRAY:
        return pa.Array.from_buffers(t, n, [vbuf, pa.py_buffer(offsets)], null_count=nulls,
                                     children=[child])
    if kind == Kind.BOOL:
        bufs = [vbuf, pa.py_buffer(np.packbits(np.frombuffer(data, dtype=np.uint8),
                                               bitorder="little"))]
    elif kind in VARLENA_KINDS:
        bufs = [vbuf, pa.py_buffer(offsets), pa.py_buffer(data)]
    else:
        bufs = [vbuf, pa.py_buffer(data)]
    return pa.Array.from_buffers(t, n, bufs, null_count=nulls)
