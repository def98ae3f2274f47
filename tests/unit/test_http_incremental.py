"""Incremental reads: the committed cursor goes out as the configured parameter, in the
configured format, records at or below it are dropped; templates render in parameters."""
from __future__ import annotations

import datetime as dt

import pytest

from rapidbyte_fast.connector import CursorPlan
from rapidbyte_fast.errors import ConfigError
from tests.http_api import ApiServer, Reply
from tests.unit.test_http_pagination import ids, read

EVENTS = [{"id": i, "updated_at": f"2024-01-{i:02d}T12:00:00Z"} for i in range(1, 11)]


@pytest.fixture
def server():
    def route(r):
        since = r.query.get("since")
        # an inclusive filter, as many APIs have: the last record comes back
        rows = [e for e in EVENTS if since is None or e["updated_at"] >= since]
        return Reply(body={"data": rows})
    with ApiServer() as srv:
        srv.routes["/events"] = route
        yield srv


STREAM = {"path": "/events", "data_path": "data",
          "incremental": {"cursor_field": "updated_at", "param": "since"}}


def test_first_run_sends_no_cursor_and_reads_everything(server):
    t = read(server, STREAM, CursorPlan("updated_at"))
    assert ids(t) == list(range(1, 11))
    assert "since" not in server.hits("/events")[-1].query


def test_committed_cursor_is_sent_and_older_records_dropped(server):
    # the destination stores the cursor as Postgres prints a timestamptz
    t = read(server, STREAM, CursorPlan("updated_at", value="2024-01-07 12:00:00+00"))
    assert server.hits("/events")[-1].query["since"] == "2024-01-07T12:00:00Z"
    assert ids(t) == [8, 9, 10]   # id 7 came back (inclusive API) and was dropped


@pytest.mark.parametrize("fmt, sent", [
    ("unix", "1704628800"), ("unix_ms", "1704628800000"), ("date", "2024-01-07"),
    ("raw", "2024-01-07 13:00:00+01"), ("%Y%m%d%H%M", "202401071200"),
])
def test_cursor_formats(server, fmt, sent):
    stream = {**STREAM, "incremental": {**STREAM["incremental"], "format": fmt}}
    read(server, stream, CursorPlan("updated_at", value="2024-01-07 13:00:00+01"))
    assert server.hits("/events")[-1].query["since"] == sent


def test_initial_value_with_a_template(server):
    stream = {**STREAM, "incremental": {**STREAM["incremental"],
                                        "initial_value": "{{ days_ago(3) }}"}}
    read(server, stream, CursorPlan("updated_at"))
    want = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=3)).isoformat()
    assert server.hits("/events")[-1].query["since"] == want


def test_templates_in_params(server):
    read(server, {**STREAM, "params": {"from": "{{ yesterday }}", "to": "{{ today }}",
                                       "n": 5, "flag": True}},
         CursorPlan("updated_at"))
    q = server.hits("/events")[-1].query
    today = dt.datetime.now(dt.timezone.utc).date()
    assert (q["from"], q["to"], q["n"], q["flag"]) == (
        (today - dt.timedelta(days=1)).isoformat(), today.isoformat(), "5", "true")


def test_integer_cursor(server):
    server.routes["/n"] = lambda r: Reply(body=[{"seq": i} for i in range(int(r.query.get(
        "after", 0)), 6)])
    stream = {"path": "/n", "incremental": {"cursor_field": "seq", "param": "after"}}
    t = read(server, stream, CursorPlan("seq", value="3"))
    assert t.column("seq").to_pylist() == [4, 5]


def test_cursor_field_must_be_a_field(server):
    stream = {**STREAM, "incremental": {"cursor_field": "modified", "param": "since"}}
    with pytest.raises(ConfigError, match=r"stream items: incremental.cursor_field 'modified' "
                                          r"is not a field of the records \(fields: id, "
                                          r"updated_at\)"):
        read(server, stream, CursorPlan("modified"))
