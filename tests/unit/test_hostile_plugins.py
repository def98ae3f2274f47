"""Hostile and broken plugins: every failure is one PluginError naming the plugin and the
export, the host never reads or writes outside guest memory, time and memory are capped,
and no plugin thread outlives its transform. Plugins are written in WAT here."""
from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import wasmtime

from rapidbyte_fast.errors import ConfigError, PluginError
from rapidbyte_fast.plugins import abi
from rapidbyte_fast.plugins.host import Limits, Plugin
from rapidbyte_fast.sources.generate import generate_batches
from rapidbyte_fast.transforms.wasm import WasmTransform

WAT = """(module
  (import "rapidbyte" "next_batch" (func $next (param i32 i32) (result i64)))
  (import "rapidbyte" "emit_batch" (func $emit (param i32 i32) (result i32)))
  (import "rapidbyte" "log" (func $log (param i32 i32 i32)))
  (import "rapidbyte" "set_error" (func $set_error (param i32 i32)))
  {imports}
  (memory (export "memory") {pages})
  {data}
  (func (export "rb_abi_version") (result i32) (i32.const {version}))
  (func (export "rb_alloc") (param i32) (result i32) {alloc})
  (func (export "rb_free") (param i32))
  (func (export "rb_init") (param i32 i32) (result i32) {init})
  (func (export "rb_run") (result i32) (local $n i64) {run})
  {extra}
)"""

#: rb_run body: reads each message at 4096 (asking for its size first, then retrying with
#: that much room) and emits it back unchanged
ECHO = """
  (loop $l
    (local.set $n (call $next (i32.const 4096) (i32.const 0)))
    (if (i64.eq (local.get $n) (i64.const -1)) (then (return (i32.const 0))))
    (local.set $n (call $next (i32.const 4096) (i32.wrap_i64 (local.get $n))))
    (drop (call $emit (i32.const 4096) (i32.wrap_i64 (local.get $n))))
    (br $l))
  (i32.const 0)"""

#: rb_run body prefix: reads the schema message at 4096 and echoes it
ECHO_SCHEMA = """
  (local.set $n (call $next (i32.const 4096) (i32.const 60000)))
  (drop (call $emit (i32.const 4096) (i32.wrap_i64 (local.get $n))))"""

LOOP = "(loop $l (br $l)) (i32.const 0)"


def wat_plugin(folder: Path, name: str = "hostile", *, run: str = "(i32.const 0)",
               init: str = "(i32.const 0)", alloc: str = "(i32.const 2048)", version: int = 1,
               pages: int = 1, imports: str = "", data: bytes = b"", extra: str = "",
               kind: str = "transform", wat: str | None = None) -> Path:
    """Writes ``<name>.wasm`` compiled from WAT, with a manifest section; returns its path."""
    escaped = "".join(f"\\{b:02x}" for b in data)
    segment = f'(data (i32.const 0) "{escaped}")' if data else ""
    text = wat or WAT.format(imports=imports, pages=pages, data=segment, version=version,
                             alloc=alloc, init=init, run=run, extra=extra)
    manifest = {"name": name, "version": "0.0.1", "kind": kind, "config_schema": {}}
    path = folder / f"{name}.wasm"
    path.write_bytes(bytes(wasmtime.wat2wasm(text)) + abi.manifest_section(manifest))
    return path


def run_plugin(path: Path, limits: Limits | None = None, feed=lambda: None,
               emit=lambda b: None) -> None:
    instance = Plugin.load(path).instantiate(limits or Limits(), feed, emit)
    instance.init({})
    instance.run()


def one_batch() -> pa.RecordBatch:
    return next(iter(generate_batches("bench_events", 1, 101, 100)))


@pytest.fixture(autouse=True)
def no_leaked_plugin_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("RAPIDBYTE_CACHE_DIR", str(tmp_path / "cache"))
    yield
    deadline = time.monotonic() + 5
    while any(t.name.startswith("plugin ") for t in threading.enumerate()):
        assert time.monotonic() < deadline, [t.name for t in threading.enumerate()]
        time.sleep(0.01)


# -- pointers ---------------------------------------------------------------------------

