"""Passthrough: raw COPY binary bytes Postgres → Postgres when types are identical."""
from __future__ import annotations

import json

from .test_cli_e2e import _cli, _err, _pipeline, _text_rows, _types


def _bench(proc) -> dict:
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("@@BENCH_JSON@@"))
    return json.loads(line[len("@@BENCH_JSON@@"):])


def _seed(pg_conn, schema):
    s = f'"{schema}"'
    pg_conn.execute(f"CREATE TYPE {s}.mood AS ENUM ('sad', 'ok', 'happy')")
    pg_conn.execute(
        f"CREATE TABLE {s}.things (id bigint PRIMARY KEY, ip inet, m {s}.mood, "
        "tags text[], n numeric, ts timestamptz, r int4range, b bytea)")
    pg_conn.execute(
        f"INSERT INTO {s}.things SELECT i, ('10.0.' || (i / 256) || '.' || (i % 256))::inet, "
        "(ARRAY['sad','ok','happy'])[1 + i % 3]::" + f"{s}.mood, "
        "ARRAY['a' || i, NULL, 'x\"y'], i * 1.5, '2024-01-01 00:00:00+00'::timestamptz + i * "
        "interval '1 hour', int4range(i, i + 10), decode(md5(i::text), 'hex') "
        "FROM generate_series(1, 2500) i")
    pg_conn.execute(f"INSERT INTO {s}.things (id) VALUES (0)")


def test_replace_takes_passthrough_and_copies_exactly(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                                      tmp_path):
    _seed(pg_conn, pg_schema)
    path = _pipeline(tmp_path, pg_schema, pg_schema2, streams="- name: things\n")
    # the enum type lives in the source schema; the destination creates columns of that type
    proc = _cli(pg_dsn, "run", path)
    assert proc.returncode == 0, proc.stderr
    data = _bench(proc)
    assert data["path"] == "passthrough"
    assert data["records_read"] == data["records_written"] == 2501
    assert _types(pg_conn, pg_schema2, "things") == _types(pg_conn, pg_schema, "things")
    assert _text_rows(pg_conn, pg_schema2, "things") == _text_rows(pg_conn, pg_schema, "things")


def test_passthrough_off_and_insert_use_arrow(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path):
    _seed(pg_conn, pg_schema)
    for extra, load in (("    passthrough: off\n", "copy"), ("", "insert")):
        body = _pipeline(tmp_path, pg_schema, pg_schema2, streams="- name: things\n",
                         load_method=load)
        text = open(body).read().replace(f"load_method: {load}}}",
                                          f"load_method: {load}, passthrough: "
                                          f"{'off' if extra else 'auto'}}}")
        open(body, "w").write(text)
        proc = _cli(pg_dsn, "run", body)
        assert proc.returncode == 0, proc.stderr
        assert _bench(proc)["path"] == "arrow"
        assert _text_rows(pg_conn, pg_schema2, "things") == _text_rows(
            pg_conn, pg_schema, "things")


def test_append_into_different_types_uses_arrow(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                                tmp_path):
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".t (id integer, v text)')
    pg_conn.execute(f"INSERT INTO \"{pg_schema}\".t VALUES (1, 'a'), (2, NULL)")
    pg_conn.execute(f'CREATE TABLE "{pg_schema2}".t (id integer, v varchar(10))')
    path = _pipeline(tmp_path, pg_schema, pg_schema2, streams="- name: t\n",
                     write_mode="append")
    with open(path, "a") as f:
        f.write("  schema_evolution: {type_change: coerce}\n")
    proc = _cli(pg_dsn, "run", path)
    assert proc.returncode == 0, proc.stderr
    assert _bench(proc)["path"] == "arrow"
    pg_conn.execute(f'CREATE TABLE "{pg_schema2}".same (id integer, v text)')
    pg_conn.execute(f'ALTER TABLE "{pg_schema}".t RENAME TO same')
    path = _pipeline(tmp_path, pg_schema, pg_schema2, streams="- name: same\n",
                     write_mode="append")
    proc = _cli(pg_dsn, "run", path)
    assert proc.returncode == 0, proc.stderr
    assert _bench(proc)["path"] == "passthrough"
    assert _text_rows(pg_conn, pg_schema2, "same") == [("1", "a"), ("2", None)]


def test_composite_column_is_not_passed_through(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                                tmp_path):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TYPE {s}.pair AS (a int, b text)")
    pg_conn.execute(f"CREATE TABLE {s}.c (id int, p {s}.pair)")
    pg_conn.execute(f"INSERT INTO {s}.c VALUES (1, ROW(1, 'x')), (2, NULL)")
    path = _pipeline(tmp_path, pg_schema, pg_schema2, streams="- name: c\n")
    proc = _cli(pg_dsn, "run", path)
    assert proc.returncode == 0, proc.stderr
    assert _bench(proc)["path"] == "arrow"
    assert _text_rows(pg_conn, pg_schema2, "c") == [("1", "(1,x)"), ("2", None)]


def test_passthrough_source_failure_keeps_old_table(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                                    tmp_path):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.real (id int)")
    pg_conn.execute(f"INSERT INTO {s}.real SELECT generate_series(1, 5000)")
    pg_conn.execute(f"CREATE VIEW {s}.v AS SELECT id FROM {s}.real")
    path = _pipeline(tmp_path, pg_schema, pg_schema2, streams="- name: v\n")
    assert _cli(pg_dsn, "run", "-q", path).returncode == 0
    pg_conn.execute(f"CREATE OR REPLACE VIEW {s}.v AS SELECT id FROM {s}.real "
                    "WHERE 1 / (id - 4000) IS NOT NULL")
    proc = _cli(pg_dsn, "run", "-q", path)
    assert proc.returncode == 1
    assert _err(proc) == "error: stream v: division by zero"
    assert pg_conn.execute(f'SELECT count(*) FROM "{pg_schema2}".v').fetchone()[0] == 5000
