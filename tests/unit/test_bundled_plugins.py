"""Where the built-in plugins are found: the copy an installed package carries
(rapidbyte_fast/plugins/bundled/, written by setup.py), else a checkout's connectors/dist."""
from __future__ import annotations

import shutil
from pathlib import Path

from rapidbyte_fast.plugins import discovery

DIST = Path(__file__).resolve().parents[2] / "connectors" / "dist"


def test_checkout_builds_when_not_installed():
    assert not discovery.PACKAGED_DIR.exists()  # an editable install has no copy
    assert discovery.bundled_dir() == DIST == discovery.CHECKOUT_DIR


def test_installed_copy_wins(tmp_path, monkeypatch):
    packaged = tmp_path / "site-packages" / "rapidbyte_fast" / "plugins" / "bundled"
    packaged.mkdir(parents=True)
    shutil.copy(DIST / "transform-filter.wasm", packaged)
    monkeypatch.setattr(discovery, "PACKAGED_DIR", packaged)
    monkeypatch.setattr(discovery, "CHECKOUT_DIR", tmp_path / "no-checkout")
    assert discovery.plugin_dirs()[-1] == packaged
    assert discovery.resolve("transform-filter") == packaged / "transform-filter.wasm"
    listed = [(p["name"], p["path"], p["kind"]) for p in discovery.list_plugins()]
    assert listed == [("transform-filter", str(packaged / "transform-filter.wasm"), "transform")]
