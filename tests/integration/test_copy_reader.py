"""The COPY OUT reader twins against a real server: byte-identical streams, whole messages,
end-of-copy handling, and the error paths."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import psycopg
import pytest
from psycopg import pq

from rapidbyte_fast import libpq
from rapidbyte_fast._impl import twins
from rapidbyte_fast.errors import SourceError

pytestmark = pytest.mark.integration
TWINS = twins("copy_decode")
ROWS = 100_000


def _start_copy(pgconn, sql: str) -> None:
    pgconn.send_query(sql.encode())
    res = pgconn.get_result()
    assert res.status == pq.ExecStatus.COPY_OUT, res.error_message


def _results(pgconn) -> list:
    out = []
    while (res := pgconn.get_result()) is not None:
        out.append(res)
    return out


@pytest.fixture
def events(pg_conn, pg_schema) -> str:
    pg_conn.execute(
        f'CREATE TABLE "{pg_schema}".events AS SELECT i AS id, md5(i::text) AS payload,'
        " timestamp '2024-01-01' + i * interval '1 second' AS created_at,"
        f" CASE WHEN i % 7 = 0 THEN NULL ELSE i * 1.5 END AS amount"
        f" FROM generate_series(1, {ROWS}) AS i")
    return f'COPY (SELECT * FROM "{pg_schema}".events ORDER BY id) TO STDOUT (FORMAT binary)'


def _psycopg_stream(conn, sql: str) -> bytes:
    with conn.cursor().copy(sql) as copy:
        return b"".join(bytes(chunk) for chunk in copy)


@pytest.mark.parametrize("impl", sorted(TWINS))
@pytest.mark.parametrize("target", [1, 4096, 1 << 20])
def test_stream_is_byte_identical_to_psycopg(pg_conn, events, impl, target):
    want = _psycopg_stream(pg_conn, events)
    pgconn = pg_conn.pgconn
    _start_copy(pgconn, events)
    out = bytearray(b"keep")  # bytes already in the buffer stay untouched
    calls = []
    done = False
    while not done:
        before = len(out)
        n, done = TWINS[impl].read_copy(pgconn, out, target)
        assert n == len(out) - before
        calls.append((n, done))
    assert bytes(out) == b"keep" + want
    # Every call but the last one stopped only once it had appended at least ``target``.
    assert all(n >= target and not d for n, d in calls[:-1])
    assert calls[-1][1] is True
    assert [r.status for r in _results(pgconn)] == [pq.ExecStatus.COMMAND_OK]
    assert pgconn.get_result() is None


@pytest.mark.skipif("c" not in TWINS, reason="compiled copy_decode not built")
def test_twins_append_the_same_whole_messages(pg_conn, events):
    """target=1 appends exactly one CopyData message per call, in both twins."""
    sizes = {}
    for impl, mod in TWINS.items():
        _start_copy(pg_conn.pgconn, events.replace("ORDER BY id", "ORDER BY id LIMIT 500"))
        out = bytearray()
        sizes[impl] = []
        done = False
        while not done:
            n, done = mod.read_copy(pg_conn.pgconn, out, 1)
            sizes[impl].append(n)
        _results(pg_conn.pgconn)
    assert sizes["c"] == sizes["python"]
    assert sizes["python"][-1] == 0 and len(sizes["python"]) >= 500


@pytest.mark.parametrize("impl", sorted(TWINS))
def test_target_zero_reads_nothing(pg_conn, events, impl):
    _start_copy(pg_conn.pgconn, events)
    out = bytearray()
    assert TWINS[impl].read_copy(pg_conn.pgconn, out, 0) == (0, False)
    assert out == b""
    while not TWINS[impl].read_copy(pg_conn.pgconn, out, 1 << 22)[1]:
        pass
    assert [r.status for r in _results(pg_conn.pgconn)] == [pq.ExecStatus.COMMAND_OK]
    assert bytes(out) == _psycopg_stream(pg_conn, events)


@pytest.mark.parametrize("impl", sorted(TWINS))
def test_query_failing_mid_stream_ends_the_copy_and_reports_in_the_result(pg_conn, impl):
    """libpq ends the copy (-1) when the server sends an error; the error is in the result."""
    sql = ("COPY (SELECT 1 / (i - 50000) FROM generate_series(1, 100000) AS i)"
           " TO STDOUT (FORMAT binary)")
    _start_copy(pg_conn.pgconn, sql)
    out = bytearray()
    done = False
    while not done:
        _, done = TWINS[impl].read_copy(pg_conn.pgconn, out, 1 << 16)
    # header + 49,999 tuples of one int4 (2 + 4 + 4 bytes), no trailer
    assert len(out) == 19 + 49_999 * 10
    results = _results(pg_conn.pgconn)
    assert [r.status for r in results] == [pq.ExecStatus.FATAL_ERROR]
    assert b"division by zero" in results[0].error_message


@pytest.mark.parametrize("impl", sorted(TWINS))
def test_broken_connection_raises_source_error_and_truncates(pg_dsn, impl):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        pgconn = conn.pgconn
        _start_copy(pgconn, "COPY (SELECT i FROM generate_series(1, 50000000) AS i)"
                            " TO STDOUT (FORMAT binary)")
        out = bytearray()
        TWINS[impl].read_copy(pgconn, out, 1)
        # Cut the connection under libpq's feet: its next read sees EOF and fails (-2).
        sock = socket.socket(fileno=os.dup(pgconn.socket))
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        with pytest.raises(SourceError) as info:
            while True:
                kept = bytes(out)
                TWINS[impl].read_copy(pgconn, out, 1 << 16)
        assert bytes(out) == kept
        assert str(info.value).startswith("COPY TO STDOUT failed: server closed the connection")


@pytest.mark.parametrize("impl", sorted(TWINS))
def test_closed_connection_raises_source_error(pg_dsn, impl):
    conn = psycopg.connect(pg_dsn)
    conn.close()
    with pytest.raises(SourceError, match="^COPY TO STDOUT failed: the connection is closed$"):
        TWINS[impl].read_copy(conn.pgconn, bytearray(), 10)


def test_libpq_is_the_instance_psycopg_uses():
    addrs = libpq.addresses()
    assert set(addrs) == {"PQgetCopyData", "PQfreemem", "PQerrorMessage"}
    assert all(isinstance(a, int) and a for a in addrs.values())
    path = Path(libpq.library_path())
    assert path.name.startswith("libpq")
    if pq.__impl__ == "binary":
        assert path.resolve().parent.name == "psycopg_binary.libs"
