"""The plugin ABI of DESIGN §7: version, required exports, host imports, guest pointer
checks, and the JSON manifest stored in the ``rapidbyte.manifest`` custom section.
"""
from __future__ import annotations

import json
import logging
from typing import Any

import wasmtime

from rapidbyte_fast.errors import PluginError

ABI_VERSION = 1
IMPORT_MODULE = "rapidbyte"
#: plugins built against wasi-libc may import these; they get an empty WASI context
WASI_MODULE = "wasi_snapshot_preview1"
MANIFEST_SECTION = "rapidbyte.manifest"
KINDS = ("transform", "source", "destination")
#: next_batch's answer when the stream is over
END_OF_STREAM = -1
#: bytes of log and set_error text kept; longer text is cut
MAX_TEXT = 4096

Signature = tuple[tuple[str, ...], tuple[str, ...]]

EXPORTS: dict[str, Signature] = {
    "rb_abi_version": ((), ("i32",)),
    "rb_alloc": (("i32",), ("i32",)),
    "rb_free": (("i32",), ()),
    "rb_init": (("i32", "i32"), ("i32",)),
    "rb_run": ((), ("i32",)),
}
IMPORTS: dict[str, Signature] = {
    "next_batch": (("i32", "i32"), ("i64",)),
    "emit_batch": (("i32", "i32"), ("i32",)),
    "log": (("i32", "i32", "i32"), ()),
    "set_error": (("i32", "i32"), ()),
}
#: guest log levels 0..4 (error, warn, info, debug, trace) as Python logging levels
LOG_LEVELS = (logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG, logging.DEBUG)


_VALTYPES = {"i32": wasmtime.ValType.i32(), "i64": wasmtime.ValType.i64()}


def func_type(signature: Signature) -> wasmtime.FuncType:
    """The wasmtime FuncType of an ABI signature."""
    params, results = signature
    return wasmtime.FuncType([_VALTYPES[p] for p in params], [_VALTYPES[r] for r in results])


def _signature(ty: wasmtime.FuncType) -> Signature:
    return tuple(str(p) for p in ty.params), tuple(str(r) for r in ty.results)


def check_module(module: wasmtime.Module) -> None:
    """Raises PluginError listing every missing or mistyped export and every import the host
    does not provide (plugins get the ``rapidbyte`` imports and, at most, an empty WASI)."""
    problems = []
    exports = {e.name: e.type for e in module.exports}
    if not isinstance(exports.get("memory"), wasmtime.MemoryType):
        problems.append("it does not export its linear memory as 'memory'")
    for name, wanted in EXPORTS.items():
        ty = exports.get(name)
        if not isinstance(ty, wasmtime.FuncType):
            problems.append(f"missing export {name}")
        elif _signature(ty) != wanted:
            problems.append(f"export {name} has type {_describe(_signature(ty))}, "
                            f"expected {_describe(wanted)}")
    for imp in module.imports:
        if imp.module == WASI_MODULE:
            continue
        wanted = IMPORTS.get(imp.name) if imp.module == IMPORT_MODULE else None
        if wanted is None:
            problems.append(f"it imports {imp.module}.{imp.name}, which the host does not provide")
        elif not isinstance(imp.type, wasmtime.FuncType) or _signature(imp.type) != wanted:
            problems.append(f"import {imp.module}.{imp.name} must have type {_describe(wanted)}")
    if problems:
        raise PluginError("; ".join(problems))


def _describe(signature: Signature) -> str:
    params, results = signature
    return f"({', '.join(params)}) -> ({', '.join(results)})"


def guest_span(ptr: int, length: int, memory_size: int) -> tuple[int, int]:
    """The byte range [start, end) of a guest (pointer, length) pair, both raw i32 values
    (wasm passes them signed); raises PluginError unless it lies inside linear memory."""
    start, n = ptr & 0xFFFFFFFF, length & 0xFFFFFFFF
    if start + n > memory_size:
        raise PluginError(f"pointer {start:#x} + length {n} is outside the plugin's "
                          f"{memory_size}-byte memory")
    return start, start + n


def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise PluginError("malformed wasm binary (bad LEB128 size)")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def custom_sections(wasm: bytes) -> list[tuple[str, bytes]]:
    """(name, payload) of every custom section of a wasm binary, in order."""
    if wasm[:8] != b"\0asm\x01\0\0\0":
        raise PluginError("not a wasm module (bad magic or version)")
    found = []
    pos = 8
    while pos < len(wasm):
        section_id = wasm[pos]
        size, start = _leb128(wasm, pos + 1)
        end = start + size
        if end > len(wasm):
            raise PluginError("malformed wasm binary (section runs past the end)")
        if section_id == 0:
            name_len, name_start = _leb128(wasm, start)
            if name_start + name_len > end:
                raise PluginError("malformed wasm binary (custom section name)")
            name = wasm[name_start:name_start + name_len].decode("utf-8", "replace")
            found.append((name, wasm[name_start + name_len:end]))
        pos = end
    return found


def manifest_section(manifest: dict[str, Any]) -> bytes:
    """A ``rapidbyte.manifest`` custom section to append to a wasm binary built by a
    toolchain without RB_MANIFEST (e.g. WAT, Rust)."""
    name = MANIFEST_SECTION.encode()
    body = _uleb128(len(name)) + name + json.dumps(manifest).encode()
    return b"\0" + _uleb128(len(body)) + body


def _uleb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_manifest(wasm: bytes) -> dict[str, Any]:
    """The validated manifest: name, version, kind, description, config_schema."""
    payloads = [p for name, p in custom_sections(wasm) if name == MANIFEST_SECTION]
    if len(payloads) != 1:
        raise PluginError(f"expected one '{MANIFEST_SECTION}' custom section, found "
                          f"{len(payloads)} (see connectors/sdk/rb_plugin.h, RB_MANIFEST)")
    try:
        manifest = json.loads(payloads[0])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PluginError(f"the manifest is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise PluginError("the manifest must be a JSON object")
    problems = [f"manifest.{key} must be a non-empty string" for key in ("name", "version")
                if not isinstance(manifest.get(key), str) or not manifest[key]]
    if manifest.get("kind") not in KINDS:
        problems.append(f"manifest.kind must be one of {', '.join(KINDS)}")
    if not isinstance(manifest.get("description", ""), str):
        problems.append("manifest.description must be a string")
    if not isinstance(manifest.get("config_schema", {}), dict):
        problems.append("manifest.config_schema must be a JSON object")
    if problems:
        raise PluginError("; ".join(problems))
    return {
        "name": manifest["name"],
        "version": manifest["version"],
        "kind": manifest["kind"],
        "description": manifest.get("description", ""),
        "config_schema": manifest.get("config_schema", {}),
    }
