"""What a connector is: the protocols the planner and the engine drive, and the plain,
picklable descriptions they exchange.

A *source connector* (registered under its ``use`` name) validates its ``source.config``,
describes each stream for the planner (``StreamInfo``) and opens a ``SourceReader`` for a
planned read. A *destination connector* does the same on the write side. Connectors
declare ``Capabilities``; the planner only asks for what a connector declares, so no code
outside a connector tests which connector it is.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Protocol, runtime_checkable

from .lazy_schema import LazySchema, arrow

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class Capabilities:
    """What a connector can do beyond reading (or writing) Arrow record batches."""

    #: reads (writes) a raw Postgres ``COPY … (FORMAT binary)`` stream without decoding
    raw_copy: bool = False
    #: reads a stream as disjoint key ranges (parallel and resumable full refresh)
    key_ranges: bool = False
    #: reads only the rows past a committed cursor
    incremental: bool = False
    #: reads a change stream (inserts, updates, deletes) from a replication log
    change_capture: bool = False
    #: holds one consistent snapshot across readers (exported to range workers)
    snapshots: bool = False
    #: an incremental read arrives in cursor order (a mid-stream checkpoint may then commit
    #: the cursor of the rows so far)
    cursor_ordered: bool = False


@dataclass(frozen=True)
class Column:
    """One column of a stream, as the source declares it."""

    name: str
    #: the Postgres type the destination creates (``format_type`` text), e.g. ``numeric(10,2)``
    pg_type: str
    nullable: bool = True


@dataclass(frozen=True)
class StreamInfo:
    """A stream as its source describes it to the planner (the source's catalog entry)."""

    name: str
    #: the Arrow schema of the batches the reader yields (``pg_type`` in field metadata); a
    #: ``LazySchema`` of it from a source that builds its Arrow types only when asked
    #: (the planner gives an Arrow-path plan the built ``pyarrow.Schema``)
    schema: pa.Schema | LazySchema
    primary_key: tuple[str, ...] = ()
    #: estimated rows and bytes (0: unknown); ranges and worker counts are sized by them
    est_rows: int = 0
    est_bytes: int = 0
    #: the source's own name of the stream, e.g. ``public.orders``
    qualified_name: str = ""
    #: connector-specific facts the planner passes back unread (must be picklable)
    extra: dict[str, Any] = field(default_factory=dict)

    def with_arrow(self) -> "StreamInfo":
        """This stream with its schema built as a ``pyarrow.Schema`` (for a reader that
        decodes into Arrow)."""
        return replace(self, schema=arrow(self.schema))


@dataclass(frozen=True)
class CursorPlan:
    """An incremental read: rows past (``value``, ``tie``), the committed cursor."""

    field: str
    tie_breaker: str | None = None
    #: the committed cursor, in the source's text form; None on the first run
    value: str | None = None
    tie: str | None = None


@dataclass(frozen=True)
class ChangePlan:
    """A change-capture read (``sync_mode: cdc``): where its changes come from, where the
    destination has applied them up to, and what they become there."""

    publication: str
    slot: str
    #: the source's name of the table, e.g. ``public.orders``
    table: str
    key: tuple[str, ...]
    #: one drain window's bounds (decoded bytes; changes)
    window_bytes: int
    window_changes: int
    #: where the destination has applied the changes up to, in the source's text form
    #: (the end LSN of the last window); None: the first run bootstraps (a new slot, and a
    #: full load in its exported snapshot)
    position: str | None = None
    #: "replica" (write_mode upsert) or "log" (write_mode append, one row per change)
    shape: str = "replica"
    #: "hard" or "soft" deletes of a replica
    deletes: str = "hard"
    #: a window's reading time to aim for (0: bounded by bytes and changes only)
    window_secs: float = 0.0

    @property
    def bootstrap(self) -> bool:
        return self.position is None


@dataclass(frozen=True)
class KeyRange:
    """One range of a ranged read: ``predicate`` is opaque to everyone but its source."""

    index: int
    predicate: str | None = None


@dataclass(frozen=True)
class KeyCuts:
    """Cut points of a key (range i holds cuts[i - 1] <= key < cuts[i]); what a resumable
    load records so that a later attempt reads exactly the same ranges."""

    key: tuple[str, ...]
    key_types: tuple[str, ...]
    cuts: tuple[tuple[str, ...], ...]
    #: the key may be NULL: range 0 takes the NULLs
    has_null: bool

    @property
    def count(self) -> int:
        return len(self.cuts) + 1


@dataclass(frozen=True)
class RangePlan:
    """How a full refresh reads its stream: ``workers`` readers over ``ranges`` (one range
    of everything when the stream is read in one piece)."""

    ranges: tuple[KeyRange, ...] = (KeyRange(0),)
    workers: int = 1
    #: how the ranges were cut: "" (one piece), "key <cols>" or "ctid"
    partitioning: str = ""
    #: set when the ranges are key ranges a later attempt can cut again (resumable)
    cuts: KeyCuts | None = None


#: A batch's caps (``SourceReader.batches``) unless set: the defaults of
#: ``resources.max_batch_rows`` / ``max_batch_bytes`` and of ``rapidbyte_fast.read()``
MAX_BATCH_ROWS = 100_000
MAX_BATCH_BYTES = 64 << 20


@runtime_checkable
class SourceReader(Protocol):
    """Reads one stream (or ranges of it) on its own connection; used by one thread, except
    ``cancel``, which another thread may call to stop a read in progress."""

    #: seconds per phase, summed into the run's timings (``source_*_secs`` keys)
    timings: dict[str, float]
    bytes_read: int

    def open(self) -> pa.Schema | LazySchema:
        """Connect; returns the Arrow schema of the batches (or a ``LazySchema`` of it)."""

    def batches(self, max_bytes: int, max_rows: int,
                key_range: KeyRange | None = None) -> Iterator[pa.RecordBatch]:
        """Record batches of the stream (or of ``key_range``), each within both caps."""

    def cancel(self) -> None:
        """Stop a read in progress (called from another thread)."""

    def close(self) -> None:
        """Release the connection."""


class SourceConnector(Protocol):
    """A kind of source, registered under ``name`` (the ``use:`` of a pipeline)."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    #: the pydantic model of ``source.config`` (of a connector installed through an entry
    #: point; the built-ins' models are named in ``config.connectors``)
    config_model: ClassVar[type]

    def describe(self, stream: Any) -> StreamInfo:
        """The stream as it is now (connects when it must); raises ``ConfigError`` naming the
        stream when it does not exist or a configured column is missing. A source whose
        reader raises ``ArrayShapeError`` also takes ``text_columns=`` (a frozenset of
        column names to carry as exact text)."""

    def discover(self) -> list[StreamInfo]:
        """Every stream this source could read."""

    def reader(self, info: StreamInfo, cursor: CursorPlan | None = None,
               snapshot: str | None = None, hold_snapshot: bool = False) -> SourceReader:
        """A reader for one planned read of a stream."""


class RangedSource(SourceConnector, Protocol):
    """A source with ``capabilities.key_ranges``: it cuts a stream into ranges."""

    def plan_ranges(self, info: StreamInfo, stream: Any, workers: Any, write_mode: str,
                    resumable: bool, earlier: KeyCuts | None,
                    interval: tuple[int, int]) -> RangePlan:
        """The ranges of a full refresh with ``workers`` readers ("auto" or a number):
        key ranges of about one checkpoint ``interval`` (bytes, rows) each when
        ``resumable`` (``earlier``'s cuts when given), else one range per worker."""


class RawCopySource(SourceConnector, Protocol):
    """A source with ``capabilities.raw_copy``: its readers also yield ``raw_chunks``."""

    def raw_copy_reason(self, info: StreamInfo) -> str | None:
        """Why the stream's columns cannot travel as raw COPY bytes, or None."""


class Destination(Protocol):
    """A kind of destination, registered under ``name``; built from its validated config
    (and ``endpoint``, as for sources). It resolves what the planner needs to know about
    each stream's target and executes the plan's writes."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    config_model: ClassVar[type]
    config: Any
    endpoint: str
