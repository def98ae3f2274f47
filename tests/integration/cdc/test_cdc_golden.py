"""Golden pgoutput bytes: every message type, as PostgreSQL 16 sent them, and the exact change
rows both decoder twins make of them.

The messages were captured (binary mode) from this workload on table gold.g (id int primary
key, s text STORAGE EXTERNAL, m gold.mood) in one session::

    INSERT (1, repeat('ab', 2000), 'happy'); UPDATE SET m = 'sad'; UPDATE SET id = 2;
    DELETE; then, in replication origin session 'n1': TRUNCATE

``test_server_still_sends_the_golden_bytes`` replays the workload on the test server and
checks that it sends the same bytes (OIDs, LSNs, xids and times aside).
"""
from __future__ import annotations

import struct

import pytest

from rapidbyte_fast._impl import twins
from rapidbyte_fast.column_plan import Kind
from rapidbyte_fast.sources.cdc import protocol as P

TWINS = twins("pgoutput")
REL_OID, ENUM_OID = 0x405D, 0x4059
BIG = b"ab" * 2000
TYPE = b"Y\x00\x00@Ygold\x00mood\x00"
RELATION = (b"R\x00\x00@]gold\x00g\x00d\x00\x03\x01id\x00\x00\x00\x00\x17\xff\xff\xff\xff"
            b"\x00s\x00\x00\x00\x00\x19\xff\xff\xff\xff\x00m\x00\x00\x00@Y\xff\xff\xff\xff")
GOLDEN = [
    (0x1583D58, b"B\x00\x00\x00\x00\x01X>P\x00\x03\x05\x06re\xd6j\x00\x00\x03\x1e"),
    (0x1583D58, TYPE),
    (0x1583D58, RELATION),
    (0x1583D58, b"I\x00\x00@]N\x00\x03b\x00\x00\x00\x04\x00\x00\x00\x01b\x00\x00\x0f\xa0"
                + BIG + b"b\x00\x00\x00\x05happy"),
    (0x1583E80, b"C\x00\x00\x00\x00\x00\x01X>P\x00\x00\x00\x00\x01X>\x80\x00\x03\x05\x06re\xd6j"),
    (0x1583EB8, b"B\x00\x00\x00\x00\x01X?\x18\x00\x03\x05\x06re\xe4\"\x00\x00\x03\x1f"),
    (0x1583EB8, b"U\x00\x00@]N\x00\x03b\x00\x00\x00\x04\x00\x00\x00\x01ub\x00\x00\x00\x03sad"),
    (0x1583F48, b"C\x00\x00\x00\x00\x00\x01X?\x18\x00\x00\x00\x00\x01X?H\x00\x03\x05\x06re\xe4\""),
    (0x1583F80, b"B\x00\x00\x00\x00\x01X@@\x00\x03\x05\x06re\xf6\xf4\x00\x00\x03 "),
    (0x1583F80, b"U\x00\x00@]K\x00\x03b\x00\x00\x00\x04\x00\x00\x00\x01nnN\x00\x03b\x00\x00\x00"
                b"\x04\x00\x00\x00\x02ub\x00\x00\x00\x03sad"),
    (0x1584070, b"C\x00\x00\x00\x00\x00\x01X@@\x00\x00\x00\x00\x01X@p\x00\x03\x05\x06re\xf6\xf4"),
    (0x1584070, b"B\x00\x00\x00\x00\x01XAX\x00\x03\x05\x06rf$\x95\x00\x00\x03!"),
    (0x1584070, b"D\x00\x00@]K\x00\x03b\x00\x00\x00\x04\x00\x00\x00\x02nn"),
    (0x1584188, b"C\x00\x00\x00\x00\x00\x01XAX\x00\x00\x00\x00\x01XA\x88\x00\x03\x05\x06rf$\x95"),
    (0x1584F40, b"B\x00\x00\x00\x00\x01XOp\x00\x03\x05\x06rf6\x0e\x00\x00\x03#"),
    (0x1584F40, b"O\x00\x00\x00\x00\x00\x00\x00\x00n1\x00"),
    (0x1584F40, TYPE),
    (0x1584F40, RELATION),
    (0x1584F40, b"T\x00\x00\x00\x01\x00\x00\x00@]"),
    (0x15850F0, b"C\x00\x00\x00\x00\x00\x01XOp\x00\x00\x00\x00\x01XP\xf0\x00\x03\x05\x06rf6\x0e"),
]
NULL = b"\xff\xff\xff\xff"


def _f(value: bytes) -> bytes:
    return struct.pack(">i", len(value)) + value


def _row(values: list[bytes | None], op: bytes, lsn: int, seq: int, ts: int,
         unchanged: bytes | None, old_id: bytes | None) -> bytes:
    fields = [NULL if v is None else _f(v) for v in values]
    fields += [_f(op), _f(struct.pack(">Q", lsn)), _f(struct.pack(">Q", seq)),
               _f(struct.pack(">q", ts)), NULL if unchanged is None else _f(unchanged),
               NULL if old_id is None else _f(old_id)]
    return struct.pack(">h", len(fields)) + b"".join(fields)


def _i4(v: int) -> bytes:
    return struct.pack(">i", v)


EXPECTED_ROWS = (
    _row([_i4(1), BIG, b"happy"], b"I", 0x1583E50, 0, 0x30506_7265D66A, None, None)
    + _row([_i4(1), None, b"sad"], b"U", 0x1583F18, 0, 0x30506_7265E422, b"\x02", None)
    + _row([_i4(2), None, b"sad"], b"U", 0x1584040, 0, 0x30506_7265F6F4, b"\x02", _i4(1))
    + _row([_i4(2), None, None], b"D", 0x1584158, 0, 0x30506_7266_2495, None, None)
    + _row([None, None, None], b"T", 0x1584F70, 0, 0x30506_7266_360E, None, None)
)


