"""The declared dependency ranges allow only versions that have what the code calls."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement  # a dependency of pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _requirement(name: str) -> Requirement:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    found = [Requirement(d) for d in deps if re.match(rf"{name}\b", d)]
    assert len(found) == 1, deps
    return found[0]


def test_psycopg_has_cancel_safe():
    # sources/postgres.py calls Connection.cancel_safe, new in psycopg 3.2
    spec = _requirement("psycopg").specifier
    assert not spec.contains("3.1.20") and spec.contains("3.2.0")
