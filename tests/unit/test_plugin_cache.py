"""The AOT cache: keyed by wasm + engine settings, written atomically with a checksum,
recompiled and rewritten on any mismatch or corruption, and off with RAPIDBYTE_WASM_AOT=0."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import platformdirs
import pytest
import wasmtime

from rapidbyte_fast.plugins import cache, host
from rapidbyte_fast.transforms.wasm import WasmTransform

DIST = Path(__file__).resolve().parents[2] / "connectors" / "dist"
WASM = (DIST / "transform-mask.wasm").read_bytes()


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("RAPIDBYTE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("RAPIDBYTE_WASM_AOT", raising=False)
    return tmp_path / "wasm"


def entry(folder: Path) -> tuple[Path, Path]:
    key = cache.cache_key(WASM, host.engine_settings())
    return folder / f"{key}.cwasm", folder / f"{key}.json"


def load() -> tuple[wasmtime.Module, bool]:
    return cache.load_module(host.engine(), WASM, host.engine_settings())


def assert_entry_valid(folder: Path) -> None:
    artifact, sidecar = entry(folder)
    data = artifact.read_bytes()
    assert json.loads(sidecar.read_text()) == {
        "format": cache.FORMAT, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert sorted(p.name for p in folder.iterdir()) == sorted([artifact.name, sidecar.name])


def test_miss_writes_an_entry_then_hits(cache_root):
    module, hit = load()
    assert hit is False
    assert_entry_valid(cache_root)
    assert entry(cache_root)[0].read_bytes() == bytes(module.serialize())
    again, hit = load()
    assert hit is True
    assert [e.name for e in again.exports] == [e.name for e in module.exports]


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_corrupt_artifact_is_recompiled_and_rewritten(cache_root, damage, caplog):
    load()
    artifact, _ = entry(cache_root)
    good = artifact.read_bytes()
    bad = {"flip": good[:100] + bytes([good[100] ^ 0xFF]) + good[101:],
           "truncate": good[: len(good) // 2], "empty": b""}[damage]
    artifact.write_bytes(bad)
    with caplog.at_level(logging.INFO, logger="rapidbyte_fast.plugins.cache"):
        _, hit = load()
    assert hit is False
    assert "fails its checksum; recompiling" in caplog.text
    assert artifact.read_bytes() == good
    assert_entry_valid(cache_root)
    assert load()[1] is True


@pytest.mark.parametrize("sidecar_text", ["", "{not json", "[]", '{"size": 1, "sha256": "00"}'])
def test_bad_sidecar_is_recompiled_and_rewritten(cache_root, sidecar_text):
    load()
    entry(cache_root)[1].write_text(sidecar_text)
    assert load()[1] is False
    assert_entry_valid(cache_root)
    assert load()[1] is True


def test_missing_sidecar_is_a_miss(cache_root):
    load()
    entry(cache_root)[1].unlink()
    assert load()[1] is False
    assert_entry_valid(cache_root)


def test_matching_checksum_on_bytes_wasmtime_rejects(cache_root, caplog):
    # Not corruption but incompatibility (e.g. written by another wasmtime): the checksum
    # verifies, deserialize_file refuses, the module is recompiled.
    load()
    artifact, sidecar = entry(cache_root)
    junk = b"\x7fELF" + b"\0" * 4096
    artifact.write_bytes(junk)
    sidecar.write_text(json.dumps({"format": 1, "size": len(junk),
                                   "sha256": hashlib.sha256(junk).hexdigest()}))
    with caplog.at_level(logging.INFO, logger="rapidbyte_fast.plugins.cache"):
        assert load()[1] is False
    assert "wasmtime rejected AOT cache entry" in caplog.text
    assert_entry_valid(cache_root)


def test_key_covers_wasm_and_engine_settings():
    settings = host.engine_settings()
    key = cache.cache_key(WASM, settings)
    assert len(key) == 64
    assert cache.cache_key(WASM, settings) == key
    assert cache.cache_key(WASM + b"\0", settings) != key
    assert cache.cache_key(WASM, settings.replace("speed", "none")) != key


def test_other_engine_settings_get_their_own_entry(cache_root):
    load()
    module, hit = cache.load_module(host.engine(), WASM, host.engine_settings() + " ")
    assert hit is False
    assert len(list(cache_root.glob("*.cwasm"))) == 2


@pytest.mark.parametrize("value", ["0", "false", "OFF"])
def test_disabled_by_environment(cache_root, monkeypatch, value):
    monkeypatch.setenv("RAPIDBYTE_WASM_AOT", value)
    assert load()[1] is False
    assert load()[1] is False
    assert not cache_root.exists()


def test_unwritable_cache_still_loads(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("RAPIDBYTE_CACHE_DIR", str(blocker))
    with caplog.at_level(logging.WARNING, logger="rapidbyte_fast.plugins.cache"):
        module, hit = load()
    assert hit is False and [e.name for e in module.exports][0] == "memory"
    assert "could not write the AOT cache entry" in caplog.text


def test_default_location(monkeypatch):
    monkeypatch.delenv("RAPIDBYTE_CACHE_DIR", raising=False)
    assert cache.cache_dir() == Path(platformdirs.user_cache_dir("rapidbyte-fast")) / "wasm"


def test_transform_reports_load_time_and_cache_hit(cache_root):
    config = {"columns": ["email"], "mode": "hash"}
    first = WasmTransform("transform-mask", config)
    second = WasmTransform("transform-mask", config)
    assert (first.stats["aot_cache_hit"], second.stats["aot_cache_hit"]) == (0.0, 1.0)
    assert first.stats["plugin_load_ms"] > 0 and second.stats["plugin_load_ms"] > 0
