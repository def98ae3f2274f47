"""The Dask executor on a LocalCluster (worker processes, 2 workers) against a real
PostgreSQL: key ranges as tasks, worker processes SIGKILLed at 6 points (each range still
commits exactly once), the driver SIGKILLed at 4 (the next run finishes the load), the
connection budget, per-worker results. After the run, or the next one, the destination
equals the source row for row."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

import rapidbyte_fast
from rapidbyte_fast.errors import ConfigError
from rapidbyte_fast.executors.choice import open_executor, parse_executor
from rapidbyte_fast.result import BENCH_PREFIX

from .test_cli_e2e import _text_rows
from .test_faults import _insert as _seed

ROWS = 12_000
#: ranges of 1000 rows: 12 tasks per load
RANGE_ROWS = 1000


def test_executor_forms():
    assert parse_executor("local") == ("local", "")
    assert parse_executor("dask://local") == ("dask", "local")
    assert parse_executor("dask://sched:8786") == ("dask", "tcp://sched:8786")
    assert parse_executor("dask://tls://sched:8786") == ("dask", "tls://sched:8786")
    for bad in ("dask", "dask://", "spark://x:1", "dask://sched"):
        with pytest.raises(ConfigError, match="--executor"):
            parse_executor(bad)


def test_missing_dask_is_one_line(monkeypatch):
    from rapidbyte_fast.config import ResourcesConfig

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(ConfigError) as err:
        open_executor(ResourcesConfig(), "dask://local")
    assert str(err.value) == ("executor dask: the dask package is not installed "
                              "(pip install \"rapidbyte-fast[dask]\")")


def test_resources_config():
    from rapidbyte_fast.config import load_config

    def resources(**kw):
        return load_config({"version": "1.0", "pipeline": "p",
                            "source": {"use": "generate", "config": {"rows": 1},
                                       "streams": [{"name": "small"}]},
                            "destination": {"use": "postgres",
                                            "config": {"url": "postgresql://h/db"}},
                            "resources": kw}).resources

    r = resources(executor="dask", dask={"scheduler": "tcp://h:8786"}, max_connections=5)
    assert (r.executor, r.dask.scheduler) == ("dask", "tcp://h:8786")
    assert (r.max_connections.source, r.max_connections.destination) == (5, 5)
    with pytest.raises(ConfigError, match=r"resources\.dask\.scheduler: must be 'local' or"):
        resources(dask={"scheduler": "h:8786"})
    with pytest.raises(ConfigError, match=r"resources\.max_connections\.destination"):
        resources(max_connections={"destination": 2})


try:
    import distributed
except ImportError:
    distributed = None
#: on every test below this line
needs_dask = pytest.mark.skipif(distributed is None, reason="dask[distributed] is not "
                                "installed (pip install 'rapidbyte-fast[dask]')")


def _local_cluster():
    """A LocalCluster of 2 single-threaded worker processes (a nanny restarts a worker
    that dies), and its client."""
    cl = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None)
    with cl, distributed.Client(cl) as client:
        yield cl, client


cluster = pytest.fixture(scope="module")(_local_cluster)
#: a cluster of the test's own (its workers get killed)
fresh_cluster = pytest.fixture(_local_cluster)


@pytest.fixture
def client(cluster):
    _, client = cluster
    client.wait_for_workers(2, timeout=60)
    client.run(_arm, "")
    yield client
    client.wait_for_workers(2, timeout=60)
    client.run(_arm, "")


def _arm(spec: str) -> None:
    from rapidbyte_fast import faults

    faults.arm(spec)


def _executor(cluster) -> str:
    return f"dask://{cluster[0].scheduler_address}"


def _source(conn, schema: str) -> None:
    conn.execute(f'CREATE TABLE "{schema}".ev (id int PRIMARY KEY, n int, v text, '
                 "ts timestamptz, amount numeric(12,2))")
    _seed(conn, schema, 1, ROWS)


def _config(dsn: str, src: str, dst: str, mode: str = "replace", **resources) -> dict:
    return {"version": "1.0", "pipeline": "dask",
            "source": {"use": "postgres", "config": {"url": dsn, "schema": src},
                       "streams": [{"name": "ev"}]},
            "destination": {"use": "postgres", "write_mode": mode,
                            "config": {"url": dsn, "schema": dst}},
            "resources": {"max_batch_rows": 250, "checkpoint_interval_rows": RANGE_ROWS,
                          "checkpoint_interval_bytes": 0, "max_retries": 4, **resources}}


def _check(conn, src: str, dst: str) -> None:
    assert _text_rows(conn, dst, "ev") == _text_rows(conn, src, "ev")
    tables = {r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (dst,))}
    assert tables <= {"ev", "rbf_progress"}, tables  # no staging left
    assert conn.execute(f'SELECT count(*) FROM "{dst}".rbf_progress').fetchone()[0] == 0


def _pids(client) -> set[int]:
    return set(client.run(os.getpid).values())


@needs_dask
@pytest.mark.parametrize("mode", ["replace", "append"])
def test_ranges_run_as_tasks(pg_dsn, pg_conn, pg_schema, pg_schema2, cluster, client, mode):
    _source(pg_conn, pg_schema)
    result = rapidbyte_fast.run(_config(pg_dsn, pg_schema, pg_schema2, mode),
                                executor=_executor(cluster))
    _check(pg_conn, pg_schema, pg_schema2)
    sr = result.streams[0]
    assert result.executor == "dask"
    assert (sr.records_written, sr.ranges) == (ROWS, ROWS // RANGE_ROWS)
    # both workers took ranges, and their rows add up
    assert len(sr.cluster_workers) == 2
    assert sum(w["rows"] for w in sr.cluster_workers) == ROWS
    assert sum(w["tasks"] for w in sr.cluster_workers) == ROWS // RANGE_ROWS
    bench = result.bench_dict()
    assert bench["workers"] == 2 and len(bench["cluster_workers"]) == 2
    assert bench["worker_secs_skew_ratio"] >= 1.0 and bench["worker_records_skew_ratio"] >= 1.0
    assert bench["executor"] == "dask"


@needs_dask
def test_stream_committed_once_is_one_task(pg_dsn, pg_conn, pg_schema, pg_schema2, cluster,
                                           client):
    _source(pg_conn, pg_schema)
    cfg = _config(pg_dsn, pg_schema, pg_schema2, "upsert")
    cfg["destination"]["primary_key"] = ["id"]
    result = rapidbyte_fast.run(cfg, executor=_executor(cluster))
    assert _text_rows(pg_conn, pg_schema2, "ev") == _text_rows(pg_conn, pg_schema, "ev")
    assert [w["tasks"] for w in result.streams[0].cluster_workers] == [1]


@needs_dask
def test_driver_loads_ranges_while_its_local_cluster_starts(pg_dsn, pg_conn, pg_schema,
                                                           pg_schema2, monkeypatch):
    # the LocalCluster comes up only after the driver loaded 2 ranges itself; the rest
    # are tasks, and every range commits exactly once
    from rapidbyte_fast.executors import dask_cluster

    loaded = threading.Event()
    driver_ranges, executors = [], []
    run_ranges, connect = dask_cluster.run_ranges, dask_cluster.DaskExecutor._connect

    def counted(plan, ranges, *args):
        driver_ranges.extend(r.index for r in ranges)
        if len(driver_ranges) == 2:  # the cluster starts, and is up after this range
            loaded.set()
            executors[0]._connecting.join(60)
        return run_ranges(plan, ranges, *args)

    def late(self, *args):
        executors.append(self)
        loaded.wait(60)
        connect(self, *args)

    monkeypatch.setattr(dask_cluster, "run_ranges", counted)
    monkeypatch.setattr(dask_cluster.DaskExecutor, "_connect", late)
    _source(pg_conn, pg_schema)
    result = rapidbyte_fast.run(_config(pg_dsn, pg_schema, pg_schema2),
                                executor="dask://local")
    _check(pg_conn, pg_schema, pg_schema2)
    sr = result.streams[0]
    assert driver_ranges == [0, 1]
    by_worker = {w["worker"]: w for w in sr.cluster_workers}
    assert (by_worker["driver"]["tasks"], by_worker["driver"]["rows"]) == (2, 2 * RANGE_ROWS)
    assert sum(w["tasks"] for w in sr.cluster_workers) == ROWS // RANGE_ROWS
    assert len(by_worker) >= 2 and sr.records_written == ROWS
    assert sr.timings["executor_start_wait_secs"] == 0.0


# (mode, worker fault): every worker process SIGKILLs itself at the point's n-th pass
WORKER_KILLS = [
    ("replace", "source.batch#2=kill"),
    ("replace", "dest.batch#3=kill"),
    ("replace", "dest.range_commit#1=kill"),      # rows sent, not committed
    ("replace", "dest.range_committed#1=kill"),   # committed, never reported
    ("append", "dest.range_committed#2=kill"),
    ("append", "dest.range_commit#2=kill"),
    ("replace", "dest.batch#2=terminate-dest"),   # the connection dropped: dask retries
]


@needs_dask
@pytest.mark.parametrize("mode,fault", WORKER_KILLS)
def test_worker_lost_mid_task(pg_dsn, pg_conn, pg_schema, pg_schema2, fresh_cluster, mode,
                              fault):
    cluster, client = fresh_cluster
    _source(pg_conn, pg_schema)
    before = _pids(client)
    client.run(_arm, fault)
    result = rapidbyte_fast.run(_config(pg_dsn, pg_schema, pg_schema2, mode),
                                executor=_executor(fresh_cluster))
    _check(pg_conn, pg_schema, pg_schema2)
    if fault.endswith("=kill"):
        assert before - _pids(client), "no worker was killed"
    # (counted from the committed marks: a task lost after its commit never reported)
    assert result.streams[0].records_written == ROWS


def test_duplicate_range_attempt_is_rolled_back(pg_dsn, pg_conn, pg_schema, pg_schema2):
    """Two attempts of one range (a task rerun while its first run still commits): the
    second's mark is refused and its rows roll back."""
    from rapidbyte_fast.config import load_config
    from rapidbyte_fast.executors.local import run_ranges
    from rapidbyte_fast.plan import make_plans
    from rapidbyte_fast import registry

    _source(pg_conn, pg_schema)
    cfg = load_config(_config(pg_dsn, pg_schema, pg_schema2, "append"))
    plan = make_plans(cfg)[0]
    dest = registry.destination(plan.dest_use)(plan.dest_config, plan.dest_endpoint)
    load = dest.open_load(plan.write)
    load.open(plan.schema)
    first = plan.reads.ranges[:1]
    try:
        a = run_ranges(plan, first, None, load.prepared)
        # the rerun skips it ...
        b = run_ranges(plan, first, None, load.prepared)
        # ... and a copy racing past that check is refused at the mark
        racer = dest.open_load(plan.write)
        racer.attach(load.prepared)
        try:
            w = racer.writer()
            for chunk in _chunks(plan, first[0]):
                w.write_raw(chunk)
            w.end_range(first[0].index)
        finally:
            racer.close()
    finally:
        load.close()
    assert a.records_written > 0
    assert (b.records_written, racer.rows_written) == (0, 0)
    n = pg_conn.execute(f'SELECT count(*) FROM "{pg_schema2}".ev').fetchone()[0]
    assert n == a.records_written


