"""Micro-benchmark of the COPY BINARY decoder and the COPY OUT reader.

``decode``: both twins over an in-memory stream (narrow bench_events shape and a wide
20-column shape), against psycopg's own binary row parser (what ``Copy.read_row()`` runs on
each message) over the same bytes; case ``narrow_chunked`` feeds the narrow stream as the
source reader does, a chunk of ``READ_CHUNK_BYTES`` at a time, cutting a batch (Arrow
arrays) every ``MAX_BATCH_ROWS`` rows. Streams are written by psycopg's binary dumpers from
seeded random rows, so no server is needed.

``read_copy`` (case ``*_read``): both twins draining ``COPY (SELECT ...) TO STDOUT (FORMAT
binary)`` from an embedded server (pgserver in a temporary directory), against psycopg's
``Copy.read()``; skipped when pgserver is not installed or cannot start.
"""
from __future__ import annotations

import datetime as dt
import random
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

from psycopg import pq
from psycopg._copy_base import format_row_binary, parse_row_binary
from psycopg.adapt import Transformer
from psycopg.types.json import Jsonb

from rapidbyte_fast._impl import twins
from rapidbyte_fast.column_plan import COPY_BINARY_HEADER, ColumnPlan, ColumnSinks, Kind
from rapidbyte_fast.connector import MAX_BATCH_ROWS
from rapidbyte_fast.sources.postgres.reader import READ_CHUNK_BYTES

from .harness import measure

KERNEL = "copy_decode"
#: The Python twin gets at most this many rows (rows/s is what is compared).
PY_ROWS = 20_000
_EPOCH = dt.datetime(2024, 1, 1)

# name, kind, oid, precision, scale, value(rng, i)
NARROW = [
    ("id", Kind.INT4, 23, 0, 0, lambda r, i: i),
    ("event_type", Kind.TEXT, 25, 0, 0,
     lambda r, i: r.choice(("click", "view", "purchase", "signup", "logout"))),
    ("user_id", Kind.INT4, 23, 0, 0, lambda r, i: r.randrange(1_000_000)),
    ("amount", Kind.INT4, 23, 0, 0, lambda r, i: r.randrange(100_000)),
    ("is_active", Kind.BOOL, 16, 0, 0, lambda r, i: r.random() < 0.5),
    ("payload", Kind.TEXT, 25, 0, 0,
     lambda r, i: "".join(r.choices("abcdefghijklmnopqrstuvwxyz0123456789 ", k=60))),
    ("created_at", Kind.TIMESTAMP, 1114, 0, 0,
     lambda r, i: _EPOCH + dt.timedelta(microseconds=r.randrange(10**13))),
]
WIDE = NARROW + [
    ("big", Kind.INT8, 20, 0, 0, lambda r, i: r.randrange(-(2**62), 2**62)),
    ("small", Kind.INT2, 21, 0, 0, lambda r, i: r.randrange(-32768, 32768)),
    ("ratio", Kind.FLOAT8, 701, 0, 0, lambda r, i: r.uniform(-1e6, 1e6)),
    ("score", Kind.FLOAT4, 700, 0, 0, lambda r, i: r.uniform(-100, 100)),
    ("price", Kind.NUMERIC, 1700, 18, 6,
     lambda r, i: Decimal(f"{r.randrange(-10**17, 10**17)}E-6")),
    ("raw_num", Kind.NUMERIC_TEXT, 1700, 0, 0,
     lambda r, i: Decimal(f"{r.randrange(10**40)}E-{r.randrange(12)}")),
    ("uid", Kind.UUID, 2950, 0, 0, lambda r, i: uuid.UUID(int=r.getrandbits(128))),
    ("updated_at", Kind.TIMESTAMPTZ, 1184, 0, 0,
     lambda r, i: (_EPOCH + dt.timedelta(microseconds=r.randrange(10**13))).replace(
         tzinfo=dt.timezone.utc)),
    ("day", Kind.DATE, 1082, 0, 0,
     lambda r, i: dt.date(2000, 1, 1) + dt.timedelta(r.randrange(20000))),
    ("blob", Kind.BYTEA, 17, 0, 0, lambda r, i: r.randbytes(r.randrange(8, 40))),
    ("doc", Kind.JSONB, 3802, 0, 0, lambda r, i: Jsonb({"k": i, "tag": "x" * r.randrange(10)})),
    ("span", Kind.INTERVAL, 1186, 0, 0,
     lambda r, i: dt.timedelta(days=r.randrange(400), microseconds=r.randrange(86_400_000_000))),
    ("note", Kind.TEXT, 25, 0, 0, lambda r, i: None if r.random() < 0.3 else "ünïcode ✓ note"),
]


def _plan(cols) -> ColumnPlan:
    return ColumnPlan(tuple(c[0] for c in cols), tuple(int(c[1]) for c in cols),
                      tuple(c[4] for c in cols), tuple(c[3] for c in cols))


def build_stream(cols, rows: int, seed: int = 42) -> tuple[bytes, list[bytes], Transformer]:
    """(COPY BINARY stream, the per-row messages, a psycopg Transformer that loads them)."""
    rng = random.Random(seed)
    tx = Transformer()
    oids = [c[2] for c in cols]
    tx.set_dumper_types(oids, pq.Format.BINARY)
    tx.set_loader_types(oids, pq.Format.BINARY)
    messages = []
    for i in range(rows):
        buf = bytearray()
        format_row_binary(tuple(c[5](rng, i) for c in cols), tx, buf)
        messages.append(bytes(buf))
    return COPY_BINARY_HEADER + b"".join(messages) + b"\xff\xff", messages, tx


