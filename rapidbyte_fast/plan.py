"""Planning: a validated config and the live catalogs become one frozen, picklable
``TaskPlan`` per stream, before any row moves.

A plan holds everything the engine needs and nothing it must decide: the source's columns
and types, the data path and why, the key ranges and how many workers read them, the
snapshot they share, the staging and target tables, the write strategy and commit policy,
and the incremental cursor. Every stream is planned before any is run, so a missing
table, column or cursor fails the run with nothing written. ``run --dry-run`` prints the
plans (``describe``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from . import registry
from .config import PipelineConfig, StreamConfig
from .config.models import ALL_STREAMS
from .deferred import deferred
from .connector import ChangePlan, CursorPlan, KeyCuts, RangePlan, StreamInfo
from .destinations.postgres.spec import WriteSpec
from .errors import ConfigError
from .lazy_schema import LazySchema, arrow

if TYPE_CHECKING:
    import pyarrow as pa

# the transform stage: loaded only by a pipeline with transforms
chain_mod = deferred("rapidbyte_fast.transforms.chain")


@dataclass(frozen=True)
class Learned:
    """What a failed attempt of a stream taught its next plan."""

    #: columns to read and carry as exact text (arrays their Arrow list cannot carry)
    text_columns: frozenset[str] = frozenset()
    #: why the stream must take the Arrow path ("": the planner decides)
    arrow_reason: str = ""


@dataclass(frozen=True)
class TaskPlan:
    """One stream's copy, fully decided."""

    pipeline: str
    stream: StreamConfig
    source_use: str
    source_config: Any
    #: where the source is (e.g. a resolved conninfo), so a worker rebuilds the connector
    source_endpoint: str
    dest_use: str
    dest_config: Any
    dest_endpoint: str
    #: the stream as its source described it (columns, types, key, estimates)
    info: StreamInfo
    #: the columns the destination receives (after the transforms): a ``pyarrow.Schema`` on
    #: the Arrow path, a ``LazySchema`` of it on passthrough from a lazy source
    schema: pa.Schema | LazySchema
    transforms: tuple[Any, ...]
    #: "passthrough" (raw COPY bytes) or "arrow", and why
    path: str
    path_reason: str
    #: the ranges still to read and how many workers read them
    reads: RangePlan
    #: "none", "hold" (one reader keeps one snapshot across its ranges) or "export" (the
    #: workers import a snapshot the executor exports and holds for the load)
    snapshot: str
    write: WriteSpec
    cursor: CursorPlan | None
    #: all the stream's ranges, and the rows an earlier attempt committed
    total_ranges: int
    resumed_rows: int
    #: batch and queue sizes, compression between stages, retries
    resources: Any
    #: a change-capture stream (its bootstrap load is the rest of this plan)
    changes: ChangePlan | None = None

    @property
    def resumed_ranges(self) -> int:
        return len(self.write.ranged.done) if self.write.ranged is not None else 0

    def describe(self) -> dict[str, Any]:
        """The plan as plain data (``run --dry-run``); no connection details."""
        w = self.write
        return {
            "stream": self.stream.name,
            "source": {"use": self.source_use, "name": self.info.qualified_name,
                       "est_rows": self.info.est_rows,
                       "primary_key": list(self.info.primary_key)},
            "columns": [{"name": f.name, "pg_type": _pg_type(f), "arrow_type": str(f.type)}
                        for f in arrow(self.schema)],
            "transforms": [t.use for t in self.transforms],
            "path": self.path, "path_reason": self.path_reason,
            "reads": {"workers": self.reads.workers, "ranges": len(self.reads.ranges),
                      "total_ranges": self.total_ranges,
                      "resumed_ranges": self.resumed_ranges,
                      "partitioning": self.reads.partitioning or "none",
                      "snapshot": self.snapshot,
                      "predicates": [r.predicate for r in self.reads.ranges[:4]]},
            "write": {"destination": self.dest_use, "target": f"{w.schema}.{w.table}",
                      "write_mode": w.write_mode, "strategy": w.strategy,
                      "load_method": w.load_method, "staging": w.staging and
                      f"{w.staging_schema}.{w.staging}", "commit": w.commit,
                      "resumable": w.ranged is not None,
                      "checkpoint_every": list(w.checkpoint_every),
                      "primary_key": list(w.primary_key), "target_exists": w.target_exists},
            "changes": None if self.changes is None else {
                "publication": self.changes.publication, "slot": self.changes.slot,
                "shape": self.changes.shape, "deletes": self.changes.deletes,
                "phase": "bootstrap" if self.changes.bootstrap else "drain",
                "after": self.changes.position},
            "cursor": None if self.cursor is None else {
                "field": self.cursor.field, "tie_breaker": self.cursor.tie_breaker,
                "after": self.cursor.value, "after_tie": self.cursor.tie},
        }


def _pg_type(field: pa.Field) -> str:
    return (field.metadata or {}).get(b"pg_type", b"").decode() or "-"


