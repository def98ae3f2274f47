"""Pipeline configuration: the YAML file (Rapidbyte-compatible keys) as frozen pydantic models.

``load_config`` reads YAML, substitutes ``${VAR}`` / ``${VAR:-default}`` in string values
after parsing (``$${...}`` is a literal), validates, and raises one ``ConfigError`` listing
every problem as ``"<key.path>: <message>"``. Problem lines never contain secrets.

Every model validates with a wrap validator that gathers unknown keys (with a difflib
suggestion), field errors and the model's own cross-field rules into a single
``rb_problems`` error carrying structured ``_Problem`` items; the enclosing model prefixes
their paths. ``PipelineConfig`` turns the lot into ``ConfigError``.
"""
from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from . import embedded
from .errors import ConfigError, EmbeddedError
from .paths import data_dir
from .redact import MASK, redact

# ---------------------------------------------------------------------------------------
# Problems: structured until the last moment so paths can be prefixed and values hidden.

_NO_VALUE = object()
_PROBLEMS = "rb_problems"
_SECRET_KEY = re.compile(r"pass(word|wd)|secret|token|api_?key|credential", re.IGNORECASE)

Loc = tuple[Union[str, int], ...]


@dataclass(frozen=True)
class _Problem:
    """One problem. ``soft`` ones (unknown keys, cross-field rules) leave the data usable
    for further checks; ``needs`` names the fields a rule read."""

    loc: Loc
    message: str
    got: object = _NO_VALUE
    soft: bool = False
    needs: frozenset[str] = frozenset()

    def under(self, prefix: Loc) -> _Problem:
        return replace(self, loc=prefix + self.loc)


def _rule(needs: str, loc: Loc, message: str, got: object = _NO_VALUE) -> _Problem:
    """A cross-field problem; ``needs`` lists (space-separated) the fields the rule read."""
    return _Problem(loc, message, got, soft=True, needs=frozenset(needs.split()))


def _path(loc: Loc) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "<config>"


def _related(a: Loc, b: Loc) -> bool:
    return a[: len(b)] == b or b[: len(a)] == a


def _show(value: object) -> str:
    # Redact before cutting: a cut between password and '@' would hide it from redact().
    text = redact(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _render(problem: _Problem, hidden: frozenset[Loc] = frozenset()) -> str:
    line = f"{_path(problem.loc)}: {problem.message}"
    secret = any(isinstance(p, str) and _SECRET_KEY.search(p) for p in problem.loc)
    if problem.got is not _NO_VALUE and not secret and not any(
        _related(problem.loc, h) for h in hidden
    ):
        line += f" (got {_show(problem.got)})"
    return redact(" ".join(line.split()))


def _problems_error(problems: list[_Problem]) -> PydanticCustomError:
    summary = "; ".join(_render(p) for p in problems)
    return PydanticCustomError(_PROBLEMS, "{summary}", {"summary": summary, "problems": problems})


_PLAIN = {
    "missing": "is required",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "extra_forbidden": "unknown key",
}
_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


def _translate(loc: Loc, err: Mapping[str, Any]) -> _Problem:
    kind, ctx = err["type"], err.get("ctx") or {}
    got = _NO_VALUE if kind == "missing" else err.get("input", _NO_VALUE)
    if kind in _PLAIN:
        message = _PLAIN[kind]
    elif kind == "literal_error":
        message = "must be one of " + ", ".join(re.findall(r"'([^']*)'", ctx["expected"]))
    elif kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        message = f"must be {_BOUNDS[kind]} {bound}"
    elif kind == "too_short":
        min_length = ctx.get("min_length", 1)
        message = "must not be empty" if min_length == 1 else f"needs at least {min_length} items"
    elif kind in ("value_error", "assertion_error"):
        message = str(ctx.get("error", err["msg"]))
    else:
        message = err["msg"][:1].lower() + err["msg"][1:]
    return _Problem(loc, message, got)


def _flatten(exc: ValidationError) -> list[_Problem]:
    problems: list[_Problem] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "too_short" and len(err["input"]) >= err["ctx"]["min_length"]:
            continue  # pydantic counts only items that validated; theirs are reported
        if err["type"] == _PROBLEMS:
            problems += [p.under(loc) for p in err["ctx"]["problems"]]
        else:
            problems.append(_translate(loc, err))
    return problems


# ---------------------------------------------------------------------------------------
# Sizes


_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?b|b)?")
_SIZE_UNITS = {None: 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}
_SIZE_HINT = "must be a size: bytes, or a number with b, kb, mb, gb or tb (e.g. 512kb, 64mb, 1.5gb)"


