"""The pipeline file's sections as frozen pydantic models: source and its streams,
destination, state, resources, and ``PipelineConfig``, which turns every problem found
into one ``ConfigError``.
"""
from __future__ import annotations

import os
import re
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from ..connector import MAX_BATCH_BYTES, MAX_BATCH_ROWS
from ..errors import ConfigError
from ..paths import data_dir
from ..redact import MASK, redact
from .base import ConfigModel, Name, TypedConfig, typed_config
from .connectors import DATASETS, GenerateConfig, connector_config_model
from .problems import SECRET_KEY, LoadContext, Problem, flatten, problems_error, rule
from .sizes import BatchBytes, MemoryBudget, Size
from .transforms import TransformConfig


def _connector_config(kind: str, value: Any, info: ValidationInfo) -> Any:
    use = info.data.get("use")
    return typed_config(value, connector_config_model(kind, use) if isinstance(use, str) else None)


class StreamConfig(ConfigModel):
    """One table to read."""

    name: Name
    sync_mode: Literal["full_refresh", "incremental", "cdc"] = "full_refresh"
    cursor_field: Name | None = None
    tie_breaker_field: Name | None = None
    columns: tuple[Name, ...] | None = Field(None, min_length=1)
    partition_key: Name | None = None

    def _rules(self) -> list[Problem]:
        problems = []
        if self.sync_mode == "cdc" and self.columns is not None:
            problems.append(rule(
                "sync_mode columns", ("columns",),
                "cdc captures whole rows: remove columns (or use a transform)",
            ))
        if self.cursor_field is None:
            if self.sync_mode == "incremental":
                problems.append(rule(
                    "sync_mode cursor_field", ("cursor_field",),
                    "required when sync_mode is incremental",
                ))
            if self.tie_breaker_field is not None:
                problems.append(rule(
                    "cursor_field tie_breaker_field", ("tie_breaker_field",), "needs a cursor_field"
                ))
        if self.columns is not None:
            seen: set[str] = set()
            for column in self.columns:
                if column in seen:
                    problems.append(rule("columns", ("columns",), f"duplicate column {column!r}"))
                seen.add(column)
            for key in ("cursor_field", "tie_breaker_field", "partition_key"):
                column = getattr(self, key)
                if column is not None and column not in seen:
                    message = f"{column!r} is not in columns"
                    problems.append(rule(f"columns {key}", (key,), message))
        return problems


#: The stream name that stands for every table of the source's schema.
ALL_STREAMS = "*"


def _stream_model(use: object) -> type[ConfigModel]:
    """The model of each ``source.streams[]`` entry: the source connector's ``stream_model``
    when it declares one (``use: http``), else ``StreamConfig``."""
    if isinstance(use, str):
        from .. import registry

        return registry.models("sources", use)[1] or StreamConfig
    return StreamConfig


class SourceConfig(ConfigModel):
    """``source``: a built-in connector (postgres, generate, http) or a plugin, and its streams."""

    use: Name
    config: TypedConfig = Field(
        default_factory=dict, validate_default=True, union_mode="left_to_right"
    )
    #: StreamConfig entries, or the source connector's own ``stream_model``; a bare name
    #: stands for ``{name: ...}``, and the name ``"*"`` (or ``streams: "*"``) for every
    #: table of the source's schema (``plan.with_listed_streams``)
    streams: tuple[Any, ...] = Field(min_length=1)

    @field_validator("config", mode="before")
    @classmethod
    def _config_for_use(cls, value: Any, info: ValidationInfo) -> Any:
        return _connector_config("source", value, info)

    @field_validator("streams", mode="before")
    @classmethod
    def _streams_for_use(cls, value: Any, info: ValidationInfo) -> Any:
        model = _stream_model(info.data.get("use"))
        if value == ALL_STREAMS:
            value = [value]
        if not isinstance(value, (list, tuple)):
            return value  # (the field's own type reports it)
        problems, out = [], []
        for i, item in enumerate(value):
            if isinstance(item, str):
                item = {"name": item}
            try:
                out.append(item if isinstance(item, model) else model.model_validate(item))
            except ValidationError as exc:
                problems += [p.under((i,)) for p in flatten(exc)]
        if problems:
            raise problems_error(problems)
        return out

    def _rules(self) -> list[Problem]:
        problems = []
        seen: set[str] = set()
        for i, stream in enumerate(self.streams):
            if stream.name in seen:
                problems.append(
                    rule("streams", ("streams", i, "name"), f"duplicate stream {stream.name!r}")
                )
            seen.add(stream.name)
        if isinstance(self.config, GenerateConfig) and self.config.dataset is None:
            problems += [
                rule(
                    "use config streams", ("streams", i, "name"),
                    f"{stream.name!r} is not a generate dataset (use one of "
                    f"{', '.join(DATASETS)}, or set source.config.dataset)",
                )
                for i, stream in enumerate(self.streams)
                if stream.name not in DATASETS
            ]
        return problems


