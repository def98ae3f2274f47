"""Timing and reporting shared by the kernel micro-benchmarks.

Each kernel module in this package exposes ``run(rows: int) -> list[dict]`` returning one
result per case × implementation, built with ``measure``.
"""
from __future__ import annotations

import os
import platform
import subprocess
import time
from typing import Callable


def measure(
    kernel: str, case: str, impl: str, fn: Callable[[], object], rows: int, nbytes: int,
    min_secs: float = 0.4, max_repeats: int = 50,
) -> dict:
    """Best-of-N wall time of ``fn`` (one call processes ``rows`` rows / ``nbytes`` bytes)."""
    fn()  # warm-up: first-touch page faults and lazy imports are not the kernel's cost
    best = float("inf")
    spent = 0.0
    reps = 0
    while reps < 3 or (spent < min_secs and reps < max_repeats):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best = min(best, dt)
        spent += dt
        reps += 1
    return {
        "kernel": kernel, "case": case, "impl": impl,
        "rows_per_s": rows / best, "mb_per_s": nbytes / best / 1e6,
        "secs": best, "rows": rows, "bytes": nbytes,
    }


def environment(impl: str) -> dict:
    """The environment header written with --json results."""
    import numpy
    import psycopg
    import pyarrow

    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False,
        ).stdout.strip()
    except OSError:
        sha = ""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {"pyarrow": pyarrow.__version__, "numpy": numpy.__version__,
                "psycopg": psycopg.__version__}
    for mod in ("zstandard", "lz4", "Cython"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return {
        "git_sha": sha, "impl": impl, "python": platform.python_version(),
        "versions": versions, "cpu": cpu, "cores": os.cpu_count(),
    }