def _size_bytes(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(_SIZE_HINT)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(_SIZE_HINT)
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip().lower())
        if match:
            number, unit = match.groups()
            try:
                return int(Decimal(number) * _SIZE_UNITS[unit.replace("ib", "b") if unit else None])
            except InvalidOperation:
                pass
    raise ValueError(_SIZE_HINT)


def parse_size(value: int | float | str) -> int:
    """Bytes in ``value``: an int, or ``"64mb"``, ``"512KB"``, ``"1.5gb"``, ``"100b"``.

    Units are binary (1kb = 1024) and case-insensitive; fractions round down to whole
    bytes. Raises ``ValueError`` for anything else.
    """
    try:
        return _size_bytes(value)
    except ValueError as exc:
        raise ValueError(f"{exc} (got {value!r})") from None


Size = Annotated[int, BeforeValidator(_size_bytes)]
Name = Annotated[str, StringConstraints(min_length=1)]


# ---------------------------------------------------------------------------------------
# Base model


def _unknown_key(key: object, known: list[str]) -> _Problem:
    near = difflib.get_close_matches(str(key), known, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return _Problem((str(key),), f"unknown key{hint}", soft=True)


# Set while re-validating for rules: models then report only hard errors, so a parent can
# still check the fields that are usable despite unknown keys or broken rules below them.
_SOFT_PROBLEMS_IGNORED: ContextVar[bool] = ContextVar("_SOFT_PROBLEMS_IGNORED", default=False)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    @model_validator(mode="wrap")
    @classmethod
    def _validate_all(cls, data: Any, handler: Any, info: ValidationInfo) -> Any:
        lenient = _SOFT_PROBLEMS_IGNORED.get()
        problems: list[_Problem] = []
        if isinstance(data, Mapping):
            known = [f.alias or name for name, f in cls.model_fields.items()]
            if not lenient:
                problems += [_unknown_key(key, known) for key in data if key not in known]
            data = {k: v for k, v in data.items() if k in known}
        try:
            model = handler(data)
        except ValidationError as exc:
            errors = _flatten(exc)
            if not lenient:
                errors += cls._rules_of_usable_fields(data, handler, errors)
            cls._fail(problems + errors, info)
        if not lenient:
            problems += model._rules()
        if problems:
            cls._fail(problems, info)
        return model

    @classmethod
    def _rules_of_usable_fields(
        cls, data: Any, handler: Any, errors: list[_Problem]
    ) -> list[_Problem]:
        """Rules still checkable after a failure: re-validate without the broken fields
        (defaults stand in) and keep the rule problems that read none of them."""
        broken = {p.loc[0] for p in errors if not p.soft and p.loc}
        if not isinstance(data, Mapping):
            return []
        token = _SOFT_PROBLEMS_IGNORED.set(True)
        try:
            model = handler({k: v for k, v in data.items() if k not in broken})
        except ValidationError:
            return []
        finally:
            _SOFT_PROBLEMS_IGNORED.reset(token)
        return [p for p in model._rules() if not p.needs & broken]

    @classmethod
    def _fail(cls, problems: list[_Problem], info: ValidationInfo) -> None:
        raise _problems_error(problems)

    def _rules(self) -> list[_Problem]:
        """Cross-field problems of a model whose fields are individually valid."""
        return []


def _typed_config(value: Any, use: object, builtins: Mapping[str, type[_Model]]) -> Any:
    """Validate ``config`` with the model of a built-in ``use``; plugins get a plain dict."""
    if isinstance(value, _Model):
        return value
    if not isinstance(value, Mapping):
        raise _problems_error([_Problem((), "must be a mapping", value)])
    model = builtins.get(use) if isinstance(use, str) else None
    if model is None:
        return dict(value)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise _problems_error(_flatten(exc)) from None


# ---------------------------------------------------------------------------------------
# Postgres


class PostgresConnection(_Model):
    """Where a Postgres database is: exactly one of ``url``, ``host`` or ``embedded``."""

    url: str | None = None
    host: Name | None = None
    port: int = Field(5432, ge=1, le=65535)
    user: Name | None = None
    password: SecretStr | None = None
    database: Name | None = None
    embedded: str | None = None
    schema_name: Name = Field("public", alias="schema")
    connect_timeout: int = Field(10, ge=0)

    @field_validator("url")
    @classmethod
    def _url_form(cls, url: str | None) -> str | None:
        if url is None or url == "embedded":
            return url
        scheme, sep, _ = url.partition("://")
        if (sep and scheme in ("postgres", "postgresql")) or (not sep and "=" in url):
            return url
        raise ValueError("must be a postgresql:// URL, a key=value DSN or 'embedded'")

    @field_validator("embedded")
    @classmethod
    def _embedded_name(cls, name: str | None) -> str | None:
        if name is not None:
            try:
                embedded.data_dir(name)
            except EmbeddedError:
                raise ValueError("must be 1-64 letters, digits, '_' or '-'") from None
        return name

    def _rules(self) -> list[_Problem]:
        given = [k for k in ("url", "host", "embedded") if getattr(self, k) is not None]
        if len(given) != 1:
            found = " and ".join(given) + " are set" if given else "none is set"
            message = f"set exactly one of url, host or embedded ({found})"
            return [_rule("url host embedded", (), message)]
        if self.embedded_name() is None:
            return []
        return [
            _rule(f"url embedded {key}", (key,), "not used with an embedded server")
            for key in ("port", "user", "password", "database")
            if key in self.model_fields_set
        ]

    def __repr_args__(self) -> Any:
        # repr() ends up in logs and tracebacks; a URL may carry the password.
        for name, value in super().__repr_args__():
            yield name, redact(value) if name == "url" and value else value

    def embedded_name(self) -> str | None:
        """Name of the embedded server to use (``url: embedded`` means "default"), or None."""
        return "default" if self.url == "embedded" else self.embedded

    def conninfo(self) -> str:
        """libpq conninfo for ``url`` or ``host``; ``url`` gets explicit user/password/
        database/port merged in, and ``connect_timeout`` unless the URL sets its own.

        Embedded servers have none until started: resolve ``embedded_name()`` with
        ``rapidbyte_fast.embedded.ensure``.
        """
        if self.embedded_name() is not None:
            raise ValueError("an embedded server has no conninfo before it is started")
        # psycopg costs ~0.3 s to import; only code that connects pays it.
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        params: dict[str, Any] = {
            "user": self.user,
            "password": self.password.get_secret_value() if self.password else None,
            "dbname": self.database,
        }
        if self.url is None:
            return make_conninfo(
                "", host=self.host, port=self.port, connect_timeout=self.connect_timeout,
                **params,
            )
        if "port" in self.model_fields_set:
            params["port"] = self.port
        try:
            if (
                "connect_timeout" in self.model_fields_set
                or "connect_timeout" not in conninfo_to_dict(self.url)
            ):
                params["connect_timeout"] = self.connect_timeout
            # With nothing to merge the URL comes back exactly as written.
            return make_conninfo(self.url, **{k: v for k, v in params.items() if v is not None})
        except ProgrammingError:
            # libpq's message quotes the offending text, which may be the password.
            raise ConfigError(f"{self.describe()}: not a valid libpq URL or DSN") from None

    def describe(self) -> str:
        """Description for humans, password masked: ``postgresql://app:***@db:5432/shop``."""
        name = self.embedded_name()
        if name is not None:
            where = f"embedded server {name!r}"
        elif self.url is not None:
            where = redact(self.url)
        else:
            login = (self.user or "") + (f":{MASK}" if self.password else "")
            where = f"postgresql://{login}{'@' if login else ''}{self.host}:{self.port}/"
            where += self.database or ""
        return f"{where} (schema {self.schema_name})"


class PostgresSourceConfig(PostgresConnection):
    """``source.config`` for ``use: postgres``."""


class PostgresDestinationConfig(PostgresConnection):
    """``destination.config`` for ``use: postgres``."""

    load_method: Literal["copy", "insert"] = "copy"
    passthrough: Literal["auto", "off"] = "auto"
    copy_format: Literal["binary", "text"] = "binary"
    copy_flush_bytes: Size | None = Field(None, ge=1)
    insert_batch_rows: int = Field(5000, ge=1)
    insert_batch_bytes: Size = Field(4 << 20, ge=1)

    @field_validator("passthrough", mode="before")
    @classmethod
    def _yaml11_off(cls, value: Any) -> Any:
        # YAML 1.1 parsers (the dict may come from one) read a bare `off` as False.
        return "off" if value is False else value


# ---------------------------------------------------------------------------------------
# Source


Dataset = Literal["bench_events", "small", "medium", "large"]
DATASETS: tuple[str, ...] = get_args(Dataset)


class GenerateConfig(_Model):
    """``source.config`` for ``use: generate`` (synthetic rows, for benchmarks and demos)."""

    rows: int = Field(1_000_000, ge=0)
    dataset: Dataset | None = None
    start_id: int = 1


class StreamConfig(_Model):
    """One table to read."""

    name: Name
    sync_mode: Literal["full_refresh", "incremental", "cdc"] = "full_refresh"
    cursor_field: Name | None = None
    tie_breaker_field: Name | None = None
    columns: tuple[Name, ...] | None = Field(None, min_length=1)
    partition_key: Name | None = None

    def _rules(self) -> list[_Problem]:
        problems = []
        if self.sync_mode == "cdc":
            problems.append(_rule(
                "sync_mode", ("sync_mode",),
                "cdc is not supported yet (use incremental with a cursor_field)",
            ))
        if self.cursor_field is None:
            if self.sync_mode == "incremental":
                problems.append(_rule(
                    "sync_mode cursor_field", ("cursor_field",),
                    "required when sync_mode is incremental",
                ))
            if self.tie_breaker_field is not None:
                problems.append(_rule(
                    "cursor_field tie_breaker_field", ("tie_breaker_field",), "needs a cursor_field"
                ))
        if self.columns is not None:
            seen: set[str] = set()
            for column in self.columns:
                if column in seen:
                    problems.append(_rule("columns", ("columns",), f"duplicate column {column!r}"))
                seen.add(column)
            for key in ("cursor_field", "tie_breaker_field", "partition_key"):
                column = getattr(self, key)
                if column is not None and column not in seen:
                    message = f"{column!r} is not in columns"
                    problems.append(_rule(f"columns {key}", (key,), message))
        return problems


class SourceConfig(_Model):
    """``source``: a built-in connector (postgres, generate, http) or a plugin, and its streams."""

    use: Name
    config: Union[dict[str, Any], PostgresSourceConfig, GenerateConfig] = Field(
        default_factory=dict, validate_default=True, union_mode="left_to_right"
    )
    streams: tuple[StreamConfig, ...] = Field(min_length=1)

    @field_validator("config", mode="before")
    @classmethod
    def _config_for_use(cls, value: Any, info: ValidationInfo) -> Any:
        builtins = {"postgres": PostgresSourceConfig, "generate": GenerateConfig}
        return _typed_config(value, info.data.get("use"), builtins)

    def _rules(self) -> list[_Problem]:
        problems = []
        seen: set[str] = set()
        for i, stream in enumerate(self.streams):
            if stream.name in seen:
                problems.append(
                    _rule("streams", ("streams", i, "name"), f"duplicate stream {stream.name!r}")
                )
            seen.add(stream.name)
        if isinstance(self.config, GenerateConfig) and self.config.dataset is None:
            problems += [
                _rule(
                    "use config streams", ("streams", i, "name"),
                    f"{stream.name!r} is not a generate dataset (use one of "
                    f"{', '.join(DATASETS)}, or set source.config.dataset)",
                )
                for i, stream in enumerate(self.streams)
                if stream.name not in DATASETS
            ]
        return problems


# ---------------------------------------------------------------------------------------
# Transforms and destination


class TransformConfig(_Model):
    """One transform: ``sql``, ``validate`` or a WASM plugin; ``config`` is passed through."""

    use: Name
    config: dict[str, Any] = Field(default_factory=dict)
    #: WASM plugins only: {max_memory: size, timeout_seconds: number}
    limits: Optional[dict[str, Any]] = None

    def _rules(self) -> list[_Problem]:
        query = self.config.get("query")
        if self.use == "sql" and not (isinstance(query, str) and query.strip()):
            return [_rule("use config", ("config", "query"),
                          "the sql transform needs a non-empty query")]
        return []


class SchemaEvolution(_Model):
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


class DestinationConfig(_Model):
    """``destination``: where rows go and how they are written."""

    use: Name
    config: Union[dict[str, Any], PostgresDestinationConfig] = Field(
        default_factory=dict, validate_default=True, union_mode="left_to_right"
    )
    write_mode: Literal["append", "replace", "upsert"] = "append"
    primary_key: tuple[Name, ...] = ()
    on_data_error: Literal["fail", "skip", "dlq"] = "fail"
    allow_empty_replace: bool = False
    schema_evolution: SchemaEvolution = SchemaEvolution()

    @field_validator("config", mode="before")
    @classmethod
    def _config_for_use(cls, value: Any, info: ValidationInfo) -> Any:
        return _typed_config(value, info.data.get("use"), {"postgres": PostgresDestinationConfig})

    @field_validator("primary_key", mode="before")
    @classmethod
    def _single_key(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    def _rules(self) -> list[_Problem]:
        problems = []
        if self.write_mode == "upsert" and not self.primary_key:
            message = "required when write_mode is upsert"
            problems.append(_rule("write_mode primary_key", ("primary_key",), message))
        if len(set(self.primary_key)) != len(self.primary_key):
            problems.append(
                _rule("primary_key", ("primary_key",), "has duplicate columns", self.primary_key)
            )
        return problems


# ---------------------------------------------------------------------------------------
# State and resources


class StateConfig(_Model):
    """Where run history, cursors and the DLQ live."""

    backend: Literal["sqlite", "postgres"] = "sqlite"
    connection: Name | None = None

    def _rules(self) -> list[_Problem]:
        if self.backend == "postgres" and self.connection is None:
            message = "required when backend is postgres"
            return [_rule("backend connection", ("connection",), message)]
        return []

    def resolved_connection(self) -> str:
        """The sqlite file path (``~`` expanded; default in the user data dir) or the
        postgres conninfo."""
        if self.backend == "postgres":
            return str(self.connection)
        if self.connection is None:
            return str(data_dir() / "state.db")
        return os.path.expanduser(self.connection)


class ResourcesConfig(_Model):
    """Parallelism, memory bounds, inter-stage compression, checkpoints and retries."""

    parallelism: Union[Literal["auto"], int] = "auto"
    max_inflight_batches: int = Field(16, ge=1, le=1024)
    max_batch_bytes: Size = 64 << 20
    max_batch_rows: int = Field(100_000, ge=1)
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

    @field_validator("parallelism", mode="before")
    @classmethod
    def _auto_or_count(cls, value: Any) -> Any:
        if value == "auto":
            return value
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        raise ValueError("must be 'auto' or an integer >= 1")

    @field_validator("max_batch_bytes")
    @classmethod
    def _at_least_64kb(cls, value: int) -> int:
        if value < 64 << 10:
            raise ValueError("must be at least 64kb")
        return value


# ---------------------------------------------------------------------------------------
# Pipeline


_PIPELINE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _pipeline_rules(
    source: SourceConfig, destination: DestinationConfig, has_transforms: bool
) -> list[_Problem]:
    # A transform may compute the key, so the projection only binds the key without one.
    if has_transforms:
        return []
    return [
        _rule("source destination transforms", ("destination", "primary_key"),
              f"{key!r} is not in the columns of stream {stream.name!r}")
        for stream in source.streams
        if stream.columns is not None
        for key in destination.primary_key
        if key not in stream.columns
    ]


@dataclass(frozen=True)
class _LoadContext:
    """Paths whose values came from the environment (never echoed) or from a missing
    variable (their problems are the missing variable's)."""

    from_env: frozenset[Loc] = frozenset()
    missing: frozenset[Loc] = frozenset()


class PipelineConfig(_Model):
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

    def _rules(self) -> list[_Problem]:
        return _pipeline_rules(self.source, self.destination, bool(self.transforms))

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> "PipelineConfig":
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
    def _fail(cls, problems: list[_Problem], info: ValidationInfo) -> None:
        context = info.context if isinstance(info.context, _LoadContext) else _LoadContext()
        lines = [
            _render(p, context.from_env)
            for p in problems
            if not any(p.loc[: len(m)] == m for m in context.missing)
        ]
        raise ConfigError(list(dict.fromkeys(lines)))

    def redacted_dict(self) -> dict[str, Any]:
        """The configuration as plain data for printing: passwords and secrets masked."""
        return _mask(self.model_dump(mode="json", by_alias=True))


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key) for v in value]
    if value is not None and _SECRET_KEY.search(key):
        return MASK
    return redact(value) if isinstance(value, str) else value