@pytest.mark.parametrize(("call", "where"), [
    ("(drop (call $emit (i32.const 65000) (i32.const 537)))", "emit_batch"),
    ("(drop (call $emit (i32.const 0) (i32.const 0x7fffffff)))", "emit_batch"),
    ("(drop (call $emit (i32.const -16) (i32.const 32)))", "emit_batch"),
    ("(call $log (i32.const 2) (i32.const 65530) (i32.const 7))", "log"),
    ("(call $set_error (i32.const 70000) (i32.const 1))", "set_error"),
    ("(drop (call $next (i32.const 65535) (i32.const 100000)))", "next_batch"),
])
def test_out_of_bounds_pointers_are_refused(tmp_path, call, where):
    path = wat_plugin(tmp_path, run=f"{call} (i32.const 0)")
    schema_message = one_batch().schema.serialize()
    with pytest.raises(PluginError) as info:
        run_plugin(path, feed=lambda: schema_message)
    message = str(info.value)
    assert message.startswith(f"plugin 'hostile' failed in rb_run: {where}: pointer ")
    assert "is outside the plugin's 65536-byte memory" in message


def test_a_region_ending_exactly_at_the_end_of_memory_is_allowed(tmp_path):
    path = wat_plugin(tmp_path, run="""
        (i32.store8 (i32.const 65535) (i32.const 0x41))
        (call $set_error (i32.const 65535) (i32.const 1)) (i32.const 1)""")
    with pytest.raises(PluginError) as info:
        run_plugin(path)
    assert str(info.value) == "plugin 'hostile' failed in rb_run: A"


def test_alloc_returning_a_pointer_outside_memory(tmp_path):
    path = wat_plugin(tmp_path, alloc="(i32.const 65535)")
    with pytest.raises(PluginError, match=r"^plugin 'hostile' failed in rb_alloc: pointer 0xffff "
                                          r"\+ length 2 is outside"):
        run_plugin(path)


def test_alloc_returning_null(tmp_path):
    path = wat_plugin(tmp_path, alloc="(i32.const 0)")
    with pytest.raises(PluginError, match=r"^plugin 'hostile' failed in rb_alloc: no memory for "
                                          r"2 bytes of config$"):
        run_plugin(path)


# -- time -------------------------------------------------------------------------------

@pytest.mark.parametrize(("export", "kwargs"), [
    ("rb_run", {"run": LOOP}),
    ("rb_init", {"init": LOOP}),
    ("instantiate", {"extra": "(func $start (loop $l (br $l))) (start $start)"}),
])
def test_infinite_loops_time_out(tmp_path, export, kwargs):
    path = wat_plugin(tmp_path, **kwargs)
    started = time.monotonic()
    with pytest.raises(PluginError) as info:
        run_plugin(path, Limits(timeout_seconds=0.5))
    elapsed = time.monotonic() - started
    assert str(info.value) == (f"plugin 'hostile' failed in {export}: timed out "
                               f"(limits.timeout_seconds = 0.5)")
    assert 0.45 <= elapsed < 1.5


def test_infinite_loop_through_the_transform(tmp_path):
    path = wat_plugin(tmp_path, run=ECHO_SCHEMA + LOOP)
    transform = WasmTransform(str(path), {}, {"timeout_seconds": 0.5})
    started = time.monotonic()
    with pytest.raises(PluginError, match=r"^plugin 'hostile' failed in rb_run: timed out"):
        transform.open("s", one_batch().schema)
    assert time.monotonic() - started < 1.5
    transform.close()


def test_time_waiting_for_input_does_not_count(tmp_path):
    # The host keeps the plugin waiting in next_batch longer than its timeout.
    path = wat_plugin(tmp_path, pages=16, run=ECHO)
    transform = WasmTransform(str(path), {}, {"timeout_seconds": 0.2})
    batch = one_batch()
    transform.open("s", batch.schema)
    time.sleep(0.5)
    assert transform.apply(batch) == [batch]
    time.sleep(0.5)
    assert transform.finish() == []
    transform.close()


# -- memory -----------------------------------------------------------------------------

