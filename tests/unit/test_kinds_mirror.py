"""The C kind enum (ext/kinds.pxi, exposed as KINDS by each compiled encoder) mirrors Kind."""
from __future__ import annotations

import importlib

import pytest

from rapidbyte_fast.column_plan import Kind


@pytest.mark.parametrize("stem", ["copy_encode", "insert_sql", "array_params"])
def test_compiled_kinds_mirror_the_enum(stem: str) -> None:
    try:
        mod = importlib.import_module(f"rapidbyte_fast._native.{stem}")
    except ImportError:
        pytest.skip(f"compiled {stem} not built")
    assert mod.KINDS == {k.name: k.value for k in Kind}
