"""Micro-benchmark of the pgoutput decoder: change stream → COPY-binary change rows → Arrow.

The stream is what ``pg_logical_slot_peek_binary_changes`` sends for a bench_events-like
table (int4 id, text event_type, int4 user_id, int4 amount, bool, 60-char text payload,
timestamp): transactions of 100 changes, 70 % inserts, 20 % updates, 10 % deletes, built
in memory in binary and in text mode (so no server is needed). Cases, in changes/s:

* ``binary_feed`` / ``text_feed``: the decoder kernel alone (messages → change rows);
* ``binary_arrow``: the kernel plus ``copy_decode`` into Arrow columns, what a window costs
  the reader once the bytes are in memory.

The baseline is the per-message decoder a CDC client would write first: one dict per change
with a Python value per column (struct unpacking, ``bytes.decode``), the shape the popular
Python pgoutput clients produce.

With ``RAPIDBYTE_BENCH_LOGICAL_DSN`` (a server with wal_level = logical) two live cases run
on ``rows`` inserted changes of the same table: ``peek_drain`` is ``ChangeReader`` end to end
(peek COPY, kernel, Arrow; one window), ``stream_server`` drains the same changes through
the streaming replication protocol (START_REPLICATION, psycopg's ``get_copy_data``, no
decoding) until the server reports the WAL end: the server-and-wire cost of the
alternative to peeking.
"""
from __future__ import annotations

import os
import random
import struct
import time

from rapidbyte_fast._impl import copy_decode, twins
from rapidbyte_fast.column_plan import ColumnPlan, ColumnSinks, Kind
from rapidbyte_fast.sources.cdc import protocol as P

from .harness import measure

KERNEL = "pgoutput"
#: The Python twin and the baseline get at most this many changes (changes/s is compared).
PY_CHANGES = 20_000
TXN_CHANGES = 100
OID = 16500
KINDS = (Kind.INT4, Kind.TEXT, Kind.INT4, Kind.INT4, Kind.BOOL, Kind.TEXT, Kind.TIMESTAMP)
NAMES = ("id", "event_type", "user_id", "amount", "is_active", "payload", "created_at")
META = ((Kind.TEXT, "_rb_op"), (Kind.INT8, "_rb_lsn"), (Kind.INT8, "_rb_seq"),
        (Kind.TIMESTAMPTZ, "_rb_commit_ts"), (Kind.BYTEA, "_rb_unchanged"))
PLAN = ColumnPlan(NAMES + tuple(m[1] for m in META) + ("_rb_old_id",),
                  tuple(int(k) for k in KINDS + tuple(m[0] for m in META) + (Kind.INT4,)),
                  (0,) * 13, (0,) * 13)


def _values(rng: random.Random, i: int, binary: bool) -> list[tuple[bytes, bytes]]:
    event = rng.choice((b"click", b"view", b"purchase", b"signup", b"logout"))
    payload = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789 ", k=60)).encode()
    user, amount, active = rng.randrange(1_000_000), rng.randrange(100_000), rng.random() < 0.5
    us = rng.randrange(10**13)
    if binary:
        return [(b"b", struct.pack(">i", i)), (b"b", event), (b"b", struct.pack(">i", user)),
                (b"b", struct.pack(">i", amount)), (b"b", b"\x01" if active else b"\x00"),
                (b"b", payload), (b"b", struct.pack(">q", us))]
    secs, frac = divmod(us, 1_000_000)
    days, rest = divmod(secs, 86400)
    ts = f"2024-{1 + days % 12:02d}-{1 + days % 28:02d} {rest // 3600:02d}:" \
         f"{rest // 60 % 60:02d}:{rest % 60:02d}.{frac:06d}"
    return [(b"t", str(i).encode()), (b"t", event), (b"t", str(user).encode()),
            (b"t", str(amount).encode()), (b"t", b"t" if active else b"f"), (b"t", payload),
            (b"t", ts.encode())]


def _tuple(values) -> bytes:
    out = struct.pack(">h", len(values))
    for marker, v in values:
        out += marker + (struct.pack(">i", len(v)) + v if marker in (b"t", b"b") else b"")
    return out