def test_memory_bomb_stops_at_the_cap(tmp_path):
    path = wat_plugin(tmp_path, run="""
        (loop $l (if (i32.ne (memory.grow (i32.const 16)) (i32.const -1)) (then (br $l))))
        (i32.store (i32.mul (memory.size) (i32.const 65536)) (i32.const 1))
        (i32.const 0)""")
    with pytest.raises(PluginError) as info:
        run_plugin(path, Limits(max_memory=4 << 20))
    message = str(info.value)
    assert message.startswith("plugin 'hostile' failed in rb_run: memory fault at wasm address ")
    assert "out of bounds memory access" in message
    used = int(re.search(r"linear memory (\d+) bytes", message)[1])
    assert used == (1 + 16 * 3) * 65536 <= 4 << 20
    assert message.endswith(f"limits.max_memory {4 << 20} bytes)")


def test_initial_memory_above_the_cap_fails_instantiation(tmp_path):
    path = wat_plugin(tmp_path, pages=100)
    with pytest.raises(PluginError, match=r"^plugin 'hostile' failed in instantiate: "):
        run_plugin(path, Limits(max_memory=1 << 20))


def test_sdk_plugin_out_of_memory_is_a_plugin_error():
    transform = WasmTransform("transform-filter", {"column": "amount", "op": ">", "value": 1},
                              {"max_memory": "1MiB"})
    batch = next(iter(generate_batches("bench_events", 1, 20_001, 20_000)))
    transform.open("bench_events", batch.schema)
    with pytest.raises(PluginError, match=r"^plugin 'transform-filter' failed in rb_run: "
                                          r"out of memory$"):
        transform.apply(batch)
    transform.close()


def test_stack_overflow(tmp_path):
    path = wat_plugin(tmp_path, run="(call $rec)", extra="(func $rec (result i32) (call $rec))")
    with pytest.raises(PluginError,
                       match=r"^plugin 'hostile' failed in rb_run: .*call stack exhausted"):
        run_plugin(path)


# -- ABI --------------------------------------------------------------------------------

def test_wrong_abi_version(tmp_path):
    path = wat_plugin(tmp_path, version=2)
    with pytest.raises(PluginError, match=r"^plugin 'hostile' speaks ABI version 2; this host "
                                          r"speaks version 1$"):
        run_plugin(path)


def test_missing_and_mistyped_exports(tmp_path):
    wat = WAT.format(imports="", pages=1, data="", version=1, alloc="(i32.const 0)",
                     init="(i32.const 0)", run="(i32.const 0)", extra="")
    wat = wat.replace('(export "rb_run")', "").replace(
        '(func (export "rb_free") (param i32))', '(func (export "rb_free") (param i64))')
    path = wat_plugin(tmp_path, wat=wat)
    with pytest.raises(PluginError) as info:
        Plugin.load(path)
    assert str(info.value) == (
        f"plugin 'hostile' ({path}): export rb_free has type (i64) -> (), expected (i32) -> (); "
        f"missing export rb_run")


def test_unknown_import(tmp_path):
    path = wat_plugin(tmp_path, imports='(import "env" "open" (func (param i32) (result i32)))')
    with pytest.raises(PluginError, match=r"it imports env\.open, which the host does not provide"):
        Plugin.load(path)


def test_not_a_wasm_module(tmp_path):
    path = tmp_path / "junk.wasm"
    path.write_bytes(b"\0asm\x01\0\0\0\x01\xff")
    with pytest.raises(PluginError, match=r"^plugin 'junk' \(.*\): malformed wasm binary"):
        Plugin.load(path)


def test_a_non_transform_plugin_is_a_config_error(tmp_path):
    path = wat_plugin(tmp_path, kind="source")
    with pytest.raises(ConfigError, match="plugin 'hostile' is a source plugin, not a transform"):
        WasmTransform(str(path))


# -- traps, exits, guest errors, host errors ---------------------------------------------

def test_trap(tmp_path):
    path = wat_plugin(tmp_path, run="(unreachable)")
    with pytest.raises(PluginError) as info:
        run_plugin(path)
    assert str(info.value) == ("plugin 'hostile' failed in rb_run: wasm trap: wasm `unreachable` "
                               "instruction executed")
    assert isinstance(info.value.__cause__, wasmtime.Trap)


def test_wasi_exit(tmp_path):
    path = wat_plugin(tmp_path, imports='(import "wasi_snapshot_preview1" "proc_exit" '
                                        '(func $exit (param i32)))',
                      run="(call $exit (i32.const 3)) (i32.const 0)")
    with pytest.raises(PluginError, match=r"^plugin 'hostile' failed in rb_run: the plugin exited "
                                          r"with code 3$"):
        run_plugin(path)


