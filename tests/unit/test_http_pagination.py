"""Every pagination kind of the HTTP source against a real local server: exact rows, the
requests it made, and concurrency where the kind allows it."""
from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

from rapidbyte_fast.connector import CursorPlan
from rapidbyte_fast.sources.http import HttpConnector, HttpSourceConfig, HttpStream
from tests.http_api import ApiServer, Reply, paged

RECORDS = [{"id": i, "name": f"r{i}"} for i in range(1, 24)]   # 23: pages of 5 → 5 pages


def read(server: ApiServer, stream: dict, cursor: CursorPlan | None = None,
         max_rows: int = 100_000, **config) -> pa.Table:
    cfg = HttpSourceConfig.model_validate({"base_url": server.url, **config})
    st = HttpStream.model_validate({"name": "items", **stream})
    conn = HttpConnector(cfg)
    info = conn.describe(st)
    reader = conn.reader(info, cursor)
    try:
        schema = reader.open()
        batches = list(reader.batches(64 << 20, max_rows))
    finally:
        reader.close()
    return pa.Table.from_batches(batches, schema=schema)


def ids(table: pa.Table) -> list[int]:
    return table.column("id").to_pylist()


@pytest.fixture
def server():
    with ApiServer() as srv:
        yield srv


def test_page_number_with_total_pages(server):
    server.routes["/items"] = lambda r: Reply(body={"data": paged(RECORDS, 5, r),
                                                    "meta": {"pages": 5}})
    t = read(server, {"path": "/items", "data_path": "data",
                      "pagination": {"type": "page_number", "total_pages_path": "meta.pages",
                                     "page_size_param": "per_page", "page_size": 5}})
    assert ids(t) == list(range(1, 24))
    assert t.column("name").to_pylist() == [f"r{i}" for i in range(1, 24)]
    pages = [int(r.query["page"]) for r in server.hits("/items")]
    # describe reads the first pages, the run reads every page once
    assert sorted(pages[-5:]) == [1, 2, 3, 4, 5]
    assert all(r.query["per_page"] == "5" for r in server.hits("/items"))


def test_page_number_without_total_stops_at_an_empty_page(server):
    server.routes["/items"] = lambda r: Reply(body=paged(RECORDS, 5, r, start=0))
    t = read(server, {"path": "/items", "pagination": {"type": "page_only", "start": 0}})
    assert ids(t) == list(range(1, 24))
    assert [int(r.query["page"]) for r in server.hits("/items")][-6:] == [0, 1, 2, 3, 4, 5]


def test_limit_offset_with_total(server):
    def route(r):
        off, lim = int(r.query["offset"]), int(r.query["limit"])
        return Reply(body={"items": RECORDS[off:off + lim], "total": len(RECORDS)})
    server.routes["/items"] = route
    t = read(server, {"path": "/items", "data_path": "items",
                      "pagination": {"type": "limit_offset", "limit": 4, "total_path": "total"}},
             max_rows=3)
    assert ids(t) == list(range(1, 24))
    assert sorted(int(r.query["offset"]) for r in server.hits("/items")[-6:]) == [
        0, 4, 8, 12, 16, 20]


def test_limit_offset_without_total(server):
    def route(r):
        off, lim = int(r.query["skip"]), int(r.query["take"])
        return Reply(body={"items": RECORDS[off:off + lim]})
    server.routes["/items"] = route
    t = read(server, {"path": "/items", "data_path": "items",
                      "pagination": {"type": "limit_offset", "limit_param": "take",
                                     "offset_param": "skip", "limit": 10}})
    assert ids(t) == list(range(1, 24))
    assert [int(r.query["skip"]) for r in server.hits("/items")][-4:] == [0, 10, 20, 30]


