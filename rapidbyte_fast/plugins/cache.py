"""AOT cache: compiled plugin modules stored on disk so later loads skip compilation.

Each entry is ``<key>.cwasm`` (``Module.serialize()``) plus ``<key>.json`` holding the
sha256 and size of the .cwasm. The key hashes the wasm bytes with the engine settings
(wasmtime version, compiler options, CPU architecture), so any change of either gives a
new entry. Both files are written atomically (temp file + ``os.replace``); an entry is
loaded with ``Module.deserialize_file`` only after its checksum verifies, and anything
missing, corrupt or rejected by wasmtime is recompiled and rewritten.

The cache lives in ``platformdirs.user_cache_dir("rapidbyte-fast")/wasm``;
``RAPIDBYTE_CACHE_DIR`` replaces that root, and ``RAPIDBYTE_WASM_AOT=0`` turns the cache
off. The checksum guards against corruption, not against someone who can write the
user's cache directory (they could write a matching checksum too).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import platformdirs
import wasmtime

log = logging.getLogger(__name__)

#: bumped when the entry layout changes, so old entries are simply never looked up
FORMAT = 1


def cache_dir() -> Path:
    """Folder of the AOT entries."""
    root = os.environ.get("RAPIDBYTE_CACHE_DIR") or platformdirs.user_cache_dir("rapidbyte-fast")
    return Path(root) / "wasm"


def aot_enabled() -> bool:
    """False when ``RAPIDBYTE_WASM_AOT`` is 0/false/no/off."""
    value = os.environ.get("RAPIDBYTE_WASM_AOT", "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def cache_key(wasm: bytes, settings: str) -> str:
    """Hex key of a module compiled with ``settings`` (engine description)."""
    digest = hashlib.sha256(f"rapidbyte-aot/{FORMAT}\0{settings}\0".encode())
    digest.update(hashlib.sha256(wasm).digest())
    return digest.hexdigest()


def load_module(engine: wasmtime.Engine, wasm: bytes,
                settings: str) -> tuple[wasmtime.Module, bool]:
    """The compiled module and whether it came from the cache."""
    if not aot_enabled():
        return wasmtime.Module(engine, wasm), False
    folder = cache_dir()
    key = cache_key(wasm, settings)
    artifact, sidecar = folder / f"{key}.cwasm", folder / f"{key}.json"
    module = _load_entry(engine, artifact, sidecar)
    if module is not None:
        return module, True
    module = wasmtime.Module(engine, wasm)
    try:
        _write_entry(folder, artifact, sidecar, bytes(module.serialize()))
    except OSError as exc:
        log.warning("could not write the AOT cache entry %s: %s", artifact, exc)
    return module, False


def _load_entry(engine: wasmtime.Engine, artifact: Path, sidecar: Path) -> wasmtime.Module | None:
    try:
        meta = json.loads(sidecar.read_text())
        data = artifact.read_bytes()
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.info("AOT cache entry %s unreadable (%s); recompiling", artifact.name, exc)
        return None
    if not isinstance(meta, dict) or meta.get("size") != len(data) \
            or meta.get("sha256") != hashlib.sha256(data).hexdigest():
        log.info("AOT cache entry %s fails its checksum; recompiling", artifact.name)
        return None
    try:
        return wasmtime.Module.deserialize_file(engine, str(artifact))
    except wasmtime.WasmtimeError as exc:
        log.info("wasmtime rejected AOT cache entry %s (%s); recompiling", artifact.name, exc)
        return None


def _write_entry(folder: Path, artifact: Path, sidecar: Path, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    # The artifact goes first: a reader that sees the new sidecar also sees its artifact.
    _atomic_write(artifact, data)
    _atomic_write(sidecar, json.dumps(meta).encode())


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
