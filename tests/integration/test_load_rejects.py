"""Rows the destination refuses, with ``on_data_error: skip|dlq``: every other row loads,
the refused ones are skipped or dead-lettered with the server's message and SQLSTATE, on
both load methods; on passthrough the stream falls back to the Arrow path. Arrays with more
dimensions than their column declares travel as exact text."""
from __future__ import annotations

import json

import pytest

from rapidbyte_fast.state.dlq import list_dead_letters

from .test_cli_e2e import _cli, _err, _pipeline

pytestmark = pytest.mark.integration

ROWS = 5000
#: id → (SQLSTATE, what the server says): the source rows the destination refuses
BAD = {7: ("22003", 'value "9999999999" is out of range for type integer'),
       100: ("22P02", "invalid input syntax for type json"),
       2500: ("23514", 'violates check constraint "t_n_check"'),
       4999: ("23505", 'duplicate key value violates unique constraint "t_pkey"')}
#: the destination's row with the key of source row 4999
EXISTING = (4999, 1, "{}", "existing")


def _run(pg_dsn, tmp_path, src, dst, streams, write_mode, resources, passthrough="auto"):
    """Runs a pipeline with the summary on stdout; (process, @@BENCH_JSON@@ as a dict)."""
    path = _pipeline(tmp_path, src, dst, streams=streams, write_mode=write_mode)
    text = open(path).read().replace("load_method: copy}", f"load_method: copy, "
                                     f"passthrough: {passthrough}}}")
    open(path, "w").write(text + f"resources: {{{resources}}}\n")
    proc = _cli(pg_dsn, "run", path)
    bench = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@BENCH_JSON@@")]
    return proc, (json.loads(bench[0][len("@@BENCH_JSON@@"):]) if bench else None)


def _tables(pg_conn, src: str, dst: str) -> None:
    pg_conn.execute(f'CREATE TABLE "{src}".t (id int PRIMARY KEY, n bigint, doc text, '
                    "note text)")
    pg_conn.execute(
        f'INSERT INTO "{src}".t SELECT i, CASE i WHEN 7 THEN 9999999999 WHEN 2500 THEN 13 '
        "ELSE i + 100000 END, CASE i WHEN 100 THEN '{nope' ELSE json_build_object('i', i)::text END, "
        f"'note ' || i FROM generate_series(1, {ROWS}) i")
    pg_conn.execute(f'CREATE TABLE "{dst}".t (id int PRIMARY KEY, n int CHECK (n <> 13), '
                    "doc jsonb, note text)")
    pg_conn.execute(f'INSERT INTO "{dst}".t VALUES (%s, %s, %s, %s)', EXISTING)


def _expected(pg_conn, src: str) -> list[tuple]:
    return sorted(pg_conn.execute(
        f'SELECT id, n, doc::jsonb::text, note FROM "{src}".t '
        f"WHERE id NOT IN ({', '.join(map(str, BAD))}) ORDER BY id").fetchall() + [EXISTING])


@pytest.mark.parametrize("load_method", ["copy", "insert"])
@pytest.mark.parametrize("mode", ["skip", "dlq"])
def test_refused_rows_are_set_aside_and_the_rest_loads(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                                       tmp_path, load_method, mode):
    _tables(pg_conn, pg_schema, pg_schema2)
    extra = f"  on_data_error: {mode}\n  schema_evolution: {{type_change: coerce}}\n"
    proc, data = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "- name: t\n",
                      f"append\n{extra}", "max_batch_rows: 1000, max_retries: 0")
    assert proc.returncode == 0, proc.stderr
    got = pg_conn.execute(f'SELECT id, n, doc::text, note FROM "{pg_schema2}".t ORDER BY id'
                          ).fetchall()
    assert got == _expected(pg_conn, pg_schema)
    assert data["records_written"] == ROWS - len(BAD)
    assert data["records_refused"] == len(BAD)
    assert (data["records_skipped"], data["records_dlq"]) == (
        (len(BAD), 0) if mode == "skip" else (0, len(BAD)))
    word = "to the dead-letter table" if mode == "dlq" else "skipped"
    assert f"rejected: {len(BAD)} rows {word}: {len(BAD)} refused by the destination" in (
        proc.stdout + proc.stderr)
    dead = list_dead_letters(pg_dsn, pg_schema2, "e2e")
    if mode == "skip":
        assert dead == []
        return
    assert sorted(r["record"]["id"] for r in dead) == sorted(BAD)
    for r in dead:
        state, says = BAD[r["record"]["id"]]
        assert r["category"] == "load" and len(r["errors"]) == 1
        assert r["errors"][0].startswith(f"{state}: ") and says in r["errors"][0], r["errors"]
        row = pg_conn.execute(f'SELECT to_jsonb(t) FROM "{pg_schema}".t WHERE id = %s',
                              (r["record"]["id"],)).fetchone()[0]
        assert r["record"] == row


def test_fail_stays_the_default(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path):
    _tables(pg_conn, pg_schema, pg_schema2)
    proc, _ = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "- name: t\n",
                   "append\n  schema_evolution: {type_change: coerce}\n",
                   "max_retries: 0")
    assert proc.returncode == 1
    assert "column 'n', row 6" in _err(proc) and "out of range for type integer" in _err(proc)
    assert pg_conn.execute(f'SELECT count(*) FROM "{pg_schema2}".t').fetchone() == (1,)


