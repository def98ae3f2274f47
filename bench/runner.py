"""Running the tool: one ``python -m rapidbyte_fast run -q`` process per measurement, timed
from process start to exit (interpreter start included, as a user sees it), its
@@BENCH_JSON@@ line parsed, and the destination verified before a number is kept.

The pipeline file names the database as ``${RAPIDBYTE_BENCH_URL}`` and the DSN travels in
the environment, so no password is written to disk.
"""
from __future__ import annotations

import compileall

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from rapidbyte_fast.result import BENCH_PREFIX

from . import datasets
from .database import Checkpointer
from .scenarios import FILTERING, Scenario

#: The tree whose rapidbyte_fast the harness runs unless told otherwise (compare runs others).
TOOL_ROOT = Path(__file__).resolve().parents[1]


def byte_compile(root: Path) -> None:
    """Byte-compile the package under ``root``, as a pip install does: under
    PYTHONDONTWRITEBYTECODE an editable checkout would compile every module in every timed
    run (0.3-0.4 s of CPU, bench http), a cost installed peers do not pay."""
    compileall.compile_dir(root / "rapidbyte_fast", quiet=1)
URL_ENV = "RAPIDBYTE_BENCH_URL"
URL_REF = "${" + URL_ENV + "}"


@dataclass
class Setup:
    """Where to benchmark: the database, the schema prefix (``<prefix>_src`` holds the seeded
    tables, ``<prefix>_dst`` the copies), and the source tree whose tool runs."""

    dsn: str
    prefix: str = "bench"
    root: Path = TOOL_ROOT
    checkpoint: Checkpointer = field(init=False)

    def __post_init__(self) -> None:
        self.checkpoint = Checkpointer(self.dsn)

    @property
    def source_schema(self) -> str:
        return f"{self.prefix}_src"

    @property
    def dest_schema(self) -> str:
        return f"{self.prefix}_dst"


@dataclass
class ToolRun:
    """What one tool process did."""

    wall_secs: float
    returncode: int
    result: dict[str, Any] | None
    stderr: str

    def reason(self) -> str:
        """The tool's last error lines, for messages."""
        lines = [ln for ln in self.stderr.strip().splitlines() if ln.strip()]
        return " | ".join(lines[-3:]) or f"exit code {self.returncode}, no message"


@dataclass
class Outcome:
    """One iteration of one scenario: a verified measurement, or why there is none."""

    scenario: Scenario
    iteration: int
    wall_secs: float = 0.0
    result: dict[str, Any] | None = None
    verified: dict[str, int] | None = None
    skipped: str | None = None


def run_tool(pipeline: dict[str, Any], setup: Setup, env: dict[str, str] | None = None,
             prefix: Sequence[str] = (), args: Sequence[str] = ()) -> ToolRun:
    """Run one pipeline; ``prefix`` wraps the command (e.g. a profiler), ``args`` follow
    it (e.g. ``--executor``)."""
    with tempfile.TemporaryDirectory(prefix="rbf-bench-") as tmp:
        path = Path(tmp) / "pipeline.yaml"
        path.write_text(yaml.safe_dump(pipeline, sort_keys=False))
        proc_env = {**os.environ, **(env or {}), URL_ENV: setup.dsn,
                    "PYTHONPATH": os.pathsep.join(
                        [str(setup.root), *filter(None, [os.environ.get("PYTHONPATH")])])}
        cmd = [*prefix, sys.executable, "-m", "rapidbyte_fast", "run", "-q", str(path), *args]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=setup.root, env=proc_env, capture_output=True,
                              text=True, check=False)
        wall = time.perf_counter() - t0
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(BENCH_PREFIX):
            result = json.loads(line[len(BENCH_PREFIX):])
    return ToolRun(wall, proc.returncode, result, proc.stderr)


def ensure_seeded(setup: Setup, dataset: str, rows: int) -> None:
    """Make ``source_schema.<dataset>`` hold exactly ``rows`` generated rows, through our
    own generate source; a table that already checks out is reused."""
    if datasets.source_is_seeded(setup.dsn, dataset, rows, setup.source_schema):
        return
    print(f"seeding {setup.source_schema}.{dataset} with {rows:,} rows ...", file=sys.stderr,
          flush=True)
    run = run_tool(datasets.seed_pipeline(dataset, rows, URL_REF, setup.source_schema), setup)
    if run.returncode != 0:
        raise RuntimeError(f"seeding {dataset} failed: {run.reason()}")
    datasets.verify(setup.dsn, dataset, setup.source_schema, dataset,
                    datasets.expected(dataset, rows))
    print(f"seeded {dataset} in {run.wall_secs:.1f}s", file=sys.stderr, flush=True)


def run_scenario(setup: Setup, scenario: Scenario, rows: int, iteration: int,
                 prefix: Sequence[str] = ()) -> Outcome:
    """Time one iteration and verify the destination. A feature-gated scenario whose
    configuration the tool rejects (exit code 2) is skipped; any other failure, or a
    destination that does not check out, raises ``RuntimeError``."""
    setup.checkpoint()
    pipeline = scenario.pipeline(URL_REF, setup.source_schema, setup.dest_schema)
    run = run_tool(pipeline, setup, scenario.env(), prefix, scenario.tool_args())
    if run.returncode == 2 and scenario.feature_gated:
        return Outcome(scenario, iteration, skipped=f"the tool rejects it: {run.reason()}")
    if run.returncode != 0:
        raise RuntimeError(f"{scenario.name}: the tool failed: {run.reason()}")
    if run.result is None:
        raise RuntimeError(f"{scenario.name}: no {BENCH_PREFIX} line in the tool's output")
    want = datasets.expected(scenario.dataset, rows, scenario.transform in FILTERING)
    got = datasets.verify(setup.dsn, scenario.dataset, setup.dest_schema, scenario.dataset, want)
    if run.result.get("records_written") != want.count:
        raise RuntimeError(f"{scenario.name}: the tool reports {run.result.get('records_written')}"
                           f" rows written, the table holds {want.count}")
    return Outcome(scenario, iteration, run.wall_secs, run.result, got.as_dict())
