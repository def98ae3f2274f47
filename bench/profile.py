"""``--profile``: one extra iteration of a scenario under ``py-spy record --native``, written
as a flamegraph SVG. Its timing is not recorded (the sampler slows the run)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .runner import Setup, run_scenario
from .scenarios import Scenario


def _py_spy() -> str | None:
    found = shutil.which("py-spy") or Path(sys.executable).with_name("py-spy")
    return str(found) if Path(found).exists() else None


def profile(setup: Setup, scenario: Scenario, rows: int, out_dir: Path) -> str:
    """Write ``out_dir/profile-<scenario>.svg``; return a one-line message saying where,
    or why there is no flamegraph."""
    spy = _py_spy()
    if spy is None:
        return "no flamegraph: py-spy is not installed (pip install py-spy, or the bench extra)"
    out_dir.mkdir(parents=True, exist_ok=True)
    svg = out_dir / f"profile-{scenario.name}.svg"
    svg.unlink(missing_ok=True)
    # --subprocesses follows shard processes, should the engine fork them.
    prefix = [spy, "record", "--native", "--subprocesses", "--format", "flamegraph",
              "-o", str(svg), "--"]
    try:
        outcome = run_scenario(setup, scenario, rows, iteration=0, prefix=prefix)
    except RuntimeError as exc:
        text = str(exc)
        if "Permission denied" in text or "ptrace" in text.lower():
            return (f"no flamegraph: py-spy cannot attach to the tool's process ({text}); it "
                    "needs ptrace rights (root, CAP_SYS_PTRACE or kernel.yama.ptrace_scope=0)")
        return f"no flamegraph: the profiled run failed: {text}"
    if outcome.skipped:
        return f"no flamegraph: skipped, {outcome.skipped}"
    if not svg.exists():
        return "no flamegraph: py-spy exited without writing one"
    return f"flamegraph: {svg}"

