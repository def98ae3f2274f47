"""The benchmark harness end to end on tiny data: `python -m bench run` seeds, copies,
verifies and appends a result line; `report` renders it; `peers` runs the psql pipe."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def prefix(pg_conn):
    """A schema prefix of this test's own; its schemas are dropped afterwards."""
    name = f"tb_{uuid.uuid4().hex[:10]}"
    yield name
    for row in pg_conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                               (name + "\\_%",)).fetchall():
        pg_conn.execute(f'DROP SCHEMA "{row[0]}" CASCADE')


def _bench(*args: str, dsn: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args, "--dsn", dsn], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_run_appends_a_verified_result(pg_dsn, pg_conn, prefix, tmp_path):
    results = tmp_path / "results.jsonl"
    proc = _bench("run", "--rows", "2000", "--iters", "1", "--scenario", "bench_events-copy",
                  "--schema-prefix", prefix, "--results", str(results), dsn=pg_dsn)
    assert proc.returncode == 0, proc.stderr
    lines = results.read_text().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["scenario"] == "bench_events-copy"
    assert rec["command"] == "run"
    assert rec["rows"] == 2000
    # sum of (7·i mod 10000) for i = 1..2000
    assert rec["verified"] == {"count": 2000, "total": 8_287_000, "distinct": 2000}
    assert rec["result"]["records_written"] == 2000
    assert rec["result"]["path"] == "arrow"
    assert rec["wall_secs"] > rec["result"]["duration_secs"] > 0
    assert len(rec["git_sha"]) == 40 and isinstance(rec["git_dirty"], bool)
    assert rec["impl"] in ("c", "python")
    assert {"python", "pyarrow", "psycopg"} <= set(rec["versions"])
    assert rec["machine"]["cores"] >= 1
    assert "bench_events-copy" in proc.stdout and "1 verified results appended" in proc.stdout
    count = pg_conn.execute(f'SELECT count(*) FROM "{prefix}_dst".bench_events').fetchone()[0]
    assert count == 2000

    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "bench", "report", "--results", str(results),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    md = (out / "report.md").read_text()
    assert f"| bench_events-copy | 2,000 | {rec['git_sha'][:7]}" in md


def test_transform_scenario_is_verified_or_skipped(pg_dsn, prefix, tmp_path):
    results = tmp_path / "results.jsonl"
    proc = _bench("run", "--rows", "2000", "--iters", "1", "--scenario",
                  "bench_events-copy-transform_filter", "--schema-prefix", prefix,
                  "--results", str(results), dsn=pg_dsn)
    assert proc.returncode == 0, proc.stderr
    if results.exists():  # the tool has transforms: only rows with amount >= 5000 arrive
        rec = json.loads(results.read_text())
        assert rec["verified"]["count"] == 714
    else:
        assert "bench_events-copy-transform_filter: skipped: the tool rejects it" in proc.stdout


def test_a_bad_scenario_name_is_a_usage_error(pg_dsn):
    proc = _bench("run", "--scenario", "bench_events-copy-gzip", dsn=pg_dsn)
    assert proc.returncode == 2
    assert "unknown option 'gzip'" in proc.stderr


def test_peers_run_and_verify(pg_dsn, prefix):
    proc = _bench("peers", "--rows", "2000", "--iters", "1", "--schema-prefix", prefix,
                  dsn=pg_dsn)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = proc.stdout.splitlines()
    psql = next(ln for ln in table if ln.startswith("psql | psql binary COPY "))
    assert psql.split()[-1] == "1"  # one verified run
    assert any(ln.startswith("rapidbyte-fast copy, append") and ln.split()[-1] == "1"
               for ln in table)
    assert "wall ratio, ours / peer" in proc.stdout
