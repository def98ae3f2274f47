"""The benchmark harness's pure logic: scenario names and pipelines, expected checksums,
history records, summaries, compare math, the Markdown report and peer helpers."""
from __future__ import annotations

import json
import statistics

import pytest

from bench import compare, datasets, history, peers, report
from bench.__main__ import _chosen, _parser
from bench.runner import ToolRun
from bench.scenarios import MATRIX, Scenario, expand, parse


# --- scenarios --------------------------------------------------------------------------

@pytest.mark.parametrize("name, fields", [
    ("bench_events-copy", dict(dataset="bench_events", mode="copy")),
    ("bench_events-insert", dict(dataset="bench_events", mode="insert")),
    ("bench_events-passthrough", dict(dataset="bench_events", mode="passthrough")),
    ("small-copy-lz4", dict(dataset="small", mode="copy", compression="lz4")),
    ("medium-copy-zstd", dict(dataset="medium", mode="copy", compression="zstd")),
    ("bench_events-copy-p_auto", dict(dataset="bench_events", mode="copy", parallelism="auto")),
    ("large-passthrough-p_4", dict(dataset="large", mode="passthrough", parallelism="4")),
    ("bench_events-copy-transform", dict(dataset="bench_events", transform="transform")),
    ("bench_events-insert-transform_filter",
     dict(dataset="bench_events", mode="insert", transform="transform_filter")),
    ("bench_events-copy-filter_wasm-aot_off",
     dict(dataset="bench_events", transform="filter_wasm", aot=False)),
])
def test_parse_and_name_round_trip(name, fields):
    sc = parse(name)
    assert sc == Scenario(**fields)
    assert sc.name == name


def test_parse_accepts_any_option_order_and_canonicalizes():
    sc = parse("bench_events-copy-p_auto-zstd")
    assert sc == Scenario("bench_events", "copy", "zstd", "auto")
    assert sc.name == "bench_events-copy-zstd-p_auto"
    assert parse("small-copy-none-p_1").name == "small-copy"


@pytest.mark.parametrize("name, message", [
    ("bench_events", "expected DATASET-MODE"),
    ("bench_events-bulk", "expected DATASET-MODE"),
    ("tiny-copy", "dataset 'tiny' is not one of bench_events, small, medium, large"),
    ("small-copy-gzip", "unknown option 'gzip'"),
    ("small-copy-lz4-zstd", "compression given twice"),
    ("small-copy-p_0", "parallelism '0' is not 'auto' or a count >= 1"),
    ("small-copy-p_x", "parallelism 'x' is not 'auto' or a count >= 1"),
    ("small-copy-transform", "transform scenarios are defined for bench_events only"),
    ("bench_events-passthrough-transform", "passthrough moves raw COPY bytes"),
    ("bench_events-copy-aot_on", "aot_on/aot_off only matter with a WASM plugin"),
])
def test_parse_rejects_bad_names(name, message):
    with pytest.raises(ValueError) as exc:
        parse(name)
    assert message in str(exc.value)
    assert repr(name) in str(exc.value)


def test_expand_is_the_product_in_order():
    got = [s.name for s in expand(["bench_events", "small"], ["insert", "copy"], ["none", "lz4"],
                                  ["1"])]
    assert got == ["bench_events-insert", "bench_events-insert-lz4", "bench_events-copy",
                   "bench_events-copy-lz4", "small-insert", "small-insert-lz4", "small-copy",
                   "small-copy-lz4"]


def test_matrix_is_valid_and_unique():
    names = [s.name for s in MATRIX]
    assert len(names) == len(set(names)) == 24
    assert {s.dataset for s in MATRIX} == {"bench_events", "small", "medium", "large"}
    assert {s.mode for s in MATRIX} == {"insert", "copy", "passthrough"}
    assert {s.compression for s in MATRIX} == {"none", "lz4", "zstd"}


