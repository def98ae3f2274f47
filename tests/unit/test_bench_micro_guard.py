"""`python -m bench.micro` refuses to time only the Python twins: run from a checkout whose
kernels are not built (as after a non-editable install), it exits 2 and says why."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("impl", ["", "c", "python"])
def test_refuses_without_compiled_kernels(tmp_path, impl):
    skip = shutil.ignore_patterns("*.so", "*.pyd", "__pycache__")
    for folder in ("rapidbyte_fast", "bench"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=skip)
    proc = subprocess.run([sys.executable, "-m", "bench.micro", "--only", "codec", "--rows", "10"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "RAPIDBYTE_IMPL": impl})
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == (
        "python -m bench.micro: the compiled kernels (codec) do not import from "
        f"{tmp_path / 'rapidbyte_fast'}, so only the Python twins would be timed. Build them "
        "there: `pip install -e .` (or `python setup.py build_ext --inplace`).\n")