class Planner:
    """Plans the streams of one pipeline (holds the connectors while it does)."""

    def __init__(self, cfg: PipelineConfig) -> None:
        self.source = registry.source(cfg.source.use)(cfg.source.config)
        try:
            #: the config with its streams listed (``"*"`` expanded)
            self.cfg = _listed_streams(cfg, self.source)
        except BaseException:
            self.source.close()
            raise
        self.dest = registry.destination(cfg.destination.use)(cfg.destination)

    def close(self) -> None:
        self.source.close()

    def plan(self, stream: StreamConfig, learned: Learned = Learned()) -> TaskPlan:
        """The plan of one stream (``learned``: from its failed attempts)."""
        cfg, src, dest = self.cfg, self.source, self.dest
        _check_modes(cfg, stream, src, dest)
        info = (src.describe(stream, text_columns=learned.text_columns)
                if learned.text_columns else src.describe(stream))
        if cfg.transforms:   # (transforms take Arrow schemas; their plans take the Arrow path)
            info = info.with_arrow()
        schema = _transformed_schema(cfg, stream.name, info.schema)
        state = dest.inspect(cfg.pipeline, stream.name, schema)
        changes = self._changes(stream, info, state)
        # a replica's bootstrap is a full refresh: replace (also over an older copy)
        boot_mode = ("replace" if changes is not None and changes.bootstrap
                     and changes.shape == "replica" else None)
        cursor = _cursor(stream, info, state.cursor)
        path, why = ("arrow", learned.arrow_reason) if learned.arrow_reason else self._path(
            info, state)
        if path == "arrow":   # (a passthrough plan keeps a LazySchema: no pyarrow in its run)
            info, schema = info.with_arrow(), arrow(schema)
        reads = self._reads(stream, info, schema, state, boot_mode)
        res = cfg.resources
        # mid-stream checkpoints of an incremental read commit the cursor reached so far:
        # only a read in cursor order has one
        # (a cdc bootstrap commits once, with the slot's position)
        every = ((res.checkpoint_interval_bytes, res.checkpoint_interval_rows,
                  res.checkpoint_interval_seconds)
                 if changes is None and (cursor is None or src.capabilities.cursor_ordered)
                 else (0, 0, 0.0))
        write = dest.plan_write(cfg.pipeline, stream.name, schema, state, reads,
                                path == "passthrough", cursor, every, boot_mode)
        done = write.ranged.done if write.ranged is not None else frozenset()
        pending = tuple(r for r in reads.ranges if r.index not in done)
        workers = min(reads.workers, len(pending), task_slots(cfg.resources) or len(pending))
        snapshot = ("export" if workers > 1
                    else "hold" if write.commit == "per_range" and len(pending) > 1
                    else "none")
        return TaskPlan(
            cfg.pipeline, stream, cfg.source.use, src.config, src.endpoint,
            cfg.destination.use, cfg.destination, dest.endpoint, info, schema,
            tuple(cfg.transforms), path, why,
            RangePlan(pending, workers, reads.partitioning, reads.cuts), snapshot, write, cursor,
            len(reads.ranges), write.ranged.rows_done if write.ranged is not None else 0,
            cfg.resources, changes)

    def _changes(self, stream: StreamConfig, info: StreamInfo, state) -> ChangePlan | None:
        """A cdc stream's change plan: the source's slot and publication, the position
        the destination committed, the destination shape."""
        if stream.sync_mode != "cdc":
            return None
        cfg = self.cfg
        several = sum(s.sync_mode == "cdc" for s in cfg.source.streams) > 1
        position = state.cursor.value if state.cursor is not None else None
        plan = self.source.plan_changes(cfg.pipeline, stream, info, several, position)
        dest_cfg = cfg.destination
        key = tuple(dest_cfg.primary_key)
        if dest_cfg.write_mode == "upsert" and key != plan.key:
            raise ConfigError(f"destination.primary_key: stream {stream.name} is captured by "
                              f"its key ({', '.join(plan.key)}); set primary_key to it")
        return replace(plan, position=position, deletes=dest_cfg.deletes,
                       shape="replica" if dest_cfg.write_mode == "upsert" else "log")

    def _path(self, info: StreamInfo, state) -> tuple[str, str]:
        """("passthrough" | "arrow", why): raw COPY bytes when nothing needs the values."""
        src, dest = self.source, self.dest
        if not (src.capabilities.raw_copy and dest.capabilities.raw_copy):
            return "arrow", f"source is {self.cfg.source.use}"
        reason = (dest.raw_copy_reason(bool(self.cfg.transforms))
                  or src.raw_copy_reason(info) or dest.target_copy_reason(state, info))
        return ("arrow", reason) if reason else ("passthrough", "identical column types")

    def _reads(self, stream: StreamConfig, info: StreamInfo, schema: pa.Schema,
               state, boot_mode: str | None = None) -> RangePlan:
        cfg, src = self.cfg, self.source
        mode = cfg.destination.write_mode
        # transforms like validate/unique are stateful per stream: one reader
        if (stream.sync_mode not in ("full_refresh", "cdc") or cfg.transforms
                or not src.capabilities.key_ranges):
            return RangePlan()
        if stream.sync_mode == "cdc":
            # a bootstrap reads in the slot's snapshot, which ends with the run: one
            # transaction, never resumed
            if state.cursor is not None:
                return RangePlan()
            return src.plan_ranges(info, stream, cfg.resources.parallelism,
                                   boot_mode or mode, False, None, (0, 0))
        earlier = state.earlier
        cuts = None
        if earlier is not None and state.earlier_usable:
            cuts = KeyCuts(earlier.key, earlier.key_types, earlier.cuts, earlier.has_null)
        res = cfg.resources
        return src.plan_ranges(info, stream, res.parallelism, mode,
                               mode in ("replace", "append"), cuts,
                               (res.checkpoint_interval_bytes, res.checkpoint_interval_rows))