def test_pipeline_copy_forces_the_arrow_path():
    p = parse("bench_events-copy").pipeline("${U}", "src", "dst")
    assert p == {
        "version": "1.0",
        "pipeline": "bench-bench-events-copy",
        "source": {"use": "postgres", "config": {"url": "${U}", "schema": "src"},
                   "streams": [{"name": "bench_events"}]},
        "destination": {"use": "postgres",
                        "config": {"url": "${U}", "schema": "dst", "load_method": "copy",
                                   "passthrough": "off"},
                        "write_mode": "replace", "primary_key": ["id"]},
        "resources": {"compression": "none", "parallelism": 1},
    }


def test_pipeline_passthrough_insert_compression_parallelism():
    p = parse("small-passthrough-p_auto").pipeline("u", "s", "d")
    assert p["destination"]["config"]["passthrough"] == "auto"
    assert p["destination"]["config"]["load_method"] == "copy"
    assert p["resources"] == {"compression": "none", "parallelism": "auto"}
    p = parse("medium-insert-zstd-p_3").pipeline("u", "s", "d")
    assert p["destination"]["config"]["load_method"] == "insert"
    assert p["destination"]["config"]["passthrough"] == "off"
    assert p["resources"] == {"compression": "zstd", "parallelism": 3}
    assert "transforms" not in p


def test_pipeline_transforms_and_aot_env():
    p = parse("bench_events-copy-transform_filter").pipeline("u", "s", "d")
    assert p["transforms"] == [{"use": "sql", "config": {
        "query": "SELECT * FROM bench_events WHERE amount >= 5000"}}]
    q = parse("bench_events-copy-transform").pipeline("u", "s", "d")["transforms"][0]
    assert q["config"]["query"].startswith("SELECT id, upper(event_type) AS event_type,")
    assert parse("bench_events-copy-transform").feature_gated
    assert not parse("bench_events-copy").feature_gated
    assert parse("bench_events-copy").env() == {}
    assert parse("bench_events-copy-filter_wasm-aot_on").env() == {"RAPIDBYTE_WASM_AOT": "1"}
    assert parse("bench_events-copy-filter_wasm-aot_off").env() == {"RAPIDBYTE_WASM_AOT": "0"}


def test_cli_scenario_choice():
    args = _parser().parse_args(["run", "--scenario", "small-copy", "bench_events-insert"])
    assert [s.name for s in _chosen(args)] == ["small-copy", "bench_events-insert"]
    args = _parser().parse_args(["run"])
    assert [s.name for s in _chosen(args)] == ["bench_events-copy"]
    args = _parser().parse_args(["run", "--mode", "copy", "--mode", "passthrough",
                                 "--parallelism", "auto", "--scenario", "bench_events-copy-p_auto"])
    assert [s.name for s in _chosen(args)] == ["bench_events-copy-p_auto",
                                               "bench_events-passthrough-p_auto"]


# --- expected checksums -----------------------------------------------------------------

def _brute(rows: int, min_amount: int) -> datasets.Checksum:
    amounts = [7 * i % 10000 for i in range(1, rows + 1)]
    kept = [a for a in amounts if a >= min_amount]
    return datasets.Checksum(len(kept), sum(kept), len(kept))


@pytest.mark.parametrize("rows", [0, 1, 2, 9_999, 10_000, 10_001, 23_457])
def test_bench_events_checksum_matches_brute_force(rows):
    assert datasets.expected("bench_events", rows) == _brute(rows, 0)
    assert datasets.expected("bench_events", rows, filtered=True) == _brute(rows, 5000)


def test_known_checksums():
    assert datasets.expected("bench_events", 100_000) == datasets.Checksum(
        100_000, 499_950_000, 100_000)
    assert datasets.expected("small", 2000) == datasets.Checksum(2000, 2_001_000, 2000)
    assert datasets.expected("large", 3) == datasets.Checksum(3, 6, 3)
    with pytest.raises(ValueError, match="no filtered checksum for small"):
        datasets.expected("small", 10, filtered=True)


