"""Checkpoints: incremental and upsert loads commit as they go; a failed run keeps what its
checkpoints committed and the next run goes on from there without duplicates."""
from __future__ import annotations

import json

import pytest

from .test_cli_e2e import _cli, _err, _pipeline


def _run(pg_dsn, tmp_path, src, dst, streams, write_mode, resources, passthrough="auto"):
    path = _pipeline(tmp_path, src, dst, streams=streams, write_mode=write_mode)
    text = open(path).read().replace("load_method: copy}", f"load_method: copy, "
                                     f"passthrough: {passthrough}}}")
    if write_mode == "upsert":
        text += "  primary_key: [id]\n"
    open(path, "w").write(text + f"resources: {{{resources}}}\n")
    proc = _cli(pg_dsn, "run", "-q", path)
    bench = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@BENCH_JSON@@")]
    return proc, (json.loads(bench[0][len("@@BENCH_JSON@@"):]) if bench else None)


INC = ("- name: ev\n  sync_mode: incremental\n  cursor_field: n\n"
       "  tie_breaker_field: id\n")


@pytest.mark.parametrize("passthrough", ["auto", "off"])
def test_failed_incremental_keeps_checkpointed_rows(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                                    tmp_path, passthrough):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.base (id int PRIMARY KEY, n int, pad text)")
    # cursor values repeat (n = id / 10): the tie-breaker makes mid-group cuts exact
    pg_conn.execute(f"INSERT INTO {s}.base SELECT i, i / 10, repeat('p', 120) "
                    "FROM generate_series(1, 70000) i")
    # an index in cursor order: rows stream out (and the error comes) without a sort first
    pg_conn.execute(f"CREATE INDEX ON {s}.base (n, id)")
    pg_conn.execute(f"ANALYZE {s}.base")
    pg_conn.execute(f"CREATE VIEW {s}.ev AS SELECT id, n, pad FROM {s}.base "
                    "WHERE 1 / (id - 60000) IS NOT NULL")
    res = "checkpoint_interval_rows: 5000, max_batch_rows: 2000, max_retries: 0"
    proc, _ = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, INC, "append", res, passthrough)
    assert proc.returncode == 1 and _err(proc) == "error: stream ev: division by zero"
    # what the checkpoints committed before the failure stopped the stages (how far the
    # destination got is timing: the failure stops it at once), with its exact cursor
    kept, distinct = pg_conn.execute(
        f'SELECT count(*), count(DISTINCT id) FROM "{pg_schema2}".ev').fetchone()
    assert kept < 60000 and kept == distinct
    if kept:
        last = pg_conn.execute(f'SELECT cursor_value, tie_value FROM "{pg_schema2}".rbf_state'
                               ).fetchone()
        top = pg_conn.execute(f'SELECT n, id FROM "{pg_schema2}".ev ORDER BY n DESC, id DESC '
                              "LIMIT 1").fetchone()
        assert last == (str(top[0]), str(top[1]))
    pg_conn.execute(f"CREATE OR REPLACE VIEW {s}.ev AS SELECT id, n, pad FROM {s}.base")
    proc, data = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, INC, "append", res, passthrough)
    assert proc.returncode == 0, proc.stderr
    assert data["records_written"] == 70000 - kept and data["checkpoints"] >= 1
    assert pg_conn.execute(f'SELECT count(*), count(DISTINCT id) FROM "{pg_schema2}".ev'
                           ).fetchone() == (70000, 70000)


def test_upsert_checkpoints(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.up (id int, v int)")
    pg_conn.execute(f"INSERT INTO {s}.up SELECT i % 7000, i FROM generate_series(1, 20000) i")
    res = "checkpoint_interval_rows: 3000, max_batch_rows: 1000"
    proc, data = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "- name: up\n", "upsert", res,
                      "off")
    assert proc.returncode == 0, proc.stderr
    assert data["checkpoints"] >= 5
    # every key ends with its last value in the source's order
    assert pg_conn.execute(f'SELECT count(*), sum(v) FROM "{pg_schema2}".up').fetchone() == (
        7000, sum(max(i for i in range(k or 7000, 20001, 7000)) for k in range(7000)))