def build_stream(changes: int, binary: bool, seed: int = 7) -> bytes:
    """The COPY-binary body (no header) of a peek of ``changes`` changes."""
    rng = random.Random(seed)
    out = bytearray()
    lsn = 0x100000

    def put(msg: bytes) -> None:
        nonlocal lsn
        out.extend(struct.pack(">hiQi", 2, 8, lsn, len(msg)) + msg)
        lsn += 64

    for i in range(changes):
        if i % TXN_CHANGES == 0:
            put(b"B" + struct.pack(">QqI", lsn + 64 * 120, 757_000_000_000_000 + i, 1000 + i))
        vals = _values(rng, i, binary)
        r = rng.random()
        if r < 0.7:
            put(b"I" + struct.pack(">I", OID) + b"N" + _tuple(vals))
        elif r < 0.9:
            put(b"U" + struct.pack(">I", OID) + b"N" + _tuple(vals))
        else:
            put(b"D" + struct.pack(">I", OID) + b"K" + _tuple([vals[0]] + [(b"n", b"")] * 6))
        if i % TXN_CHANGES == TXN_CHANGES - 1 or i == changes - 1:
            put(b"C" + struct.pack(">BQQq", 0, lsn, lsn + 48, 757_000_000_000_000 + i))
    out += b"\xff\xff"
    return bytes(out)


def _feed(mod, stream: bytes, changes: int, to_arrow: bool):
    def fn():
        dec = mod.Decoder()
        out = bytearray()
        dec.set_relation(OID, "public.events", NAMES, bytes(KINDS), bytes(7), (0,) * 7,
                         bytes(7), (0,), out)
        _, ev = dec.feed(stream, 0, len(stream), 1 << 40, 1 << 40)
        assert ev == P.EV_END and dec.window_changes == changes, (ev, dec.window_changes)
        if to_arrow:
            sinks = ColumnSinks(PLAN)
            copy_decode.decode(PLAN, out, 0, len(out), sinks, changes)
            assert sinks.rows == changes
            return sinks.finish()
        return out
    return fn


def per_message_dicts(stream: bytes) -> list[dict]:
    """Baseline: one dict of Python values per change."""
    unpack_row = struct.Struct(">hiQi").unpack_from
    i32 = struct.Struct(">i").unpack_from
    out, pos = [], 0
    while True:
        nf, _, lsn, n = unpack_row(stream, pos) if len(stream) - pos >= 18 else (-1, 0, 0, 0)
        if nf == -1:
            return out
        msg = stream[pos + 18:pos + 18 + n]
        pos += 18 + n
        if msg[:1] not in (b"I", b"U", b"D"):
            continue
        p = 8
        row = {"op": msg[:1].decode(), "lsn": lsn}
        for name, kind in zip(NAMES, KINDS):
            marker = msg[p]
            p += 1
            if marker in (0x6E, 0x75):
                row[name] = None
                continue
            (ln,) = i32(msg, p)
            v = msg[p + 4:p + 4 + ln]
            p += 4 + ln
            if kind == Kind.TEXT:
                row[name] = v.decode()
            elif kind == Kind.BOOL:
                row[name] = v == b"\x01"
            else:
                row[name] = int.from_bytes(v, "big", signed=True)
        out.append(row)


def run(rows: int) -> list[dict]:
    """One result per case × implementation; ``rows`` is the number of changes."""
    out = []
    impls = twins(KERNEL)
    for mode in ("binary", "text"):
        full = build_stream(rows, mode == "binary")
        small = build_stream(min(rows, PY_CHANGES), mode == "binary")
        for impl, mod in sorted(impls.items()):
            n, s = (rows, full) if impl == "c" else (min(rows, PY_CHANGES), small)
            out.append(measure(KERNEL, f"{mode}_feed", impl, _feed(mod, s, n, False), n, len(s)))
            if mode == "binary":
                out.append(measure(KERNEL, "binary_arrow", impl, _feed(mod, s, n, True), n,
                                   len(s)))
    small = build_stream(min(rows, PY_CHANGES), True)
    out.append(measure(KERNEL, "binary_feed", "baseline:per_message_dicts",
                       lambda: per_message_dicts(small), min(rows, PY_CHANGES), len(small)))
    dsn = os.environ.get("RAPIDBYTE_BENCH_LOGICAL_DSN")
    return out + (_live_cases(dsn, rows) if dsn else [])