class SchemaEvolution(ConfigModel):
    """What the destination does when the source schema drifts from the table."""

    new_column: Literal["add", "ignore", "fail"] = "add"
    removed_column: Literal["ignore", "fail"] = "ignore"
    type_change: Literal["coerce", "fail", "null"] = "fail"
    nullability_change: Literal["allow", "fail"] = "allow"

    @field_validator("type_change", mode="before")
    @classmethod
    def _yaml_null(cls, value: Any) -> Any:
        # A bare `null` in YAML is None; here it names the policy.
        return "null" if value is None else value


class DestinationConfig(ConfigModel):
    """``destination``: where rows go and how they are written."""

    use: Name
    config: TypedConfig = Field(
        default_factory=dict, validate_default=True, union_mode="left_to_right"
    )
    write_mode: Literal["append", "replace", "upsert"] = "append"
    primary_key: tuple[Name, ...] = ()
    on_data_error: Literal["fail", "skip", "dlq"] = "fail"
    allow_empty_replace: bool = False
    #: what a captured delete (sync_mode cdc) does to a replica: remove the row, or keep it
    #: with ``_rb_deleted_at`` and ``_rb_op`` set
    deletes: Literal["hard", "soft"] = "hard"
    schema_evolution: SchemaEvolution = SchemaEvolution()

    @field_validator("config", mode="before")
    @classmethod
    def _config_for_use(cls, value: Any, info: ValidationInfo) -> Any:
        return _connector_config("destination", value, info)

    @field_validator("primary_key", mode="before")
    @classmethod
    def _single_key(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    def _rules(self) -> list[Problem]:
        problems = []
        if self.write_mode == "upsert" and not self.primary_key:
            message = "required when write_mode is upsert"
            problems.append(rule("write_mode primary_key", ("primary_key",), message))
        if len(set(self.primary_key)) != len(self.primary_key):
            problems.append(
                rule("primary_key", ("primary_key",), "has duplicate columns", self.primary_key)
            )
        return problems


class StateConfig(ConfigModel):
    """Where run history, cursors and the DLQ live."""

    backend: Literal["sqlite", "postgres"] = "sqlite"
    connection: Name | None = None

    def _rules(self) -> list[Problem]:
        if self.backend == "postgres" and self.connection is None:
            message = "required when backend is postgres"
            return [rule("backend connection", ("connection",), message)]
        return []

    def resolved_connection(self) -> str:
        """The sqlite file path (``~`` expanded; default in the user data dir) or the
        postgres conninfo."""
        if self.backend == "postgres":
            return str(self.connection)
        if self.connection is None:
            return str(data_dir() / "state.db")
        return os.path.expanduser(self.connection)


#: Workers of one stream. Each holds a source and a destination connection, so 64 already
#: need more than a default Postgres allows (max_connections = 100): a larger number is a
#: typo, not a plan.
MAX_PARALLELISM = 64


class DaskConfig(ConfigModel):
    """Where the Dask executor runs (``resources.dask``)."""

    #: a scheduler address (``tcp://host:8786``, ``tls://...``) or ``local`` (a LocalCluster
    #: of worker processes sized to this machine)
    scheduler: Name = "local"

    @field_validator("scheduler")
    @classmethod
    def _address(cls, value: str) -> str:
        if value != "local" and "://" not in value:
            raise ValueError("must be 'local' or a scheduler address such as tcp://host:8786")
        return value


class ConnectionLimits(ConfigModel):
    """The most connections a run opens to each database at once (``resources.
    max_connections``; an integer sets both sides). None: as many as the workers need."""

    #: (the run itself holds one source connection, the exported snapshot, and two
    #: destination ones, the run lock and the load's DDL/commit; each worker one per side)
    source: int | None = Field(None, ge=2)
    destination: int | None = Field(None, ge=3)


class ResourcesConfig(ConfigModel):
    """Parallelism, memory bounds, inter-stage compression, checkpoints and retries."""

    parallelism: Literal["auto"] | int = "auto"
    #: streams run at once (auto: one per core, at most engine.AUTO_PARALLEL_STREAMS)
    parallel_streams: Literal["auto"] | int = "auto"
    max_inflight_batches: int = Field(16, ge=1, le=1024)
    max_batch_bytes: BatchBytes = MAX_BATCH_BYTES
    max_batch_rows: int = Field(MAX_BATCH_ROWS, ge=1)
    #: what the rows in flight may take (memory_budget.py sizes batches and queues to it;
    #: the three bounds above only cap what it derives)
    max_memory: MemoryBudget = 256 << 20
    compression: Literal["none", "lz4", "zstd"] = "none"
    compression_level: int = 0
    #: 256 MB: a crash costs at most this much re-loading, and a full refresh smaller than
    #: it loads in one piece. python -m bench resume, 1M rows (130 MB), 5 iters: ranges of
    #: 64 MB cost 1.05x one piece; 10M rows, 3 iters rotated: one piece 23.8 s, 64 MB 23.7 s,
    #: 256 MB 21.6 s.
    checkpoint_interval_bytes: Size = 256 << 20
    checkpoint_interval_rows: int = Field(0, ge=0)
    checkpoint_interval_seconds: float = Field(0, ge=0)
    max_retries: int = Field(3, ge=0, le=100)
    #: where the streams run: threads of this process, or tasks on a Dask cluster
    executor: Literal["local", "dask"] = "local"
    dask: DaskConfig = DaskConfig()
    max_connections: ConnectionLimits = ConnectionLimits()

    @field_validator("max_connections", mode="before")
    @classmethod
    def _both_sides(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"source": value, "destination": value}
        return value

    @field_validator("parallelism", "parallel_streams", mode="before")
    @classmethod
    def _auto_or_count(cls, value: Any) -> Any:
        if value == "auto":
            return value
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and (
                1 <= value <= MAX_PARALLELISM):
            return value
        raise ValueError(f"must be 'auto' or an integer from 1 to {MAX_PARALLELISM}")


_PIPELINE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _pipeline_rules(
    source: SourceConfig, destination: DestinationConfig, has_transforms: bool
) -> list[Problem]:
    # A transform may compute the key, so the projection only binds the key without one.
    if has_transforms:
        return []
    return [
        rule("source destination transforms", ("destination", "primary_key"),
             f"{key!r} is not in the columns of stream {stream.name!r}")
        for stream in source.streams
        if stream.columns is not None
        for key in destination.primary_key
        if key not in stream.columns
    ]


class PipelineConfig(ConfigModel):
    """A whole pipeline file. Validating one raises ``ConfigError`` with every problem."""

    version: str = "1.0"
    pipeline: str
    source: SourceConfig
    transforms: tuple[TransformConfig, ...] = ()
    destination: DestinationConfig
    state: StateConfig = StateConfig()
    resources: ResourcesConfig = ResourcesConfig()

    @field_validator("version")
    @classmethod
    def _known_version(cls, version: str) -> str:
        if version != "1.0":
            raise ValueError("unsupported version (only '1.0' is supported)")
        return version

    @field_validator("pipeline")
    @classmethod
    def _name_chars(cls, name: str) -> str:
        if not _PIPELINE_NAME.fullmatch(name):
            raise ValueError("must be letters, digits, '_', '.' or '-'")
        return name

    def _rules(self) -> list[Problem]:
        return _pipeline_rules(self.source, self.destination, bool(self.transforms))

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> PipelineConfig:
        """Validate, raising ``ConfigError`` (pydantic wraps the ValueError that ``_fail``
        raises inside validation: unwrap it)."""
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            for err in exc.errors():
                if isinstance(err.get("ctx", {}).get("error"), ConfigError):
                    raise err["ctx"]["error"] from None
            raise

    @classmethod
    def _fail(cls, problems: list[Problem], info: ValidationInfo) -> None:
        context = info.context if isinstance(info.context, LoadContext) else LoadContext()
        raise ConfigError(context.lines(problems))

    def redacted_dict(self) -> dict[str, Any]:
        """The configuration as plain data for printing: passwords and secrets masked."""
        return _mask(self.model_dump(mode="json", by_alias=True))


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key) for v in value]
    if value is not None and SECRET_KEY.search(key):
        return MASK
    return redact(value) if isinstance(value, str) else value

