"""The dead-letter store on a real PostgreSQL: records with NULLs, unicode, quotes and
backslashes round-trip exactly, batching and flushing, listing by pipeline and run, and the
JSON form of every Arrow type a rejected row can hold."""
from __future__ import annotations

import json
import threading
from datetime import date, datetime, time, timezone
from decimal import Decimal

import pyarrow as pa
import pytest

from rapidbyte_fast.errors import ConnectionLost
from rapidbyte_fast.state.dlq import DeadLetterStore, list_dead_letters, records_json
from rapidbyte_fast.transforms.validate import ValidateTransform

pytestmark = pytest.mark.integration

NASTY = [
    {"id": 1, "email": None, "note": "it's \"quoted\" \\ back\\slash", "tags": [None, "a,b"]},
    {"id": 2, "email": "zoë@例え.jp", "note": "tab\tnew\nline ☃ 🎉", "tags": []},
    {"id": 3, "email": "'); DROP TABLE x; --", "note": "{\"json\": \"inside\"}", "tags": ["{}"]},
]


def test_round_trip_exact(pg_dsn, pg_conn, pg_schema):
    store = DeadLetterStore(pg_dsn, pg_schema, pipeline="orders_sync", run_id="run-1")
    errors = [["not_null: email is null"], ["regex: email does not match ^a'b\"c\\d$"],
              ["a, b", "{braces}", 'quo"te', "NULL", "", "ü"]]
    for record, errs in zip(NASTY, errors):
        store.add("public.users", json.dumps(record, ensure_ascii=False), errs, "validation")
    assert pg_conn.execute(
        f'SELECT count(*) FROM "{pg_schema}".rbf_dead_letters').fetchone() == (0,)  # buffered
    store.flush()
    assert store.written == 3
    store.close()
    got = list_dead_letters(pg_dsn, pg_schema, "orders_sync")
    assert [(r["id"], r["run_id"], r["pipeline"], r["stream"], r["record"], r["errors"],
             r["category"]) for r in got] == [
        (3 - i, "run-1", "orders_sync", "public.users", NASTY[2 - i], errors[2 - i], "validation")
        for i in range(3)
    ]
    assert all(isinstance(r["created_at"], datetime) and r["created_at"].tzinfo for r in got)
    assert [r["id"] for r in list_dead_letters(pg_dsn, pg_schema, "orders_sync", limit=2)] == [3, 2]
    assert list_dead_letters(pg_dsn, pg_schema, "other") == []
    columns = pg_conn.execute(
        "SELECT column_name, data_type, column_default IS NOT NULL FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = 'rbf_dead_letters' ORDER BY ordinal_position",
        [pg_schema]).fetchall()
    assert columns == [("id", "bigint", True), ("run_id", "text", False),
                       ("pipeline", "text", False), ("stream", "text", False),
                       ("record", "jsonb", False), ("errors", "ARRAY", False),
                       ("category", "text", False),
                       ("created_at", "timestamp with time zone", True),
                       ("attempt", "text", True), ("committed", "boolean", True)]


def test_batches_are_written_every_batch_rows_and_runs_are_kept_apart(pg_dsn, pg_schema):
    first = DeadLetterStore(pg_dsn, pg_schema, "p", "r1", batch_rows=2)
    for i in range(5):
        first.add("s", json.dumps({"i": i}), [f"e{i}"], "load")
    assert first.written == 4  # two full batches; one record still buffered
    first.close()
    assert first.written == 5
    second = DeadLetterStore(pg_dsn, pg_schema, "p", "r2")  # table exists: reused
    second.add("s", "{}", [], "validation")
    second.close()
    assert [r["record"] for r in list_dead_letters(pg_dsn, pg_schema, "p", run_id="r1")] == [
        {"i": i} for i in (4, 3, 2, 1, 0)]
    assert [(r["run_id"], r["errors"]) for r in list_dead_letters(pg_dsn, pg_schema, "p",
                                                                  limit=1)] == [("r2", [])]


def test_creates_a_missing_schema_and_no_table_lists_nothing(pg_dsn, pg_conn, pg_schema):
    fresh = f"{pg_schema}_dlq Ü"
    try:
        assert list_dead_letters(pg_dsn, fresh, "p") == []
        store = DeadLetterStore(pg_dsn, fresh, "p", "r")
        store.add("s", '{"a": 1}', ["x: y"], "validation")
        store.close()
        assert [r["record"] for r in list_dead_letters(pg_dsn, fresh, "p")] == [{"a": 1}]
    finally:
        pg_conn.execute(f'DROP SCHEMA IF EXISTS "{fresh}" CASCADE')


def test_shared_by_threads(pg_dsn, pg_schema):
    store = DeadLetterStore(pg_dsn, pg_schema, "p", "r", batch_rows=7)

    def work(k: int) -> None:
        for i in range(50):
            store.add(f"s{k}", json.dumps({"k": k, "i": i}), [], "validation")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    got = list_dead_letters(pg_dsn, pg_schema, "p", limit=1000)
    assert sorted((r["record"]["k"], r["record"]["i"]) for r in got) == [
        (k, i) for k in range(4) for i in range(50)]


def test_unreachable_server_is_connection_failed():
    with pytest.raises(ConnectionLost) as err:
        DeadLetterStore("postgresql://nobody:secret@127.0.0.1:1/x?connect_timeout=2", "s")
    assert str(err.value).startswith('dead-letter table "s"."rbf_dead_letters": cannot connect: ')
    assert "secret" not in str(err.value)


