"""A WASM plugin as a transform (``use: <plugin name or .wasm path>``).

The plugin pulls its input (``rb_run`` loops on ``next_batch``) while the engine pushes
batches (``apply``), so each stream's instance runs ``rb_run`` on its own thread and the two
hand messages over one at a time: ``apply`` puts one batch in the slot (the host writes it
into guest memory as an Arrow IPC message) and waits until the plugin asks for the next one
(or finishes), then returns what it emitted. The plugin never runs while the caller does,
so the instance needs no locking, and the per-message time budget of
``limits.timeout_seconds`` bounds every wait.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Mapping

import pyarrow as pa

from rapidbyte_fast.errors import ConfigError, PluginError
from rapidbyte_fast.plugins import discovery
from rapidbyte_fast.plugins.host import Limits, Message, Plugin, encode_config
from rapidbyte_fast.transforms.output_schema import carried_schema

#: extra seconds the caller waits beyond the plugin's own time limit before giving up
_GRACE_SECONDS = 5.0


class WasmTransform:
    """Transform protocol over a plugin of kind ``transform``; one instance per stream."""

    def __init__(self, use: str, config: Mapping[str, Any] | None = None,
                 limits: Mapping[str, Any] | None = None) -> None:
        self._plugin = Plugin.load(discovery.resolve(use))
        kind = self._plugin.manifest["kind"]
        if kind != "transform":
            raise ConfigError(f"plugin {self._plugin.name!r} is a {kind} plugin, not a transform")
        self._config = dict(config or {})
        encode_config(self._config, self._plugin.name)  # bad config fails here, not per stream
        self._limits = Limits.parse(limits, self._plugin.name)
        self._session: _Session | None = None
        self.name = f"plugin {self._plugin.name}"
        self.stats: dict[str, float] = {
            "plugin_load_ms": self._plugin.load_ms,
            "aot_cache_hit": float(self._plugin.cache_hit),
            "seconds": 0.0, "rows_in": 0, "rows_out": 0, "batches_in": 0, "batches_out": 0,
        }

    def open(self, stream: str, schema: pa.Schema) -> pa.Schema:
        """Starts a fresh instance for ``stream``, runs ``rb_init`` and exchanges schemas."""
        self.close()
        started = time.perf_counter()
        self._session = _Session(self._plugin, self._limits, self._config, stream)
        try:
            return self._session.start(schema)
        finally:
            self.stats["seconds"] += time.perf_counter() - started

    def apply(self, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        """Feeds one batch; returns whatever the plugin emitted for it."""
        if self._session is None:
            raise PluginError(f"{self.name}: apply() before open()")
        self.stats["rows_in"] += batch.num_rows
        self.stats["batches_in"] += 1
        return self._timed(self._session.feed, batch)

    def finish(self) -> list[pa.RecordBatch]:
        """Signals the end of the stream; returns the plugin's last batches."""
        if self._session is None:
            return []
        return self._timed(self._session.end)

    def close(self) -> None:
        """Stops the stream's instance if it is still running."""
        if self._session is not None:
            self._session.cancel()
            self._session = None

    def _timed(self, step: Any, *args: Any) -> list[pa.RecordBatch]:
        started = time.perf_counter()
        try:
            out = step(*args)
        finally:
            self.stats["seconds"] += time.perf_counter() - started
        self.stats["rows_out"] += sum(b.num_rows for b in out)
        self.stats["batches_out"] += len(out)
        return out


