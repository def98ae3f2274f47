"""wasmtime host for plugins (DESIGN §7).

One process-wide Engine with epoch interruption, whose epoch a daemon thread advances every
``EPOCH_TICK`` seconds. ``Plugin.load`` reads a .wasm, checks its manifest and ABI, and
compiles it through the AOT cache. ``Plugin.instantiate`` gives a ``PluginInstance``: a
fresh Store (memory capped by ``Store.set_limits``, time by an epoch deadline re-armed at
every call and every message handed over), the ``rapidbyte`` imports bound to that
instance, and no WASI unless the module imports it (then an empty one: no files, env, args
or sockets). Every guest pointer is bounds-checked against the current memory size, and
traps, exits, guest errors and exceptions raised inside imports all surface as one
PluginError naming the plugin and the export that was running.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import json
import logging
import math
import platform
import re
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import pyarrow as pa
import wasmtime

from rapidbyte_fast.config.base import validate_section
from rapidbyte_fast.config.transforms import PluginLimits
from rapidbyte_fast.errors import ConfigError, PluginError
from rapidbyte_fast.plugins import abi, cache

#: seconds between epoch increments: the granularity of plugin timeouts
EPOCH_TICK = 0.01
#: engine options; they are part of the AOT cache key
_ENGINE_OPTIONS = {"epoch_interruption": True, "cranelift_opt_level": "speed"}

#: what the plugin reads: an encapsulated IPC message, or a record batch, which the host
#: serializes straight into guest memory (sparing a copy of every batch)
Message = Union[pa.Buffer, pa.RecordBatch]
#: hands the plugin its next message, or None at the end of the stream
Feed = Callable[[], Optional[Message]]
#: receives each IPC message the plugin emits (a copy out of guest memory)
Emit = Callable[[pa.Buffer], None]

_engine: wasmtime.Engine | None = None
_engine_lock = threading.Lock()


def engine() -> wasmtime.Engine:
    """The shared Engine; the first call also starts the epoch ticker."""
    global _engine
    with _engine_lock:
        if _engine is None:
            config = wasmtime.Config()
            for option, value in _ENGINE_OPTIONS.items():
                setattr(config, option, value)
            _engine = wasmtime.Engine(config)
            threading.Thread(target=_tick, args=(_engine,), name="rapidbyte-wasm-epoch",
                             daemon=True).start()
        return _engine


def _tick(eng: wasmtime.Engine) -> None:
    # Holding eng here keeps the Engine alive for as long as this daemon thread can touch it.
    while True:
        time.sleep(EPOCH_TICK)
        eng.increment_epoch()


@functools.lru_cache(maxsize=None)
def engine_settings() -> str:
    """Everything that makes compiled code incompatible: wasmtime version, CPU, options."""
    return json.dumps({"wasmtime": importlib.metadata.version("wasmtime"),
                       "machine": platform.machine(), **_ENGINE_OPTIONS}, sort_keys=True)


@dataclass(frozen=True)
class Limits:
    """Per-plugin limits: linear memory in bytes, guest time per call or per message, and
    the bytes a plugin may emit for one input batch (the host copies each emitted message
    out of guest memory, so this bounds what one batch can make the host hold)."""

    max_memory: int = 256 << 20
    timeout_seconds: float = 30.0
    max_output_bytes_per_batch: int = 64 << 20

    @classmethod
    def parse(cls, raw: Any, plugin: str) -> Limits:
        """From a pipeline's ``limits:``: a mapping, or a model whose attributes are the
        limits, checked by the config's rules (``config.transforms.PluginLimits``); sizes
        may be ints (bytes) or strings such as "64mb". Raises ConfigError naming the
        plugin."""
        if raw is not None and not isinstance(raw, Mapping):
            raw = {k: getattr(raw, k) for k in PluginLimits.model_fields
                   if getattr(raw, k, None) is not None}
        try:
            checked = validate_section(PluginLimits, dict(raw or {}), ("limits",))
        except ConfigError as exc:
            raise ConfigError([f"plugin {plugin!r}: {p}" for p in exc.problems]) from None
        return cls(max_memory=checked.max_memory, timeout_seconds=checked.timeout_seconds,
                   max_output_bytes_per_batch=checked.max_output_bytes_per_batch)


def encode_config(config: Mapping[str, Any], plugin: str) -> bytes:
    """The config as the strict JSON rb_init reads; ConfigError for NaN, infinities or
    values JSON cannot express."""
    try:
        return json.dumps(dict(config), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"plugin {plugin!r}: config must be plain JSON ({exc})") from exc


class Plugin:
    """A loaded plugin: its manifest and compiled module, ready to instantiate."""

    def __init__(self, path: Path, manifest: dict[str, Any], module: wasmtime.Module,
                 load_ms: float, cache_hit: bool) -> None:
        self.path = path
        self.manifest = manifest
        self.name: str = manifest["name"]
        self.module = module
        #: wall time of reading, checking and compiling or deserializing the module
        self.load_ms = load_ms
        self.cache_hit = cache_hit
        self.uses_wasi = any(i.module == abi.WASI_MODULE for i in module.imports)

    @classmethod
    def load(cls, path: str | Path) -> Plugin:
        """Reads, checks and compiles (or fetches from the AOT cache) a plugin file."""
        started = time.perf_counter()
        path = Path(path)
        label = path.stem
        try:
            wasm = path.read_bytes()
            manifest = abi.read_manifest(wasm)
            label = manifest["name"]
            module, hit = cache.load_module(engine(), wasm, engine_settings())
            abi.check_module(module)
        except OSError as exc:
            raise PluginError(f"plugin {label!r}: cannot read {path}: {exc}") from exc
        except PluginError as exc:
            raise PluginError(f"plugin {label!r} ({path}): {exc}") from None
        except wasmtime.WasmtimeError as exc:
            raise PluginError(f"plugin {label!r} ({path}) is not a valid wasm module: "
                              f"{_reason(exc)}") from exc
        return cls(path, manifest, module, (time.perf_counter() - started) * 1000.0, hit)

    def instantiate(self, limits: Limits, feed: Feed, emit: Emit) -> PluginInstance:
        """A fresh Store and instance; use it from one thread only."""
        return PluginInstance(self, limits, feed, emit)


class PluginInstance:
    """One Store + instance of a plugin. ``init`` passes the JSON config, ``run`` drives
    ``rb_run``, which pulls messages from ``feed`` and pushes its output to ``emit``."""

    def __init__(self, plugin: Plugin, limits: Limits, feed: Feed, emit: Emit) -> None:
        self.plugin = plugin
        self.limits = limits
        self._feed, self._emit = feed, emit
        self._pending: Message | None = None
        self._pending_size = 0
        self._emitted = 0   # bytes emitted since the plugin took its last input message
        self._ended = False
        self._fault: tuple[str, BaseException] | None = None
        self._guest_error: str | None = None
        self._memory: wasmtime.Memory | None = None
        self._log = logging.getLogger(f"rapidbyte_fast.plugins.{plugin.name}")
        self._store = wasmtime.Store(engine())
        self._store.set_limits(memory_size=limits.max_memory)
        self._ticks = max(1, math.ceil(limits.timeout_seconds / EPOCH_TICK))
        linker = wasmtime.Linker(engine())
        for name, handler in (("next_batch", PluginInstance._next_batch),
                              ("emit_batch", PluginInstance._emit_batch),
                              ("log", PluginInstance._log_text),
                              ("set_error", PluginInstance._set_error)):
            linker.define_func(abi.IMPORT_MODULE, name, abi.func_type(abi.IMPORTS[name]),
                               self._host_import(name, handler))
        if plugin.uses_wasi:
            linker.define_wasi()
            self._store.set_wasi(wasmtime.WasiConfig())
        instance = self._enter("instantiate", linker.instantiate, self._store, plugin.module)
        exports = instance.exports(self._store)
        self._memory = exports["memory"]
        self._funcs = {name: exports[name] for name in abi.EXPORTS}
        version = self.call("rb_abi_version")
        if version != abi.ABI_VERSION:
            raise PluginError(f"plugin {plugin.name!r} speaks ABI version {version}; this host "
                              f"speaks version {abi.ABI_VERSION}")

    def call(self, export: str, *args: int) -> int:
        """Calls an ABI export; any failure becomes a PluginError."""
        return self._enter(export, self._funcs[export], self._store, *args)

    def init(self, config: Mapping[str, Any]) -> None:
        """``rb_init`` with the config as JSON in guest memory."""
        data = encode_config(config, self.plugin.name)
        ptr = self.call("rb_alloc", len(data)) & 0xFFFFFFFF
        if ptr == 0:
            raise PluginError(f"plugin {self.plugin.name!r} failed in rb_alloc: no memory for "
                              f"{len(data)} bytes of config")
        try:
            start, _ = abi.guest_span(ptr, len(data), self._memory.data_len(self._store))
        except PluginError as exc:
            raise PluginError(f"plugin {self.plugin.name!r} failed in rb_alloc: {exc}") from None
        ctypes.memmove(self._base() + start, data, len(data))
        status = self.call("rb_init", ptr, len(data))
        if status != 0:
            raise self._guest_failure("rb_init", status)
        self.call("rb_free", ptr)

    def run(self) -> None:
        """``rb_run``: returns when the plugin has consumed the stream."""
        status = self.call("rb_run")
        if status != 0:
            raise self._guest_failure("rb_run", status)

    # -- calls and failures -------------------------------------------------------------

    def _arm(self) -> None:
        self._store.set_epoch_deadline(self._ticks)

    def _enter(self, export: str, fn: Callable[..., Any], *args: Any) -> Any:
        self._fault = None
        self._guest_error = None
        self._arm()
        try:
            return fn(*args)
        except Exception as exc:
            cause = self._fault[1] if self._fault else exc
            raise self._failure(export, exc) from cause

    def _failure(self, export: str, exc: Exception) -> PluginError:
        if self._fault is not None:
            where, cause = self._fault
            detail = (f"{where}: {cause}" if isinstance(cause, PluginError)
                      else f"{where}: host error {type(cause).__name__}: {cause}")
        elif isinstance(exc, wasmtime.ExitTrap):
            detail = f"the plugin exited with code {exc.code}"
        elif isinstance(exc, wasmtime.Trap) and exc.trap_code == wasmtime.TrapCode.INTERRUPT:
            detail = f"timed out (limits.timeout_seconds = {self.limits.timeout_seconds:g})"
        elif isinstance(exc, wasmtime.Trap) \
                and exc.trap_code == wasmtime.TrapCode.MEMORY_OUT_OF_BOUNDS:
            detail = f"{_reason(exc)}{self._memory_note()}"
        elif isinstance(exc, (wasmtime.Trap, wasmtime.WasmtimeError)):
            detail = _reason(exc)
        else:
            detail = f"{type(exc).__name__}: {exc}"
        if self._guest_error:
            detail += f" (plugin error: {self._guest_error})"
        return PluginError(f"plugin {self.plugin.name!r} failed in {export}: {detail}")

    def _memory_note(self) -> str:
        # A plugin whose memory.grow was refused at the cap usually dies on an access past
        # the end of its memory, so say how full that memory was.
        if self._memory is None:
            return ""
        return (f" (linear memory {self._memory.data_len(self._store)} bytes, "
                f"limits.max_memory {self.limits.max_memory} bytes)")

    def _guest_failure(self, export: str, status: int) -> PluginError:
        reason = self._guest_error or f"returned {status} without setting an error"
        return PluginError(f"plugin {self.plugin.name!r} failed in {export}: {reason}")

    # -- imports ------------------------------------------------------------------------

    def _host_import(self, name: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        # wasmtime keeps host callbacks in a global table: a weak reference lets the instance
        # (and its Store) be freed once the caller drops it.
        ref = weakref.ref(self)

        def call(*args: int) -> Any:
            inst = ref()
            try:
                return handler(inst, *args)
            except BaseException as exc:
                if inst is not None:
                    inst._fault = (name, exc)
                raise

        return call

    def _base(self) -> int:
        return ctypes.addressof(self._memory.data_ptr(self._store).contents)

    def _text(self, ptr: int, length: int) -> str:
        start, end = abi.guest_span(ptr, length, self._memory.data_len(self._store))
        data = ctypes.string_at(self._base() + start, min(end - start, abi.MAX_TEXT))
        return data.decode("utf-8", "replace")

    def _next_batch(self, buf: int, cap: int) -> int:
        if self._pending is None:
            if self._ended:
                return abi.END_OF_STREAM
            message = self._feed()
            self._arm()  # the plugin gets a full time budget for each message
            self._emitted = 0   # ... and a full output budget
            if message is None:
                self._ended = True
                return abi.END_OF_STREAM
            self._pending = message
            self._pending_size = (message.size if isinstance(message, pa.Buffer)
                                  else pa.ipc.get_record_batch_size(message))
        size = self._pending_size
        if size > cap & 0xFFFFFFFF:
            return size
        start, _ = abi.guest_span(buf, size, self._memory.data_len(self._store))
        _write_message(self._pending, self._base() + start, size)
        self._pending = None
        return size

    def _emit_batch(self, ptr: int, length: int) -> int:
        start, end = abi.guest_span(ptr, length, self._memory.data_len(self._store))
        cap = self.limits.max_output_bytes_per_batch
        self._emitted += end - start
        if self._emitted > cap:
            raise PluginError(f"more than {cap} bytes emitted for one input batch "
                              "(limits.max_output_bytes_per_batch)")
        out = pa.allocate_buffer(end - start)
        ctypes.memmove(out.address, self._base() + start, end - start)
        self._emit(out)
        return 0

    def _log_text(self, level: int, ptr: int, length: int) -> None:
        text = self._text(ptr, length)
        self._log.log(abi.LOG_LEVELS[level] if 0 <= level < len(abi.LOG_LEVELS) else logging.INFO,
                      "%s", text)

    def _set_error(self, ptr: int, length: int) -> None:
        self._guest_error = self._text(ptr, length)


def _write_message(message: Message, address: int, size: int) -> None:
    """Copies a message of ``size`` bytes to ``address`` (already bounds-checked)."""
    if isinstance(message, pa.RecordBatch) and _has_dictionary(message.schema):
        message = message.serialize()  # dictionaries would come between schema and batch
    if isinstance(message, pa.Buffer):
        ctypes.memmove(address, message.address, size)
        return
    sink = _GuestSink(address, message.schema.serialize().size, size)
    pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), message.schema).write_batch(message)
    if sink.written != size:
        raise PluginError(f"host wrote {sink.written} of {size} bytes of a record batch message")


def _has_dictionary(schema: pa.Schema) -> bool:
    def walk(ty: pa.DataType) -> bool:
        return pa.types.is_dictionary(ty) or any(walk(ty.field(i).type)
                                                  for i in range(ty.num_fields))

    return any(walk(field.type) for field in schema)


class _GuestSink:
    """Target of pyarrow's IPC stream writer: keeps the record batch message, which lands at
    ``address``, and drops the schema message written before it and the end-of-stream
    marker after it. pyarrow hands body buffers over without copying them."""

    closed = False

    def __init__(self, address: int, skip: int, size: int) -> None:
        self.address, self.skip, self.size = address, skip, size
        self.seen = 0

    @property
    def written(self) -> int:
        return min(max(self.seen - self.skip, 0), self.size)

    def write(self, data: Any) -> int:
        chunk = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
        lo = max(self.seen, self.skip)
        hi = min(self.seen + chunk.size, self.skip + self.size)
        if hi > lo:
            ctypes.memmove(self.address + lo - self.skip, chunk.address + lo - self.seen, hi - lo)
        self.seen += chunk.size
        return chunk.size


def _reason(exc: BaseException) -> str:
    """wasmtime's message without the backtrace: its "Caused by" chain, or its first line."""
    text = str(exc).strip()
    if "Caused by:" in text:
        causes = text.split("Caused by:", 1)[1].splitlines()
        return "; ".join(re.sub(r"^\d+:\s*", "", c.strip()) for c in causes if c.strip())
    return text.splitlines()[0] if text else type(exc).__name__