@pytest.mark.parametrize("parallelism", [1, 3])
def test_passthrough_falls_back_to_the_arrow_path(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                                  tmp_path, parallelism):
    # identical column types: passthrough; the destination's CHECK refuses two rows
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".p (id int PRIMARY KEY, n int, s text)')
    pg_conn.execute(f'INSERT INTO "{pg_schema}".p SELECT i, i % 1000, md5(i::text) '
                    "FROM generate_series(1, 30000) i")
    pg_conn.execute(f'ANALYZE "{pg_schema}".p')
    pg_conn.execute(f'CREATE TABLE "{pg_schema2}".p (id int PRIMARY KEY, '
                    "n int CHECK (n <> 999), s text)")
    res = (f"parallelism: {parallelism}, checkpoint_interval_rows: 5000, "
           "max_retries: 0")
    proc, data = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "- name: p\n",
                      "append\n  on_data_error: dlq\n", res)
    assert proc.returncode == 0, proc.stderr
    assert "loaded again on the Arrow path" in proc.stderr
    assert data["path"] == "arrow" and data["records_dlq"] == 30
    assert pg_conn.execute(f'SELECT count(*), count(DISTINCT id), sum(id) FROM '
                           f'"{pg_schema2}".p').fetchone() == pg_conn.execute(
        f'SELECT count(*), count(DISTINCT id), sum(id) FROM "{pg_schema}".p '
        "WHERE n <> 999").fetchone()
    dead = list_dead_letters(pg_dsn, pg_schema2, "e2e")
    assert sorted(r["record"]["id"] for r in dead) == list(range(999, 30001, 1000))
    assert {r["errors"][0][:6] for r in dead} == {"23514:"}


@pytest.mark.parametrize("passthrough", ["auto", "off"])
def test_arrays_with_more_dimensions_than_declared_travel_as_text(
        pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path, passthrough):
    s = f'"{pg_schema}"'
    # declared 1-D; Postgres stores any shape
    pg_conn.execute(f"CREATE TABLE {s}.a (id int PRIMARY KEY, tags text[], n int[])")
    pg_conn.execute(f"INSERT INTO {s}.a SELECT i, ARRAY['t' || i, NULL], ARRAY[i] "
                    "FROM generate_series(1, 3000) i")
    pg_conn.execute(f"UPDATE {s}.a SET tags = '{{{{a,b}},{{\"c d\",NULL}}}}' WHERE id = 2000")
    pg_conn.execute(f"UPDATE {s}.a SET n = '[0:1]={{5,6}}' WHERE id = 2001")
    proc, data = _run(pg_dsn, tmp_path, pg_schema, pg_schema2, "- name: a\n", "replace",
                      "max_batch_rows: 500, max_retries: 0", passthrough)
    assert proc.returncode == 0, proc.stderr
    expect = pg_conn.execute(f"SELECT id, tags::text, n::text FROM {s}.a ORDER BY id").fetchall()
    assert pg_conn.execute(f'SELECT id, tags::text, n::text FROM "{pg_schema2}".a ORDER BY id'
                           ).fetchall() == expect
    assert pg_conn.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
        f"'\"{pg_schema2}\".a'::regclass AND attnum > 1 ORDER BY attnum").fetchall() == [
        ("text[]",), ("integer[]",)]
    if passthrough == "off":
        for column in ("tags", "n"):
            assert f"column {column!r} carried as exact text" in proc.stderr
    assert data["records_written"] == 3000


def test_dead_letters_of_committed_ranges_survive_a_crash(pg_dsn, pg_conn, pg_schema,
                                                           pg_schema2, tmp_path):
    # a resumable append commits range by range: a range's dead letters are committed with
    # its rows, so a crash after some ranges neither loses nor repeats a letter
    _tables(pg_conn, pg_schema, pg_schema2)
    pg_conn.execute(f'ANALYZE "{pg_schema}".t')
    extra = "  on_data_error: dlq\n  schema_evolution: {type_change: coerce}\n"
    res = ("max_batch_rows: 500, checkpoint_interval_rows: 1000, checkpoint_interval_bytes: 0,"
           " max_retries: 0")
    path = _pipeline(tmp_path, pg_schema, pg_schema2, streams="- name: t\n",
                     write_mode=f"append\n{extra}")
    open(path, "a").write(f"resources: {{{res}}}\n")
    killed = _cli(pg_dsn, "run", path, env={"RAPIDBYTE_FAULTS": "dest.range_committed#4=kill"})
    assert killed.returncode == -9, killed.stderr
    # ranges 1-4 (ids 1..4000) are committed: their three letters with them
    assert sorted(r["record"]["id"] for r in list_dead_letters(pg_dsn, pg_schema2, "e2e")
                  ) == [7, 100, 2500]
    proc = _cli(pg_dsn, "run", path)
    assert proc.returncode == 0, proc.stderr
    got = pg_conn.execute(f'SELECT id, n, doc::text, note FROM "{pg_schema2}".t ORDER BY id'
                          ).fetchall()
    assert got == _expected(pg_conn, pg_schema)
    dead = list_dead_letters(pg_dsn, pg_schema2, "e2e")
    assert sorted(r["record"]["id"] for r in dead) == sorted(BAD)