def test_guest_error_from_rb_run(tmp_path):
    path = wat_plugin(tmp_path, data=b"column 'x' is missing",
                      run="(call $set_error (i32.const 0) (i32.const 21)) (i32.const 1)")
    with pytest.raises(PluginError, match=r"^plugin 'hostile' failed in rb_run: column 'x' is "
                                          r"missing$"):
        run_plugin(path)


def test_guest_failure_without_message(tmp_path):
    path = wat_plugin(tmp_path, init="(i32.const 7)")
    with pytest.raises(PluginError, match=r"^plugin 'hostile' failed in rb_init: returned 7 "
                                          r"without setting an error$"):
        run_plugin(path)


def test_error_text_is_capped(tmp_path):
    path = wat_plugin(tmp_path, pages=2, run="""
        (memory.fill (i32.const 0) (i32.const 0x45) (i32.const 100000))
        (call $set_error (i32.const 0) (i32.const 100000)) (i32.const 1)""")
    with pytest.raises(PluginError) as info:
        run_plugin(path)
    assert str(info.value) == "plugin 'hostile' failed in rb_run: " + "E" * abi.MAX_TEXT


def test_host_exception_inside_an_import(tmp_path):
    path = wat_plugin(tmp_path, run=ECHO)

    def feed():
        raise RuntimeError("source went away")

    with pytest.raises(PluginError) as info:
        run_plugin(path, feed=feed)
    assert str(info.value) == ("plugin 'hostile' failed in rb_run: next_batch: host error "
                               "RuntimeError: source went away")
    assert isinstance(info.value.__cause__, RuntimeError)


# -- garbage output -----------------------------------------------------------------------

def _bad_offsets_message() -> bytes:
    offsets = pa.py_buffer(np.array([0, 5, 2, 6], dtype=np.int32).tobytes())
    strings = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(b"abcdef")])
    return pa.record_batch([strings], names=["s"]).serialize().to_pybytes()


@pytest.mark.parametrize(("schema", "payload", "error"), [
    (None, b"\x13\x37" * 20, r"emitted invalid Arrow IPC \(emit_batch\): "),
    (pa.schema([("s", pa.string())]), _bad_offsets_message(),
     r"emitted invalid Arrow IPC \(emit_batch\): .*[Oo]ffset"),
])
def test_garbage_ipc_is_a_plugin_error(tmp_path, schema, payload, error):
    path = wat_plugin(tmp_path, data=payload, run=ECHO_SCHEMA + f"""
        (drop (call $emit (i32.const 0) (i32.const {len(payload)}))) (i32.const 0)""")
    transform = WasmTransform(str(path))
    with pytest.raises(PluginError, match=rf"^plugin 'hostile' {error}"):
        transform.open("s", schema or one_batch().schema)
    with pytest.raises(PluginError, match=rf"^plugin 'hostile' {error}"):
        transform.finish()
    transform.close()


def test_record_batch_before_the_schema(tmp_path):
    message = one_batch().slice(0, 3).serialize().to_pybytes()
    assert len(message) < 4096
    path = wat_plugin(tmp_path, data=message, run=f"""
        (drop (call $next (i32.const 4096) (i32.const 60000)))
        (drop (call $emit (i32.const 0) (i32.const {len(message)}))) (i32.const 0)""")
    transform = WasmTransform(str(path))
    with pytest.raises(PluginError, match=r"got a record batch message where the output schema "
                                          r"was expected"):
        transform.open("s", one_batch().schema)
    transform.close()


def test_no_schema_at_all(tmp_path):
    path = wat_plugin(tmp_path)
    transform = WasmTransform(str(path))
    with pytest.raises(PluginError, match=r"^plugin 'hostile' did not emit an output schema$"):
        transform.open("s", one_batch().schema)
    with pytest.raises(PluginError, match=r"^plugin 'hostile' did not emit an output schema$"):
        transform.apply(one_batch())
    transform.close()


