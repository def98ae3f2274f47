"""Build the configured transforms of a pipeline, in order, for one task."""
from __future__ import annotations

import pyarrow as pa

from . import RejectSink, Transform


def build(transforms, on_data_error: str, reject: RejectSink | None) -> list[Transform]:
    """Fresh transform instances of the configured ``transforms``, in order (one set per
    task: they are never shared by threads)."""
    from .. import registry

    out: list[Transform] = []
    for i, t in enumerate(transforms):
        cls = registry.transform(t.use)
        if t.use == "validate":
            out.append(cls(t.config, on_data_error, reject, index=i))
        elif cls is not None:
            out.append(cls(t.config, index=i))
        else:
            from .wasm import WasmTransform

            # Only the limits the pipeline sets: the host fills in its defaults.
            limits = t.limits.model_dump(exclude_unset=True) if t.limits else None
            out.append(WasmTransform(t.use, t.config, limits))
    return out


def stats(chain: list[Transform]) -> tuple[dict[str, float], int, int]:
    """(timings, rows skipped, rows dead-lettered) of a finished chain."""
    timings: dict[str, float] = {}
    skipped = dead = 0
    for t in chain:
        timings["transform_duration_secs"] = (timings.get("transform_duration_secs", 0.0)
                                              + t.stats.get("seconds", 0.0))
        skipped += int(t.stats.get("skipped", 0))
        dead += int(t.stats.get("dead_lettered", 0))
        if "plugin_load_ms" in t.stats:
            timings["transform_module_load_ms"] = (timings.get("transform_module_load_ms", 0.0)
                                                   + t.stats["plugin_load_ms"])
    return timings, skipped, dead


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