def _decode_all(mod, plan: ColumnPlan, stream: bytes, rows: int):
    def fn():
        sinks = ColumnSinks(plan)
        pos, trailer = mod.decode(plan, stream, len(COPY_BINARY_HEADER), len(stream), sinks,
                                  rows)
        assert trailer and sinks.rows == rows
        return sinks
    return fn


def _decode_chunked(mod, plan: ColumnPlan, stream: bytes, rows: int):
    def fn():
        sinks = ColumnSinks(plan)
        pos, end, trailer, got = len(COPY_BINARY_HEADER), 0, False, 0
        while not trailer:
            end = min(end + READ_CHUNK_BYTES, len(stream))
            while True:
                pos, trailer = mod.decode(plan, stream, pos, end, sinks,
                                          MAX_BATCH_ROWS - sinks.rows)
                if sinks.rows < MAX_BATCH_ROWS:
                    break
                got += sinks.rows
                sinks.finish()
                if trailer:
                    break
        got += sinks.rows
        sinks.finish()
        assert got == rows
    return fn


def _decode_cases(rows: int) -> list[dict]:
    out = []
    impls = twins(KERNEL)
    for case, cols in (("narrow", NARROW), ("wide", WIDE)):
        plan = _plan(cols)
        stream, messages, tx = build_stream(cols, rows)
        for impl, mod in sorted(impls.items()):
            n = rows if impl == "c" else min(rows, PY_ROWS)
            s = stream if n == rows else (
                COPY_BINARY_HEADER + b"".join(messages[:n]) + b"\xff\xff")
            out.append(measure(KERNEL, case, impl, _decode_all(mod, plan, s, n), n, len(s)))
            if case == "narrow":
                out.append(measure(KERNEL, "narrow_chunked", impl,
                                   _decode_chunked(mod, plan, s, n), n, len(s)))
        n = min(rows, PY_ROWS * 5)
        part = messages[:n]
        out.append(measure(
            KERNEL, case, "baseline:psycopg_read_row",
            lambda: [parse_row_binary(m, tx) for m in part], n, sum(map(len, part))))
    return out


def _read_cases(rows: int) -> list[dict]:
    try:
        import pgserver
        import psycopg
    except ImportError:
        return []
    out = []
    with tempfile.TemporaryDirectory(prefix="rbf-bench-pg-") as root:
        try:
            srv = pgserver.get_server(Path(root), cleanup_mode="stop")
        except Exception:  # noqa: BLE001 - no server, no live bench
            return []
        try:
            with psycopg.connect(srv.get_uri(), autocommit=True) as conn:
                conn.execute(
                    "CREATE TEMP TABLE events AS SELECT i AS id, 'click'::text AS event_type,"
                    " (i * 7919) % 1000000 AS user_id, i % 100000 AS amount,"
                    " i % 2 = 0 AS is_active, repeat(md5(i::text), 2)::text AS payload,"
                    " timestamp '2024-01-01' + i * interval '1 second' AS created_at"
                    f" FROM generate_series(1, {rows}) AS i")
                sql = b"COPY (SELECT * FROM events) TO STDOUT (FORMAT binary)"
                total = _drain(conn.pgconn, sql, twins(KERNEL)["python"])

                def psycopg_read():
                    with conn.cursor().copy(sql.decode()) as copy:
                        while copy.read():
                            pass
                cases = [(impl, lambda mod=mod: _drain(conn.pgconn, sql, mod))
                         for impl, mod in sorted(twins(KERNEL).items())]
                cases.append(("baseline:psycopg_copy_read", psycopg_read))
                for impl, fn in cases:
                    r = measure(KERNEL, "narrow_read", impl, fn, rows, total)
                    # Wall time is bound by the server sharing the cores; the client's own
                    # CPU time is what the reader saves.
                    t0 = time.process_time()
                    fn()
                    r["client_cpu_secs"] = time.process_time() - t0
                    out.append(r)
        finally:
            srv.cleanup()
    return out


def _drain(pgconn, sql: bytes, mod) -> int:
    """Run one COPY and read it all with ``mod.read_copy``; returns the bytes read."""
    pgconn.send_query(sql)
    res = pgconn.get_result()
    assert res.status == pq.ExecStatus.COPY_OUT, res.error_message
    buf = bytearray()
    total = 0
    done = False
    while not done:
        n, done = mod.read_copy(pgconn, buf, 1 << 20)
        total += n
        buf.clear()
    while (res := pgconn.get_result()) is not None:
        assert res.status == pq.ExecStatus.COMMAND_OK, res.error_message
    return total


def run(rows: int) -> list[dict]:
    """One result per case × implementation (decode, then the live reader)."""
    return _decode_cases(rows) + _read_cases(rows)


if __name__ == "__main__":
    import sys

    for r in run(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000):
        cpu = f"  client cpu {r['client_cpu_secs']:.3f}s" if "client_cpu_secs" in r else ""
        print(f"{r['case']:12} {r['impl']:28} {r['rows_per_s']:>14,.0f} rows/s "
              f"{r['mb_per_s']:>9,.1f} MB/s{cpu}")