def test_cursor(server):
    def route(r):
        start = int(r.query.get("after", 0))
        chunk = RECORDS[start:start + 7]
        nxt = str(start + 7) if start + 7 < len(RECORDS) else None
        return Reply(body={"results": chunk, "paging": {"next": nxt}})
    server.routes["/items"] = route
    t = read(server, {"path": "/items", "data_path": "results",
                      "pagination": {"type": "cursor", "cursor_param": "after",
                                     "cursor_path": "paging.next"}})
    assert ids(t) == list(range(1, 24))
    assert [r.query.get("after") for r in server.hits("/items")][-4:] == [None, "7", "14", "21"]


def test_link_header(server):
    def route(r):
        page = int(r.query.get("p", 1))
        headers = {}
        if page * 10 < len(RECORDS):
            headers["Link"] = (f'<{server.url}/items?p=1>; rel="first", '
                               f'</items?p={page + 1}>; rel="next"')
        return Reply(body=RECORDS[(page - 1) * 10:page * 10], headers=headers)
    server.routes["/items"] = route
    t = read(server, {"path": "/items", "pagination": {"type": "link_header"}})
    assert ids(t) == list(range(1, 24))


def test_next_url_relative_and_absolute(server):
    def route(r):
        page = int(r.query.get("n", 1))
        nxt = None
        if page == 1:
            nxt = "/items?n=2"
        elif page == 2:
            nxt = f"{server.url}/items?n=3"
        return Reply(body={"data": RECORDS[(page - 1) * 10:page * 10], "next": nxt})
    server.routes["/items"] = route
    t = read(server, {"path": "/items", "data_path": "data",
                      "pagination": {"type": "next_url", "next_url_path": "next"}})
    assert ids(t) == list(range(1, 24))


def test_none_and_ndjson(server):
    body = "\n".join(f'{{"id": {i}, "name": "r{i}"}}' for i in range(1, 24)) + "\n"
    server.routes["/items.ndjson"] = lambda r: Reply(body=body)
    t = read(server, {"path": "/items.ndjson", "format": "ndjson"})
    assert ids(t) == list(range(1, 24))
    assert len(server.hits("/items.ndjson")) == 2   # describe, then the read


def test_max_pages_bounds_every_kind(server):
    server.routes["/items"] = lambda r: Reply(body={"data": paged(RECORDS, 5, r),
                                                    "pages": 5})
    t = read(server, {"path": "/items", "data_path": "data", "infer_pages": 1,
                      "pagination": {"type": "page_number", "total_pages_path": "pages",
                                     "max_pages": 2}})
    assert ids(t) == list(range(1, 11))
    t = read(server, {"path": "/items", "data_path": "data", "infer_pages": 1,
                      "pagination": {"type": "page_only", "max_pages": 3}})
    assert ids(t) == list(range(1, 16))


def test_known_totals_fetch_concurrently_and_keep_order(server):
    """With a total, pages overlap (the server sees several at once) yet come out in order,
    and at most `concurrency` are in flight."""
    active, peak, lock = [0], [0], threading.Lock()
    records = [{"id": i} for i in range(1, 41)]

    def route(r):
        page = int(r.query["page"])
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.2 if page % 2 else 0.1)   # odd pages answer late
        with lock:
            active[0] -= 1
        return Reply(body={"data": paged(records, 4, r), "pages": 10})
    server.routes["/items"] = route
    t = read(server, {"path": "/items", "data_path": "data", "infer_pages": 1,
                      "pagination": {"type": "page_number", "total_pages_path": "pages"}},
             concurrency=3)
    assert ids(t) == list(range(1, 41))
    assert peak[0] == 3


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_a_byte_order_mark_is_skipped(server, fmt):
    body = (b'\xef\xbb\xbf[{"id": 1}, {"id": 2}]' if fmt == "json"
            else b'\xef\xbb\xbf{"id": 1}\n{"id": 2}\n')
    server.routes["/bom"] = lambda r: Reply(body=body)
    assert ids(read(server, {"path": "/bom", "format": fmt})) == [1, 2]
