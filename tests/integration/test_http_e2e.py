"""The HTTP source end to end through the CLI into the embedded Postgres: column types, SQL
transforms, validation into the DLQ, incremental upserts across runs, check, and secrets.
"""
from __future__ import annotations

import json

import pytest

from tests.http_api import ApiServer, Reply, paged

from .test_cli_e2e import _cli, _err, _text_rows, _types


TOKEN = "e2e-SECRET-token-5150"


def _record(i: int) -> dict:
    return {"id": i, "name": f"user {i}", "score": i / 4, "active": i % 2 == 1,
            "created_at": f"2024-03-{i:02d}T08:30:00Z", "tags": ["a", str(i)],
            "attrs": {"plan": "pro", "n": i}, "amount": f"{i}.25",
            "email": None if i == 2 else f"u{i}@example.com"}


RECORDS = [_record(i) for i in range(1, 8)]


@pytest.fixture
def api():
    with ApiServer() as srv:
        def items(r):
            if r.headers.get("authorization") != f"Bearer {TOKEN}":
                return Reply(401, {"error": "bad token"})
            return Reply(body={"data": paged(RECORDS, 3, r), "pages": 3})
        srv.routes["/items"] = items
        yield srv


def _pipeline(tmp_path, api, dst_schema, *, stream=None, transforms=(), write_mode="replace",
              extra_dest=None) -> str:
    stream = stream or {"name": "items", "path": "/items", "data_path": "data",
                        "pagination": {"type": "page_number", "total_pages_path": "pages"},
                        "schema": {"amount": "numeric(12,2)"}}
    pipeline = {
        "version": "1.0", "pipeline": "http_e2e",
        "source": {"use": "http",
                   "config": {"base_url": api.url, "auth": {"type": "bearer",
                                                            "token": "${API_TOKEN}"},
                              "retry": {"max_attempts": 2, "min_delay_secs": 0.01,
                                        "max_delay_secs": 0.01}},
                   "streams": [stream]},
        "destination": {"use": "postgres", "config": {"url": "${TEST_DSN}",
                                                      "schema": dst_schema},
                        "write_mode": write_mode, **(extra_dest or {})},
        "state": {"backend": "sqlite", "connection": str(tmp_path / "state.db")},
        "transforms": list(transforms),
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(json.dumps(pipeline))   # JSON is YAML
    return str(path)


@pytest.fixture(autouse=True)
def _token(monkeypatch):
    monkeypatch.setenv("API_TOKEN", TOKEN)   # the CLI gets it through ${API_TOKEN}


def _run(pg_dsn, *args):
    return _cli(pg_dsn, *args)


def _bench(proc) -> dict:
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("@@BENCH_JSON@@"))
    return json.loads(line[len("@@BENCH_JSON@@"):])


def test_full_refresh_types_and_rows(pg_dsn, pg_conn, pg_schema2, api, tmp_path):
    proc = _run(pg_dsn, "run", _pipeline(tmp_path, api, pg_schema2))
    assert proc.returncode == 0, proc.stderr
    assert _bench(proc)["records_written"] == 7
    assert _types(pg_conn, pg_schema2, "items") == [
        ("id", "bigint"), ("name", "text"), ("score", "double precision"),
        ("active", "boolean"), ("created_at", "timestamp with time zone"), ("tags", "jsonb"),
        ("attrs", "jsonb"), ("amount", "numeric(12,2)"), ("email", "text")]
    rows = _text_rows(pg_conn, pg_schema2, "items")
    assert rows[0] == ("1", "user 1", "0.25", "true", "2024-03-01 08:30:00+00", '["a", "1"]',
                       '{"n": 1, "plan": "pro"}', "1.25", "u1@example.com")
    assert [r[0] for r in rows] == [str(i) for i in range(1, 8)]
    assert rows[1][-1] is None


def test_sql_transform_shapes_the_api(pg_dsn, pg_conn, pg_schema2, api, tmp_path):
    transforms = [{"use": "sql", "config": {
        "query": "SELECT id, upper(name) AS name, attrs FROM items WHERE active"}}]
    proc = _run(pg_dsn, "run", _pipeline(tmp_path, api, pg_schema2, transforms=transforms))
    assert proc.returncode == 0, proc.stderr
    assert _text_rows(pg_conn, pg_schema2, "items") == [
        (str(i), f"USER {i}", f'{{"n": {i}, "plan": "pro"}}') for i in (1, 3, 5, 7)]
    assert _types(pg_conn, pg_schema2, "items") == [
        ("id", "bigint"), ("name", "text"), ("attrs", "jsonb")]


def test_validate_into_the_dlq(pg_dsn, pg_conn, pg_schema2, api, tmp_path):
    transforms = [{"use": "validate", "config": {"rules": [{"not_null": ["email"]}]}}]
    path = _pipeline(tmp_path, api, pg_schema2, transforms=transforms,
                     extra_dest={"on_data_error": "dlq"})
    proc = _run(pg_dsn, "run", path)
    assert proc.returncode == 0, proc.stderr
    assert [r[0] for r in _text_rows(pg_conn, pg_schema2, "items")] == ["1", "3", "4", "5", "6",
                                                                        "7"]
    letters = pg_conn.execute(f'SELECT record->>\'id\', errors FROM "{pg_schema2}".'
                              "rbf_dead_letters").fetchall()
    assert letters == [("2", ["not_null: email is null"])]


