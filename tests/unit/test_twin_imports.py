"""The compiled build never imports the pure-Python twins (rapidbyte_fast._py).

Each twin must stand on its own: helpers both implementations share live in modules that
are not twins, so a compiled run never executes a twin's code by accident. Checked in a
fresh interpreter with RAPIDBYTE_IMPL=c, after importing every module of the package (the
compiled kernels, the engine, connectors, transforms, error reporting).
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rapidbyte_fast._impl import twins

_PROBE = """
import importlib, pkgutil, sys
import rapidbyte_fast
from rapidbyte_fast import _impl
assert _impl.IMPL == "c", _impl.IMPL
def walk(package):  # pkgutil.walk_packages would import rapidbyte_fast._py to list it
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.name.endswith(("._py", ".__main__")):
            continue
        module = importlib.import_module(info.name)
        if info.ispkg:
            walk(module)
walk(rapidbyte_fast)
print(sorted(m for m in sys.modules if m.startswith("rapidbyte_fast._py")))
"""


@pytest.mark.skipif("c" not in twins("copy_decode"), reason="compiled kernels not built")
def test_compiled_build_never_imports_the_python_twins():
    env = {**os.environ, "RAPIDBYTE_IMPL": "c"}
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"
