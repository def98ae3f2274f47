"""python -m bench resume: what resumable full refresh costs and what it saves.

Per iteration, on the seeded bench_events table (passthrough replace with a primary key):

  one-piece   checkpoint_interval_bytes: 0, a single COPY (what a non-resumable load does)
  ranged      checkpoint_interval_bytes: 64mb (below the 256 MB default, so that the 1M-row
              table is cut): key ranges, each committed with a mark
  crash       ranged, SIGKILLed (RAPIDBYTE_FAULTS) right after half of its ranges commit
  resumed     the next run after that crash: it loads only the ranges not yet committed

Without resume, the run after a crash is a one-piece load from zero, so ``resumed`` against
``one-piece`` is the time a crash no longer costs. Every finished run is verified.
"""
from __future__ import annotations

import statistics
import sys
from typing import Any

from . import datasets
from .runner import URL_REF, Setup, ToolRun, run_tool

SCENARIOS = ("one-piece", "ranged", "crash", "resumed")


def _pipeline(setup: Setup, interval: str) -> dict[str, Any]:
    return {
        "version": "1.0", "pipeline": "bench-resume",
        "source": {"use": "postgres", "config": {"url": URL_REF, "schema": setup.source_schema},
                   "streams": [{"name": "bench_events"}]},
        "destination": {"use": "postgres", "write_mode": "replace", "primary_key": ["id"],
                        "config": {"url": URL_REF, "schema": setup.dest_schema}},
        "resources": {"checkpoint_interval_bytes": interval, "parallelism": 1},
    }


def _finished(run: ToolRun, name: str, setup: Setup, rows: int) -> dict[str, Any]:
    if run.returncode != 0 or run.result is None:
        raise RuntimeError(f"resume/{name}: the tool failed: {run.reason()}")
    datasets.verify(setup.dsn, "bench_events", setup.dest_schema, "bench_events",
                    datasets.expected("bench_events", rows))
    return run.result


def measure(setup: Setup, rows: int, iters: int) -> dict[str, list[float]]:
    """Wall seconds of each scenario per iteration (plus ranges and resumed rows)."""
    out: dict[str, list[float]] = {k: [] for k in (*SCENARIOS, "ranges", "resumed_rows")}
    for it in range(iters):
        setup.checkpoint()
        one = run_tool(_pipeline(setup, "0"), setup)
        _finished(one, "one-piece", setup, rows)
        setup.checkpoint()
        ranged = run_tool(_pipeline(setup, "64mb"), setup)
        checkpoints = _finished(ranged, "ranged", setup, rows)["checkpoints"]
        setup.checkpoint()
        half = max(1, checkpoints // 2)
        crash = run_tool(_pipeline(setup, "64mb"), setup,
                         env={"RAPIDBYTE_FAULTS": f"dest.range_committed#{half}=kill"})
        if crash.returncode != -9:
            raise RuntimeError(f"resume/crash: expected SIGKILL, got {crash.reason()}")
        resumed = run_tool(_pipeline(setup, "64mb"), setup)
        result = _finished(resumed, "resumed", setup, rows)
        for key, run in zip(SCENARIOS, (one, ranged, crash, resumed)):
            out[key].append(run.wall_secs)
        out["ranges"].append(checkpoints)
        out["resumed_rows"].append(result["resumed_rows"])
        print(f"  iter {it + 1}/{iters}: one-piece {one.wall_secs:.3f}s, ranged "
              f"{ranged.wall_secs:.3f}s ({checkpoints} ranges), crash after {half} "
              f"{crash.wall_secs:.3f}s, resumed {resumed.wall_secs:.3f}s "
              f"({result['resumed_rows']:,} rows kept)", file=sys.stderr, flush=True)
    return out


def table(out: dict[str, list[float]], rows: int) -> str:
    """Markdown: median wall time of each scenario and its ratio to one-piece."""
    base = statistics.median(out["one-piece"])
    lines = [f"resumable full refresh, {rows:,} bench_events rows, passthrough replace "
             f"({len(out['one-piece'])} iterations, median wall incl. interpreter start)", "",
             "| run | wall s | vs one-piece |", "|---|---:|---:|"]
    for key in SCENARIOS:
        med = statistics.median(out[key])
        lines.append(f"| {key} | {med:.3f} | {med / base:.2f}x |")
    lines.append("")
    lines.append(f"ranges per load: {int(statistics.median(out['ranges']))}; rows kept from "
                 f"the crashed run: {int(statistics.median(out['resumed_rows'])):,}")
    return "\n".join(lines)
