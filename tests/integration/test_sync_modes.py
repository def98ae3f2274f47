"""Incremental reads (cursor committed with the rows) and upsert (set-based, last wins)."""
from __future__ import annotations

import pytest

from .test_cli_e2e import _cli, _err, _pipeline, _text_rows


def _run(pg_dsn, tmp_path, src, dst, streams, write_mode, load_method="copy", extra_dest=""):
    path = _pipeline(tmp_path, src, dst, streams=streams, write_mode=write_mode,
                     load_method=load_method)
    if write_mode == "upsert":
        extra_dest += "  primary_key: [id]\n"
    with open(path, "a") as f:
        f.write(extra_dest)
    return _cli(pg_dsn, "run", "-q", path)


def _state(conn, schema):
    return conn.execute(f'SELECT stream, cursor_value, tie_value FROM "{schema}".rbf_state '
                        "ORDER BY stream").fetchall()


INC = "- name: ev\n  sync_mode: incremental\n  cursor_field: n\n"


@pytest.mark.parametrize("load_method", ["copy", "insert"])
def test_incremental_reads_each_row_once(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path,
                                         load_method):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.ev (id int PRIMARY KEY, n numeric, v text)")
    # 9 < 10 numerically but not as strings: the cursor must compare as numeric
    pg_conn.execute(f"INSERT INTO {s}.ev VALUES (1, 2, 'a'), (2, 9, 'b')")
    proc = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, INC, "append", load_method)
    assert proc.returncode == 0, proc.stderr
    assert _state(pg_conn, pg_schema2) == [("ev", "9", None)]
    pg_conn.execute(f"INSERT INTO {s}.ev VALUES (3, 10, 'c'), (4, 8.5, 'late')")
    proc = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, INC, "append", load_method)
    assert proc.returncode == 0, proc.stderr
    assert _text_rows(pg_conn, pg_schema2, "ev") == [
        ("1", "2", "a"), ("2", "9", "b"), ("3", "10", "c")]
    assert _state(pg_conn, pg_schema2) == [("ev", "10", None)]
    # nothing new: no rows, cursor kept
    proc = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, INC, "append", load_method)
    assert proc.returncode == 0, proc.stderr
    assert len(_text_rows(pg_conn, pg_schema2, "ev")) == 3
    assert _state(pg_conn, pg_schema2) == [("ev", "10", None)]


def test_tie_breaker_catches_rows_sharing_the_last_cursor(pg_dsn, pg_conn, pg_schema,
                                                         pg_schema2, tmp_path):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.ev (id int PRIMARY KEY, n timestamptz)")
    pg_conn.execute(f"INSERT INTO {s}.ev VALUES (1, '2024-01-01 00:00:00+00'), "
                    "(2, '2024-01-02 00:00:00+00')")
    streams = INC + "  tie_breaker_field: id\n"
    assert _run(pg_dsn, tmp_path, pg_schema, pg_schema2, streams, "append").returncode == 0
    # a row with the same cursor value as the last one read arrives later
    pg_conn.execute(f"INSERT INTO {s}.ev VALUES (3, '2024-01-02 00:00:00+00')")
    assert _run(pg_dsn, tmp_path, pg_schema, pg_schema2, streams, "append").returncode == 0
    assert [r[0] for r in _text_rows(pg_conn, pg_schema2, "ev")] == ["1", "2", "3"]
    assert _state(pg_conn, pg_schema2) == [("ev", "2024-01-02 00:00:00+00", "3")]


def test_failed_incremental_run_commits_neither_rows_nor_cursor(pg_dsn, pg_conn, pg_schema,
                                                               pg_schema2, tmp_path):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.base (id int, n int)")
    pg_conn.execute(f"INSERT INTO {s}.base SELECT i, i FROM generate_series(1, 100) i")
    pg_conn.execute(f"CREATE VIEW {s}.ev AS SELECT id, n FROM {s}.base")
    assert _run(pg_dsn, tmp_path, pg_schema, pg_schema2, INC, "append").returncode == 0
    pg_conn.execute(f"INSERT INTO {s}.base SELECT i, i FROM generate_series(101, 300) i")
    pg_conn.execute(f"CREATE OR REPLACE VIEW {s}.ev AS SELECT id, n FROM {s}.base "
                    "WHERE 1 / (id - 250) IS NOT NULL")
    proc = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, INC, "append")
    assert proc.returncode == 1 and _err(proc) == "error: stream ev: division by zero"
    assert pg_conn.execute(f'SELECT count(*) FROM "{pg_schema2}".ev').fetchone()[0] == 100
    assert _state(pg_conn, pg_schema2) == [("ev", "100", None)]
    pg_conn.execute(f"CREATE OR REPLACE VIEW {s}.ev AS SELECT id, n FROM {s}.base")
    assert _run(pg_dsn, tmp_path, pg_schema, pg_schema2, INC, "append").returncode == 0
    assert pg_conn.execute(f'SELECT count(*), count(DISTINCT id) FROM "{pg_schema2}".ev'
                           ).fetchone() == (300, 300)


