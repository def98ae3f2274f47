"""The utilisation fields of ``@@BENCH_JSON@@``: CPU against the cores, each stage's busy
time, and how evenly the workers shared the rows."""
from __future__ import annotations

import os

from rapidbyte_fast.result import RunResult, StreamResult


def test_utilisation_fields():
    run = RunResult(pipeline="p", impl="c", duration_secs=2.0, process_cpu_secs=1.0)
    run.streams = [
        StreamResult(stream="a", target="s.a", worker_rows=[100, 300], worker_secs=[1.0, 1.0],
                     timings={"source_duration_secs": 1.5, "source_emit_wait_secs": 0.5,
                              "dest_duration_secs": 1.8, "dest_recv_wait_secs": 1.2}),
        StreamResult(stream="b", target="s.b", worker_rows=[0], worker_secs=[2.0])]
    d = run.bench_dict()
    cores = os.cpu_count() or 1
    assert d["available_cores"] == cores
    assert d["process_cpu_pct_one_core"] == 50.0
    assert d["process_cpu_pct_available_cores"] == round(50.0 / cores, 1)
    assert (d["source_busy_secs"], d["dest_busy_secs"]) == (1.0, 0.6)
    assert d["workers"] == 3
    assert d["worker_records_skew_ratio"] == 2.25   # 300 against a mean of 133.3
    assert d["worker_secs_skew_ratio"] == 1.5


def test_no_workers_is_even():
    d = RunResult(pipeline="p", impl="c").bench_dict()
    assert (d["workers"], d["worker_records_skew_ratio"], d["process_cpu_pct_one_core"]) == (
        0, 1.0, 0.0)
