"""``transforms[i]``: the typed ``config`` and ``limits`` of each transform, chosen by
``use``, so that a bad rule or limit is found at load time with its key path.

``sql`` takes ``{query}``; ``validate`` takes ``{rules}`` (one rule per item, shapes below;
columns are checked against the stream's schema when the transform opens); any other
``use`` is a WASM plugin whose ``config`` is free-form JSON handed to it, and whose
``limits`` bound its memory, time and output.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_serializer,
)

from .base import ConfigModel, M, Name, TypedConfig, typed_config, validate_section
from .problems import Loc, Problem, did_you_mean, fail, rule
from .sizes import BatchBytes, Size

#: a range bound: a number, or a date/time as text (cast to the column's type at open)
Bound = StrictInt | StrictFloat | StrictStr
#: an accepted value
Scalar = StrictBool | StrictInt | StrictFloat | StrictStr
#: one column name, or a list of them (kept as written: error paths differ)
Columns = Name | tuple[Name, ...]

# Fields that default to None with validate_default=True: a missing key reaches their
# validator too, which words the problem as the rule's documentation would.


def _column(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        fail("must be a column name")
    return value


ColumnName = Annotated[str, BeforeValidator(_column)]


class SqlConfig(ConfigModel):
    """``config`` of ``use: sql``: a DataFusion query over the stream's batches."""

    query: str = Field(None, validate_default=True)

    @field_validator("query", mode="before")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            fail("the sql transform needs a non-empty query")
        return value


class RegexRule(ConfigModel):
    """``regex: {column, pattern}``: RE2 syntax, searched anywhere in the value."""

    column: ColumnName = Field(None, validate_default=True)
    pattern: str = Field(None, validate_default=True)

    @field_validator("pattern", mode="before")
    @classmethod
    def _re2(cls, pattern: Any) -> Any:
        if not isinstance(pattern, str) or not pattern:
            fail("must be a regular expression")
        # RE2 (what pyarrow runs), not Python's re: the syntaxes differ. Imported here: only
        # a pipeline with a regex rule pays for pyarrow while loading its config.
        import pyarrow as pa
        import pyarrow.compute as pc

        try:
            pc.match_substring_regex(pa.array([""]), pattern)
        except pa.ArrowInvalid as exc:
            fail(f"{str(exc)[0].lower()}{str(exc)[1:]}")
        return pattern


class RangeRule(ConfigModel):
    """``range: {column, min, max}``: inclusive, either bound optional."""

    column: ColumnName = Field(None, validate_default=True)
    min: Bound | None = None
    max: Bound | None = None

    @field_validator("min", "max", mode="before")
    @classmethod
    def _scalar(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool)
                                  or not isinstance(value, (str, int, float))):
            fail("must be a number (or a date/time as text)")
        return value

    def _rules(self) -> list[Problem]:
        if self.min is None and self.max is None:
            return [rule("min max", (), "needs min, max or both")]
        return []


class AcceptedValuesRule(ConfigModel):
    """``accepted_values: {column, values}``."""

    column: ColumnName = Field(None, validate_default=True)
    values: tuple[Scalar, ...] = Field(None, validate_default=True)

    @field_validator("values", mode="before")
    @classmethod
    def _non_empty(cls, values: Any) -> Any:
        if not (isinstance(values, (list, tuple)) and values
                and all(isinstance(v, (str, int, float)) for v in values)):
            fail("must be a non-empty list of values")
        return values


RULES = ("not_null", "regex", "range", "accepted_values", "unique")
_PARAMETERS: dict[str, type[ConfigModel]] = {
    "regex": RegexRule, "range": RangeRule, "accepted_values": AcceptedValuesRule}