@pytest.mark.parametrize("load_method", ["copy", "insert"])
def test_upsert_last_occurrence_wins(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path,
                                     load_method):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.up (id int, v text)")
    pg_conn.execute(f"INSERT INTO {s}.up VALUES (1, 'a'), (2, 'b')")
    streams = "- name: up\n"
    assert _run(pg_dsn, tmp_path, pg_schema, pg_schema2, streams, "upsert",
                load_method).returncode == 0
    pg_conn.execute(f"TRUNCATE {s}.up")
    pg_conn.execute(f"INSERT INTO {s}.up VALUES (2, 'b1'), (3, 'c'), (2, 'b2')")
    proc = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, streams, "upsert", load_method)
    assert proc.returncode == 0, proc.stderr
    assert _text_rows(pg_conn, pg_schema2, "up") == [("1", "a"), ("2", "b2"), ("3", "c")]
    pk = pg_conn.execute("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass "
                         "AND indisprimary", (f'"{pg_schema2}".up',)).fetchone()[0]
    assert pk == 1
    tables = pg_conn.execute("SELECT table_name FROM information_schema.tables "
                             "WHERE table_schema = %s", (pg_schema2,)).fetchall()
    assert tables == [("up",)]


def test_upsert_needs_a_unique_key_in_the_target(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                                 tmp_path):
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".up (id int, v text)')
    pg_conn.execute(f'CREATE TABLE "{pg_schema2}".up (id int, v text)')
    proc = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "- name: up\n", "upsert")
    assert proc.returncode == 1
    assert _err(proc) == (f"error: stream up → {pg_schema2}.up: upsert needs a primary key or "
                          f"unique index on (id) in {pg_schema2}.up")


