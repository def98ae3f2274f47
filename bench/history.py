"""The results history: one JSON line per measured iteration in ``results.jsonl``, each
carrying the scenario, the tool's whole @@BENCH_JSON@@ (under ``result``), the harness's
own wall time, the verified checksum, and the git, version and machine context.
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterable

from .micro.harness import environment
from .scenarios import Scenario

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_RESULTS = RESULTS_DIR / "results.jsonl"


def _git(root: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                             check=False)
    except OSError:
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def git_info(root: Path) -> dict[str, Any]:
    """sha, branch and whether the work tree has uncommitted changes (untracked files
    included: a new module changes what runs)."""
    return {
        "git_sha": _git(root, "rev-parse", "HEAD") or "unknown",
        "git_branch": _git(root, "rev-parse", "--abbrev-ref", "HEAD") or "unknown",
        "git_dirty": bool(_git(root, "status", "--porcelain")),
    }


def _memory_gb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**30, 1) if pages else 0.0


def context() -> dict[str, Any]:
    """Versions (of the interpreter that runs the tool) and machine, once per invocation."""
    env = environment(impl="")
    return {
        "versions": {"python": env["python"], **env["versions"]},
        "machine": {"cpu": env["cpu"], "cores": env["cores"], "memory_gb": _memory_gb()},
    }


def make_record(*, run_id: str, command: str, scenario: Scenario, rows: int, iteration: int,
                wall_secs: float, result: dict[str, Any], verified: dict[str, int],
                git: dict[str, Any], ctx: dict[str, Any], ref: str | None = None) -> dict:
    """One history line. ``run_id`` groups the iterations of one invocation."""
    return {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "run_id": run_id,
        "command": command,
        "ref": ref,
        **git,
        "scenario": scenario.name,
        "dataset": scenario.dataset,
        "mode": scenario.mode,
        "compression": scenario.compression,
        "parallelism": scenario.parallelism,
        "transform": scenario.transform,
        "aot": scenario.aot,
        "rows": rows,
        "iteration": iteration,
        "wall_secs": round(wall_secs, 6),
        "impl": result.get("impl", ""),
        "verified": verified,
        "result": result,
        **ctx,
    }


def append(path: Path, records: Iterable[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, separators=(",", ":"), sort_keys=False) + "\n")


def load(path: Path) -> list[dict]:
    """Every record of ``path`` in file order; blank lines are ignored."""
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
