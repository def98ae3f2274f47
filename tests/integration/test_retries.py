"""Transient failures are retried from a clean state; permanent ones fail at once."""
from __future__ import annotations

import json

from .test_cli_e2e import _cli, _err, _pipeline, _text_rows


def _run(pg_dsn, tmp_path, src, dst, stream, retries=3, write_mode="append"):
    path = _pipeline(tmp_path, src, dst, streams=f"- name: {stream}\n", write_mode=write_mode)
    with open(path, "a") as f:
        f.write(f"resources: {{max_retries: {retries}, parallelism: 1}}\n")
    proc = _cli(pg_dsn, "run", "-q", path)
    bench = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@BENCH_JSON@@")]
    return proc, (json.loads(bench[0][len("@@BENCH_JSON@@"):]) if bench else None)


def _seed(conn, schema, n=2000):
    conn.execute(f'CREATE TABLE "{schema}".t (id int, v text)')
    conn.execute(f"INSERT INTO \"{schema}\".t SELECT i, 'v' || i FROM generate_series(1, {n}) i")


def _failing_target(conn, schema, failures: str):
    """Destination table whose trigger raises serialization_failure while the sequence is
    below ``failures`` (sequences are not rolled back, so each attempt advances it)."""
    s = f'"{schema}"'
    conn.execute(f"CREATE TABLE {s}.t (id int, v text)")
    conn.execute(f"CREATE SEQUENCE {s}.attempts")
    conn.execute(f"""CREATE FUNCTION {s}.flaky() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.id = 1 AND nextval('{schema}.attempts') <= {failures} THEN
            RAISE EXCEPTION 'injected conflict' USING ERRCODE = '40001';
          END IF;
          RETURN NEW;
        END $$""")
    conn.execute(f"CREATE TRIGGER flaky BEFORE INSERT ON {s}.t FOR EACH ROW "
                 f"EXECUTE FUNCTION {s}.flaky()")


def test_serialization_failure_is_retried(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path):
    _seed(pg_conn, pg_schema)
    _failing_target(pg_conn, pg_schema2, "1")
    proc, data = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "t")
    assert proc.returncode == 0, proc.stderr
    assert data["retry_count"] == 1
    assert "transient error" in proc.stderr and "retry 1 of 3" in proc.stderr
    assert _text_rows(pg_conn, pg_schema2, "t") == _text_rows(pg_conn, pg_schema, "t")


def test_dropped_source_connection_is_retried(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                              tmp_path):
    s = f'"{pg_schema}"'
    _seed(pg_conn, pg_schema)
    pg_conn.execute(f"CREATE SEQUENCE {s}.kills")
    # the first read kills its own backend half-way through the COPY
    pg_conn.execute(f"ALTER TABLE {s}.t RENAME TO base")
    pg_conn.execute(f"CREATE VIEW {s}.t AS SELECT id, v FROM {s}.base WHERE CASE WHEN id = 1000 "
                    f"AND nextval('{pg_schema}.kills') = 1 THEN "
                    "pg_terminate_backend(pg_backend_pid()) ELSE true END")
    proc, data = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "t", write_mode="replace")
    assert proc.returncode == 0, proc.stderr
    assert data["retry_count"] == 1 and data["records_written"] == 2000
    assert sorted(_text_rows(pg_conn, pg_schema2, "t"), key=lambda r: int(r[0])) == sorted(
        _text_rows(pg_conn, pg_schema, "base"), key=lambda r: int(r[0]))


def test_retries_are_bounded(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path):
    _seed(pg_conn, pg_schema)
    _failing_target(pg_conn, pg_schema2, "100")
    proc, data = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "t", retries=2)
    assert proc.returncode == 1 and data is None
    assert proc.stderr.count("transient error") == 2
    assert _err(proc).endswith("injected conflict")
    assert pg_conn.execute(f'SELECT count(*) FROM "{pg_schema2}".t').fetchone()[0] == 0


def test_permanent_errors_are_not_retried(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE VIEW {s}.t AS SELECT i AS id, 1 / (i - 3) AS v "
                    "FROM generate_series(1, 10) i")
    proc, _ = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "t")
    assert proc.returncode == 1
    assert "transient" not in proc.stderr
    assert _err(proc) == "error: stream t: division by zero"
