"""Finds connectors and transforms by their ``use`` name: the built-ins, third-party
packages through entry points (groups ``rapidbyte_fast.sources``,
``rapidbyte_fast.destinations``, ``rapidbyte_fast.transforms``), and WASM plugins.

Built-ins are named as import paths and imported on first use, so a run imports only the
connectors it uses. A third-party source or destination is a class with the attributes of
``connector.SourceConnector`` / ``connector.Destination``; a third-party transform is a
class taking ``(config: dict, index: int)`` with the shape of ``transforms.Transform``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points

from .errors import ConfigError

KINDS = ("sources", "destinations", "transforms")
_BUILTIN: dict[str, dict[str, str]] = {
    "sources": {
        "postgres": "rapidbyte_fast.sources.postgres:PostgresSourceConnector",
        "generate": "rapidbyte_fast.sources.generate:GenerateConnector",
        "http": "rapidbyte_fast.sources.http:HttpConnector",
    },
    "destinations": {
        "postgres": "rapidbyte_fast.destinations.postgres:PostgresDestinationConnector",
    },
    "transforms": {
        "sql": "rapidbyte_fast.transforms.sql:SqlTransform",
        "validate": "rapidbyte_fast.transforms.validate:ValidateTransform",
    },
}

#: the config and stream models of built-ins whose models the config package does not hold,
#: importable without importing the connector
_BUILTIN_MODELS: dict[tuple[str, str], tuple[str, str]] = {
    ("sources", "http"): ("rapidbyte_fast.sources.http.config:HttpSourceConfig",
                          "rapidbyte_fast.sources.http.config:HttpStream"),
}


@dataclass(frozen=True)
class Entry:
    """One thing ``use:`` can name."""

    kind: str
    name: str
    #: "built-in", "entry point <dist>" or "wasm <path>"
    origin: str
    #: ``module:attribute`` (a .wasm path for plugins)
    target: str


def load(entry: Entry):
    """The class an entry names (imports its module)."""
    return _load_target(entry.target)


def _load_target(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _installed(kind: str) -> dict[str, Entry]:
    out = {}
    for ep in entry_points(group=f"rapidbyte_fast.{kind}"):
        dist = ep.dist.name if ep.dist is not None else "?"
        out[ep.name] = Entry(kind, ep.name, f"entry point {dist}", ep.value)
    return out


def find(kind: str, use: str) -> Entry | None:
    """The built-in or installed ``use`` of ``kind`` (built-ins win), or None."""
    if use in _BUILTIN[kind]:
        return Entry(kind, use, "built-in", _BUILTIN[kind][use])
    return _installed(kind).get(use)


def models(kind: str, use: str) -> tuple[type | None, type | None]:
    """(config model, stream model) a connector declares (None: the defaults); a connector
    that cannot be loaded declares none (the planner reports it)."""
    if (kind, use) in _BUILTIN_MODELS:
        return tuple(_load_target(t) for t in _BUILTIN_MODELS[(kind, use)])  # type: ignore
    entry = find(kind, use)
    if entry is None or entry.origin == "built-in":
        return None, None
    try:
        cls = load(entry)
    except (ImportError, AttributeError):
        return None, None
    return getattr(cls, "config_model", None), getattr(cls, "stream_model", None)


def _connector(kind: str, use: str, key: str):
    entry = find(kind, use)
    if entry is None:
        known = sorted({*_BUILTIN[kind], *_installed(kind)})
        raise ConfigError(f"{key}: {use!r} is not a known {kind[:-1]} "
                          f"(available: {', '.join(known)})")
    try:
        return load(entry)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{key}: {use!r} ({entry.origin}) cannot be loaded: {exc}") from None


def source(use: str):
    """The source connector class of ``use``; ConfigError naming what there is."""
    return _connector("sources", use, "source.use")


def destination(use: str):
    """The destination connector class of ``use``; ConfigError naming what there is."""
    return _connector("destinations", use, "destination.use")


def transform(use: str):
    """The transform class of a built-in or installed ``use``; None for a WASM plugin."""
    entry = find("transforms", use)
    return None if entry is None else load(entry)


def entries() -> list[Entry]:
    """Everything ``use:`` can name, in lookup order, WASM plugins last."""
    from .plugins.discovery import list_plugins

    out = [Entry(kind, name, "built-in", target)
           for kind in KINDS for name, target in _BUILTIN[kind].items()]
    for kind in KINDS:
        out += [e for name, e in sorted(_installed(kind).items()) if name not in _BUILTIN[kind]]
    for p in list_plugins():
        if "error" not in p and not p.get("shadowed"):
            kind = {"source": "sources", "destination": "destinations"}.get(p["kind"],
                                                                          "transforms")
            out.append(Entry(kind, p["name"], f"wasm {p['path']}", p["path"]))
    return out