def _check_modes(cfg: PipelineConfig, stream: StreamConfig, src, dest) -> None:
    i = cfg.source.streams.index(stream)
    if stream.sync_mode == "cdc":
        if not (src.capabilities.change_capture and dest.capabilities.change_capture):
            raise ConfigError(f"source.streams[{i}].sync_mode: cdc needs a source and a "
                              f"destination that capture changes ({cfg.source.use} → "
                              f"{cfg.destination.use} do not)")
        if cfg.destination.write_mode == "replace":
            raise ConfigError(f"source.streams[{i}].sync_mode: cdc writes a replica "
                              "(write_mode upsert) or a change log (write_mode append), "
                              "not replace")
        if cfg.transforms:
            raise ConfigError(f"source.streams[{i}].sync_mode: cdc streams take no "
                              "transforms in this version")
        if cfg.destination.on_data_error != "fail":
            raise ConfigError(f"source.streams[{i}].sync_mode: a cdc replica or log cannot "
                              "leave rows out: on_data_error must be fail")
    if stream.sync_mode == "incremental" and not src.capabilities.incremental:
        raise ConfigError(f"source.streams[{i}].sync_mode: incremental needs a source that "
                          f"reads incrementally ({cfg.source.use} does not)")
    if stream.sync_mode == "incremental" and cfg.destination.write_mode == "replace":
        raise ConfigError(f"source.streams[{i}].sync_mode: incremental cannot be used "
                          "with write_mode replace (use append or upsert)")


def _transformed_schema(cfg: PipelineConfig, stream: str, schema: pa.Schema) -> pa.Schema:
    """The schema the destination receives: the source's, through every transform."""
    if not cfg.transforms:
        return schema
    chain = chain_mod.build(cfg.transforms, "fail", None)  # (rejects do not change the schema)
    try:
        return chain_mod.open_chain(chain, stream, schema)
    finally:
        for t in chain:
            t.close()


def _cursor(stream: StreamConfig, info: StreamInfo, committed) -> CursorPlan | None:
    if stream.sync_mode != "incremental":
        return None
    for field in (stream.cursor_field, stream.tie_breaker_field):
        if field is not None and field not in info.schema.names:
            raise ConfigError(f"stream {stream.name}: cursor column {field} is not a column "
                              f"of {info.qualified_name}")
    return CursorPlan(stream.cursor_field, stream.tie_breaker_field,
                      committed.value if committed else None,
                      committed.tie if committed else None)


def _listed_streams(cfg: PipelineConfig, source) -> PipelineConfig:
    """``cfg`` with a ``"*"`` stream replaced by every table ``source`` lists (each with
    the ``"*"`` entry's settings) that no other entry names."""
    streams = cfg.source.streams
    i = next((i for i, s in enumerate(streams) if s.name == ALL_STREAMS), None)
    if i is None:
        return cfg
    if not hasattr(source, "stream_names"):
        raise ConfigError(f"source.streams[{i}].name: {cfg.source.use} sources cannot "
                          f"list their streams: name them instead of {ALL_STREAMS!r}")
    named = {s.name for s in streams}
    listed = [streams[i].model_copy(update={"name": n}) for n in source.stream_names()
              if n not in named]
    if not listed and len(streams) == 1:
        raise ConfigError(f"source.streams[{i}].name: {ALL_STREAMS!r} found no table to read")
    expanded = streams[:i] + tuple(listed) + streams[i + 1:]
    return cfg.model_copy(update={"source": cfg.source.model_copy(
        update={"streams": expanded})})


def task_slots(resources) -> int | None:
    """How many workers (one connection to each side apiece) may run at once under
    ``resources.max_connections``, after the run's own connections (the exported snapshot
    on the source; the run lock and the load's DDL/commit connection on the destination);
    None when unlimited."""
    limits = resources.max_connections
    caps = [n - held for n, held in ((limits.source, 1), (limits.destination, 2))
            if n is not None]
    return min(caps) if caps else None


def make_plans(cfg: PipelineConfig) -> list[TaskPlan]:
    """The plans of a run, in stream order; raises the first problem found, before any
    stream is run."""
    planner = Planner(cfg)
    try:
        return [planner.plan(s) for s in planner.cfg.source.streams]
    finally:
        planner.close()