def test_incremental_upsert_across_runs(pg_dsn, pg_conn, pg_schema2, tmp_path):
    events = [{"id": i, "v": f"a{i}", "updated_at": f"2024-01-0{i}T00:00:00Z"}
              for i in range(1, 5)]
    with ApiServer() as api:
        stream = {"name": "events", "path": "/items", "data_path": "data",
                  "incremental": {"cursor_field": "updated_at", "param": "since"}}
        path = _pipeline(tmp_path, api, pg_schema2, stream=stream, write_mode="upsert",
                         extra_dest={"primary_key": ["id"]})
        api.routes["/items"] = lambda r: (Reply(body={"data": [
            e for e in events if e["updated_at"] >= r.query.get("since", "")]})
            if r.headers.get("authorization") == f"Bearer {TOKEN}" else Reply(401, {}))
        first = _run(pg_dsn, "run", path)
        assert first.returncode == 0, first.stderr
        # between runs: a new record and an update of record 2
        events.append({"id": 5, "v": "a5", "updated_at": "2024-01-06T00:00:00Z"})
        events[1] = {"id": 2, "v": "b2", "updated_at": "2024-01-07T00:00:00Z"}
        second = _run(pg_dsn, "run", path)
        assert second.returncode == 0, second.stderr
        sinces = [r.query.get("since") for r in api.hits("/items")]
    assert "2024-01-04T00:00:00Z" in sinces
    assert _text_rows(pg_conn, pg_schema2, "events") == [
        ("1", "a1", "2024-01-01 00:00:00+00"), ("2", "b2", "2024-01-07 00:00:00+00"),
        ("3", "a3", "2024-01-03 00:00:00+00"), ("4", "a4", "2024-01-04 00:00:00+00"),
        ("5", "a5", "2024-01-06 00:00:00+00")]
    assert _bench(second)["records_written"] == 2   # id 4 came back (inclusive) and was dropped
    cursor = pg_conn.execute(f'SELECT cursor_value FROM "{pg_schema2}".rbf_state').fetchall()
    assert cursor == [("2024-01-07 00:00:00+00",)]


def test_check_prints_the_inferred_schema(pg_dsn, pg_schema2, api, tmp_path):
    proc = _run(pg_dsn, "check", _pipeline(tmp_path, api, pg_schema2))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for col, pg_type in (("id", "bigint"), ("created_at", "timestamp with time zone"),
                         ("attrs", "jsonb"), ("amount", "numeric(12,2)")):
        assert any(col in ln and pg_type in ln for ln in lines), (col, proc.stdout)


def test_secrets_absent_from_all_output(pg_dsn, pg_schema2, api, tmp_path):
    ok = _run(pg_dsn, "run", "-v", _pipeline(tmp_path, api, pg_schema2))
    assert ok.returncode == 0, ok.stderr
    api.routes["/items"] = lambda r: Reply(500, f"echo {r.headers.get('authorization')}")
    bad = _run(pg_dsn, "run", "-v", _pipeline(tmp_path, api, pg_schema2))
    assert bad.returncode == 1
    assert "failed after 2 attempts: HTTP 500" in _err(bad)
    for proc in (ok, bad):
        assert TOKEN not in proc.stdout + proc.stderr


def test_run_on_a_schedule_from_the_cli(pg_dsn, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "p.yaml"
    path.write_text(f'version: "1.0"\npipeline: sched\nsource: {{use: generate, config: '
                    f'{{rows: 10}}, streams: [{{name: small}}]}}\ndestination: {{use: postgres, '
                    f'config: {{url: "{pg_dsn}", schema: sched}}}}\n')
    bad = _cli(pg_dsn, "run", "--schedule", "*/5 * *", str(path))
    assert bad.returncode == 2 and "is not a cron expression" in bad.stderr
    proc = subprocess.Popen([sys.executable, "-m", "rapidbyte_fast", "run", "--schedule",
                             "0 0 1 1 *", str(path)], stderr=subprocess.PIPE, text=True)
    # SIGTERM once it waits for its first run (start-up takes seconds on a loaded machine)
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline and proc.poll() is None:
        seen.append(proc.stderr.readline())
        if "schedule 0 0 1 1 *: next run at" in seen[-1]:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    err = "".join(seen) + err
    assert proc.returncode == 0, err
    assert "schedule 0 0 1 1 *: next run at" in err and "stopped after 0 run(s)" in err


def test_a_type_change_on_a_later_run_goes_through_schema_evolution(pg_dsn, pg_conn,
                                                                      pg_schema2, tmp_path):
    records = [{"id": 1, "v": 5}]
    with ApiServer() as api:
        api.routes["/items"] = lambda r: Reply(body={"data": records})
        stream = {"name": "drift", "path": "/items", "data_path": "data"}
        path = _pipeline(tmp_path, api, pg_schema2, stream=stream, write_mode="append")
        first = _run(pg_dsn, "run", path)
        assert first.returncode == 0, first.stderr
        records[:] = [{"id": 2, "v": 2.5}]   # v is now inferred as a float
        refused = _run(pg_dsn, "run", path)
        coerce = _pipeline(tmp_path, api, pg_schema2, stream=stream, write_mode="append",
                           extra_dest={"schema_evolution": {"type_change": "coerce"}})
        records[:] = [{"id": 3, "v": 7.0}]
        coerced = _run(pg_dsn, "run", coerce)
    assert refused.returncode != 0
    assert _err(refused) == (
        f"error: stream drift → {pg_schema2}.drift: schema changed: column v is double "
        "precision in the source but bigint in the destination "
        "[schema_evolution.type_change: fail]")
    assert coerced.returncode == 0, coerced.stderr
    assert _types(pg_conn, pg_schema2, "drift") == [("id", "bigint"), ("v", "bigint")]
    assert _text_rows(pg_conn, pg_schema2, "drift") == [("1", "5"), ("3", "7")]