def test_seed_pipeline_uses_the_generate_source():
    p = datasets.seed_pipeline("medium", 500, "${U}", "bench_src")
    assert p["source"] == {"use": "generate", "config": {"rows": 500, "dataset": "medium"},
                           "streams": [{"name": "medium"}]}
    assert p["destination"]["write_mode"] == "replace"
    assert p["destination"]["config"] == {"url": "${U}", "schema": "bench_src",
                                          "load_method": "copy"}


# --- history ----------------------------------------------------------------------------

RESULT = {"records_read": 1000, "records_written": 1000, "bytes_read": 2_000_000, "duration_secs": 0.5,
          "process_cpu_secs": 0.25, "peak_rss_mb": 100.0, "path": "arrow", "parallelism": 1,
          "impl": "c"}
GIT = {"git_sha": "abcdef0123456789", "git_branch": "main", "git_dirty": False}
CTX = {"versions": {"python": "3.11.7", "pyarrow": "26", "psycopg": "3.3"},
       "machine": {"cpu": "X", "cores": 2, "memory_gb": 8.0}}


def _record(scenario="bench_events-copy", wall=1.0, run_id="r1", sha="abcdef0123456789",
            ts="2026-01-01T00:00:00+00:00", **result) -> dict:
    rec = history.make_record(run_id=run_id, command="run", scenario=parse(scenario), rows=1000,
                              iteration=0, wall_secs=wall, result={**RESULT, **result},
                              verified={"count": 1000, "total": 1, "distinct": 1},
                              git={**GIT, "git_sha": sha}, ctx=CTX)
    rec["timestamp"] = ts
    return rec


def test_record_shape():
    rec = history.make_record(run_id="r1", command="run", scenario=parse("small-copy-lz4"),
                              rows=1000, iteration=2, wall_secs=1.23456789, result=RESULT,
                              verified={"count": 1000, "total": 500500, "distinct": 1000},
                              git=GIT, ctx=CTX)
    assert list(rec) == ["timestamp", "run_id", "command", "ref", "git_sha", "git_branch",
                         "git_dirty", "scenario", "dataset", "mode", "compression",
                         "parallelism", "transform", "aot", "rows", "iteration", "wall_secs",
                         "impl", "verified", "result", "versions", "machine"]
    assert rec["scenario"] == "small-copy-lz4"
    assert (rec["dataset"], rec["mode"], rec["compression"]) == ("small", "copy", "lz4")
    assert rec["wall_secs"] == 1.234568
    assert rec["impl"] == "c"
    assert rec["result"] is RESULT
    assert rec["timestamp"].endswith("+00:00")


def test_append_and_load_round_trip(tmp_path):
    path = tmp_path / "sub" / "results.jsonl"
    assert history.load(path) == []
    history.append(path, [_record(), _record(wall=2.0)])
    history.append(path, [_record(wall=3.0)])
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[2])["wall_secs"] == 3.0
    assert [r["wall_secs"] for r in history.load(path)] == [1.0, 2.0, 3.0]


def test_context_has_versions_and_machine():
    ctx = history.context()
    assert set(ctx) == {"versions", "machine"}
    assert {"python", "pyarrow", "psycopg"} <= set(ctx["versions"])
    assert set(ctx["machine"]) == {"cpu", "cores", "memory_gb"}
    assert ctx["machine"]["memory_gb"] > 0


# --- report -----------------------------------------------------------------------------

def test_summarize_medians_and_rates():
    recs = [_record(wall=1.0, duration_secs=0.4, process_cpu_secs=0.3, peak_rss_mb=90),
            _record(wall=4.0, duration_secs=0.6, process_cpu_secs=0.1, peak_rss_mb=120),
            _record(wall=2.0, duration_secs=0.5, process_cpu_secs=0.2, peak_rss_mb=100),
            _record("small-copy", wall=0.5, records_written=10)]
    s, t = report.summarize(recs)
    assert s["scenario"] == "bench_events-copy" and t["scenario"] == "small-copy"
    assert s["iters"] == 3
    assert s["wall_secs"] == 2.0
    assert s["tool_secs"] == 0.5
    assert s["rows_per_sec"] == 500.0
    assert s["mb_per_sec"] == 1.0
    assert s["cpu_secs"] == 0.2
    assert s["peak_rss_mb"] == 120
    assert t["rows_per_sec"] == 2000.0


