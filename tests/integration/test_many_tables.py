"""Many tables in one run: ``streams: "*"`` loads every table of the source schema, streams
run ``parallel_streams`` at a time, each commits on its own, and a failing stream neither
stops nor rolls back its siblings: the run fails naming every stream's outcome."""
from __future__ import annotations

import pytest
import yaml

from rapidbyte_fast.engine import stream_workers

from .test_cli_e2e import _cli, _err

pytestmark = pytest.mark.integration

TABLES = [f"t{i}" for i in range(10)]


def _write(tmp_path, src: str, dst: str, streams, parallel_streams=3) -> str:
    path = tmp_path / "many.yaml"
    path.write_text(yaml.safe_dump({
        "pipeline": "many",
        "source": {"use": "postgres", "config": {"url": "${TEST_DSN}", "schema": src},
                   "streams": streams},
        "destination": {"use": "postgres", "config": {"url": "${TEST_DSN}", "schema": dst},
                        "write_mode": "replace"},
        "resources": {"parallel_streams": parallel_streams, "max_retries": 0},
    }))
    return str(path)


@pytest.fixture
def tables(pg_conn, pg_schema):
    for i, t in enumerate(TABLES):
        pg_conn.execute(f'CREATE TABLE "{pg_schema}".{t} (id int PRIMARY KEY, v text)')
        pg_conn.execute(f'INSERT INTO "{pg_schema}".{t} SELECT g, md5(g::text) '
                        f"FROM generate_series(1, {1000 * (i + 1)}) g")
    # neither a view, a partition nor our own state tables are a stream of "*"
    pg_conn.execute(f'CREATE VIEW "{pg_schema}".v AS SELECT 1 AS one')
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".rbf_state (x int)')
    return pg_schema


def _sums(conn, schema: str, table: str):
    return conn.execute(f'SELECT count(*), sum(id), string_agg(v, \'\' ORDER BY id) '
                        f'FROM "{schema}".{table}').fetchone()


@pytest.mark.parametrize("streams", ["*", ["*"], TABLES[:4] + ["*"]])
def test_every_table_of_the_schema_loads(pg_dsn, pg_conn, tables, pg_schema2, tmp_path,
                                         streams):
    fresh = f"{pg_schema2}_new"  # created by the first of the streams that run at once
    try:
        proc = _cli(pg_dsn, "run", _write(tmp_path, tables, fresh, streams))
        assert proc.returncode == 0, proc.stderr
        for t in TABLES:
            assert _sums(pg_conn, fresh, t) == _sums(pg_conn, tables, t)
        got = pg_conn.execute("SELECT relname FROM pg_class WHERE relnamespace = "
                              "%s::regnamespace AND relkind = 'r' ORDER BY 1",
                              (f'"{fresh}"',)).fetchall()
        assert [r[0] for r in got] == TABLES
        listed = [ln.split(" → ")[0].strip() for ln in proc.stdout.splitlines() if " → " in ln]
        assert sorted(listed) == TABLES
    finally:
        pg_conn.execute(f'DROP SCHEMA IF EXISTS "{fresh}" CASCADE')


def test_a_failing_stream_leaves_its_siblings_committed(pg_dsn, pg_conn, tables, pg_schema2,
                                                        tmp_path):
    s = f'"{tables}"'
    pg_conn.execute(f"CREATE VIEW {s}.bad AS SELECT id, v FROM {s}.t5 "
                    "WHERE 1 / (id - 4000) IS NOT NULL")
    streams = ["t0", "bad", "t1", "t2"]
    proc = _cli(pg_dsn, "run", "-q", _write(tmp_path, tables, pg_schema2, streams, 2))
    assert proc.returncode == 1
    assert _err(proc) == (
        "error: stream bad: division by zero (streams: t0 committed 1,000 rows; bad failed; "
        "t1 committed 2,000 rows; t2 committed 3,000 rows)")
    for t in ("t0", "t1", "t2"):
        assert _sums(pg_conn, pg_schema2, t) == _sums(pg_conn, tables, t)
    assert pg_conn.execute("SELECT to_regclass(%s)", (f'"{pg_schema2}".bad',)).fetchone() == (
        None,)


def test_all_streams_need_a_source_that_lists_them(pg_dsn, tmp_path):
    path = tmp_path / "gen.yaml"
    path.write_text(yaml.safe_dump({
        "pipeline": "g", "source": {"use": "generate", "config": {"dataset": "bench_events"},
                                    "streams": "*"},
        "destination": {"use": "postgres", "config": {"url": "${TEST_DSN}"}}}))
    proc = _cli(pg_dsn, "run", str(path))
    assert proc.returncode == 2
    assert _err(proc) == ("config error: source.streams[0].name: generate sources cannot list "
                          "their streams: name them instead of '*'")


def test_stream_workers():
    assert stream_workers(3, 10) == 3
    assert stream_workers(8, 2) == 2
    assert 1 <= stream_workers("auto", 10) <= 4
    assert stream_workers("auto", 1) == 1


def test_sigterm_stops_every_stream_then_the_next_run_is_exact(pg_dsn, pg_conn, tables,
                                                              pg_schema2, tmp_path):
    path = _write(tmp_path, tables, pg_schema2, "*", 3)
    stopped = _cli(pg_dsn, "run", "-q", path,
                   env={"RAPIDBYTE_FAULTS": "dest.batch#4=term"})
    assert stopped.returncode == 143, stopped.stderr
    assert _err(stopped).splitlines()[-1] == (
        "stopped: the work in flight was rolled back; committed ranges, checkpoints and "
        "streams are kept")
    proc = _cli(pg_dsn, "run", "-q", path)
    assert proc.returncode == 0, proc.stderr
    for t in TABLES:
        assert _sums(pg_conn, pg_schema2, t) == _sums(pg_conn, tables, t)