def _stream(messages) -> bytes:
    return b"".join(struct.pack(">hiQi", 2, 8, lsn, len(m)) + m for lsn, m in messages) \
        + b"\xff\xff"


def test_relation_type_and_origin_messages_parse():
    rel = P.parse_relation(RELATION, 1)
    assert rel == P.Relation(REL_OID, "gold", "g", "d", (
        P.RelationColumn("id", 23, -1, True), P.RelationColumn("s", 25, -1, False),
        P.RelationColumn("m", ENUM_OID, -1, False)))
    assert P.parse_type(TYPE, 1) == (ENUM_OID, "gold", "mood")
    assert P.parse_origin(GOLDEN[15][1], 1) == (0, "n1")


@pytest.mark.parametrize("impl", sorted(TWINS))
def test_golden_messages_become_exact_rows(impl):
    dec = TWINS[impl].Decoder()
    out = bytearray()
    data = _stream(GOLDEN)
    pos, events = 0, []
    while True:
        pos, ev = dec.feed(data, pos, len(data), 1 << 30, 1 << 30)
        events.append(ev)
        if ev == P.EV_RELATION:
            dec.set_relation(REL_OID, "gold.g", ("id", "s", "m"),
                             bytes([Kind.INT4, Kind.TEXT, Kind.TEXT]), b"\0\0\0", (0, 0, 0),
                             b"\0\0\0", (0,), out)
        if ev == P.EV_END:
            break
    assert pos == len(data)
    assert events == [P.EV_TYPE, P.EV_RELATION, P.EV_ORIGIN, P.EV_TYPE, P.EV_RELATION,
                      P.EV_END]
    assert bytes(out) == EXPECTED_ROWS
    assert (dec.window_txns, dec.window_changes, dec.window_bytes) == (5, 5, len(EXPECTED_ROWS))
    assert (dec.last_commit_lsn, dec.end_lsn) == (0x1584F70, 0x15850F0)


@pytest.mark.parametrize("impl", sorted(TWINS))
@pytest.mark.parametrize("cut", [1, 5, 20, 21, 22, 200, 4000, -30, -3])
def test_golden_stream_cut_anywhere(impl, cut):
    """Fed in two pieces, the stream gives the same rows (no message is split)."""
    dec = TWINS[impl].Decoder()
    out = bytearray()
    data = _stream(GOLDEN)
    dec.set_relation(REL_OID, "gold.g", ("id", "s", "m"),
                     bytes([Kind.INT4, Kind.TEXT, Kind.TEXT]), b"\0\0\0", (0, 0, 0),
                     b"\0\0\0", (0,), out)
    pos = 0
    for end in (cut % len(data), len(data)):
        while True:
            pos, ev = dec.feed(data, pos, max(pos, end), 1 << 30, 1 << 30)
            if ev in (P.EV_MORE, P.EV_END):
                break
    assert ev == P.EV_END and bytes(out) == EXPECTED_ROWS


def test_server_still_sends_the_golden_bytes(logical_conn):
    c = logical_conn
    c.execute("DROP SCHEMA IF EXISTS gold CASCADE")
    c.execute("DROP PUBLICATION IF EXISTS rb_golden")
    c.execute("SELECT pg_drop_replication_slot('rb_golden') FROM pg_replication_slots "
              "WHERE slot_name = 'rb_golden'")
    c.execute("CREATE SCHEMA gold")
    try:
        c.execute("CREATE TYPE gold.mood AS ENUM ('sad', 'happy')")
        c.execute("CREATE TABLE gold.g (id int PRIMARY KEY, s text, m gold.mood)")
        c.execute("ALTER TABLE gold.g ALTER s SET STORAGE EXTERNAL")
        c.execute("CREATE PUBLICATION rb_golden FOR TABLE gold.g")
        c.execute("SELECT pg_create_logical_replication_slot('rb_golden', 'pgoutput')")
        c.execute("INSERT INTO gold.g VALUES (1, repeat('ab', 2000), 'happy')")
        c.execute("UPDATE gold.g SET m = 'sad'")
        c.execute("UPDATE gold.g SET id = 2")
        c.execute("DELETE FROM gold.g")
        c.execute("SELECT pg_replication_origin_create('n1')")
        try:
            c.execute("SELECT pg_replication_origin_session_setup('n1')")
            c.execute("TRUNCATE gold.g")
            c.execute("SELECT pg_replication_origin_session_reset()")
        finally:
            c.execute("SELECT pg_replication_origin_drop('n1')")
        live = [bytes(r[0]) for r in c.execute(
            "SELECT data FROM pg_logical_slot_peek_binary_changes('rb_golden', NULL, NULL, "
            "'proto_version', '1', 'publication_names', 'rb_golden', 'binary', 'true')")]
        rel_oid, enum_oid = c.execute("SELECT 'gold.g'::regclass::oid, "
                                      "'gold.mood'::regtype::oid").fetchone()
    finally:
        c.execute("SELECT pg_drop_replication_slot('rb_golden')")
        c.execute("DROP PUBLICATION IF EXISTS rb_golden")
        c.execute("DROP SCHEMA gold CASCADE")
    assert [m[:1] for m in live] == [m[:1] for _, m in GOLDEN]
    for got, (_, want) in zip(live, GOLDEN):
        if want[:1] in (b"B", b"C"):   # LSNs, times and xids vary
            assert len(got) == len(want) and got[:2] == want[:2]
            continue
        got = got.replace(struct.pack(">I", rel_oid), struct.pack(">I", REL_OID))
        got = got.replace(struct.pack(">I", enum_oid), struct.pack(">I", ENUM_OID))
        assert got == want
