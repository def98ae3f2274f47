"""Pick the compiled kernels or their pure-Python twins, once per process.

``RAPIDBYTE_IMPL=c`` demands the compiled modules (a clear error if they are missing),
``python`` forces the twins, empty means compiled when importable. Falling back is never
silent: the first run on the Python path logs one warning and ``info`` shows the choice.
Each kernel module is imported when first used (``_impl.copy_scan``).
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from types import ModuleType

from .errors import ImplementationError

STEMS = ("copy_decode", "copy_encode", "insert_sql", "array_params", "codec", "copy_scan",
         "json_decode", "pgoutput")
_log = logging.getLogger("rapidbyte_fast")


def _select() -> tuple[str, str | None]:
    wanted = os.environ.get("RAPIDBYTE_IMPL", "").strip().lower()
    if wanted not in ("", "c", "python"):
        raise ImplementationError(
            f"RAPIDBYTE_IMPL={wanted!r} is not valid: use 'c', 'python' or leave it empty"
        )
    if wanted != "python":
        try:
            # every kernel is there, and one loads (they are built alike); each is imported
            # when first used: a passthrough run needs one of eight, and the others pull in
            # the change-capture and codec modules
            missing = [s for s in STEMS
                       if importlib.util.find_spec(f"rapidbyte_fast._native.{s}") is None]
            if missing:
                raise ImportError(f"no compiled {', '.join(missing)}")
            importlib.import_module("rapidbyte_fast._native.copy_scan")
            return "c", None
        except ImportError as exc:
            if wanted == "c":
                raise ImplementationError(
                    f"RAPIDBYTE_IMPL=c but the compiled kernels do not import ({exc}); "
                    "reinstall with `pip install .` so that ext/ is compiled"
                ) from exc
            reason = f"compiled kernels not importable ({exc})"
    else:
        reason = "RAPIDBYTE_IMPL=python"
    return "python", reason


IMPL, FALLBACK_REASON = _select()
_PACKAGE = "rapidbyte_fast._native" if IMPL == "c" else "rapidbyte_fast._py"


def __getattr__(name: str) -> ModuleType:
    # a kernel (``_impl.copy_scan``, ``from ._impl import copy_scan``), imported on first use
    if name not in STEMS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{_PACKAGE}.{name}")
    globals()[name] = module
    return module

_warned = False


def warn_if_python() -> None:
    """Log, once per process, that the slow pure-Python kernels are in use."""
    global _warned
    if IMPL == "python" and not _warned:
        _warned = True
        _log.warning("running on the pure-Python kernels: %s", FALLBACK_REASON)


def twins(stem: str) -> dict[str, ModuleType]:
    """Both implementations of one kernel that can be imported (for parity tests, benches)."""
    out = {"python": importlib.import_module(f"rapidbyte_fast._py.{stem}")}
    try:
        out["c"] = importlib.import_module(f"rapidbyte_fast._native.{stem}")
    except ImportError:
        pass
    return out
