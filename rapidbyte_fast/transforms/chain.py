"""Build the configured transforms of a pipeline, in order, for one task."""
from __future__ import annotations

import pyarrow as pa

from ..config import PipelineConfig
from . import RejectSink, Transform


def build(cfg: PipelineConfig, reject: RejectSink | None) -> list[Transform]:
    """Fresh transform instances (one set per task: they are never shared by threads)."""
    out: list[Transform] = []
    for i, t in enumerate(cfg.transforms):
        if t.use == "sql":
            from .sql import SqlTransform

            out.append(SqlTransform(t.config, index=i))
        elif t.use == "validate":
            from .validate import ValidateTransform

            out.append(ValidateTransform(t.config, cfg.destination.on_data_error, reject, index=i))
        else:
            from .wasm import WasmTransform

            out.append(WasmTransform(t.use, t.config, t.limits))
    return out


def open_chain(chain: list[Transform], stream: str, schema: pa.Schema) -> pa.Schema:
    """Open every transform in order; returns the schema the destination receives."""
    for t in chain:
        schema = t.open(stream, schema)
    return schema


def apply_chain(chain: list[Transform], batch: pa.RecordBatch) -> list[pa.RecordBatch]:
    """Run one batch through every transform."""
    batches = [batch]
    for t in chain:
        batches = [out for b in batches for out in t.apply(b)]
    return batches


def finish_chain(chain: list[Transform]) -> list[pa.RecordBatch]:
    """Flush what transforms still hold at end of stream, through the rest of the chain."""
    pending: list[pa.RecordBatch] = []
    for t in chain:
        pending = [out for b in pending for out in t.apply(b)] + t.finish()
    return pending
