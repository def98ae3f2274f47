"""Schema evolution of an existing destination table, per policy."""
from __future__ import annotations

from .test_cli_e2e import _cli, _err, _pipeline, _text_rows, _types


def _run(pg_dsn, tmp_path, src, dst, policy: str):
    path = _pipeline(tmp_path, src, dst, streams="- name: t\n", write_mode="append")
    with open(path, "a") as f:
        f.write(f"  schema_evolution: {{{policy}}}\n")
    return _cli(pg_dsn, "run", "-q", path)


def _tables(conn, src, dst, src_cols, dst_cols):
    conn.execute(f'CREATE TABLE "{src}".t ({src_cols})')
    conn.execute(f'CREATE TABLE "{dst}".t ({dst_cols})')


def test_new_column_add(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path):
    _tables(pg_conn, pg_schema, pg_schema2, "id int, extra numeric(5,2)", "id int")
    pg_conn.execute(f"INSERT INTO \"{pg_schema}\".t VALUES (1, 2.50)")
    proc = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "new_column: add")
    assert proc.returncode == 0, proc.stderr
    assert _types(pg_conn, pg_schema2, "t") == [("id", "integer"), ("extra", "numeric(5,2)")]
    assert _text_rows(pg_conn, pg_schema2, "t") == [("1", "2.50")]


def test_new_column_ignore_and_fail(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path):
    _tables(pg_conn, pg_schema, pg_schema2, "id int, extra text", "id int")
    pg_conn.execute(f"INSERT INTO \"{pg_schema}\".t VALUES (1, 'x')")
    proc = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "new_column: ignore")
    assert proc.returncode == 0, proc.stderr
    assert _text_rows(pg_conn, pg_schema2, "t") == [("1",)]
    proc = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "new_column: fail")
    assert proc.returncode == 1
    assert _err(proc) == (f"error: stream t → {pg_schema2}.t: schema changed: new column extra "
                          "(text) [schema_evolution.new_column: fail]")


def test_removed_column_ignore_and_fail(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path):
    _tables(pg_conn, pg_schema, pg_schema2, "id int", "id int, gone text")
    pg_conn.execute(f"INSERT INTO \"{pg_schema}\".t VALUES (7)")
    proc = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "removed_column: ignore")
    assert proc.returncode == 0, proc.stderr
    assert _text_rows(pg_conn, pg_schema2, "t") == [("7", None)]
    proc = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "removed_column: fail")
    assert proc.returncode == 1
    assert _err(proc).endswith("schema changed: columns gone are gone from the source "
                               "[schema_evolution.removed_column: fail]")


def test_type_change_policies(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path):
    _tables(pg_conn, pg_schema, pg_schema2, "id int, v bigint", "id int, v integer")
    pg_conn.execute(f"INSERT INTO \"{pg_schema}\".t VALUES (1, 5)")
    proc = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "type_change: fail")
    assert proc.returncode == 1
    assert _err(proc).endswith("schema changed: column v is bigint in the source but integer "
                               "in the destination [schema_evolution.type_change: fail]")
    assert _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "type_change: null").returncode == 0
    assert _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "type_change: coerce").returncode == 0
    assert _text_rows(pg_conn, pg_schema2, "t") == [("1", None), ("1", "5")]
    # a value that does not fit the destination type is a clear error, nothing committed
    pg_conn.execute(f"INSERT INTO \"{pg_schema}\".t VALUES (2, 9999999999)")
    proc = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "type_change: coerce")
    assert proc.returncode == 1 and "out of range for type integer" in _err(proc)
    assert len(_text_rows(pg_conn, pg_schema2, "t")) == 2


def test_nullability_change(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path):
    _tables(pg_conn, pg_schema, pg_schema2, "id int", "id int NOT NULL")
    pg_conn.execute(f"INSERT INTO \"{pg_schema}\".t VALUES (1)")
    proc = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "nullability_change: fail")
    assert proc.returncode == 1
    assert _err(proc).endswith("column id is nullable in the source but NOT NULL in the "
                               "destination [schema_evolution.nullability_change: fail]")
    proc = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "nullability_change: allow")
    assert proc.returncode == 0, proc.stderr
    nullable = pg_conn.execute(
        "SELECT is_nullable FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = 't'", (pg_schema2,)).fetchone()[0]
    assert nullable == "YES"