# ---------------------------------------------------------------------------------------
# Loading: YAML, ${VAR} substitution


_REF = re.compile(r"\$(\$)?\{([^}\n]*)\}")
_VAR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
# `${X}` is not a valid plain scalar inside a YAML flow mapping (`{url: ${X}}`), so
# references are swapped for inert tokens before parsing and restored after.
_TOKEN = "__rbf_ref_{}__"
_TOKEN_RE = re.compile(r"__rbf_ref_(\d+)__")


class _Loader(yaml.SafeLoader):
    """Safe loader with YAML 1.2 booleans (so `off`, `yes`, `no` stay strings, as in
    Rapidbyte) that records duplicate keys instead of silently keeping the last."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: set[tuple[str, Any]] = set()
        for key_node, _ in node.value:
            key = (key_node.tag, key_node.value)
            if isinstance(key_node, yaml.ScalarNode) and key in seen:
                self.duplicates.append(
                    f"line {key_node.start_mark.line + 1}: duplicate key {key_node.value!r}"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_BOOL_TAG = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _read_yaml(path: Path) -> tuple[Any, list[str], list[str]]:
    """Parse the file; return (data, references hidden behind tokens, problems)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [], [f"{path}: config file not found"]
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        return None, [], [f"{path}: cannot read config file ({reason})"]
    refs: list[str] = []

    def hide(match: re.Match[str]) -> str:
        refs.append(match.group(0))
        return _TOKEN.format(len(refs) - 1)

    loader = _Loader(_REF.sub(hide, text))
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        what = exc.problem or exc.context or "invalid YAML"
        return None, refs, [redact(f"{path}: YAML syntax error at {where}: {what}")]
    except yaml.YAMLError as exc:
        return None, refs, [redact(f"{path}: YAML error: {exc}")]
    finally:
        loader.dispose()
    problems = [f"{path}: {d}" for d in loader.duplicates]
    if data is None:
        problems.append(f"{path}: config file is empty")
    return data, refs, problems