class ValidateRule(ConfigModel):
    """One rule of ``validate``: a mapping with exactly one key, the rule's name."""

    not_null: Columns | None = None
    regex: RegexRule | None = None
    range: RangeRule | None = None
    accepted_values: AcceptedValuesRule | None = None
    unique: Columns | None = None

    @classmethod
    def _check_shape(cls, data: Any) -> None:
        if not isinstance(data, Mapping) or len(data) != 1:
            got = f"keys {', '.join(map(str, data))}" if isinstance(data, Mapping) else repr(data)
            fail(f"must be a mapping with exactly one rule, e.g. {{not_null: [id]}} (got {got})")
        (kind,) = data
        if kind not in RULES:
            fail(f"unknown rule {kind!r}{did_you_mean(str(kind), RULES)}; "
                 f"rules are {', '.join(RULES)}")

    @field_validator("not_null", "unique", mode="before")
    @classmethod
    def _columns(cls, value: Any) -> Any:
        if isinstance(value, str) and value:
            return value
        if isinstance(value, (list, tuple)) and value and all(
                isinstance(v, str) and v for v in value):
            return tuple(value)
        fail("must be a column name or a non-empty list of column names")

    @field_validator("regex", "range", "accepted_values", mode="before")
    @classmethod
    def _parameters(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, (Mapping, ConfigModel)):
            keys = _PARAMETERS[str(info.field_name)].model_fields
            fail(f"must be a mapping with keys {', '.join(keys)}")
        return value

    @model_serializer(mode="wrap")
    def _as_written(self, handler: Any) -> Any:
        # {range: {...}}, not every rule with four of them null: dumps load again.
        return {k: v for k, v in handler(self).items() if v is not None}

    @property
    def kind(self) -> str:
        """The rule's name, e.g. ``range``."""
        return next(k for k in RULES if getattr(self, k) is not None)


class ValidateConfig(ConfigModel):
    """``config`` of ``use: validate``."""

    rules: tuple[ValidateRule, ...] = Field(None, validate_default=True)

    @field_validator("rules", mode="before")
    @classmethod
    def _non_empty(cls, rules: Any) -> Any:
        if not isinstance(rules, (list, tuple)) or not rules:
            fail("must be a non-empty list of rules")
        return rules


class PluginLimits(ConfigModel):
    """``limits`` of a WASM plugin transform (sql and validate have none)."""

    #: linear memory of one instance; wasm32 cannot address more than 4gb
    max_memory: Size = 256 << 20
    #: guest time per call and per message handed over
    timeout_seconds: float = Field(30.0, gt=0, le=86400)
    #: bytes the plugin may emit for one input batch (enforced by plugins/host.py)
    max_output_bytes_per_batch: BatchBytes = 64 << 20

    @field_validator("max_memory")
    @classmethod
    def _addressable(cls, value: int) -> int:
        if not 64 << 10 <= value <= 4 << 30:
            raise ValueError("must be from 64kb to 4gb")
        return value

    @field_validator("timeout_seconds", mode="before")
    @classmethod
    def _not_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        return value


_BUILTINS: dict[str, type[ConfigModel]] = {"sql": SqlConfig, "validate": ValidateConfig}


def transform_config_model(use: str) -> type[ConfigModel] | None:
    """The model of ``config`` for ``use``; None for a plugin (free-form JSON)."""
    return _BUILTINS.get(use)


def transform_config(model: type[M], config: M | Mapping[str, Any], index: int | None) -> M:
    """``config`` of the transform at ``transforms[index]`` (None: one built on its own) as
    ``model``: as is when ``load_config`` typed it, else validated; ``ConfigError`` names
    each problem's key path."""
    at: Loc = ("transforms", index, "config") if index is not None else ("config",)
    return validate_section(model, config, at)


class TransformConfig(ConfigModel):
    """One transform: ``sql``, ``validate`` or a WASM plugin (a name or a .wasm path)."""

    use: Name
    config: TypedConfig = Field(
        default_factory=dict, validate_default=True, union_mode="left_to_right"
    )
    #: WASM plugins only; their defaults when not given
    limits: PluginLimits | None = Field(None, validate_default=True)

    @field_validator("config", mode="before")
    @classmethod
    def _config_for_use(cls, value: Any, info: ValidationInfo) -> Any:
        use = info.data.get("use")
        return typed_config(value, transform_config_model(use) if isinstance(use, str) else None)

    @field_validator("limits", mode="before")
    @classmethod
    def _limits_for_use(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("use") not in _BUILTINS:
            return PluginLimits() if value is None else value
        if value is not None:
            fail(f"not allowed: only WASM plugin transforms have limits "
                 f"({info.data['use']} runs in-process)")
        return None