def test_errors_stick_to_the_stream(tmp_path):
    path = wat_plugin(tmp_path, run=ECHO_SCHEMA + """
        (drop (call $next (i32.const 4096) (i32.const 60000))) (unreachable)""")
    transform = WasmTransform(str(path))
    batch = one_batch()
    transform.open("s", batch.schema)
    with pytest.raises(PluginError, match="unreachable"):
        transform.apply(batch)
    with pytest.raises(PluginError, match="unreachable"):
        transform.apply(batch)
    with pytest.raises(PluginError, match="unreachable"):
        transform.finish()
    transform.close()


# -- what a plugin's output may claim ----------------------------------------------------------

def test_output_schema_cannot_smuggle_types_or_ddl(tmp_path):
    """``pg_type``, ``pg_type_def`` and ``primary_key`` reach destination DDL: a plugin keeps
    them only as its input had them (same field type and metadata), never makes them up."""
    source = pa.schema([pa.field("id", pa.int64(), metadata={b"pg_type": b"bigint"}),
                        pa.field("x", pa.utf8(), metadata={b"pg_type": b"text"})],
                       metadata={b"primary_key": b"id"})
    domain = [{"kind": "domain", "schema": "public", "name": "d", "ref": "d", "base": "integer",
               "not_null": False, "default": "(SELECT pg_sleep(60))", "checks": []}]
    evil = pa.schema([
        pa.field("id", pa.int64(), metadata={b"pg_type": b"integer references t",
                                             b"pg_type_def": json.dumps(domain).encode()}),
        pa.field("x", pa.utf8(), metadata={b"pg_type": b"text"}),      # as the input had it
        pa.field("y", pa.int32(), metadata={b"pg_type": b"d"}),
    ], metadata={b"primary_key": b"y"})
    message = evil.serialize().to_pybytes()
    path = wat_plugin(tmp_path, data=message, run=f"""
        (drop (call $next (i32.const 4096) (i32.const 60000)))
        (drop (call $emit (i32.const 0) (i32.const {len(message)}))) (i32.const 0)""")
    transform = WasmTransform(str(path))
    out = transform.open("s", source)
    transform.close()
    assert [(f.name, f.type, f.metadata) for f in out] == [
        ("id", pa.int64(), None), ("x", pa.utf8(), {b"pg_type": b"text"}),
        ("y", pa.int32(), None)]
    assert out.metadata is None


def test_echoed_schema_keeps_its_types_and_key(tmp_path):
    source = pa.schema([pa.field("id", pa.int64(), metadata={b"pg_type": b"bigint"})],
                       metadata={b"primary_key": b"id"})
    path = wat_plugin(tmp_path, run=ECHO_SCHEMA + "(i32.const 0)")
    transform = WasmTransform(str(path))
    assert transform.open("s", source) == source
    assert transform.open("s", source).metadata == {b"primary_key": b"id"}
    transform.close()


def test_output_per_input_batch_is_capped(tmp_path):
    # copies 1 MiB out of its memory again and again for its first batch
    path = wat_plugin(tmp_path, pages=32, run=ECHO_SCHEMA + """
        (drop (call $next (i32.const 4096) (i32.const 60000)))
        (loop $l (drop (call $emit (i32.const 0) (i32.const 1048576))) (br $l))
        (i32.const 0)""")
    transform = WasmTransform(str(path), {}, {"max_output_bytes_per_batch": "4MB",
                                              "timeout_seconds": 20})
    batch = one_batch()
    transform.open("s", batch.schema)
    started = time.monotonic()
    with pytest.raises(PluginError, match=(
            r"^plugin 'hostile' failed in rb_run: emit_batch: more than 4194304 bytes emitted "
            r"for one input batch \(limits.max_output_bytes_per_batch\)$")):
        transform.apply(batch)
    assert time.monotonic() - started < 5
    transform.close()


def test_output_cap_counts_each_input_batch_afresh(tmp_path):
    path = wat_plugin(tmp_path, pages=16, run=ECHO)
    # 1,000 rows: twice their size is above the smallest cap the limits take (64kb)
    batch = next(iter(generate_batches("bench_events", 1, 1001, 1000)))
    size = batch.serialize().size
    transform = WasmTransform(str(path), {}, {"max_output_bytes_per_batch": 2 * size})
    transform.open("s", batch.schema)
    for _ in range(5):
        assert transform.apply(batch) == [batch]
    transform.close()
