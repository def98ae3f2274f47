"""Planning: a validated config becomes a list of tasks, one per (stream, partition).

Tasks are plain picklable descriptions (connection strings are resolved here, embedded
servers started here) so that any executor can run them.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import embedded
from .config import PipelineConfig, StreamConfig
from .errors import ConfigError


@dataclass(frozen=True)
class Task:
    """One unit of work: copy one stream (one partition of it) from source to destination."""

    pipeline: str
    stream: StreamConfig
    source_use: str
    source_conninfo: str | None
    source_schema: str
    dest_conninfo: str
    partition: int = 0
    partitions: int = 1


def resolve_conninfo(pg_cfg) -> str:
    """libpq conninfo of a postgres config, starting the embedded server when named."""
    name = pg_cfg.embedded_name()
    if name is not None:
        return embedded.ensure(name)
    return pg_cfg.conninfo()


def make_tasks(cfg: PipelineConfig) -> list[Task]:
    """The tasks of a run, in stream order."""
    if cfg.destination.use != "postgres":
        raise ConfigError(f"destination.use: {cfg.destination.use!r} is not supported yet "
                          "(built-in: postgres)")
    use = cfg.source.use
    if use not in ("postgres", "generate"):
        raise ConfigError(f"source.use: {use!r} is not supported yet (built-in: postgres, generate)")
    unsupported = []
    for i, s in enumerate(cfg.source.streams):
        if s.sync_mode == "incremental" and use != "postgres":
            unsupported.append(f"source.streams[{i}].sync_mode: incremental needs a postgres "
                               "source")
        if s.sync_mode == "incremental" and cfg.destination.write_mode == "replace":
            unsupported.append(f"source.streams[{i}].sync_mode: incremental cannot be used "
                               "with write_mode replace (use append or upsert)")
    if unsupported:
        raise ConfigError(unsupported)
    src_conninfo = resolve_conninfo(cfg.source.config) if use == "postgres" else None
    src_schema = cfg.source.config.schema_name if use == "postgres" else ""
    dst_conninfo = resolve_conninfo(cfg.destination.config)
    return [
        Task(cfg.pipeline, s, use, src_conninfo, src_schema, dst_conninfo)
        for s in cfg.source.streams
    ]
