"""The base of every config model: frozen, unknown keys refused, and every problem of a
section gathered in one go.

Each model validates with a wrap validator that gathers unknown keys (with a "did you
mean"), field errors and the model's own cross-field rules into a single ``rb_problems``
error carrying structured ``Problem`` items; the enclosing model prefixes their paths, and
the outermost one (``PipelineConfig``, or ``validate_section``) turns them into one
``ConfigError``.
"""
from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    SerializeAsAny,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from ..errors import ConfigError
from .problems import LoadContext, Loc, Problem, fail, flatten, problems_error, unknown_key

Name = Annotated[str, StringConstraints(min_length=1)]

# Set while re-validating for rules: models then report only hard errors, so a parent can
# still check the fields that are usable despite unknown keys or broken rules below them.
_SOFT_PROBLEMS_IGNORED: ContextVar[bool] = ContextVar("_SOFT_PROBLEMS_IGNORED", default=False)


class ConfigModel(BaseModel):
    """A section of the pipeline file."""

    # defer_build: a model's validator is built when first used, so a run builds only the
    # models its config has (9 of 23 for Postgres -> Postgres); load_config's CPU, median of
    # 9 fresh processes, 2 shared cores: 0.24-0.25 s -> 0.22-0.23 s
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True,
                              defer_build=True)

    @model_validator(mode="wrap")
    @classmethod
    def _validate_all(cls, data: Any, handler: Any, info: ValidationInfo) -> Any:
        lenient = _SOFT_PROBLEMS_IGNORED.get()
        problems: list[Problem] = []
        if not isinstance(data, cls):
            cls._check_shape(data)
        if isinstance(data, Mapping):
            known = [f.alias or name for name, f in cls.model_fields.items()]
            if not lenient:
                problems += [unknown_key(key, known) for key in data if key not in known]
            data = {k: v for k, v in data.items() if k in known}
        try:
            model = handler(data)
        except ValidationError as exc:
            errors = flatten(exc)
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
        cls, data: Any, handler: Any, errors: list[Problem]
    ) -> list[Problem]:
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
    def _check_shape(cls, data: Any) -> None:
        """Raise (``problems.fail``) when ``data`` as a whole cannot be this model, before
        any of its keys is looked at."""

    @classmethod
    def _fail(cls, problems: list[Problem], info: ValidationInfo) -> None:
        raise problems_error(problems)

    def _rules(self) -> list[Problem]:
        """Cross-field problems of a model whose fields are individually valid."""
        return []


M = TypeVar("M", bound=ConfigModel)

#: the ``config`` of a connector or a transform: its model, or a plain dict when it has none
#: (plugins); dumped as what it is, not as the base class
#: a connector's config: its model (ours, or a third-party connector's pydantic model), or
#: a plain dict for plugins
TypedConfig = SerializeAsAny[dict[str, Any] | BaseModel]


def typed_config(value: Any, model: type[ConfigModel] | None) -> Any:
    """A ``config`` mapping validated by ``model``; with no model, a plain dict."""
    if isinstance(value, BaseModel):
        return value
    if not isinstance(value, Mapping):
        fail("must be a mapping", value)
    if model is None:
        return dict(value)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise problems_error(flatten(exc)) from None


def validate_section(model: type[M], data: M | Mapping[str, Any], at: Loc) -> M:
    """``data`` as ``model``, for a section validated on its own (a transform built outside
    ``load_config``); raises ``ConfigError`` with every problem, paths under ``at``."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(LoadContext().lines([p.under(at) for p in flatten(exc)])) from None
