"""Transforms between source and destination: ``sql`` (DataFusion), ``validate``, and WASM
plugins. Every transform has the shape of ``Transform``; the engine chains them in config
order in the transform stage of each task.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    import pyarrow as pa


#: Called by a transform for every row it rejects: (stream, record as JSON text,
#: failed rules as "rule: message" strings, category). The engine routes it to the DLQ.
RejectSink = Callable[[str, str, list[str], str], None]


class Transform(Protocol):
    """One transform instance, owned by one task (never shared between threads)."""

    #: short label for errors and timings, e.g. "sql", "validate", "plugin transform-filter"
    name: str
    #: seconds spent, rows in/out, and any counters (e.g. "skipped", "dead_lettered")
    stats: dict[str, float]

    def open(self, stream: str, schema: pa.Schema) -> pa.Schema:
        """Prepare for ``stream`` whose batches have ``schema``; return the output schema."""

    def apply(self, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        """Transform one batch; may return zero, one or several batches."""

    def finish(self) -> list[pa.RecordBatch]:
        """Batches still buffered at end of stream (usually none)."""

    def close(self) -> None:
        """Release resources (plugin instances, contexts)."""