def _live_cases(dsn: str, rows: int) -> list[dict]:
    import psycopg

    from rapidbyte_fast._impl import IMPL
    from rapidbyte_fast.sources.cdc.reader import ChangeReader

    names = ("rb_bench_peek", "rb_bench_stream")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.rb_bench_cdc")
        conn.execute("CREATE TABLE public.rb_bench_cdc (id int PRIMARY KEY, event_type text, "
                     "user_id int, amount int, is_active bool, payload text, "
                     "created_at timestamp)")
        conn.execute("DROP PUBLICATION IF EXISTS rb_bench_cdc")
        for slot in names:
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                         "WHERE slot_name = %s", (slot,))
        reader = ChangeReader(dsn, "rb_bench_cdc", names[0], ["public.rb_bench_cdc"],
                              max_window_changes=10 * rows, max_window_bytes=8 << 30)
        reader.open()
        reader.create_slot()
        reader.release_snapshot()
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (names[1],))
        for lo in range(1, rows + 1, 5000):
            conn.execute(
                "INSERT INTO public.rb_bench_cdc SELECT g, 'click', g %% 1000000, g %% 100000, "
                "g %% 2 = 0, repeat(md5(g::text), 2), timestamp '2024-01-01' + g * "
                "interval '1 second' FROM generate_series(%s::int, %s::int) g",
                (lo, min(rows, lo + 4999)))
        wal_end = int(conn.execute("SELECT pg_current_wal_lsn() - '0/0'").fetchone()[0])
        try:
            window = reader.read_window()
            out = [measure(KERNEL, "peek_drain", IMPL, reader.read_window, window.changes,
                           window.bytes, min_secs=0, max_repeats=3)]
            out.append(measure(KERNEL, "stream_server", "baseline:start_replication",
                               lambda: _stream_drain(dsn, names[1], wal_end), window.changes,
                               window.bytes, min_secs=0, max_repeats=3))
        finally:
            reader.close()
            _wait_released(conn, names[1])
            for slot in names:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            conn.execute("DROP PUBLICATION rb_bench_cdc")
            conn.execute("DROP TABLE public.rb_bench_cdc")
    return out


def _wait_released(conn, slot: str) -> None:
    """Wait (up to a minute) for the walsender of the previous stream to let go of ``slot``."""
    for _ in range(600):
        if not conn.execute("SELECT count(*) FROM pg_replication_slots WHERE active "
                            "AND slot_name = %s", (slot,)).fetchone()[0]:
            return
        time.sleep(0.1)


def _stream_drain(dsn: str, slot: str, wal_end: int) -> None:
    """Read a slot's changes over the streaming protocol until a keepalive reports the WAL
    end (nothing confirmed: the slot stays where it was)."""
    import psycopg
    from psycopg import pq

    with psycopg.connect(dsn, autocommit=True) as conn:
        _wait_released(conn, slot)
    conn = psycopg.connect(dsn, autocommit=True, replication="database")
    try:   # closed, never left through a context manager (it would COMMIT mid-COPY)
        pgconn = conn.pgconn
        pgconn.send_query(f"START_REPLICATION SLOT {slot} LOGICAL 0/0 (proto_version '1', "
                          "publication_names 'rb_bench_cdc', binary 'true')".encode())
        res = pgconn.get_result()
        assert res.status == pq.ExecStatus.COPY_BOTH, res.error_message
        while True:
            n, data = pgconn.get_copy_data(0)
            assert n > 0, pgconn.error_message
            if data[0] == 0x6B and struct.unpack_from(">Q", data, 1)[0] >= wal_end:
                return
    finally:
        conn.close()


if __name__ == "__main__":
    import sys

    for r in run(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000):
        print(f"{r['case']:14} {r['impl']:28} {r['rows_per_s']:>14,.0f} changes/s "
              f"{r['mb_per_s']:>9,.1f} MB/s")