def test_validate_dlq_into_postgres(pg_dsn, pg_schema):
    schema = pa.schema([pa.field("id", pa.int32(), False), pa.field("email", pa.utf8())])
    batch = pa.RecordBatch.from_pylist(
        [{"id": 1, "email": "a@b.co"}, {"id": 2, "email": None},
         {"id": 3, "email": "O'Brien\"@mail"}], schema=schema)
    store = DeadLetterStore(pg_dsn, pg_schema, "users_sync", "run-9")
    t = ValidateTransform({"rules": [{"not_null": "email"},
                                     {"regex": {"column": "email", "pattern": r"^\S+@\S+\.\w+$"}}]},
                          "dlq", store.add)
    t.open("users", schema)
    assert [b.to_pylist() for b in t.apply(batch)] == [[{"id": 1, "email": "a@b.co"}]]
    store.close()
    assert [(r["stream"], r["record"], r["errors"], r["category"], r["run_id"])
            for r in list_dead_letters(pg_dsn, pg_schema, "users_sync")] == [
        ("users", {"id": 3, "email": "O'Brien\"@mail"},
         ["regex: email does not match ^\\S+@\\S+\\.\\w+$"], "validation", "run-9"),
        ("users", {"id": 2, "email": None}, ["not_null: email is null"], "validation", "run-9"),
    ]


def test_records_json_of_every_type(pg_conn):
    schema = pa.schema([
        pa.field("i", pa.int64()), pa.field("f", pa.float64()), pa.field("b", pa.bool_()),
        pa.field("n", pa.decimal128(12, 2)), pa.field("t", pa.utf8()),
        pa.field("ts", pa.timestamp("us")), pa.field("tz", pa.timestamp("us", "UTC")),
        pa.field("d", pa.date32()), pa.field("tm", pa.time64("us")),
        pa.field("u", pa.binary(16), metadata={"pg_type": "uuid"}),
        pa.field("raw", pa.binary()), pa.field("iv", pa.month_day_nano_interval()),
        pa.field("l", pa.list_(pa.float32())), pa.field("s", pa.struct([("x", pa.int8())])),
    ])
    batch = pa.RecordBatch.from_pydict({
        "i": [-(2**63), None], "f": [float("nan"), -float("inf")], "b": [True, None],
        "n": [Decimal("-1234567890.12"), None], "t": ["nul\x00here", "ünï"],
        "ts": [datetime(2024, 2, 29, 23, 59, 59, 999999), None],
        "tz": [datetime(1970, 1, 1, tzinfo=timezone.utc), None],
        "d": [date(1, 1, 1), None], "tm": [time(12, 30, 0, 5), None],
        "u": [bytes(range(16)), None], "raw": [b"\x00\xff", b""],
        "iv": [pa.MonthDayNano([1, -2, 3_000]), None], "l": [[1.5, None], None],
        "s": [{"x": 7}, None],
    }, schema=schema)
    got = records_json(batch, [1, 0])
    assert [json.loads(g) for g in got] == [
        {"i": None, "f": "-Infinity", "b": None, "n": None, "t": "ünï", "ts": None, "tz": None,
         "d": None, "tm": None, "u": None, "raw": "\\x", "iv": None, "l": None, "s": None},
        {"i": -(2**63), "f": "NaN", "b": True, "n": "-1234567890.12", "t": "nul\ufffdhere",
         "ts": "2024-02-29T23:59:59.999999", "tz": "1970-01-01T00:00:00+00:00",
         "d": "0001-01-01", "tm": "12:30:00.000005", "u": "00010203-0405-0607-0809-0a0b0c0d0e0f",
         "raw": "\\x00ff", "iv": "1 mons -2 days 3 microseconds", "l": [1.5, None],
         "s": {"x": 7}},
    ]
    assert list(json.loads(got[1])) == schema.names  # column order kept
    # Every text form is valid jsonb and the Postgres input syntax of its type.
    row = json.loads(got[1])
    assert pg_conn.execute(
        "SELECT %s::jsonb IS NOT NULL, %s::numeric, %s::timestamptz, %s::uuid::text,"
        " %s::bytea, %s::interval::text, %s::float8::text",
        [got[1], row["n"], row["tz"], row["u"], row["raw"], row["iv"], row["f"]]).fetchone() == (
        True, Decimal("-1234567890.12"), datetime(1970, 1, 1, tzinfo=timezone.utc),
        "00010203-0405-0607-0809-0a0b0c0d0e0f", b"\x00\xff", "1 mon -2 days +00:00:00.000003",
        "NaN")


def test_a_store_keeps_the_uncommitted_letters_of_its_own_run(pg_dsn, pg_conn, pg_schema):
    # streams loading side by side each open a store for one attempt: opening one must
    # not delete the letters another has written and not yet committed with its rows
    earlier = DeadLetterStore(pg_dsn, pg_schema, "p", "run-0", attempt="a0")
    earlier.add("s", '{"id": 0}', ["x"], "validation")
    earlier.close()  # run-0's attempt never committed
    first = DeadLetterStore(pg_dsn, pg_schema, "p", "run-1", attempt="a1")
    first.add("s1", '{"id": 1}', ["x"], "validation")
    first.flush()
    second = DeadLetterStore(pg_dsn, pg_schema, "p", "run-1", attempt="a2")
    first.mark_committed(pg_conn)
    pg_conn.commit()
    first.close()
    second.close()
    assert [(r["stream"], r["record"]) for r in list_dead_letters(pg_dsn, pg_schema, "p")] == [
        ("s1", {"id": 1})]
    # the earlier run's letters that never committed are gone
    assert pg_conn.execute(f'SELECT count(*) FROM "{pg_schema}".rbf_dead_letters WHERE '
                           "run_id = 'run-0'").fetchone() == (0,)