def test_state_show_and_reset_with_incremental_upsert(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                                      tmp_path):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.ev (id int PRIMARY KEY, n bigint, v text)")
    pg_conn.execute(f"INSERT INTO {s}.ev VALUES (1, 10, 'a'), (2, 20, 'b')")
    path = _pipeline(tmp_path, pg_schema, pg_schema2, streams=INC, write_mode="upsert")
    with open(path, "a") as f:
        f.write("  primary_key: [id]\n")
    assert _cli(pg_dsn, "run", "-q", path).returncode == 0
    pg_conn.execute(f"UPDATE {s}.ev SET n = 30, v = 'a2' WHERE id = 1")
    assert _cli(pg_dsn, "run", "-q", path).returncode == 0
    assert _text_rows(pg_conn, pg_schema2, "ev") == [("1", "30", "a2"), ("2", "20", "b")]
    shown = _cli(pg_dsn, "state", "show", path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "pipeline e2e" and lines[1] == "cursors:"
    assert lines[2].startswith("  ev: 30  updated ")
    assert sum(": succeeded, " in ln for ln in lines) >= 2
    reset = _cli(pg_dsn, "state", "reset", path, "--stream", "ev")
    assert reset.stdout.strip() == ("reset 1 cursor(s) and 0 unfinished load(s) of pipeline e2e "
                                    "stream ev")
    assert _state(pg_conn, pg_schema2) == []
    pg_conn.execute(f"UPDATE {s}.ev SET v = 'b2' WHERE id = 2")  # n unchanged: only a full
    assert _cli(pg_dsn, "run", "-q", path).returncode == 0       # re-read picks it up
    assert _text_rows(pg_conn, pg_schema2, "ev") == [("1", "30", "a2"), ("2", "20", "b2")]
    assert _state(pg_conn, pg_schema2) == [("ev", "30", None)]


def test_run_history_in_postgres(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path):
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".h (id int)')
    pg_conn.execute(f'INSERT INTO "{pg_schema}".h SELECT generate_series(1, 5)')
    path = _pipeline(tmp_path, pg_schema, pg_schema2, streams="- name: h\n")
    with open(path, "a") as f:
        f.write('state: {backend: postgres, connection: "${TEST_DSN}"}\n')
    assert _cli(pg_dsn, "run", "-q", path).returncode == 0
    runs = pg_conn.execute("SELECT status, records, path FROM rapidbyte.rbf_runs "
                           "WHERE pipeline = 'e2e' AND stream = 'h'").fetchall()
    assert ("succeeded", 5, "passthrough") in runs
    shown = _cli(pg_dsn, "state", "show", path)
    assert shown.returncode == 0, shown.stderr
    assert any(" h: succeeded, 5 rows, " in ln for ln in shown.stdout.splitlines())


CURSOR_VALUES = {  # type: (first run, arriving later and newer, arriving later but not newer)
    "smallint": (["1", "9"], ["10"], ["5"]),
    "bigint": (["9", str(2**40)], [str(2**40 + 1)], ["10"]),
    "numeric": (["9.5", "10.25"], ["10.250001"], ["10.25"]),
    "date": (["2024-01-09", "2024-01-10"], ["2024-01-11"], ["2024-01-10"]),
    "timestamp": (["2024-01-01 00:00:00.000001", "2024-01-01 00:00:00.000002"],
                  ["2024-01-01 00:00:00.000003"], ["2024-01-01 00:00:00.000002"]),
    "timestamptz": (["2024-01-01 04:00:00.000001+05", "2024-01-01 00:00:00.000002+00"],
                    ["2024-01-01 00:00:00.000003+00"], ["2023-12-31 23:00:00+00"]),
    "text": (["a", "b"], ["bb"], ["ab"]),
    "uuid": (["00000000-0000-0000-0000-000000000009", "00000000-0000-0000-0000-000000000010"],
             ["00000000-0000-0000-0000-0000000000a0"], ["00000000-0000-0000-0000-000000000001"]),
}


@pytest.mark.parametrize("pg_type", list(CURSOR_VALUES))
def test_cursor_compares_with_its_real_type(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path,
                                            pg_type):
    first, newer, stale = CURSOR_VALUES[pg_type]
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.ev (id serial PRIMARY KEY, n {pg_type})")

    def add(values):
        for v in values:
            pg_conn.execute(f"INSERT INTO {s}.ev (n) VALUES (%s::{pg_type})", (v,))

    add(first)
    assert _run(pg_dsn, tmp_path, pg_schema, pg_schema2, INC, "append").returncode == 0
    add(newer + stale)
    assert _run(pg_dsn, tmp_path, pg_schema, pg_schema2, INC, "append").returncode == 0
    ids = [int(r[0]) for r in _text_rows(pg_conn, pg_schema2, "ev")]
    assert sorted(ids) == list(range(1, len(first) + len(newer) + 1))  # each once, no stale
    last = pg_conn.execute(f"SELECT t.n::text FROM {s}.ev t ORDER BY t.n DESC LIMIT 1"
                           ).fetchone()[0]
    assert _state(pg_conn, pg_schema2) == [("ev", last, None)]


def test_upsert_rewrites_only_changed_rows(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.ev (id int PRIMARY KEY, n numeric, j json, v text)")
    pg_conn.execute(f"INSERT INTO {s}.ev VALUES (1, 1.0, '{{\"a\": 1}}', 'a'), "
                    "(2, 2, '[1, 2]', NULL), (3, 3, NULL, 'c')")
    assert _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "- name: ev\n", "upsert").returncode == 0
    xmin = f'SELECT id, xmin::text::bigint FROM "{pg_schema2}".ev ORDER BY id'
    before = dict(pg_conn.execute(xmin).fetchall())
    pg_conn.execute(f"UPDATE {s}.ev SET n = 1.00 WHERE id = 1")  # same number, other scale
    pg_conn.execute(f"UPDATE {s}.ev SET v = 'b' WHERE id = 2")
    assert _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "- name: ev\n", "upsert").returncode == 0
    after = dict(pg_conn.execute(xmin).fetchall())
    assert [after[i] != before[i] for i in (1, 2, 3)] == [True, True, False]
    assert _text_rows(pg_conn, pg_schema2, "ev") == [
        ("1", "1.00", '{"a": 1}', "a"), ("2", "2", "[1, 2]", "b"), ("3", "3", None, "c")]


def test_full_refresh_append_is_a_log(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path):
    """Two appends of 3 rows give 6 rows: a target created by append has no key unless
    ``primary_key`` is configured; appending a duplicate into a keyed target is an error
    that names the key and suggests upsert."""
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.users (id int PRIMARY KEY, name text)")
    pg_conn.execute(f"INSERT INTO {s}.users VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    for _ in range(2):
        proc = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "- name: users\n", "append")
        assert proc.returncode == 0, proc.stderr
    assert pg_conn.execute(f'SELECT count(*), count(DISTINCT id) FROM "{pg_schema2}".users'
                           ).fetchone() == (6, 3)
    assert pg_conn.execute("SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass",
                           (f'"{pg_schema2}".users',)).fetchone() == (0,)
    pg_conn.execute(f'DROP TABLE "{pg_schema2}".users')
    proc = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "- name: users\n", "append",
                extra_dest="  primary_key: [id]\n")
    assert proc.returncode == 0, proc.stderr
    proc = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "- name: users\n", "append",
                extra_dest="  primary_key: [id]\n")
    assert proc.returncode == 1
    assert 'duplicate key value violates unique constraint "users_pkey" (Key (id)=(1) ' \
           "already exists.); the target has a unique key: write_mode upsert updates rows " \
           "by key" in proc.stderr
