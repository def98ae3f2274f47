"""End-to-end through the CLI against a real PostgreSQL: users/orders copied schema → schema."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

USERS = [
    (1, "Ada Lovelace", "ada@example.com", "2024-01-01 10:00:00+00"),
    (2, "Grace O'Hopper", None, "2024-02-29 23:59:59.999999+00"),
    (3, "Ünïcødé 名前 🚀", "tab\there@example.com", "1999-12-31 00:00:00+00"),
]
ORDERS = [
    (10, 1, "paid", "12.50", "2024-03-01 08:00:00", None),
    (11, 1, "refunded", "-3.99", "2024-03-02 09:30:00.5", "line1\nline2 \\ back"),
    (12, 3, "new", "99999999.99", "2024-03-03 00:00:00", ""),
]


@pytest.fixture
def seeded(pg_conn, pg_schema):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.users (id integer PRIMARY KEY, name text NOT NULL, "
                    "email varchar(255), created_at timestamptz)")
    pg_conn.execute(f"CREATE TABLE {s}.orders (id bigint PRIMARY KEY, user_id integer, "
                    "status text, amount numeric(10,2), created_at timestamp, notes text)")
    with pg_conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {s}.users VALUES (%s, %s, %s, %s)", USERS)
        cur.executemany(f"INSERT INTO {s}.orders VALUES (%s, %s, %s, %s, %s, %s)", ORDERS)
    return pg_schema


def _pipeline(tmp_path, src_schema, dst_schema, *, streams, load_method="copy",
              write_mode="replace", extra="") -> str:
    body = (
        'version: "1.0"\n'
        "pipeline: e2e\n"
        "source:\n"
        "  use: postgres\n"
        f'  config: {{url: "${{TEST_DSN}}", schema: {src_schema}}}\n'
        "  streams:\n"
        + textwrap.indent(streams, "    ")
        + "destination:\n"
        "  use: postgres\n"
        f'  config: {{url: "${{TEST_DSN}}", schema: {dst_schema}, load_method: {load_method}}}\n'
        f"  write_mode: {write_mode}\n"
        + extra
    )
    path = tmp_path / "pipeline.yaml"
    path.write_text(body)
    return str(path)


def _cli(pg_dsn, *args, env=None):
    env = {**os.environ, "TEST_DSN": pg_dsn, **(env or {})}
    return subprocess.run([sys.executable, "-m", "rapidbyte_fast", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def _err(proc) -> str:
    """stderr without log lines (e.g. the pure-Python kernels warning)."""
    return "\n".join(ln for ln in proc.stderr.splitlines()
                     if not re.match(r"^\d\d:\d\d:\d\d ", ln)).strip()


def _rows(conn, schema, table, cols="*"):
    return conn.execute(f'SELECT {cols} FROM "{schema}"."{table}" ORDER BY 1').fetchall()


def _text_rows(conn, schema, table):
    cols = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema=%s "
        "AND table_name=%s ORDER BY ordinal_position", (schema, table)).fetchall()]
    expr = ", ".join(f'"{c}"::text' for c in cols)
    return conn.execute(f'SELECT {expr} FROM "{schema}"."{table}" ORDER BY 1').fetchall()


def _types(conn, schema, table):
    return conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum", (f'"{schema}"."{table}"',)).fetchall()


@pytest.mark.parametrize("load_method", ["copy", "insert"])
def test_full_refresh_users_orders(pg_dsn, pg_conn, seeded, pg_schema2, tmp_path, load_method):
    path = _pipeline(tmp_path, seeded, pg_schema2, load_method=load_method,
                     streams="- name: users\n- name: orders\n")
    proc = _cli(pg_dsn, "run", path)
    assert proc.returncode == 0, proc.stderr
    for table in ("users", "orders"):
        assert _text_rows(pg_conn, pg_schema2, table) == _text_rows(pg_conn, seeded, table)
        assert _types(pg_conn, pg_schema2, table) == _types(pg_conn, seeded, table)
    assert _rows(pg_conn, pg_schema2, "users", "id, name, email") == [
        (1, "Ada Lovelace", "ada@example.com"), (2, "Grace O'Hopper", None),
        (3, "Ünïcødé 名前 🚀", "tab\there@example.com")]
    notes = _rows(pg_conn, pg_schema2, "orders", "id, notes")
    assert notes == [(10, None), (11, "line1\nline2 \\ back"), (12, "")]
    pk = pg_conn.execute(
        "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass AND indisprimary",
        (f'"{pg_schema2}"."orders"',)).fetchone()[0]
    assert pk == 1
    bench = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@BENCH_JSON@@")]
    assert len(bench) == 1
    data = json.loads(bench[0][len("@@BENCH_JSON@@"):])
    assert data["records_read"] == 6 and data["records_written"] == 6
    assert data["path"] == ("passthrough" if load_method == "copy" else "arrow")
    assert data["load_method"] == load_method
    for key in ("bytes_read", "bytes_written", "duration_secs", "parallelism", "retry_count",
                "process_cpu_secs", "peak_rss_mb", "source_fetch_secs", "dest_flush_secs"):
        assert key in data


def test_replace_twice_has_no_duplicates(pg_dsn, pg_conn, seeded, pg_schema2, tmp_path):
    path = _pipeline(tmp_path, seeded, pg_schema2, streams="- name: orders\n")
    for _ in range(2):
        proc = _cli(pg_dsn, "run", "-q", path)
        assert proc.returncode == 0, proc.stderr
    assert [r[0] for r in _rows(pg_conn, pg_schema2, "orders", "id")] == [10, 11, 12]
    tables = pg_conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema=%s",
        (pg_schema2,)).fetchall()
    assert tables == [("orders",)]  # no staging table left behind


def test_append_twice_doubles(pg_dsn, pg_conn, seeded, pg_schema2, tmp_path):
    path = _pipeline(tmp_path, seeded, pg_schema2, streams="- name: users\n",
                     write_mode="append")
    assert _cli(pg_dsn, "run", "-q", path).returncode == 0
    # append is a log: the target has no key, so the second run adds the rows again
    proc = _cli(pg_dsn, "run", "-q", path)
    assert proc.returncode == 0, proc.stderr
    assert len(_rows(pg_conn, pg_schema2, "users")) == 6


def test_projection(pg_dsn, pg_conn, seeded, pg_schema2, tmp_path):
    path = _pipeline(tmp_path, seeded, pg_schema2,
                     streams="- name: orders\n  columns: [id, amount]\n")
    proc = _cli(pg_dsn, "run", "-q", path)
    assert proc.returncode == 0, proc.stderr
    assert _types(pg_conn, pg_schema2, "orders") == [("id", "bigint"), ("amount", "numeric(10,2)")]
    assert _text_rows(pg_conn, pg_schema2, "orders") == [
        ("10", "12.50"), ("11", "-3.99"), ("12", "99999999.99")]


def test_failed_replace_keeps_old_table(pg_dsn, pg_conn, seeded, pg_schema2, tmp_path):
    path = _pipeline(tmp_path, seeded, pg_schema2, streams="- name: users\n")
    assert _cli(pg_dsn, "run", "-q", path).returncode == 0
    before = _text_rows(pg_conn, pg_schema2, "users")
    # the source now fails in the middle of the COPY (division by zero on the second row)
    pg_conn.execute(f'ALTER TABLE "{seeded}".users RENAME TO users_real')
    pg_conn.execute(f'CREATE VIEW "{seeded}".users AS SELECT id, name, email, created_at '
                    f'FROM "{seeded}".users_real WHERE 1 / (id - 2) IS NOT NULL')
    proc = _cli(pg_dsn, "run", "-q", path)
    assert proc.returncode == 1
    assert _err(proc).startswith("error: stream users: division by zero")
    assert "Traceback" not in proc.stderr
    assert _text_rows(pg_conn, pg_schema2, "users") == before
    tables = pg_conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema=%s",
        (pg_schema2,)).fetchall()
    assert tables == [("users",)]


def test_unknown_projection_column(pg_dsn, seeded, pg_schema2, tmp_path):
    path = _pipeline(tmp_path, seeded, pg_schema2,
                     streams="- name: users\n  columns: [id, nope]\n")
    proc = _cli(pg_dsn, "run", "-q", path)
    assert proc.returncode == 2
    assert _err(proc) == (
        f"config error: stream users: columns nope not in table {seeded}.users "
        "(has: id, name, email, created_at)")


def test_missing_source_table(pg_dsn, seeded, pg_schema2, tmp_path):
    path = _pipeline(tmp_path, seeded, pg_schema2, streams="- name: nowhere\n")
    proc = _cli(pg_dsn, "run", "-q", path)
    assert proc.returncode == 1
    assert _err(proc) == f"error: stream nowhere: table {seeded}.nowhere does not exist"


def test_config_errors_reported_together(pg_dsn, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent("""\
        version: "1.0"
        pipeline: bad
        source:
          use: postgres
          config: {url: "${NOT_SET_ANYWHERE}"}
          streams:
            - name: users
              sync_mode: incremental
        destination:
          use: postgres
          config: {url: "postgresql://u:hunter2@localhost/db", lod_method: copy}
          write_mode: upsert
        """))
    proc = _cli(pg_dsn, "run", str(path))
    assert proc.returncode == 2
    lines = _err(proc).splitlines()
    assert all(ln.startswith("config error: ") for ln in lines), lines
    text = proc.stderr
    assert "NOT_SET_ANYWHERE" in text
    assert "lod_method" in text and "load_method" in text
    assert "cursor_field" in text
    assert "primary_key" in text
    assert "hunter2" not in text and "Traceback" not in text


def test_check_and_discover(pg_dsn, pg_conn, seeded, pg_schema2, tmp_path):
    path = _pipeline(tmp_path, seeded, pg_schema2, streams="- name: orders\n")
    proc = _cli(pg_dsn, "check", path)
    assert proc.returncode == 0, proc.stderr
    assert "stream orders: 6 columns, primary key id" in proc.stdout
    assert "    amount: numeric(10,2) → decimal128(10, 2)" in proc.stdout
    assert "destination: connected" in proc.stdout
    assert "note:" not in proc.stdout
    pg_conn.execute(f'CREATE TABLE "{seeded}".nokey (v text)')
    proc = _cli(pg_dsn, "check", _pipeline(tmp_path, seeded, pg_schema2, streams="- name: nokey\n"))
    assert ("  note: stream nokey has no key to cut into ranges (a primary key, or an integer "
            "partition_key): a failed full refresh starts over instead of resuming"
            in proc.stdout.splitlines())
    pg_conn.execute(f'DROP TABLE "{seeded}".nokey')
    proc = _cli(pg_dsn, "discover", "--json", path)
    assert proc.returncode == 0, proc.stderr
    found = {t["stream"]: t for t in json.loads(proc.stdout)}
    assert set(found) == {f"{seeded}.orders", f"{seeded}.users"}
    assert [c["pg_type"] for c in found[f"{seeded}.users"]["columns"]] == [
        "integer", "text", "character varying(255)", "timestamp with time zone"]


def test_info():
    proc = subprocess.run([sys.executable, "-m", "rapidbyte_fast", "info"],
                          capture_output=True, text=True)
    assert proc.returncode == 0
    impl = os.environ.get("RAPIDBYTE_IMPL") or "c"
    assert f"implementation: {impl}" in proc.stdout
    assert "pyarrow:" in proc.stdout