@dataclass
class _Substitution:
    env: Mapping[str, str]
    refs: list[str]
    from_env: set[Loc]
    missing: dict[str, list[Loc]]
    problems: list[str]

    def walk(self, value: Any, loc: Loc) -> Any:
        if isinstance(value, Mapping):
            keys = [self.restore(k) if isinstance(k, str) else k for k in value]
            return {k: self.walk(v, loc + (str(k),)) for k, v in zip(keys, value.values())}
        if isinstance(value, (list, tuple)):
            return [self.walk(v, loc + (i,)) for i, v in enumerate(value)]
        if isinstance(value, str):
            return _REF.sub(lambda m: self.resolve(m, loc), self.restore(value))
        return value

    def restore(self, text: str) -> str:
        return _TOKEN_RE.sub(lambda m: self.refs[int(m.group(1))], text) if self.refs else text

    def resolve(self, match: re.Match[str], loc: Loc) -> str:
        escaped, body = match.groups()
        if escaped:
            return "${" + body + "}"
        var = _VAR.fullmatch(body)
        if var is None:
            self.problems.append(
                f"{_path(loc)}: invalid reference {match.group(0)!r} "
                "(use ${NAME} or ${NAME:-default}; $${...} for a literal)"
            )
            return match.group(0)
        name, default = var.groups()
        self.from_env.add(loc)
        value = self.env.get(name)
        if value is None or (value == "" and default is not None):
            if default is not None:
                return default
            self.missing.setdefault(name, []).append(loc)
            return ""
        return value

    def missing_problem(self) -> list[str]:
        if not self.missing:
            return []
        s = "s" if len(self.missing) > 1 else ""
        named = ", ".join(
            f"{name} (used at {', '.join(_path(loc) for loc in locs)})"
            for name, locs in self.missing.items()
        )
        return [f"missing environment variable{s}: {named}"]


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any], env: Mapping[str, str] | None = None
) -> PipelineConfig:
    """Load and validate a pipeline from a YAML file path or an already-parsed mapping.

    ``env`` (default ``os.environ``) supplies ``${VAR}`` values. Raises ``ConfigError``
    listing every problem found, one line each, secrets masked.
    """
    refs: list[str] = []
    if isinstance(source, str) and "\n" in source:
        raise ConfigError("<config>: load_config takes a file path or a dict, not YAML text")
    if isinstance(source, Mapping):
        data: Any = source
        problems: list[str] = []
    else:
        data, refs, problems = _read_yaml(Path(source))
        if data is None:
            raise ConfigError(problems)
    sub = _Substitution(os.environ if env is None else env, refs, set(), {}, [])
    data = sub.walk(data, ())
    problems += sub.missing_problem() + sub.problems
    if not isinstance(data, Mapping):
        raise ConfigError(problems + [f"<config>: must be a mapping (got {type(data).__name__})"])
    context = _LoadContext(
        frozenset(sub.from_env), frozenset(loc for locs in sub.missing.values() for loc in locs)
    )
    try:
        config = PipelineConfig.model_validate(data, context=context)
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems) from None
    if problems:
        raise ConfigError(problems)
    return config
