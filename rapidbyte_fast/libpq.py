"""Locate the libpq instance psycopg runs on and give its COPY OUT functions' addresses to the
compiled reader (``rapidbyte_fast._native.copy_decode.read_copy``).

The compiled reader calls ``PQgetCopyData`` on psycopg's own ``PGconn*``, so it must use the
very library instance psycopg is linked to: another libpq in the process (a different build
or version) would misread the connection struct. Hence the library is opened with
``RTLD_NOLOAD``, which only succeeds for an object that is already loaded (so this never
brings in a second copy), and every symbol is checked with ``dladdr`` to come from that file.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache
from pathlib import Path

from psycopg import pq

from .errors import ImplementationError

#: Functions the compiled reader calls.
SYMBOLS = ("PQgetCopyData", "PQfreemem", "PQerrorMessage")


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p),
    ]


@cache
def addresses() -> dict[str, int]:
    """``{symbol: address}`` of ``SYMBOLS`` in psycopg's libpq; ImplementationError if that
    library cannot be found among the loaded objects."""
    lib, expected = _psycopg_libpq()
    _keep.append(lib)  # ctypes never unloads, but holding the handle states the intent
    out = {}
    for sym in SYMBOLS:
        addr = ctypes.cast(getattr(lib, sym), ctypes.c_void_p).value
        origin = _origin(addr)
        if origin is None or not _same_file(origin, expected):
            raise ImplementationError(
                f"{sym} resolved to {origin or 'an unknown object'}, not to psycopg's libpq "
                f"({expected}); use RAPIDBYTE_IMPL=python for the Python COPY reader")
        out[sym] = addr
    return out


def library_path() -> str:
    """File of the libpq psycopg uses (as dladdr reports it)."""
    return _origin(addresses()["PQgetCopyData"]) or ""


_keep: list[ctypes.CDLL] = []


def _psycopg_libpq() -> tuple[ctypes.CDLL, str]:
    """psycopg's libpq as a ctypes library, and the file (or soname) it must come from."""
    impl = pq.__impl__
    if impl == "python":
        from psycopg.pq import _pq_ctypes

        return _pq_ctypes.pq, _pq_ctypes.pq._name
    if impl == "binary":
        import psycopg_binary

        pkg = Path(psycopg_binary.__file__).resolve().parent
        candidates = [str(p) for p in sorted((pkg.parent / "psycopg_binary.libs").glob("libpq-*"))]
        candidates += [str(p) for p in sorted((pkg / ".dylibs").glob("libpq*.dylib"))]
    else:  # "c": built against the system libpq, loaded by soname
        name = ctypes.util.find_library("pq")
        candidates = [name] if name else []
    noload = getattr(os, "RTLD_NOLOAD", None)
    if noload is None:
        raise ImplementationError(
            "the compiled COPY reader needs RTLD_NOLOAD/dladdr (Linux, macOS); "
            "use RAPIDBYTE_IMPL=python")
    for cand in candidates:
        try:
            return ctypes.CDLL(cand, mode=noload | os.RTLD_NOW), cand
        except OSError:
            continue
    raise ImplementationError(
        f"cannot find the libpq that psycopg ({impl} implementation) has loaded; tried "
        f"{candidates or 'nothing'}; use RAPIDBYTE_IMPL=python for the Python COPY reader")


def _origin(addr: int | None) -> str | None:
    """Path of the shared object containing ``addr`` (dladdr), or None."""
    if not addr:
        return None
    dladdr = ctypes.CDLL(None).dladdr
    dladdr.argtypes = (ctypes.c_void_p, ctypes.POINTER(_DlInfo))
    dladdr.restype = ctypes.c_int
    info = _DlInfo()
    if not dladdr(addr, ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.fsdecode(info.dli_fname)


def _same_file(origin: str, expected: str) -> bool:
    """``origin`` (a path from dladdr) is ``expected`` (a path, or a soname to match)."""
    if os.sep in expected:
        return os.path.realpath(origin) == os.path.realpath(expected)
    # A soname: the dynamic linker matched it against the loaded objects; check the file
    # really is that library (libpq.so.5 -> .../libpq.so.5.15).
    return Path(origin).name.startswith(expected) or Path(
        os.path.realpath(origin)).name.startswith(expected)
