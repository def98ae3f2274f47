"""Transforms end to end through the CLI: chained SQL, and validation with fail/skip/dlq."""
from __future__ import annotations

import json

import pytest

from .test_cli_e2e import _cli, _err, _pipeline, _text_rows, _types


@pytest.fixture
def people(pg_conn, pg_schema):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.people (id int PRIMARY KEY, name varchar(20), age int, "
                    "email text)")
    pg_conn.execute(f"INSERT INTO {s}.people VALUES (1, 'ada', 36, 'ada@example.com'), "
                    "(2, 'bob', 12, NULL), (3, 'cy', 40, 'not-an-email'), "
                    "(4, 'dee', 19, 'dee@example.org')")
    return pg_schema


def _with(path, text):
    with open(path, "a") as f:
        f.write(text)
    return path


def _bench(proc):
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("@@BENCH_JSON@@"))
    return json.loads(line[len("@@BENCH_JSON@@"):])


def test_chained_sql(pg_dsn, pg_conn, people, pg_schema2, tmp_path):
    path = _with(_pipeline(tmp_path, people, pg_schema2, streams="- name: people\n"),
                 "transforms:\n"
                 "  - use: sql\n"
                 "    config: {query: \"SELECT id, upper(name) AS name, age FROM people\"}\n"
                 "  - use: sql\n"
                 "    config: {query: \"SELECT * FROM input WHERE age >= 18\"}\n")
    proc = _cli(pg_dsn, "run", path)
    assert proc.returncode == 0, proc.stderr
    data = _bench(proc)
    assert data["path"] == "arrow" and data["transform_count"] == 2
    assert data["records_read"] == 4 and data["records_written"] == 3
    assert _text_rows(pg_conn, pg_schema2, "people") == [
        ("1", "ADA", "36"), ("3", "CY", "40"), ("4", "DEE", "19")]
    assert _types(pg_conn, pg_schema2, "people") == [
        ("id", "integer"), ("name", "text"), ("age", "integer")]


def test_bad_sql_is_a_config_error(pg_dsn, people, pg_schema2, tmp_path):
    path = _with(_pipeline(tmp_path, people, pg_schema2, streams="- name: people\n"),
                 "transforms:\n  - use: sql\n    config: {query: \"SELECT nope FROM people\"}\n")
    proc = _cli(pg_dsn, "run", path)
    assert proc.returncode == 2
    assert _err(proc).startswith("config error: transforms[0].config.query: Schema error: "
                                 "No field named nope.")


RULES = ("transforms:\n  - use: validate\n    config:\n      rules:\n"
         "        - {not_null: [email]}\n"
         "        - {regex: {column: email, pattern: '^[^@]+@[^@]+$'}}\n")


def test_validate_fail(pg_dsn, pg_conn, people, pg_schema2, tmp_path):
    path = _with(_pipeline(tmp_path, people, pg_schema2, streams="- name: people\n"), RULES)
    proc = _cli(pg_dsn, "run", path)
    assert proc.returncode == 1
    assert _err(proc) == ("error: stream people, row 1: validation failed: not_null: email is "
                          "null (transforms[0])")
    assert pg_conn.execute("SELECT to_regclass(%s)", (f'"{pg_schema2}".people',)
                           ).fetchone()[0] is None