def test_console_table_lists_rows_and_notes():
    text = report.console_table(report.summarize([_record(wall=2.0)]),
                                [("x-copy", "skipped: nope")])
    lines = text.splitlines()
    assert lines[0].split() == ["scenario", "rows", "iters", "wall", "s", "tool", "s", "rows/s",
                                "MB/s", "path", "par", "cpu", "s", "RSS", "MB", "base+budget",
                                "MB"]
    assert lines[2].split() == ["bench_events-copy", "1,000", "1", "2.000", "0.500", "500",
                                "1.0", "arrow", "1", "0.25", "100", "-"]
    budgeted = _record(wall=2.0, baseline_rss_mb=98.4, max_memory_mb=256.0)
    assert report.console_table(report.summarize([budgeted])).splitlines()[2].split()[-2:] \
        == ["100", "98+256"]
    assert lines[3] == "x-copy: skipped: nope"


def test_latest_takes_the_last_run_per_scenario_and_sha():
    recs = [_record(wall=9.0, run_id="old"), _record(wall=1.0, run_id="new"),
            _record(wall=3.0, run_id="new"),
            _record(wall=5.0, run_id="other", sha="ffff", ts="2026-02-01T00:00:00+00:00"),
            _record("small-copy", wall=7.0, run_id="old"),
            {**_record(wall=6.0, run_id="wip", ts="2026-03-01T00:00:00+00:00"), "git_dirty": True}]
    got = [(s["scenario"], s["git_sha"], s["git_dirty"], s["iters"], s["wall_secs"])
           for s in report.latest(recs)]
    assert got == [("bench_events-copy", "abcdef0123456789", False, 2, 2.0),
                   ("bench_events-copy", "ffff", False, 1, 5.0),
                   ("bench_events-copy", "abcdef0123456789", True, 1, 6.0),
                   ("small-copy", "abcdef0123456789", False, 1, 7.0)]


def test_markdown_table():
    md = report.markdown(report.summarize([_record(wall=2.0)]), CTX["machine"])
    lines = md.splitlines()
    assert lines[0] == "# Benchmark results"
    assert "Machine: X, 2 cores, 8.0 GB." in lines
    assert lines[-3] == ("| scenario | rows | git sha | date | impl | iters | wall s | tool s | "
                         "rows/s | MB/s | path | par | cpu s | RSS MB | base+budget MB |")
    assert lines[-2] == "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    assert lines[-1] == ("| bench_events-copy | 1,000 | abcdef0 | 2026-01-01 | c | 1 | 2.000 | "
                         "0.500 | 500 | 1.0 | arrow | 1 | 0.25 | 100 | - |")


