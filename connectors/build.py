"""Builds the WASM plugins in connectors/ into connectors/dist/, reproducibly.

Every subdirectory holding .c files (other than sdk/ and dist/) is one plugin, built as
``dist/<directory>.wasm`` by ``zig cc`` from the ``ziglang`` wheel (PyPI), so no system
toolchain is needed: ``pip install ziglang==0.17.1``. Reproducible: a pinned compiler,
fixed flags, relative source paths, no debug info, no build id and every custom section
except the manifest stripped, so a rebuild gives the same bytes.

    python connectors/build.py              # rebuild connectors/dist/*.wasm
    python connectors/build.py --out DIR    # build elsewhere (the rebuild test does this)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ZIG_VERSION = "0.17.1"
CONNECTORS = Path(__file__).resolve().parent
CFLAGS = (
    "-target", "wasm32-freestanding", "-mcpu=generic", "-mbulk-memory", "-msimd128",
    "-std=c11", "-O2", "-g0", "-ffreestanding", "-nostdlib", "-fno-ident",
    "-Wall", "-Wextra", "-Werror",
    f"-ffile-prefix-map={CONNECTORS}=.",
)
LDFLAGS = (
    "-Wl,--no-entry", "-Wl,--strip-all", "-Wl,--build-id=none", "-Wl,-z,stack-size=65536",
)


def zig_version() -> str | None:
    """Version of the ``ziglang`` wheel's compiler, or None when it is not installed."""
    try:
        done = subprocess.run([sys.executable, "-m", "ziglang", "version"],
                              capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def plugin_sources() -> dict[str, list[str]]:
    """Plugin name -> its .c files, relative to connectors/ (sorted, so builds are stable)."""
    return {
        d.name: sorted(str(c.relative_to(CONNECTORS)) for c in d.glob("*.c"))
        for d in sorted(CONNECTORS.iterdir())
        if d.is_dir() and d.name not in ("sdk", "dist") and any(d.glob("*.c"))
    }


def build(out_dir: Path) -> list[Path]:
    """Compiles every plugin into ``out_dir``; returns the .wasm paths."""
    found = zig_version()
    if found != ZIG_VERSION:
        raise SystemExit(f"connectors/build.py needs ziglang=={ZIG_VERSION} (found "
                         f"{found or 'none'}): pip install ziglang=={ZIG_VERSION}")
    out_dir.mkdir(parents=True, exist_ok=True)
    built = []
    for name, sources in plugin_sources().items():
        target = out_dir.resolve() / f"{name}.wasm"
        subprocess.run(
            [sys.executable, "-m", "ziglang", "cc", *CFLAGS, *sources, *LDFLAGS, "-o", str(target)],
            # no timestamps should reach the output, and a pinned epoch keeps it so if one does
            cwd=CONNECTORS, check=True, env={**os.environ, "SOURCE_DATE_EPOCH": "0"},
        )
        built.append(target)
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CONNECTORS / "dist")
    for path in build(parser.parse_args().out):
        print(f"built {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
