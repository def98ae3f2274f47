"""Modules imported on first use: ``pa = deferred("pyarrow")`` at the top of a module that
also serves the passthrough path, whose runs never touch pyarrow or numpy (importing them
costs more CPU than a 100k-row passthrough copy, see ``lazy_schema``)."""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class Deferred:
    """Stands for a module until an attribute of it is first read (then imports it)."""

    __slots__ = ("_name", "_module")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)


def deferred(name: str) -> Any:
    """A stand-in for module ``name``, imported when first used."""
    return Deferred(name)
