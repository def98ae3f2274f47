"""Pick the compiled kernels or their pure-Python twins, once per process.

``RAPIDBYTE_IMPL=c`` demands the compiled modules (a clear error if they are missing),
``python`` forces the twins, empty means compiled when importable. Falling back is never
silent: the first run on the Python path logs one warning and ``info`` shows the choice.
"""
from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

from .errors import ImplementationError

STEMS = ("copy_decode", "copy_encode", "insert_sql", "array_params", "codec", "copy_scan",
         "json_decode", "pgoutput")
_log = logging.getLogger("rapidbyte_fast")


def _select() -> tuple[str, dict[str, ModuleType], str | None]:
    wanted = os.environ.get("RAPIDBYTE_IMPL", "").strip().lower()
    if wanted not in ("", "c", "python"):
        raise ImplementationError(
            f"RAPIDBYTE_IMPL={wanted!r} is not valid: use 'c', 'python' or leave it empty"
        )
    if wanted != "python":
        try:
            mods = {s: importlib.import_module(f"rapidbyte_fast._native.{s}") for s in STEMS}
            return "c", mods, None
        except ImportError as exc:
            if wanted == "c":
                raise ImplementationError(
                    f"RAPIDBYTE_IMPL=c but the compiled kernels do not import ({exc}); "
                    "reinstall with `pip install .` so that ext/ is compiled"
                ) from exc
            reason = f"compiled kernels not importable ({exc})"
    else:
        reason = "RAPIDBYTE_IMPL=python"
    mods = {s: importlib.import_module(f"rapidbyte_fast._py.{s}") for s in STEMS}
    return "python", mods, reason


IMPL, _MODULES, FALLBACK_REASON = _select()
copy_decode = _MODULES["copy_decode"]
copy_encode = _MODULES["copy_encode"]
insert_sql = _MODULES["insert_sql"]
array_params = _MODULES["array_params"]
codec = _MODULES["codec"]
copy_scan = _MODULES["copy_scan"]
json_decode = _MODULES["json_decode"]
pgoutput = _MODULES["pgoutput"]

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
