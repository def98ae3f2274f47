"""Reading a pipeline file: YAML (1.2 booleans, duplicate keys refused), ``${VAR}`` /
``${VAR:-default}`` substituted in string values after parsing (``$${...}`` is a literal),
then validated by ``PipelineConfig``; ``load_config`` raises one ``ConfigError`` listing
every problem as ``"<key.path>: <message>"``. Problem lines never contain secrets.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..redact import redact
from .models import PipelineConfig
from .problems import LoadContext, Loc, path_of

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
                f"{path_of(loc)}: invalid reference {match.group(0)!r} "
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
            f"{name} (used at {', '.join(path_of(loc) for loc in locs)})"
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
    context = LoadContext(
        frozenset(sub.from_env), frozenset(loc for locs in sub.missing.values() for loc in locs)
    )
    try:
        config = PipelineConfig.model_validate(data, context=context)
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems) from None
    if problems:
        raise ConfigError(problems)
    return config
