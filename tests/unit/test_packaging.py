"""setup.py and MANIFEST.in on a miniature project (one tiny kernel, one fake plugin): the
sdist carries the Cython, SDK and plugin sources and builds, a build bundles the plugins as
package data, and a missing kernel source, a kernel that does not compile or missing plugin
builds fail the build instead of installing without them. (.ci/run builds and installs the
real sdist and wheel.)"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("Cython")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("setup.py", "MANIFEST.in", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    files = {
        "rapidbyte_fast/__init__.py": "",
        "rapidbyte_fast/_impl.py": 'STEMS = ("k",)\n',
        "rapidbyte_fast/_native/__init__.py": "",
        "rapidbyte_fast/plugins/__init__.py": "",
        "ext/k.pyx": "from helpers cimport one\ninclude 'kinds.pxi'\n\n"
                     "def f():\n    return one() + TWO\n",
        "ext/helpers.pxd": "cdef inline int one():\n    return 1\n",
        "ext/kinds.pxi": "TWO = 2\n",
        "connectors/build.py": "",
        "connectors/sdk/rb_plugin.h": "/* sdk */\n",
        "connectors/plug/plug.c": "int x;\n",
        "connectors/dist/plug.wasm": "\0asm",
        "examples/quickstart.yaml": "version: '1.0'\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def _setup(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "setup.py", *args], cwd=project, capture_output=True,
                          text=True, timeout=300)


def test_sdist_carries_kernel_sdk_and_plugin_sources(project):
    done = _setup(project, "-q", "sdist", "-d", "out")
    assert done.returncode == 0, done.stderr
    with tarfile.open(next((project / "out").glob("*.tar.gz"))) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"ext/k.pyx", "ext/helpers.pxd", "ext/kinds.pxi", "connectors/build.py",
            "connectors/sdk/rb_plugin.h", "connectors/plug/plug.c",
            "connectors/dist/plug.wasm", "examples/quickstart.yaml", "setup.py"} <= names
    assert "ext/k.c" not in names  # generated: rebuilt from the .pyx


def test_build_compiles_kernels_and_bundles_plugins(project):
    done = _setup(project, "-q", "build", "--build-lib", "lib")
    assert done.returncode == 0, done.stderr
    lib = project / "lib" / "rapidbyte_fast"
    assert (lib / "plugins" / "bundled" / "plug.wasm").read_bytes() == b"\0asm"
    assert [p.name.split(".")[0] for p in (lib / "_native").glob("*.so")] == ["k"]


def test_missing_kernel_source_fails(project):
    (project / "ext" / "k.pyx").unlink()
    done = _setup(project, "--name")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "rapidbyte-fast build: kernel sources missing: ext/k.pyx (an sdist must carry "
        "ext/*.pyx, *.pxd and *.pxi: see MANIFEST.in)")


def test_kernel_that_does_not_compile_fails(project):
    (project / "ext" / "k.pyx").write_text(
        'cdef extern from *:\n    """\n    #error deliberately broken\n    """\n')
    done = _setup(project, "build_ext", "--build-lib", "lib")
    assert done.returncode != 0
    assert "deliberately broken" in done.stdout + done.stderr
    assert not list((project / "lib").rglob("*.so"))


def test_missing_plugin_builds_fail(project):
    shutil.rmtree(project / "connectors" / "dist")
    done = _setup(project, "build_py", "--build-lib", "lib")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "rapidbyte-fast build: no WASM plugin builds in connectors/dist/ to bundle (build them "
        "with `python connectors/build.py`)")
