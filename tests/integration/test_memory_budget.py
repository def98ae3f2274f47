"""resources.max_memory holds: a load of wide rows (the ``large`` dataset, ~45 KB a row,
about three times the budget in all) runs in a child process whose peak RSS must stay under
its budget plus its baseline; the same load without a tight budget goes over that line, so
the bound is the budget's doing; and two streams run side by side share one budget."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

from rapidbyte_fast.result import BENCH_PREFIX

ROWS = 3000
BUDGET_MB = 64


def _load(pg_dsn: str, schema: str, max_memory: str, compression: str,
          streams: tuple[str, ...] = ("large",), rows: int = ROWS) -> tuple[dict, float]:
    """Run the load in a child; its @@BENCH_JSON@@ dict and its peak RSS in MiB as the
    kernel counts it for the child's own image (VmHWM: the wait4 peak would also count this
    pytest process, which the child is a copy of until exec). Several ``streams`` run side
    by side."""
    names = ", ".join(f"{{name: {s}}}" for s in streams)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "p.yaml")
        with open(path, "w") as f:
            f.write(textwrap.dedent(f"""\
                version: "1.0"
                pipeline: membudget
                source:
                  use: generate
                  config: {{rows: {rows}, dataset: large}}
                  streams: [{names}]
                destination:
                  use: postgres
                  config: {{url: "${{TEST_DSN}}", schema: {schema}}}
                  write_mode: replace
                resources: {{max_memory: {max_memory}, compression: {compression},
                             parallel_streams: {len(streams)}}}
                """))
        out_path = os.path.join(tmp, "out")
        with open(out_path, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "rapidbyte_fast", "run", "-q", path],
                                    stdout=out, stderr=subprocess.STDOUT,
                                    env={**os.environ, "TEST_DSN": pg_dsn})
            proc.wait()
        with open(out_path) as f:
            text = f.read()
    assert proc.returncode == 0, text
    line = next(ln for ln in text.splitlines() if ln.startswith(BENCH_PREFIX))
    bench = json.loads(line[len(BENCH_PREFIX):])
    return bench, bench["peak_rss_mb"]


def _check_rows(pg_conn, schema: str, table: str = "large", rows: int = ROWS) -> None:
    count, ids, body = pg_conn.execute(
        f'SELECT count(*), sum(id), sum(length(body_text)) FROM "{schema}"."{table}"').fetchone()
    assert (count, ids) == (rows, rows * (rows + 1) // 2)
    assert body > rows * 15_000  # the wide column arrived whole


@pytest.mark.skipif(sys.platform != "linux", reason="RSS accounting as on Linux")
@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_peak_rss_stays_under_budget_plus_baseline(pg_dsn, pg_conn, pg_schema, compression):
    bench, peak = _load(pg_dsn, pg_schema, f"{BUDGET_MB}mb", compression)
    _check_rows(pg_conn, pg_schema)
    assert bench["max_memory_mb"] == BUDGET_MB
    assert bench["memory_budget_source"] == "max_memory"
    baseline = bench["baseline_rss_mb"]
    assert 0 < baseline < peak
    assert peak <= baseline + BUDGET_MB, (peak, baseline)


@pytest.mark.skipif(sys.platform != "linux", reason="RSS accounting as on Linux")
def test_without_a_tight_budget_the_same_load_goes_over(pg_dsn, pg_conn, pg_schema):
    bench, peak = _load(pg_dsn, pg_schema, "4gb", "none")
    _check_rows(pg_conn, pg_schema)
    assert bench["max_memory_mb"] == 4096
    assert peak > bench["baseline_rss_mb"] + BUDGET_MB, (peak, bench["baseline_rss_mb"])



@pytest.mark.skipif(sys.platform != "linux", reason="RSS accounting as on Linux")
def test_streams_side_by_side_share_the_budget(pg_dsn, pg_conn, pg_schema):
    # each stream alone would fill the 64 MB; two at once must split it
    rows = ROWS * 2 // 3
    bench, peak = _load(pg_dsn, pg_schema, f"{BUDGET_MB}mb", "none", ("docs_a", "docs_b"),
                        rows)
    for table in ("docs_a", "docs_b"):
        _check_rows(pg_conn, pg_schema, table, rows)
    assert bench["streams"] == 2
    assert peak <= bench["baseline_rss_mb"] + BUDGET_MB, (peak, bench["baseline_rss_mb"])


def test_tasks_side_by_side_split_the_batch_bounds(pg_dsn, pg_conn, pg_schema, pg_schema2):
    """Two streams at once hold about what one does: each gets half the batch rows, bytes
    and queue depth one stream would get (splitting the budget alone did not: one stream
    rarely fills it)."""
    from rapidbyte_fast.config import load_config
    from rapidbyte_fast.executors.local import pipe_settings
    from rapidbyte_fast.memory_budget import resolve
    from rapidbyte_fast.plan import make_plans

    pg_conn.execute(f'CREATE TABLE "{pg_schema}".t (id int PRIMARY KEY, v text)')
    pg_conn.execute(f'INSERT INTO "{pg_schema}".t SELECT g, g::text FROM '
                    "generate_series(1, 1000) g")
    dest = {"use": "postgres", "config": {"url": pg_dsn, "schema": pg_schema2},
            "write_mode": "replace"}
    arrow, raw = (make_plans(load_config({"version": "1.0", "pipeline": "p", "source": src,
                                          "destination": dest}))[0] for src in (
        {"use": "generate", "config": {"rows": 1_000_000, "dataset": "bench_events"},
         "streams": [{"name": "bench_events"}]},
        {"use": "postgres", "config": {"url": pg_dsn, "schema": pg_schema},
         "streams": [{"name": "t"}]}))
    assert (arrow.path, raw.path) == ("arrow", "passthrough")
    budget = resolve(256 << 20, baseline=0, cgroup=None)
    for plan in (arrow, raw):
        one, two = pipe_settings(plan, budget), pipe_settings(plan, budget.shared(2))
        assert (one.max_batch_rows, one.queue_batches) == (100_000, 16)
        assert two.max_batch_rows == one.max_batch_rows // 2
        assert two.queue_batches == 8
        if plan is arrow:
            assert two.max_batch_bytes <= one.max_batch_bytes // 2 + 1
