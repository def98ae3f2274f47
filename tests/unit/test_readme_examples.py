"""The pipeline examples in README.md load as they are written."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from rapidbyte_fast.config import load_config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_http_example_loads():
    text = README.read_text()
    section = text[text.index("### HTTP APIs"):text.index("## Types")]
    (block,) = re.findall(r"```yaml\n(.*?)```", section, re.S)
    cfg = load_config(yaml.safe_load(block), env={"API_TOKEN": "t", "DST_URL": "postgresql://h/d"})
    stream = cfg.source.streams[0]
    assert (cfg.source.use, stream.name, stream.pagination.type) == ("http", "orders",
                                                                     "page_number")
    assert [t.use for t in cfg.transforms] == ["sql"]