def test_chart_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "chart.png"
    report.chart(report.summarize([_record(), _record("small-copy", wall=0.5)]), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- compare ----------------------------------------------------------------------------

def test_pct_change():
    assert compare.pct_change(2.0, 1.0) == -50.0
    assert compare.pct_change(1.0, 1.25) == 25.0
    assert compare.pct_change(0.0, 1.0) != compare.pct_change(0.0, 1.0)  # nan


def test_compare_table_and_split_by_ref():
    recs = []
    for ref, walls in (("main", [2.0, 2.2]), ("feat", [1.0, 1.2])):
        for w in walls:
            r = _record(wall=w)
            r["ref"] = ref
            recs.append(r)
    a, b = compare.split_by_ref(recs, ["main", "feat"])
    assert (a[0]["wall_secs"], b[0]["wall_secs"]) == (statistics.median([2.0, 2.2]), 1.1)
    lines = compare.compare_table("main", "feat", a, b).splitlines()
    assert lines[0].split() == ["scenario", "main", "feat", "wall", "Δ", "rows/s", "A",
                                "rows/s", "B", "rows/s", "Δ"]
    assert lines[2].split() == ["bench_events-copy", "2.100s", "1.100s", "-47.6%", "476", "909",
                                "+90.9%"]


def _walls(**by_ref: list[float]) -> list[dict]:
    recs = []
    for ref, walls in by_ref.items():
        for w in walls:
            r = _record(wall=w)
            r["ref"] = ref
            recs.append(r)
    return recs


def test_a_slowdown_beyond_the_measured_noise_is_a_regression():
    # A spreads 9.5% ((1.1 - 1.0) / 1.05), B is 20% slower: beyond the noise
    slow = compare.regressions(_walls(main=[1.0, 1.05, 1.1], feat=[1.26, 1.25, 1.27]),
                               "main", "feat")
    assert slow == ["bench_events-copy: feat is 20.0% slower than main (noise 9.5%)"]
    # within the noise of either side, or below the floor: not one
    assert compare.regressions(_walls(main=[1.0, 1.05, 1.1], feat=[1.1, 1.12, 1.15]),
                               "main", "feat") == []
    assert compare.regressions(_walls(main=[1.0, 1.0, 1.0], feat=[1.02, 1.02, 1.02]),
                               "main", "feat") == []
    assert compare.regressions(_walls(main=[1.0, 1.0], feat=[0.5, 0.5]), "main", "feat") == []


def test_report_selects_the_last_runs_and_commits():
    recs = [_record(run_id=f"r{i}", sha=sha) for i, sha in enumerate(["aaa1", "bbb2", "ccc3"])]
    assert [r["run_id"] for r in report.select(recs, last=2)] == ["r1", "r2"]
    assert [r["run_id"] for r in report.select(recs, shas=["aaa", "ccc"])] == ["r0", "r2"]
    assert [r["run_id"] for r in report.select(recs, last=1, shas=["aaa", "bbb"])] == ["r1"]
    assert report.select(recs) == recs


# --- peers and runner helpers -----------------------------------------------------------

def test_connectorx_url():
    assert peers.connectorx_url("postgresql://postgres:@/postgres?host=/tmp/pg%20dir") == (
        "postgresql://postgres@localhost/postgres?host=%2Ftmp%2Fpg%20dir")
    assert peers.connectorx_url("host=db.example port=6543 user=u password=p@ss/w dbname=x") == (
        "postgresql://u:p%40ss%2Fw@db.example:6543/x")


def test_peers_table_ratios():
    def entry(name, ours, walls, **kw):
        return peers.Entry(name, name[:4], "s", ours=ours, precreate=True, primary_key=True,
                           run=lambda s, t: 0.0, walls=walls, **kw)

    text = peers.table([entry("us-copy", True, [1.0, 2.0, 3.0]), entry("us-pass", True, [1.0]),
                        entry("psql", False, [4.0]), entry("psycopg", False, [0.5]),
                        entry("duck", False, [], unavailable="not installed"),
                        entry("cx", False, [], errors=["boom"])], rows=1000)
    lines = text.splitlines()
    assert lines[1].split() == ["us-copy", "2.000s", "500", "3"]
    assert lines[3].split() == ["psql", "4.000s", "250", "1"]
    assert lines[5].split()[-3:] == ["skipped:", "not", "installed"]
    assert lines[6].split()[-2:] == ["FAILED:", "boom"]
    assert lines[-3].split()[-2:] == ["psql", "psyc"]
    assert lines[-2].split() == ["us-copy", "0.50x", "4.00x"]
    assert lines[-1].split() == ["us-pass", "0.25x", "2.00x"]


def test_tool_run_reason():
    assert ToolRun(1.0, 2, None, "a\n\nconfig error: x\nconfig error: y\n").reason() == (
        "a | config error: x | config error: y")
    assert ToolRun(1.0, 1, None, "").reason() == "exit code 1, no message"
