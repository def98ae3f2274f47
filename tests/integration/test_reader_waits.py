"""The source reader waits for the server without holding the GIL, and its connections
carry TCP keepalives so a dead peer cannot hang a run forever."""
from __future__ import annotations

import threading
import time

import pytest

from rapidbyte_fast.config import PostgresSourceConfig, StreamConfig
from rapidbyte_fast.pgconn import connect
from rapidbyte_fast.sources.postgres import PostgresSourceConnector

pytestmark = pytest.mark.integration


def test_waiting_for_the_copy_to_start_lets_other_threads_run(pg_dsn, pg_conn, pg_schema):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE VIEW {s}.slow AS SELECT g AS id FROM generate_series(1, 3) g, "
                    "pg_sleep(1.5)")
    src = PostgresSourceConnector(PostgresSourceConfig(url=pg_dsn, schema=pg_schema), pg_dsn)
    info = src.describe(StreamConfig(name="slow"))
    reader = src.reader(info)
    reader.open()
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        rows = sum(b.num_rows for b in reader.batches(1 << 20, 1000))
    finally:
        stop.set()
        counter.join()
        reader.close()
        src.close()
    assert rows == 3
    assert ticks > 200, ticks  # ~1000 when the 1.5 s wait releases the GIL, ~0 when not


def test_connections_have_tcp_keepalives(pg_dsn):
    conn = connect(pg_dsn, "test")
    try:
        got = {o.keyword.decode(): (o.val or b"").decode() for o in conn.pgconn.info}
    finally:
        conn.close()
    assert (got["keepalives"], got["keepalives_idle"], got["keepalives_interval"],
            got["keepalives_count"], got["tcp_user_timeout"]) == ("1", "30", "10", "6",
                                                                  "120000")