class _Session:
    """One stream: a worker thread running the instance, and the hand-over slot."""

    def __init__(self, plugin: Plugin, limits: Limits, config: dict[str, Any], stream: str) -> None:
        self._plugin = plugin
        self._limits = limits
        self._config = config
        self._cond = threading.Condition()
        self._slot: Message | None = None
        self._fed = 0          # messages put in the slot (the end of stream counts as one)
        self._taken = 0        # messages the plugin took
        self._asking = False   # the plugin is waiting in next_batch for a new message
        self._done = False
        self._cancelled = False
        self._error: BaseException | None = None
        self._emitted: list[pa.Buffer] = []
        self._input = pa.schema([])   # set by start()
        self._schema: pa.Schema | None = None
        self._early: list[pa.RecordBatch] = []  # emitted along with the schema
        self._thread = threading.Thread(target=self._run, name=f"plugin {plugin.name}: {stream}",
                                        daemon=True)

    # -- caller side --------------------------------------------------------------------

    def start(self, schema: pa.Schema) -> pa.Schema:
        self._input = schema
        self._thread.start()
        self._early = self._exchange(schema.serialize())
        if self._schema is None:
            raise self._abort(PluginError(f"plugin {self._plugin.name!r} did not emit an "
                                          f"output schema"))
        return self._schema

    def feed(self, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        self._raise_error()
        out, self._early = self._early, []
        # A plugin that returned from rb_run early has ignored the rest of its input.
        if batch.num_rows and not self._done:
            out += self._exchange(batch)
        return out

    def end(self) -> list[pa.RecordBatch]:
        self._raise_error()
        out, self._early = self._early, []
        if not self._done:
            out += self._exchange(None)
        self._thread.join()
        return out

    def _raise_error(self) -> None:
        with self._cond:
            if self._error is not None:
                raise self._error

    def _abort(self, error: PluginError) -> PluginError:
        """Ends the instance and makes ``error`` the answer to every later call."""
        self.cancel()
        with self._cond:
            self._error = error
        return error

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(self._limits.timeout_seconds + _GRACE_SECONDS)

    def _exchange(self, message: Message | None) -> list[pa.RecordBatch]:
        """Puts one message (None: end of stream) in the slot and waits until the plugin
        asks for the next one or finishes; returns the batches it emitted meanwhile."""
        wait = self._limits.timeout_seconds + _GRACE_SECONDS
        with self._cond:
            self._slot = message
            self._fed += 1
            self._cond.notify_all()
            deadline = time.monotonic() + wait
            while not self._done and not (self._asking and self._taken == self._fed):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    # Not waiting for the thread again: it is stuck beyond its own limit.
                    self._cancelled = True
                    self._error = PluginError(f"plugin {self._plugin.name!r} did not answer "
                                              f"within {wait:g} s")
                    raise self._error
                self._cond.wait(remaining)
            emitted, self._emitted = self._emitted, []
            if self._error is not None:
                raise self._error
        try:
            return [b for b in map(self._decode, emitted) if b is not None]
        except PluginError as exc:
            raise self._abort(exc) from exc.__cause__

    def _decode(self, buf: pa.Buffer) -> pa.RecordBatch | None:
        """An emitted message as a batch (None for the schema), fully validated so a
        plugin can never hand the rest of the pipeline an unsafe array."""
        try:
            message = pa.ipc.read_message(buf)
            if message.type == "schema" and self._schema is None:
                # Postgres type metadata only as the input had it: it reaches DDL.
                self._schema = carried_schema(pa.ipc.read_schema(message), self._input)
                return None
            if self._schema is None or message.type != "record batch":
                expected = "a record batch" if self._schema is not None else "the output schema"
                raise ValueError(f"got a {message.type} message where {expected} was expected")
            batch = pa.ipc.read_record_batch(message, self._schema)
            batch.validate(full=True)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise PluginError(f"plugin {self._plugin.name!r} emitted invalid Arrow IPC "
                              f"(emit_batch): {exc}") from exc
        return batch

    # -- worker side --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            instance = self._plugin.instantiate(self._limits, self._take, self._emit)
            instance.init(self._config)
            instance.run()
        except BaseException as exc:  # handed to the caller, who raises it
            self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _take(self) -> Message | None:
        with self._cond:
            self._asking = True
            self._cond.notify_all()
            while self._taken == self._fed and not self._cancelled:
                self._cond.wait()
            self._asking = False
            if self._cancelled:
                return None
            self._taken = self._fed
            message, self._slot = self._slot, None
            return message

    def _emit(self, buf: pa.Buffer) -> None:
        with self._cond:
            self._emitted.append(buf)
