"""The plugin host: ABI checks, manifests, limits, the message protocol, logging, empty WASI,
discovery, and the committed connectors/dist builds (rebuilt bit-identically when the
pinned toolchain is installed)."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import struct
import threading
from pathlib import Path

import pyarrow as pa
import pydantic
import pytest

from rapidbyte_fast.errors import ConfigError, PluginError
from rapidbyte_fast.plugins import abi, discovery, host
from rapidbyte_fast.plugins.host import Limits, Plugin
from tests.unit.test_hostile_plugins import ECHO, wat_plugin

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "connectors" / "dist"

FILTER_MANIFEST = {
    "name": "transform-filter",
    "version": "0.1.0",
    "kind": "transform",
    "description": "Keeps the rows where a numeric column satisfies a comparison",
    "config_schema": {
        "type": "object",
        "required": ["column", "op", "value"],
        "additionalProperties": False,
        "properties": {
            "column": {"type": "string",
                       "description": "int8-64, uint8-32, float32 or float64 column"},
            "op": {"enum": ["==", "!=", "<", "<=", ">", ">="]},
            "value": {"type": "number"},
        },
    },
}
MASK_MANIFEST = {
    "name": "transform-mask",
    "version": "0.1.0",
    "kind": "transform",
    "description": "Hashes or masks text columns (e.g. emails); NULLs stay NULL",
    "config_schema": {
        "type": "object",
        "required": ["columns", "mode"],
        "additionalProperties": False,
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                        "description": "utf8 or large_utf8 columns"},
            "mode": {"enum": ["hash", "mask"]},
        },
    },
}


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("RAPIDBYTE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RAPIDBYTE_DATA_DIR", str(tmp_path / "data" / "rapidbyte-fast"))
    monkeypatch.delenv("RAPIDBYTE_PLUGIN_PATH", raising=False)


# -- manifest and binary parsing ---------------------------------------------------------

def test_committed_plugins_carry_their_manifests():
    assert abi.read_manifest((DIST / "transform-filter.wasm").read_bytes()) == FILTER_MANIFEST
    assert abi.read_manifest((DIST / "transform-mask.wasm").read_bytes()) == MASK_MANIFEST


def test_committed_plugins_need_no_wasi():
    for name in ("transform-filter", "transform-mask"):
        plugin = Plugin.load(DIST / f"{name}.wasm")
        assert plugin.uses_wasi is False
        assert {(i.module, i.name) for i in plugin.module.imports} <= {
            ("rapidbyte", function) for function in abi.IMPORTS}


def test_manifest_section_round_trip():
    section = abi.manifest_section({"name": "x", "version": "1", "kind": "source", "extra": 1})
    wasm = b"\0asm\x01\0\0\0" + section
    assert abi.custom_sections(wasm) == [
        ("rapidbyte.manifest", b'{"name": "x", "version": "1", "kind": "source", "extra": 1}')]
    assert abi.read_manifest(wasm) == {"name": "x", "version": "1", "kind": "source",
                                       "description": "", "config_schema": {}}


def test_manifest_section_with_a_multi_byte_size():
    manifest = {"name": "x", "version": "1", "kind": "transform", "description": "d" * 300}
    wasm = b"\0asm\x01\0\0\0" + abi.manifest_section(manifest)
    assert abi.read_manifest(wasm)["description"] == "d" * 300


@pytest.mark.parametrize(("sections", "error"), [
    (b"", "expected one 'rapidbyte.manifest' custom section, found 0"),
    (abi.manifest_section({}) * 2, "expected one 'rapidbyte.manifest' custom section, found 2"),
    (b"\0\x14\x12rapidbyte.manifest{", "the manifest is not valid JSON"),
    (abi.manifest_section([1]), "the manifest must be a JSON object"),
    (abi.manifest_section({"name": "", "version": 1, "kind": "sink", "config_schema": []}),
     "manifest.name must be a non-empty string; manifest.version must be a non-empty string; "
     "manifest.kind must be one of transform, source, destination; "
     "manifest.config_schema must be a JSON object"),
])
def test_bad_manifests(sections, error):
    with pytest.raises(PluginError, match=f"^{error}"):
        abi.read_manifest(b"\0asm\x01\0\0\0" + sections)


@pytest.mark.parametrize(("wasm", "error"), [
    (b"\0asm\x02\0\0\0", "not a wasm module"),
    (b"\0asm\x01\0\0\0\x01\x05\0", "section runs past the end"),
    (b"\0asm\x01\0\0\0\0\x02\x05a", "custom section name"),
    (b"\0asm\x01\0\0\0\x01\xff\xff\xff\xff\xff\xff", "bad LEB128"),
])
def test_malformed_binaries(wasm, error):
    with pytest.raises(PluginError, match=error):
        abi.custom_sections(wasm)


@pytest.mark.parametrize(("ptr", "length", "ok"), [
    (0, 0, True), (65536, 0, True), (65535, 1, True), (65535, 2, False), (65537, 0, False),
    (-1, 1, False), (-16, 16, False), (0, -1, False), (0, 65536, True),
])
def test_guest_span_bounds(ptr, length, ok):
    if ok:
        assert abi.guest_span(ptr, length, 65536) == (ptr, ptr + length)
    else:
        with pytest.raises(PluginError, match="is outside the plugin's 65536-byte memory"):
            abi.guest_span(ptr, length, 65536)


# -- limits -------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    (None, Limits(256 << 20, 30.0)),
    ({"max_memory": 1 << 20}, Limits(1 << 20, 30.0)),
    ({"max_memory": "64MB", "timeout_seconds": 2}, Limits(64 << 20, 2.0)),
    ({"max_memory": "64mb"}, Limits(64 << 20, 30.0)),
    ({"max_memory": "1GiB"}, Limits(1 << 30, 30.0)),
    ({"max_memory": "512k", "timeout_seconds": 0.25}, Limits(512 << 10, 0.25)),
    ({"max_memory": "4gb"}, Limits(4 << 30, 30.0)),
    ({"max_output_bytes_per_batch": "1MB"}, Limits(256 << 20, 30.0, 1 << 20)),
    ({"max_output_bytes_per_batch": 65536}, Limits(256 << 20, 30.0, 65536)),
])
def test_limits_parse(raw, expected):
    assert Limits.parse(raw, "p") == expected


def test_limits_default_output_cap_is_64mb():
    assert Limits().max_output_bytes_per_batch == 64 << 20
    assert Limits.parse(None, "p").max_output_bytes_per_batch == 64 << 20


def test_limits_from_a_typed_model():
    class Model(pydantic.BaseModel):   # what the config package hands over
        max_memory: int = 1 << 20
        timeout_seconds: float = 2.0
        max_output_bytes_per_batch: int = 8 << 20

    assert Limits.parse(Model(), "p") == Limits(1 << 20, 2.0, 8 << 20)


@pytest.mark.parametrize("value", [0, -1, 4096, "lots", True])
def test_limits_reject_bad_output_caps(value):
    # the rules of the pipeline's transforms[].limits (config.transforms.PluginLimits)
    with pytest.raises(ConfigError, match=r"^plugin 'p': limits.max_output_bytes_per_batch: "
                                          r"must be (at least 64kb|a size)"):
        Limits.parse({"max_output_bytes_per_batch": value}, "p")


def test_limits_errors_name_the_plugin():
    with pytest.raises(ConfigError) as info:
        Limits.parse({"max_memory": "lots", "timeout_seconds": 0, "cpu": 1}, "transform-mask")
    assert info.value.problems == [
        "plugin 'transform-mask': limits.cpu: unknown key",
        "plugin 'transform-mask': limits.max_memory: must be a size: bytes, or a number with "
        "b, kb, mb, gb or tb (e.g. 512kb, 64mb, 1.5gb) (got 'lots')",
        "plugin 'transform-mask': limits.timeout_seconds: must be > 0 (got 0)",
    ]


@pytest.mark.parametrize("value", [True, 1000, "5GB", "1.5.2MB", 2.5])
def test_limits_reject_bad_sizes(value):
    with pytest.raises(ConfigError, match="limits.max_memory"):
        Limits.parse({"max_memory": value}, "p")


# -- engine and protocol --------------------------------------------------------------------

def test_one_engine_with_a_running_epoch_ticker():
    assert host.engine() is host.engine()
    assert any(t.name == "rapidbyte-wasm-epoch" and t.daemon for t in threading.enumerate())


def test_engine_settings_name_version_and_options():
    settings = host.engine_settings()
    assert '"epoch_interruption": true' in settings
    assert f'"wasmtime": "{importlib.metadata.version("wasmtime")}"' in settings


def _messages(batch: pa.RecordBatch) -> list[pa.Buffer]:
    return [batch.schema.serialize(), batch.serialize(), batch.slice(1).serialize()]


def test_grow_and_retry_and_end_of_stream(tmp_path):
    batch = pa.record_batch({"a": [1, 2, 3], "s": ["x", None, "zz"]})
    messages = _messages(batch)
    feed = iter(messages)
    emitted = []
    instance = Plugin.load(wat_plugin(tmp_path, pages=16, run=ECHO)).instantiate(
        Limits(), lambda: next(feed, None), emitted.append)
    instance.init({"anything": [1, "two"]})
    instance.run()
    assert [e.to_pybytes() for e in emitted] == [m.to_pybytes() for m in messages]


@pytest.mark.parametrize("batch", [
    pa.record_batch({"a": [1, 2, 3], "s": ["x", None, "zz"]}),
    pa.record_batch({"d": pa.array(["p", "q", "p"]).dictionary_encode(), "n": [1.5, None, 2.0]}),
    pa.record_batch({"l": pa.array([[1], None, [2, 3]])}).slice(1),
])
def test_record_batches_are_written_into_guest_memory_as_ipc(tmp_path, batch):
    feed = iter([batch.schema.serialize(), batch, batch])
    emitted = []
    instance = Plugin.load(wat_plugin(tmp_path, pages=16, run=ECHO)).instantiate(
        Limits(), lambda: next(feed, None), emitted.append)
    instance.run()
    assert [e.to_pybytes() for e in emitted] == [batch.schema.serialize().to_pybytes()] + \
        [batch.serialize().to_pybytes()] * 2


def test_config_reaches_rb_init_as_json(tmp_path):
    # rb_init reports the config it got back through set_error, then fails.
    path = wat_plugin(tmp_path, init="(call $set_error (local.get 0) (local.get 1)) (i32.const 1)")
    instance = Plugin.load(path).instantiate(Limits(), lambda: None, lambda b: None)
    with pytest.raises(PluginError) as info:
        instance.init({"column": "amount", "op": ">=", "value": 5000})
    assert str(info.value) == ('plugin \'hostile\' failed in rb_init: {"column": "amount", '
                               '"op": ">=", "value": 5000}')


def test_guest_logs_go_to_python_logging(tmp_path, caplog):
    text = "halfway through ünïcode"
    data = text.encode()
    path = wat_plugin(tmp_path, data=data, run=f"""
        (call $log (i32.const 1) (i32.const 0) (i32.const {len(data)}))
        (call $log (i32.const 4) (i32.const 0) (i32.const 7))
        (call $log (i32.const 99) (i32.const 0) (i32.const 4)) (i32.const 0)""")
    with caplog.at_level(logging.DEBUG, logger="rapidbyte_fast.plugins.hostile"):
        Plugin.load(path).instantiate(Limits(), lambda: None, lambda b: None).run()
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("rapidbyte_fast.plugins.hostile", logging.WARNING, text),
        ("rapidbyte_fast.plugins.hostile", logging.DEBUG, "halfway"),
        ("rapidbyte_fast.plugins.hostile", logging.INFO, "half"),
    ]


def test_wasi_is_empty(tmp_path):
    # environ_sizes_get and args_sizes_get report zero entries and fd 3 (the first preopen
    # slot) does not exist (errno 8, badf); rb_run hands the three results back as its error.
    path = wat_plugin(tmp_path, imports="""
        (import "wasi_snapshot_preview1" "environ_sizes_get"
                (func $env (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "fd_prestat_get"
                (func $pre (param i32 i32) (result i32)))""",
        run="""
        (i32.store (i32.const 100) (i32.const 77))
        (i32.store (i32.const 108) (i32.const 77))
        (drop (call $env (i32.const 100) (i32.const 104)))
        (drop (call $args (i32.const 108) (i32.const 112)))
        (i32.store8 (i32.const 96) (i32.load (i32.const 100)))
        (i32.store8 (i32.const 97) (i32.load (i32.const 108)))
        (i32.store8 (i32.const 98) (call $pre (i32.const 3) (i32.const 120)))
        (call $set_error (i32.const 96) (i32.const 3))
        (i32.const 1)""")
    with pytest.raises(PluginError) as info:
        Plugin.load(path).instantiate(Limits(), lambda: None, lambda b: None).run()
    assert str(info.value) == "plugin 'hostile' failed in rb_run: \x00\x00\x08"


# -- discovery --------------------------------------------------------------------------------

def test_bundled_plugins_are_found_by_name():
    assert discovery.resolve("transform-filter") == DIST / "transform-filter.wasm"
    assert discovery.plugin_dirs()[-1] == DIST


def test_plugin_path_comes_first(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    wat_plugin(second, "transform-filter")
    monkeypatch.setenv("RAPIDBYTE_PLUGIN_PATH", f"{first}{os.pathsep}{second}")
    assert discovery.resolve("transform-filter") == second / "transform-filter.wasm"
    user = tmp_path / "data" / "rapidbyte-fast" / "plugins"
    user.mkdir(parents=True)
    wat_plugin(user, "mine")
    assert discovery.resolve("mine") == user / "mine.wasm"
    assert discovery.plugin_dirs() == [first, second, user, DIST]


def test_unknown_plugin_names_the_search_path(tmp_path):
    with pytest.raises(ConfigError) as info:
        discovery.resolve("transform-nope")
    message = str(info.value)
    assert message.startswith(
        "plugin 'transform-nope' not found: looked for transform-nope.wasm in ")
    assert str(DIST) in message and str(tmp_path / "data" / "rapidbyte-fast" / "plugins") in message


def test_paths_are_used_as_given(tmp_path):
    path = wat_plugin(tmp_path, "local")
    assert discovery.resolve(str(path)) == path
    with pytest.raises(ConfigError, match="plugin file 'nowhere/x.wasm' does not exist"):
        discovery.resolve("nowhere/x.wasm")


def test_list_plugins(tmp_path, monkeypatch):
    extra = tmp_path / "extra"
    extra.mkdir()
    wat_plugin(extra, "transform-mask")
    (extra / "broken.wasm").write_bytes(b"not wasm")
    monkeypatch.setenv("RAPIDBYTE_PLUGIN_PATH", str(extra))
    listed = discovery.list_plugins()
    assert listed == [
        {"name": "broken", "path": str(extra / "broken.wasm"), "shadowed": False,
         "error": "not a wasm module (bad magic or version)"},
        {"name": "transform-mask", "path": str(extra / "transform-mask.wasm"), "shadowed": False,
         "version": "0.0.1", "kind": "transform", "description": "", "config_schema": {}},
        {"name": "transform-filter", "path": str(DIST / "transform-filter.wasm"), "shadowed": False,
         **{k: FILTER_MANIFEST[k] for k in ("version", "kind", "description", "config_schema")}},
        {"name": "transform-mask", "path": str(DIST / "transform-mask.wasm"), "shadowed": True,
         **{k: MASK_MANIFEST[k] for k in ("version", "kind", "description", "config_schema")}},
    ]


# -- reproducible build -------------------------------------------------------------------------

def _load_build_script():
    spec = importlib.util.spec_from_file_location("connectors_build",
                                                  REPO / "connectors" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_script_covers_every_committed_plugin():
    build = _load_build_script()
    assert build.plugin_sources() == {"transform-filter": ["transform-filter/filter.c"],
                                      "transform-mask": ["transform-mask/mask.c"]}
    assert sorted(p.name for p in DIST.glob("*.wasm")) == ["transform-filter.wasm",
                                                           "transform-mask.wasm"]


def test_rebuild_is_bit_identical(tmp_path):
    build = _load_build_script()
    found = build.zig_version()
    if found != build.ZIG_VERSION:
        pytest.skip(f"bit-identical rebuild needs ziglang=={build.ZIG_VERSION} "
                    f"(found {found or 'none'}): pip install ziglang=={build.ZIG_VERSION}")
    for path in build.build(tmp_path / "out"):
        assert path.read_bytes() == (DIST / path.name).read_bytes(), path.name


def test_wasm_structure_is_what_the_sdk_writes():
    # Only the manifest survives as a custom section: no debug info, names or build paths.
    for name in ("transform-filter", "transform-mask"):
        wasm = (DIST / f"{name}.wasm").read_bytes()
        assert [n for n, _ in abi.custom_sections(wasm)] == ["rapidbyte.manifest"]
        assert b"/work/" not in wasm and b"/tmp/" not in wasm
        assert struct.unpack("<I", wasm[4:8]) == (1,)