def _chunks(plan, key_range):
    """The raw COPY chunks of one range (the plan is a passthrough)."""
    from rapidbyte_fast import registry

    assert plan.path == "passthrough"
    src = registry.source(plan.source_use)(plan.source_config, plan.source_endpoint)
    reader = src.reader(plan.info, plan.cursor)
    reader.open()
    try:
        return list(reader.raw_chunks(key_range))
    finally:
        reader.close()


def _driver(pg_dsn, tmp_path, cfg: dict, executor: str, faults: str = ""):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "RAPIDBYTE_FAULTS": faults}
    return subprocess.Popen([sys.executable, "-m", "rapidbyte_fast", "run", "-q", str(path),
                             "--executor", executor], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_marks(pg_conn, schema: str, proc, at_least: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the driver ended first: {proc.communicate()}"
        try:
            row = pg_conn.execute(f'SELECT cardinality(done) FROM "{schema}".rbf_progress'
                                  ).fetchone()
        except Exception:  # (the progress table is not created yet)
            row = None
        if row is not None and row[0] >= at_least:
            return
        time.sleep(0.01)
    raise AssertionError("no progress")


@needs_dask
@pytest.mark.parametrize("when", ["dest.commit#1", "dest.committed#1", "marks:0", "marks:3"])
def test_driver_lost(pg_dsn, pg_conn, pg_schema, pg_schema2, cluster, client, tmp_path, when):
    _source(pg_conn, pg_schema)
    cfg = _config(pg_dsn, pg_schema, pg_schema2, "replace", max_batch_rows=50)
    executor = _executor(cluster)
    if when.startswith("marks:"):
        proc = _driver(pg_dsn, tmp_path, cfg, executor)
        _wait_marks(pg_conn, pg_schema2, proc, int(when[6:]))
        proc.send_signal(signal.SIGKILL)
    else:
        proc = _driver(pg_dsn, tmp_path, cfg, executor, f"{when}=kill")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    result = rapidbyte_fast.run(cfg, executor=executor)
    _check(pg_conn, pg_schema, pg_schema2)
    sr = result.streams[0]
    if when == "dest.commit#1":  # every range was committed: only the swap was left
        assert (sr.resumed_ranges, sr.records_written) == (ROWS // RANGE_ROWS, 0)
    if when == "marks:3":
        assert sr.resumed_ranges >= 3


@needs_dask
def test_connection_budget(pg_dsn, pg_conn, pg_schema, pg_schema2, cluster, client):
    """max_connections.destination: 3 leaves one task slot: never two range writers."""
    _source(pg_conn, pg_schema)
    seen: list[int] = []
    stop = threading.Event()

    def watch():
        import psycopg

        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            while not stop.is_set():
                seen.append(conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
                    "'rapidbyte-fast[%%] destination%%'").fetchone()[0])
                time.sleep(0.005)

    t = threading.Thread(target=watch)
    t.start()
    try:
        result = rapidbyte_fast.run(
            _config(pg_dsn, pg_schema, pg_schema2, max_connections={"destination": 3}),
            executor=_executor(cluster))
    finally:
        stop.set()
        t.join()
    _check(pg_conn, pg_schema, pg_schema2)
    assert result.streams[0].records_written == ROWS
    assert 1 <= max(seen) <= 3


@needs_dask
def test_cli_bench_line(pg_dsn, pg_conn, pg_schema, pg_schema2, cluster, client, tmp_path):
    _source(pg_conn, pg_schema)
    proc = _driver(pg_dsn, tmp_path, _config(pg_dsn, pg_schema, pg_schema2),
                   _executor(cluster))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    line = [ln for ln in out.splitlines() if ln.startswith(BENCH_PREFIX)][0]
    bench = json.loads(line[len(BENCH_PREFIX):])
    assert bench["records_written"] == ROWS and bench["executor"] == "dask"
    assert sum(w["rows"] for w in bench["cluster_workers"]) == ROWS
    _check(pg_conn, pg_schema, pg_schema2)


@needs_dask
@pytest.mark.parametrize("on_data_error", ["skip", "dlq"])
def test_refused_rows_in_range_tasks(pg_dsn, pg_conn, pg_schema, pg_schema2, cluster, client,
                                     on_data_error):
    # the destination refuses one row of every range: each task sets its row aside and
    # commits the rest, with its dead letter in the range's own transaction
    from rapidbyte_fast.state.dlq import list_dead_letters

    _source(pg_conn, pg_schema)
    pg_conn.execute(f'CREATE TABLE "{pg_schema2}".ev (id int PRIMARY KEY, n int, v text, '
                    "ts timestamptz, amount numeric(12,2) CHECK (amount <> 0), "
                    "CHECK (id % 1000 <> 500))")
    cfg = _config(pg_dsn, pg_schema, pg_schema2, "append", max_retries=0)
    cfg["destination"]["on_data_error"] = on_data_error
    result = rapidbyte_fast.run(cfg, executor=_executor(cluster))
    refused = list(range(500, ROWS, 1000))
    sr = result.streams[0]
    assert (sr.records_written, sr.records_refused) == (ROWS - len(refused), len(refused))
    assert (sr.records_skipped, sr.records_dlq) == (
        (len(refused), 0) if on_data_error == "skip" else (0, len(refused)))
    assert len(sr.cluster_workers) == 2
    assert _text_rows(pg_conn, pg_schema2, "ev") == [
        r for r in _text_rows(pg_conn, pg_schema, "ev") if int(r[0]) % 1000 != 500]
    dead = list_dead_letters(pg_dsn, pg_schema2, "dask")
    if on_data_error == "skip":
        assert dead == []
        return
    assert sorted(r["record"]["id"] for r in dead) == refused
    assert {(r["category"], r["errors"][0][:6], r["run_id"]) for r in dead} == {
        ("load", "23514:", result.run_id)}


@needs_dask
def test_ranges_in_flight_follow_parallelism_on_a_local_cluster(cluster, monkeypatch):
    # a LocalCluster shares this machine (and its database): parallelism auto runs as
    # many ranges at once as the local executor would; a remote scheduler is sized by its
    # threads unless parallelism is set
    from types import SimpleNamespace

    from rapidbyte_fast.config import ResourcesConfig
    from rapidbyte_fast.executors.dask_cluster import DaskExecutor

    def plan(parallelism, workers):
        return SimpleNamespace(resources=SimpleNamespace(parallelism=parallelism),
                               reads=SimpleNamespace(workers=workers))

    remote = DaskExecutor(cluster[0].scheduler_address, ResourcesConfig())
    try:
        assert remote.slots(plan("auto", 1)) == 2
        assert remote.slots(plan(1, 1)) == 1
    finally:
        remote.close()
    # (the fixture's cluster, started with Dask's defaults, set it in this process)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    local = DaskExecutor("local", ResourcesConfig(), ("postgres", "postgres"))
    try:
        assert local.slots(plan("auto", 1)) == 1
        assert local.slots(plan(2, 2)) == min(2, os.cpu_count() or 1)
        # started as measured (10M rows: 1.29x the local executor before, 1.10x after):
        # glibc's dynamic mmap threshold kept (Dask's MALLOC_TRIM_THRESHOLD_ turns it
        # off), no statistical profiler, and the connectors loaded before the first task
        workers = local.ready().run(_worker_setup)
        assert list(workers.values()) == [(None, False, True, True)] * len(workers)
    finally:
        local.close()


def _worker_setup() -> tuple:
    import dask

    return (os.environ.get("MALLOC_TRIM_THRESHOLD_"),
            dask.config.get("distributed.worker.profile.enabled"),
            "rapidbyte_fast.sources.postgres" in sys.modules,
            "rapidbyte_fast.destinations.postgres" in sys.modules)


@needs_dask
def test_unreachable_scheduler_is_one_line_when_first_used(monkeypatch):
    # the executor connects in the background while the driver plans: its error comes
    # at the first task, as a one-line SetupError
    from rapidbyte_fast.config import ResourcesConfig
    from rapidbyte_fast.errors import SetupError
    from rapidbyte_fast.executors import dask_cluster

    monkeypatch.setattr(dask_cluster, "CONNECT_TIMEOUT_SECS", 1)
    executor = dask_cluster.DaskExecutor("tcp://127.0.0.1:9", ResourcesConfig())
    try:
        with pytest.raises(SetupError) as err:
            executor.ready()
        assert str(err.value).startswith(
            "executor dask: cannot reach the scheduler at tcp://127.0.0.1:9 (")
        assert "\n" not in str(err.value)
    finally:
        executor.close()
