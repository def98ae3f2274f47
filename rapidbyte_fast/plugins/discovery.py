"""Finds plugins: ``use:`` is a path to a .wasm file or a plugin name looked up as
``<name>.wasm`` in, in order, the directories of ``RAPIDBYTE_PLUGIN_PATH`` (os.pathsep
separated), ``<user data dir>/plugins``, and the bundled plugins: the copy of
``connectors/dist`` that an installed package carries (setup.py puts it in ``bundled/``), or
``connectors/dist`` itself in a source checkout (an editable install).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rapidbyte_fast import paths
from rapidbyte_fast.errors import ConfigError, PluginError
from rapidbyte_fast.plugins import abi

#: the plugins an installed package carries (package data written by setup.py)
PACKAGED_DIR = Path(__file__).resolve().parent / "bundled"
#: the committed builds of connectors/, present in a source checkout
CHECKOUT_DIR = Path(__file__).resolve().parents[2] / "connectors" / "dist"


def bundled_dir() -> Path:
    """The built-in plugins: the installed copy, else the checkout's connectors/dist."""
    return PACKAGED_DIR if PACKAGED_DIR.is_dir() else CHECKOUT_DIR


def plugin_dirs() -> list[Path]:
    """The search path, first match wins."""
    env = os.environ.get("RAPIDBYTE_PLUGIN_PATH", "")
    dirs = [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    dirs.append(paths.data_dir() / "plugins")
    dirs.append(bundled_dir())
    return dirs


def is_path(use: str) -> bool:
    """True when ``use`` names a file rather than a plugin."""
    return use.endswith(".wasm") or "/" in use or os.sep in use


def resolve(use: str) -> Path:
    """The .wasm file for ``use``; ConfigError naming the places searched if none."""
    if is_path(use):
        path = Path(use).expanduser()
        if not path.is_file():
            raise ConfigError(f"plugin file {use!r} does not exist")
        return path
    for folder in plugin_dirs():
        candidate = folder / f"{use}.wasm"
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(d) for d in plugin_dirs())
    raise ConfigError(f"plugin {use!r} not found: looked for {use}.wasm in {searched} "
                      f"(set RAPIDBYTE_PLUGIN_PATH or give a path to the .wasm file)")


def list_plugins() -> list[dict[str, Any]]:
    """Every .wasm in the search path, in search order: name (what ``use:`` takes), path,
    and the manifest's version, kind, description and config_schema; ``shadowed`` is True
    for a file hidden by an earlier one of the same name, ``error`` is set (instead of the
    manifest fields) for a file whose manifest cannot be read."""
    seen: set[str] = set()
    found = []
    for folder in plugin_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.wasm")):
            entry: dict[str, Any] = {"name": path.stem, "path": str(path),
                                     "shadowed": path.stem in seen}
            seen.add(path.stem)
            try:
                manifest = abi.read_manifest(path.read_bytes())
            except (OSError, PluginError) as exc:
                entry["error"] = str(exc)
            else:
                entry.update({key: manifest[key] for key in
                              ("version", "kind", "description", "config_schema")})
            found.append(entry)
    return found
