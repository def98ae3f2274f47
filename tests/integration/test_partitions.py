"""Partitioned full refresh: shards over key or ctid ranges, one exported snapshot."""
from __future__ import annotations

import json

import pytest

from rapidbyte_fast.config import PostgresSourceConfig, StreamConfig
from rapidbyte_fast.sources.postgres import PostgresSourceConnector

from .test_cli_e2e import _cli, _pipeline, _text_rows


def _run(pg_dsn, tmp_path, src, dst, stream, parallelism, write_mode="replace", extra="",
         dest_extra=""):
    path = _pipeline(tmp_path, src, dst, streams=f"- name: {stream}\n{extra}",
                     write_mode=write_mode)
    with open(path, "a") as f:
        f.write(dest_extra + f"resources: {{parallelism: {parallelism}}}\n")
    proc = _cli(pg_dsn, "run", "-q", path)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("@@BENCH_JSON@@"))
    return json.loads(line[len("@@BENCH_JSON@@"):])


@pytest.mark.parametrize("passthrough", [True, False])
def test_key_shards_copy_every_row_once(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path,
                                        passthrough):
    s = f'"{pg_schema}"'
    # negative ids, a gap, heavy skew (most rows in a narrow band), and NULL keys
    pg_conn.execute(f"CREATE TABLE {s}.t (k bigint, v text)")
    pg_conn.execute(f"INSERT INTO {s}.t SELECT i, 'neg' || i FROM generate_series(-500, -1) i")
    pg_conn.execute(f"INSERT INTO {s}.t SELECT i, 'dense' || i FROM generate_series(1, 3000) i")
    pg_conn.execute(f"INSERT INTO {s}.t VALUES (1000000000, 'far'), (NULL, 'null1'), "
                    "(NULL, 'null2')")
    extra = "  partition_key: k\n"
    if not passthrough:
        extra += "  columns: [k, v]\n"
        pg_conn.execute(f"CREATE TABLE \"{pg_schema2}\".t (k bigint, v varchar(20))")
    data = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "t", 3,
                write_mode="replace" if passthrough else "append", extra=extra,
                dest_extra="" if passthrough else "  schema_evolution: {type_change: coerce}\n")
    assert data["parallelism"] == 3
    assert data["path"] == ("passthrough" if passthrough else "arrow")
    assert data["records_written"] == 3503
    got = sorted(_text_rows(pg_conn, pg_schema2, "t"), key=str)
    want = sorted(_text_rows(pg_conn, pg_schema, "t"), key=str)
    assert got == want


def test_ctid_shards_without_key(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.nokey (v text)")
    pg_conn.execute(f"INSERT INTO {s}.nokey SELECT repeat('x', 200) || i "
                    "FROM generate_series(1, 5000) i")
    data = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "nokey", 2)
    assert data["parallelism"] == 2
    assert sorted(_text_rows(pg_conn, pg_schema2, "nokey")) == sorted(
        _text_rows(pg_conn, pg_schema, "nokey"))


def test_primary_key_is_built_and_old_table_replaced(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                                     tmp_path):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.pk (id int PRIMARY KEY, v int)")
    pg_conn.execute(f"INSERT INTO {s}.pk SELECT i, i * 2 FROM generate_series(1, 4000) i")
    for _ in range(2):
        data = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "pk", 4)
        assert data["parallelism"] == 4 and data["records_written"] == 4000
    assert pg_conn.execute(f'SELECT count(*), sum(v) FROM "{pg_schema2}".pk').fetchone() == (
        4000, 2 * sum(range(1, 4001)))
    tables = pg_conn.execute("SELECT table_name FROM information_schema.tables "
                             "WHERE table_schema = %s ORDER BY 1", (pg_schema2,)).fetchall()
    assert tables == [("pk",), ("rbf_progress",)]  # no staging table left behind
    assert pg_conn.execute(f'SELECT count(*) FROM "{pg_schema2}".rbf_progress').fetchone() == (0,)


def test_workers_read_one_snapshot(pg_dsn, pg_conn, pg_schema):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.live (id int PRIMARY KEY)")
    pg_conn.execute(f"INSERT INTO {s}.live SELECT generate_series(1, 1000)")
    src = PostgresSourceConnector(PostgresSourceConfig(url=pg_dsn, schema=pg_schema), pg_dsn)
    stream = StreamConfig(name="live")
    info = src.describe(stream)
    exporter = src.exporter("live")
    # a concurrent writer commits after the snapshot was taken
    pg_conn.execute(f"INSERT INTO {s}.live SELECT generate_series(1001, 2000)")
    pg_conn.execute(f"DELETE FROM {s}.live WHERE id <= 10")
    plan = src.plan_ranges(info, stream, 2, "replace", False, None, (0, 0))
    total = 0
    for key_range in plan.ranges:
        reader = src.reader(info, snapshot=exporter.snapshot)
        reader.open()
        total += sum(b.num_rows for b in reader.batches(1 << 20, 10_000, key_range))
        reader.close()
    exporter.close()
    src.close()
    assert (plan.partitioning, plan.workers, len(plan.ranges)) == ("key id", 2, 2)
    assert total == 1000


def test_bad_partition_key(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path):
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".t (id int, name text)')
    pg_conn.execute(f"INSERT INTO \"{pg_schema}\".t VALUES (1, 'a'), (2, 'b')")
    path = _pipeline(tmp_path, pg_schema, pg_schema2,
                     streams="- name: t\n  partition_key: name\n")
    with open(path, "a") as f:
        f.write("resources: {parallelism: 2}\n")
    proc = _cli(pg_dsn, "run", "-q", path)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith(
        "config error: stream t: partition_key name must be an integer column "
        "(smallint, integer or bigint)")
