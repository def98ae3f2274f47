"""Locate system shared libraries with ctypes and hand their C function addresses to kernels.

Compiled kernels call libraries such as libzstd, liblz4 and libz through typed C function
pointers instead of linking against them, so building needs no -dev headers and a missing
library disables only the feature that needs it (the kernel still imports and names the
missing library when that feature is used).
"""
from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass(frozen=True)
class NativeLibrary:
    """One loaded library: its symbol addresses, or why it could not be used."""

    name: str
    path: str | None
    addresses: dict[str, int] = field(default_factory=dict)
    missing: str | None = None
    # Holding the handle documents that the addresses stay valid while this object lives.
    handle: ctypes.CDLL | None = field(default=None, repr=False, compare=False)

    @property
    def available(self) -> bool:
        return self.missing is None


@lru_cache(maxsize=None)
def load(name: str, soname: str, symbols: tuple[str, ...]) -> NativeLibrary:
    """Open ``soname`` (e.g. ``libzstd.so.1``), falling back to ``find_library(name)``, and
    resolve every symbol in ``symbols`` to its address. Never raises: a missing library or
    symbol is reported in ``missing``."""
    lib = None
    path = None
    # The exact soname pins the ABI major version; find_library covers unusual layouts.
    for candidate in (soname, ctypes.util.find_library(name)):
        if not candidate:
            continue
        try:
            lib = ctypes.CDLL(candidate)
        except OSError:
            continue
        path = candidate
        break
    if lib is None:
        return NativeLibrary(name, None, missing=f"the system library {soname} was not found")
    addresses = {}
    for sym in symbols:
        try:
            fn = getattr(lib, sym)
        except AttributeError:
            return NativeLibrary(
                name, path, missing=f"the system library {path} has no symbol {sym}"
            )
        addresses[sym] = ctypes.cast(fn, ctypes.c_void_p).value
    return NativeLibrary(name, path, addresses, handle=lib)
