"""What the planner decides about one stream's writes into Postgres (part of its frozen,
picklable plan): the target, the strategy of the write mode, where rows are loaded, and how
they commit."""
from __future__ import annotations

from dataclasses import dataclass

from ...connector import CursorPlan
from ...state.progress import RangedLoad


@dataclass(frozen=True)
class WriteSpec:
    """One stream's writes."""

    pipeline: str
    stream: str
    schema: str
    table: str
    #: as configured: append | replace | upsert
    write_mode: str
    #: append (into the target) | replace (stage, then swap) | merge (stage, then merge:
    #: upsert, and incremental streams)
    strategy: str
    #: copy | insert (copy whenever ``raw``)
    load_method: str
    #: rows arrive as raw COPY binary chunks (passthrough)
    raw: bool
    primary_key: tuple[str, ...]
    #: the staging table (None: rows load straight into the target) and its schema
    #: (the target's, or pg_temp for a merge staged by one connection)
    staging: str | None
    staging_schema: str
    #: "once": one transaction (with checkpoints when ``checkpoint_every`` says so);
    #: "per_range": every key range commits by itself (into staging unless resumable)
    commit: str
    #: checkpoint intervals (bytes, rows, seconds; 0 = off) of a "once" merge
    checkpoint_every: tuple[int, int, float]
    #: the record of a resumable load (new, or resumed with ranges already done)
    ranged: RangedLoad | None
    #: an earlier unfinished load that cannot be resumed: forgotten when the load starts
    discard: RangedLoad | None
    #: an incremental stream's cursor, saved with the rows it covers
    cursor: CursorPlan | None
    #: the target exists (when planned)
    target_exists: bool
    allow_empty_replace: bool

    @property
    def prefix(self) -> str:
        """Stream and target, in front of every error."""
        return f"stream {self.stream} → {self.schema}.{self.table}: "
