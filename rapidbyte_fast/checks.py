"""``check`` and ``discover``: a pipeline planned against the live source and destination
(nothing is written), and the streams a source offers."""
from __future__ import annotations

from . import registry
from .config import PipelineConfig
from .connector import StreamInfo
from .lazy_schema import arrow
from .plan import Planner


def _describe(info: StreamInfo) -> dict:
    return {
        "stream": info.name,
        "primary_key": list(info.primary_key),
        "columns": [
            {"name": f.name,
             "pg_type": (f.metadata or {}).get(b"pg_type", b"").decode() or "-",
             "arrow_type": str(f.type), "nullable": f.nullable}
            for f in arrow(info.schema)
        ],
    }


def discover_source(cfg: PipelineConfig) -> list[dict]:
    """Every stream the source offers, with its columns (a source with no catalog, such as an
    HTTP API: the configured streams)."""
    src = registry.source(cfg.source.use)(cfg.source.config)
    try:
        infos = src.discover() or [src.describe(s) for s in cfg.source.streams]
        return [_describe(info) for info in infos]
    finally:
        src.close()


def _columns(schema) -> str:
    return ", ".join(f"{f.name} {f.type}" for f in schema)


def check_pipeline(cfg: PipelineConfig) -> list[str]:
    """Lines describing a passed check; raises the first problem found."""
    planner = Planner(cfg)
    cfg = planner.cfg
    lines = [f"config: ok (pipeline {cfg.pipeline}, {len(cfg.source.streams)} stream(s))"]
    try:
        describe = getattr(cfg.source.config, "describe", None)
        lines.append(f"source: connected ({describe()})" if describe is not None
                     else f"source: {cfg.source.use}")
        for s in cfg.source.streams:
            plan = planner.plan(s)
            info = _describe(plan.info)
            pk = info["primary_key"]
            lines.append(f"  stream {s.name}: {len(info['columns'])} columns"
                         + (f", primary key {','.join(pk)}" if pk else ""))
            lines += [f"    {c['name']}: {c['pg_type']} → {c['arrow_type']}"
                      for c in info["columns"]]
            if s.sync_mode == "incremental" and s.tie_breaker_field is None:
                lines.append(f"  warning: stream {s.name} is incremental without "
                             "tie_breaker_field: rows that share the last cursor value and "
                             "arrive later will be missed")
            if (planner.source.capabilities.key_ranges and s.sync_mode == "full_refresh"
                    and cfg.destination.write_mode in ("append", "replace") and not pk
                    and s.partition_key is None):
                lines.append(f"  note: stream {s.name} has no key to cut into ranges (a primary "
                             "key, or an integer partition_key): a failed full refresh starts "
                             "over instead of resuming")
            if cfg.transforms:
                lines.append(f"  transforms: ok, {len(cfg.transforms)} step(s) → "
                             + _columns(plan.schema))
        lines.append(f"destination: connected {planner.dest.describe()}")
    finally:
        planner.close()
    return lines
