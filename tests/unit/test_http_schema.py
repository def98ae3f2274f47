"""Schema inference, widening across pages, nested data, overrides, and what happens when a
page after the inference window does not fit."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from rapidbyte_fast.errors import DataError, SourceError
from rapidbyte_fast.pgtypes import field_pg_type
from tests.http_api import ApiServer, Reply
from tests.unit.test_http_pagination import read

UTC = dt.timezone.utc


@pytest.fixture
def server():
    with ApiServer() as srv:
        yield srv


def pages(server: ApiServer, *bodies) -> dict:
    """Serve ``bodies`` as pages 1.. (page_only pagination: an empty list ends it)."""
    def route(r):
        n = int(r.query["page"])
        return Reply(body=bodies[n - 1] if n <= len(bodies) else [])
    server.routes["/p"] = route
    return {"path": "/p", "pagination": {"type": "page_only"}}


def types(table: pa.Table) -> dict[str, tuple[str, str]]:
    return {f.name: (field_pg_type(f), str(f.type)) for f in table.schema}


def test_types_inferred_and_widened_across_pages(server):
    stream = pages(
        server,
        [{"i": 1, "f": 1, "t": 1, "n": None, "b": True, "ts": "2024-01-02T03:04:05Z",
          "d": "2024-01-02", "dt": "2024-01-02", "big": 1, "obj": {"a": [1, {"b": None}]},
          "arr": [1, 2], "s": "x"}],
        [{"i": 2, "f": 2.5, "t": "two", "n": None, "b": False,
          "ts": "2024-06-30 23:59:59.123456+02:00", "d": "2024-12-31",
          "dt": "2024-01-03T00:00:00", "big": 18446744073709551616, "obj": [], "arr": {},
          "s": "é\n\"q\""}],
    )
    t = read(server, stream)
    assert types(t) == {
        "i": ("bigint", "int64"), "f": ("double precision", "double"), "t": ("text", "string"),
        "n": ("text", "string"), "b": ("boolean", "bool"),
        "ts": ("timestamp with time zone", "timestamp[us, tz=UTC]"),
        "d": ("date", "date32[day]"),
        "dt": ("timestamp with time zone", "timestamp[us, tz=UTC]"),
        "big": ("numeric", "string"), "obj": ("jsonb", "string"), "arr": ("jsonb", "string"),
        "s": ("text", "string"),
    }
    assert t.to_pylist() == [
        {"i": 1, "f": 1.0, "t": "1", "n": None, "b": True,
         "ts": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "d": dt.date(2024, 1, 2),
         "dt": dt.datetime(2024, 1, 2, tzinfo=UTC), "big": "1",
         "obj": '{"a": [1, {"b": null}]}', "arr": "[1, 2]", "s": "x"},
        {"i": 2, "f": 2.5, "t": "two", "n": None, "b": False,
         "ts": dt.datetime(2024, 6, 30, 21, 59, 59, 123456, tzinfo=UTC),
         "d": dt.date(2024, 12, 31), "dt": dt.datetime(2024, 1, 3, tzinfo=UTC),
         "big": "18446744073709551616", "obj": "[]", "arr": "{}", "s": 'é\n"q"'},
    ]


def test_missing_fields_are_null_and_new_fields_join_in_the_window(server):
    stream = pages(server, [{"a": 1}, {"b": "x"}], [{"c": True, "a": 3}])
    t = read(server, stream)
    assert t.column_names == ["a", "b", "c"]
    assert t.to_pylist() == [{"a": 1, "b": None, "c": None}, {"a": None, "b": "x", "c": None},
                             {"a": 3, "b": None, "c": True}]


def test_flatten(server):
    stream = pages(server, [{"id": 1, "addr": {"city": "Oslo", "geo": {"lat": 59.9}},
                             "tags": ["a"]},
                            {"id": 2, "addr": None, "tags": []}])
    t = read(server, {**stream, "flatten": True})
    assert types(t) == {"id": ("bigint", "int64"), "addr__city": ("text", "string"),
                        "addr__geo__lat": ("double precision", "double"),
                        "tags": ("jsonb", "string"), "addr": ("text", "string")}
    assert t.to_pylist() == [
        {"id": 1, "addr__city": "Oslo", "addr__geo__lat": 59.9, "tags": '["a"]', "addr": None},
        {"id": 2, "addr__city": None, "addr__geo__lat": None, "tags": "[]", "addr": None}]


def test_overrides(server):
    stream = pages(server, [{"amount": 12.5, "n": 7, "when": "2024-01-02T03:04:05+01:00",
                             "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "x": 1.25,
                             "obj": "plain"}])
    t = read(server, {**stream, "schema": {
        "amount": "decimal(12,2)", "n": "int", "when": "timestamp", "u": "uuid",
        "x": "float4", "obj": "jsonb", "absent": "text"}})
    assert types(t) == {
        "amount": ("numeric(12,2)", "string"), "n": ("integer", "int32"),
        "when": ("timestamp without time zone", "timestamp[us]"), "u": ("uuid", "string"),
        "x": ("real", "float"), "obj": ("jsonb", "string"), "absent": ("text", "string")}
    assert t.to_pylist() == [{"amount": "12.5", "n": 7, "when": dt.datetime(2024, 1, 2, 2, 4, 5),
                              "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "x": 1.25,
                              "obj": '"plain"', "absent": None}]


def test_override_that_overflows_names_the_field(server):
    stream = pages(server, [{"n": 3000000000}])
    with pytest.raises(DataError, match=r"stream items: field 'n' does not fit integer"):
        read(server, {**stream, "schema": {"n": "integer"}})


def test_page_after_the_window_that_does_not_fit_fails_clearly(server):
    stream = pages(server, [{"id": 1, "amount": 10}], [{"id": 2, "amount": 10.5}])
    with pytest.raises(DataError) as err:
        read(server, {**stream, "infer_pages": 1})
    assert str(err.value) == (
        f"stream items: page 2 ({server.url}/p?page=2), record 1: field 'amount' has "
        "'10.5}]', which is not an integer (the bigint the schema says)")
    # the way out the message points to
    t = read(server, {**stream, "infer_pages": 1, "schema": {"amount": "double precision"}})
    assert t.column("amount").to_pylist() == [10.0, 10.5]


def test_unknown_field_after_the_window_fails_clearly(server):
    stream = pages(server, [{"id": 1}], [{"id": 2, "extra": "x"}])
    with pytest.raises(DataError) as err:
        read(server, {**stream, "infer_pages": 1})
    assert str(err.value) == (
        f"stream items: page 2 ({server.url}/p?page=2): field 'extra' is not in the stream's "
        "schema (the schema was inferred when the run was planned); declare it under schema: "
        "(e.g. extra: text) or raise infer_pages")


def test_records_must_be_objects(server):
    stream = pages(server, [{"id": 1}, 5])
    with pytest.raises(DataError, match=r"page 1 .*: record 2 is not a JSON object"):
        read(server, stream)


def test_invalid_utf8_is_refused(server):
    server.routes["/b"] = lambda r: Reply(body=b'[{"s": "\xff\xfe"}]')
    with pytest.raises(DataError, match=r"field 's' has invalid UTF-8"):
        read(server, {"path": "/b"})


def test_batches_respect_max_rows(server):
    stream = pages(server, [{"id": i} for i in range(10)], [{"id": i} for i in range(10, 25)])
    t = read(server, stream, max_rows=4)
    assert t.column("id").to_pylist() == list(range(25))
    assert max(len(b) for b in t.to_batches()) <= 4


def test_no_records_and_no_declared_fields(server):
    server.routes["/e"] = lambda r: Reply(body={"data": []})
    with pytest.raises(SourceError, match=r"stream items: the first 1 page\(s\) hold no records "
                                          r"to infer the fields from"):
        read(server, {"path": "/e", "data_path": "data"})
    t = read(server, {"path": "/e", "data_path": "data", "schema": {"id": "bigint"}})
    assert (t.num_rows, t.column_names) == (0, ["id"])