def test_validate_skip_and_dlq(pg_dsn, pg_conn, people, pg_schema2, tmp_path):
    for mode in ("skip", "dlq"):
        path = _with(_pipeline(tmp_path, people, pg_schema2, streams="- name: people\n"),
                     f"  on_data_error: {mode}\n" + RULES)
        proc = _cli(pg_dsn, "run", path)
        assert proc.returncode == 0, proc.stderr
        data = _bench(proc)
        assert data["records_written"] == 2
        assert (data["records_skipped"], data["records_dlq"]) == (
            (2, 0) if mode == "skip" else (0, 2))
        assert [r[0] for r in _text_rows(pg_conn, pg_schema2, "people")] == ["1", "4"]
    letters = pg_conn.execute(
        f'SELECT stream, record, errors, category FROM "{pg_schema2}".rbf_dead_letters '
        "ORDER BY id").fetchall()
    assert letters == [
        ("people", {"id": 2, "name": "bob", "age": 12, "email": None},
         ["not_null: email is null"], "validation"),
        ("people", {"id": 3, "name": "cy", "age": 40, "email": "not-an-email"},
         ["regex: email does not match ^[^@]+@[^@]+$"], "validation"),
    ]
    listed = _cli(pg_dsn, "dlq", "list", path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "2 dead letter(s) of pipeline e2e:"
    assert "regex: email does not match" in lines[1] and '"not-an-email"' in lines[1]


def test_check_validates_transforms_and_warns(pg_dsn, people, pg_schema2, tmp_path):
    path = _with(_pipeline(tmp_path, people, pg_schema2,
                           streams="- name: people\n  sync_mode: incremental\n"
                                   "  cursor_field: id\n", write_mode="append"),
                 "transforms:\n  - use: sql\n"
                 "    config: {query: \"SELECT id, upper(name) AS name FROM people\"}\n")
    proc = _cli(pg_dsn, "check", path)
    assert proc.returncode == 0, proc.stderr
    assert ("  warning: stream people is incremental without tie_breaker_field: rows that "
            "share the last cursor value and arrive later will be missed") in proc.stdout
    assert "  transforms: ok, 1 step(s) → id int32, name string" in proc.stdout
    bad = path.replace("pipeline.yaml", "bad.yaml")
    open(bad, "w").write(open(path).read().replace("upper(name)", "upper(nom)"))
    proc = _cli(pg_dsn, "check", bad)
    assert proc.returncode == 2 and "No field named nom" in _err(proc)


def test_wasm_plugins_end_to_end(pg_dsn, pg_conn, people, pg_schema2, tmp_path):
    path = _with(_pipeline(tmp_path, people, pg_schema2, streams="- name: people\n"),
                 "transforms:\n"
                 "  - use: transform-filter\n"
                 "    config: {column: age, op: \">=\", value: 18}\n"
                 "    limits: {max_memory: 64mb, timeout_seconds: 5}\n"
                 "  - use: transform-mask\n"
                 "    config: {columns: [email], mode: mask}\n")
    proc = _cli(pg_dsn, "run", path)
    assert proc.returncode == 0, proc.stderr
    data = _bench(proc)
    assert data["transform_count"] == 2 and data["records_written"] == 3
    assert "transform_module_load_ms" in data
    rows = _text_rows(pg_conn, pg_schema2, "people")
    assert [r[:3] for r in rows] == [("1", "ada", "36"), ("3", "cy", "40"), ("4", "dee", "19")]
    masked = [r[3] for r in rows]
    assert masked[0] != "ada@example.com" and masked[0].endswith("@example.com")
    assert masked[2].endswith("@example.org")
    listed = _cli(pg_dsn, "plugins")
    assert "transform-filter 0.1.0 [transform]" in listed.stdout


def test_dead_letters_belong_to_the_attempt_that_committed(pg_dsn, pg_conn, people, pg_schema2,
                                                          tmp_path):
    path = _with(_pipeline(tmp_path, people, pg_schema2, streams="- name: people\n"),
                 "  on_data_error: dlq\n" + RULES)
    # the first attempt's commit loses its connection: the retry rejects the rows again
    proc = _cli(pg_dsn, "run", path, env={"RAPIDBYTE_FAULTS": "dest.commit=terminate-dest"})
    assert proc.returncode == 0, proc.stderr
    assert _bench(proc)["retry_count"] == 1
    listed = _cli(pg_dsn, "dlq", "list", "--json", path)
    assert sorted(r["record"]["id"] for r in json.loads(listed.stdout)) == [2, 3]
    # a load that fails for good keeps none of its dead letters
    failing = path.replace(".yaml", "-append.yaml")
    with open(path) as src, open(failing, "w") as dst:
        dst.write(src.read().replace("write_mode: replace", "write_mode: append")
                  + "resources: {max_retries: 0}\n")
    proc = _cli(pg_dsn, "run", failing, env={"RAPIDBYTE_FAULTS": "dest.commit=terminate-dest"})
    assert proc.returncode == 1 and "terminating connection" in proc.stderr, proc.stderr
    listed = _cli(pg_dsn, "dlq", "list", "--json", failing)
    assert sorted(r["record"]["id"] for r in json.loads(listed.stdout)) == [2, 3]
    # the failed attempt's two rejected by validation are there, uncommitted, until the
    # next run; the two the target's key refused were rolled back with the load's rows
    assert pg_conn.execute(f'SELECT category, count(*) FROM "{pg_schema2}".rbf_dead_letters '
                           "WHERE NOT committed GROUP BY 1").fetchall() == [("validation", 2)]
