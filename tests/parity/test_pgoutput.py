"""Parity of the pgoutput decoder twins (compiled vs Python) on generated message streams.

Streams are built by a test-side encoder of pgoutput messages inside the COPY-binary rows of
``pg_logical_slot_peek_binary_changes``: random relations (every kind, arrays, text-only
columns, keys), inserts, updates with and without an old key, deletes, truncates, unchanged
TOAST markers, binary values copied as they are and text values that are either in
PostgreSQL's output form or nasty (signs, separators, quotes, backslashes, NUL, non-ASCII,
overlong digit runs). Both twins get the same stream cut at the same random chunk
boundaries; events, positions, window counters, output rows and errors must match. The
text parser's correctness against a real server is in tests/integration/cdc.
"""
from __future__ import annotations

import datetime as dt
import math
import struct
import sys
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rapidbyte_fast._impl import twins
from rapidbyte_fast.column_plan import Kind
from rapidbyte_fast.errors import DataError
from rapidbyte_fast.sources.cdc import protocol as P

TWINS = twins("pgoutput")
needs_c = pytest.mark.skipif("c" not in TWINS, reason="compiled pgoutput not built")
SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- test-side encoder ----------------------------------------------------------------------

def row(lsn: int, msg: bytes) -> bytes:
    """One COPY-binary row (lsn pg_lsn, data bytea) of the peek function's output."""
    return struct.pack(">hiQi", 2, 8, lsn, len(msg)) + msg


def begin(final_lsn: int, ts: int, xid: int) -> bytes:
    return b"B" + struct.pack(">QqI", final_lsn, ts, xid)


def commit(commit_lsn: int, end_lsn: int, ts: int) -> bytes:
    return b"C" + struct.pack(">BQQq", 0, commit_lsn, end_lsn, ts)


def tuple_data(values: list[tuple[bytes, bytes]]) -> bytes:
    out = struct.pack(">h", len(values))
    for marker, value in values:
        out += marker
        if marker in (b"t", b"b"):
            out += struct.pack(">i", len(value)) + value
    return out


def insert(oid: int, values) -> bytes:
    return b"I" + struct.pack(">I", oid) + b"N" + tuple_data(values)


def update(oid: int, values, old=None, old_marker: bytes = b"K") -> bytes:
    head = b"U" + struct.pack(">I", oid)
    if old is not None:
        head += old_marker + tuple_data(old)
    return head + b"N" + tuple_data(values)


def delete(oid: int, old, marker: bytes = b"K") -> bytes:
    return b"D" + struct.pack(">I", oid) + marker + tuple_data(old)


def truncate(oids: list[int]) -> bytes:
    return b"T" + struct.pack(">iB", len(oids), 0) + b"".join(struct.pack(">I", o) for o in oids)


def relation_msg(oid: int, schema: str, name: str, cols: list[tuple[str, int, int, bool]]) -> bytes:
    out = b"R" + struct.pack(">I", oid) + schema.encode() + b"\0" + name.encode() + b"\0"
    out += b"d" + struct.pack(">h", len(cols))
    for cname, typ, typmod, key in cols:
        out += bytes([int(key)]) + cname.encode() + b"\0" + struct.pack(">Ii", typ, typmod)
    return out


# --- PostgreSQL text output forms ------------------------------------------------------------

def _date_text(d: dt.date) -> str:
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def _clock(us: int) -> str:
    s, frac = divmod(us, 1_000_000)
    h, rem = divmod(s, 3600)
    text = f"{h:02d}:{rem // 60:02d}:{rem % 60:02d}"
    return text + (f".{frac:06d}".rstrip("0") if frac else "")


def _float_text(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return repr(x)


def _quote(text: str) -> str:
    if text == "" or text.upper() == "NULL" or any(c in text for c in '{}," \\\t\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


_dates = st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31))
_texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_NASTY = st.binary(max_size=16) | st.text(
    alphabet="0123456789+-.:eExX ,{}\"\\[]=NaIfinty BCu\x00é", max_size=24).map(str.encode)


def _valid(kind: int) -> st.SearchStrategy[str]:
    if kind == Kind.BOOL:
        return st.sampled_from(["t", "f"])
    if kind in (Kind.INT2, Kind.INT4, Kind.INT8):
        bits = {Kind.INT2: 15, Kind.INT4: 31, Kind.INT8: 63}[kind]
        return st.integers(-(2**bits), 2**bits - 1).map(str)
    if kind == Kind.FLOAT8:
        return st.floats(allow_nan=True).map(_float_text)
    if kind == Kind.FLOAT4:
        return st.floats(width=32, allow_nan=True).map(_float_text)
    if kind in (Kind.NUMERIC, Kind.NUMERIC_TEXT):
        return st.one_of(st.decimals(allow_nan=False, allow_infinity=False, places=4).map(
            lambda d: format(d, "f")), st.sampled_from(["NaN", "Infinity", "-Infinity", "0",
                                                          "-0.000", "123456789012345678901"]))
    if kind == Kind.DATE:
        return st.one_of(_dates.map(_date_text), st.sampled_from(
            ["infinity", "-infinity", "0044-03-15 BC", "4714-11-24 BC", "5874897-12-31"]))
    if kind == Kind.TIME:
        return st.integers(0, 86_400_000_000).map(_clock)
    if kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
        tz = "+00" if kind == Kind.TIMESTAMPTZ else ""
        return st.one_of(
            st.tuples(_dates, st.integers(0, 86_399_999_999)).map(
                lambda p: f"{_date_text(p[0])} {_clock(p[1])}{tz}"),
            st.sampled_from(["infinity", "-infinity", f"0001-01-01 00:00:00{tz} BC"]))
    if kind == Kind.INTERVAL:
        return st.tuples(st.integers(-1000, 1000), st.integers(-40, 40),
                         st.integers(-(10**12), 10**12)).map(
            lambda p: " ".join(x for x in (f"{p[0]} mons" if p[0] else "",
                                           f"{p[1]} days" if p[1] else "",
                                           ("-" if p[2] < 0 else "") + _clock(abs(p[2])))
                               if x))
    if kind == Kind.UUID:
        return st.uuids().map(str)
    if kind == Kind.BYTEA:
        return st.binary(max_size=12).map(lambda b: "\\x" + b.hex())
    return _texts


_SCALARS = [k for k in Kind if k != Kind.ARRAY]


@st.composite
def relations(draw, oid: int):
    n = draw(st.integers(1, 5))
    kinds, elems, text_only = [], [], []
    for _ in range(n):
        kind = draw(st.sampled_from(_SCALARS + [Kind.ARRAY]))
        elem = draw(st.sampled_from(_SCALARS)) if kind == Kind.ARRAY else 0
        kinds.append(int(kind))
        elems.append(int(elem))
        text_only.append(int(kind == Kind.TEXT and draw(st.booleans())))
    keys = tuple(sorted(draw(st.sets(st.integers(0, n - 1), min_size=1))))
    names = tuple(f"c{oid}_{i}" for i in range(n))
    return dict(oid=oid, table=f"s.t{oid}", names=names, kinds=bytes(kinds),
                elem_kinds=bytes(elems), elem_oids=tuple(23 if e else 0 for e in elems),
                text_only=bytes(text_only), keys=keys)


@st.composite
def values(draw, rel):
    out = []
    for kind, elem in zip(rel["kinds"], rel["elem_kinds"]):
        marker = draw(st.sampled_from([b"n", b"u", b"t", b"t", b"t", b"b"]))
        if marker == b"b":
            out.append((marker, draw(st.binary(max_size=10))))
        elif marker == b"t":
            if draw(st.integers(0, 4)) == 0:
                text = draw(_NASTY)
            elif kind == Kind.ARRAY:
                items = draw(st.lists(st.none() | _valid(elem), max_size=4))
                text = ("{" + ",".join("NULL" if v is None else _quote(v) for v in items)
                        + "}").encode()
            else:
                text = draw(_valid(kind)).encode()
            out.append((marker, text))
        else:
            out.append((marker, b""))
    return out


@st.composite
def streams(draw):
    rels = [draw(relations(oid)) for oid in (16384, 16390)]
    msgs = []
    lsn = 0x1000
    for xid in range(draw(st.integers(1, 4))):
        msgs.append(begin(lsn + 500, 700_000_000_000_000 + xid, 700 + xid))
        for _ in range(draw(st.integers(0, 5))):
            rel = draw(st.sampled_from(rels))
            op = draw(st.sampled_from("IUUDTRYO"))
            if op == "I":
                msgs.append(insert(rel["oid"], draw(values(rel))))
            elif op == "U":
                old = draw(values(rel)) if draw(st.booleans()) else None
                msgs.append(update(rel["oid"], draw(values(rel)), old,
                                   draw(st.sampled_from([b"K", b"O"]))))
            elif op == "D":
                msgs.append(delete(rel["oid"], draw(values(rel)),
                                   draw(st.sampled_from([b"K", b"O"]))))
            elif op == "T":
                msgs.append(truncate([r["oid"] for r in rels]))
            elif op == "R":
                msgs.append(relation_msg(rel["oid"], "s", "t", [("a", 23, -1, True)]))
            elif op == "Y":
                msgs.append(b"Y" + struct.pack(">I", 90001) + b"s\0mood\0")
            else:
                msgs.append(b"O" + struct.pack(">Q", 77) + b"node_a\0")
        msgs.append(commit(lsn + 500, lsn + 560, 700_000_000_000_000 + xid))
        lsn += 1000
    if draw(st.integers(0, 6)) == 0:  # a corrupt message somewhere
        i = draw(st.integers(0, len(msgs) - 1))
        cut = draw(st.integers(0, len(msgs[i])))
        msgs[i] = msgs[i][:cut] + draw(st.binary(max_size=3))
    data = b"".join(row(0x1000 + 8 * i, m) for i, m in enumerate(msgs if all(msgs) else
                                                                     [m for m in msgs if m]))
    return rels, data + b"\xff\xff"


def _run(mod, rels, data: bytes, cuts: list[int], max_bytes: int, max_changes: int):
    dec = mod.Decoder()
    outs = {}
    for r in rels:
        outs[r["oid"]] = bytearray()
        dec.set_relation(r["oid"], r["table"], r["names"], r["kinds"], r["elem_kinds"],
                         r["elem_oids"], r["text_only"], r["keys"], outs[r["oid"]])
    trace = []
    pos = 0
    try:
        for end in sorted({min(c, len(data)) for c in cuts}) + [len(data)]:
            while True:
                pos, ev = dec.feed(data, pos, max(end, pos), max_bytes, max_changes)
                trace.append((pos, ev, dec.window_bytes, dec.window_changes, dec.window_txns,
                              dec.end_lsn, dec.seq, dec.msg_start, dec.msg_end))
                if ev == P.EV_TOO_LARGE:
                    dec.rollback()
                    trace.append(("rollback", dec.window_bytes, dec.window_changes))
                if ev in (P.EV_MORE, P.EV_END):
                    break
            if ev == P.EV_END:
                break
        err = None
    except DataError as exc:
        err = str(exc)
    return trace, {k: bytes(v) for k, v in outs.items()}, err


@needs_c
@SETTINGS
@given(streams(), st.lists(st.integers(0, 4000), max_size=4), st.integers(1, 4000),
       st.integers(1, 12))
def test_twins_agree_on_generated_streams(stream, cuts, max_bytes, max_changes):
    rels, data = stream
    py = _run(TWINS["python"], rels, data, cuts, max_bytes, max_changes)
    c = _run(TWINS["c"], rels, data, cuts, max_bytes, max_changes)
    assert c == py


_VALID_KINDS = [k for k in _SCALARS] + [Kind.ARRAY]


@needs_c
@SETTINGS
@given(st.data())
def test_text_values_parse_alike(data):
    """Every text value of every kind gives the same field (or the same refusal)."""
    kind = data.draw(st.sampled_from(_VALID_KINDS))
    elem = data.draw(st.sampled_from(_SCALARS)) if kind == Kind.ARRAY else 0
    if data.draw(st.booleans()):
        text = data.draw(_NASTY)
    elif kind == Kind.ARRAY:
        items = data.draw(st.lists(st.none() | _valid(elem), max_size=5))
        text = ("{" + ",".join("NULL" if v is None else _quote(v) for v in items) + "}").encode()
    else:
        text = data.draw(_valid(kind)).encode()
    rel = dict(oid=1, table="s.t", names=("v",), kinds=bytes([kind]), elem_kinds=bytes([elem]),
               elem_oids=(23,), text_only=b"\0", keys=(0,))
    stream = (row(1, begin(9, 0, 1)) + row(2, insert(1, [(b"t", text)]))
              + row(3, commit(9, 10, 0)) + b"\xff\xff")
    results = [_run(TWINS[impl], [rel], stream, [], 1 << 30, 1 << 30) for impl in ("python", "c")]
    assert results[0] == results[1]


def test_events_and_constants_mirror_protocol():
    for mod in TWINS.values():
        assert mod.EVENTS == {name: getattr(P, name) for name in mod.EVENTS}
        assert set(mod.EVENTS) == {n for n in dir(P) if n.startswith("EV_")}
        assert mod.META_FIELDS == 5


@pytest.mark.parametrize("impl", sorted(TWINS))
@pytest.mark.parametrize("kind,text,wire", [
    (Kind.INT4, b"-2147483648", struct.pack(">i", -(2**31))),
    (Kind.INT8, b"00000000000000000000042", struct.pack(">q", 42)),
    (Kind.FLOAT8, b"-0", struct.pack(">d", -0.0)),
    (Kind.FLOAT8, b"NaN", struct.pack(">d", float("nan"))),
    (Kind.FLOAT4, b"-Infinity", struct.pack(">f", float("-inf"))),
    (Kind.FLOAT4, b"3.4028235e+38", struct.pack(">f", 3.4028235e38)),
    (Kind.NUMERIC, b"-0.50", struct.pack(">hhHhH", 1, -1, 0x4000, 2, 5000)),
    (Kind.NUMERIC_TEXT, b"10000.0001", struct.pack(">hhHhHHH", 3, 1, 0, 4, 1, 0, 1)),
    (Kind.NUMERIC, b"0.000", struct.pack(">hhHh", 0, 0, 0, 3)),
    (Kind.DATE, b"2000-01-01", struct.pack(">i", 0)),
    (Kind.DATE, b"0001-01-01 BC", struct.pack(">i", -730485)),
    (Kind.DATE, b"infinity", struct.pack(">i", 2**31 - 1)),
    (Kind.TIMESTAMPTZ, b"2000-01-01 00:00:00.5-01:30", struct.pack(">q", 5_400_500_000)),
    (Kind.TIMESTAMP, b"1999-12-31 23:59:59.999999", struct.pack(">q", -1)),
    (Kind.TIME, b"24:00:00", struct.pack(">q", 86_400_000_000)),
    (Kind.INTERVAL, b"1 year -2 mons +3 days -04:05:06.5",
     struct.pack(">qii", -14_706_500_000, 3, 10)),
    (Kind.INTERVAL, b"-00:00:00.000001", struct.pack(">qii", -1, 0, 0)),
    (Kind.UUID, b"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
     uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").bytes),
    (Kind.BYTEA, b"\\x00fF", b"\x00\xff"),
    (Kind.JSONB, b'{"a": 1}', b'\x01{"a": 1}'),
    (Kind.BOOL, b"t", b"\x01"),
])
def test_text_value_to_send_format(impl, kind, text, wire):
    rel = dict(oid=1, table="s.t", names=("v",), kinds=bytes([kind]), elem_kinds=b"\0",
               elem_oids=(0,), text_only=b"\0", keys=(0,))
    stream = (row(1, begin(9, 0, 1)) + row(2, insert(1, [(b"t", text)]))
              + row(3, commit(9, 10, 0)) + b"\xff\xff")
    _, outs, err = _run(TWINS[impl], [rel], stream, [], 1 << 30, 1 << 30)
    assert err is None
    assert outs[1][2:6] == struct.pack(">i", len(wire)) and outs[1][6:6 + len(wire)] == wire


@pytest.mark.parametrize("impl", sorted(TWINS))
@pytest.mark.parametrize("elem,text,elements,lbound", [
    (Kind.INT4, b"{1,NULL,-3}", [struct.pack(">i", 1), None, struct.pack(">i", -3)], 1),
    (Kind.TEXT, b'{"a,b","say \\"hi\\"",null,"NULL",""}',
     [b"a,b", b'say "hi"', None, b"NULL", b""], 1),
    (Kind.INT2, b"[0:1]={7,8}", [struct.pack(">h", 7), struct.pack(">h", 8)], 0),
])
def test_text_array_to_send_format(impl, elem, text, elements, lbound):
    rel = dict(oid=1, table="s.t", names=("v",), kinds=bytes([Kind.ARRAY]),
               elem_kinds=bytes([elem]), elem_oids=(23,), text_only=b"\0", keys=(0,))
    stream = (row(1, begin(9, 0, 1)) + row(2, insert(1, [(b"t", text)]))
              + row(3, commit(9, 10, 0)) + b"\xff\xff")
    _, outs, err = _run(TWINS[impl], [rel], stream, [], 1 << 30, 1 << 30)
    assert err is None
    body = struct.pack(">iiIii", 1, int(None in elements), 23, len(elements), lbound) + b"".join(
        b"\xff\xff\xff\xff" if e is None else struct.pack(">i", len(e)) + e for e in elements)
    assert outs[1][2:6 + len(body)] == struct.pack(">i", len(body)) + body


@pytest.mark.parametrize("impl", sorted(TWINS))
@pytest.mark.parametrize("kind,text", [
    (Kind.INT2, b"32768"), (Kind.INT4, b"1.0"), (Kind.INT8, b"99999999999999999999"),
    (Kind.FLOAT8, b"inf"), (Kind.FLOAT8, b"0x1p3"), (Kind.FLOAT4, b"1e39"),
    (Kind.NUMERIC, b"1e5"), (Kind.NUMERIC, b"1."), (Kind.DATE, b"2001-02-29"),
    (Kind.DATE, b"0000-01-01"), (Kind.TIME, b"24:00:01"), (Kind.TIMESTAMP, b"2000-01-01T00:00:00"),
    (Kind.TIMESTAMPTZ, b"2000-01-01 00:00:00"), (Kind.INTERVAL, b"1 week"),
    (Kind.INTERVAL, b"P1Y"), (Kind.UUID, b"a0eebc999c0b4ef8bb6d6bb9bd380a11"),
    (Kind.BYTEA, b"\\x0"), (Kind.BYTEA, b"abc"), (Kind.BOOL, b"true"),
])
def test_text_value_refused(impl, kind, text):
    rel = dict(oid=1, table="s.t", names=("v",), kinds=bytes([kind]), elem_kinds=b"\0",
               elem_oids=(0,), text_only=b"\0", keys=(0,))
    stream = (row(0x10, begin(9, 0, 1)) + row(0x20, insert(1, [(b"t", text)]))
              + row(0x30, commit(9, 10, 0)) + b"\xff\xff")
    _, outs, err = _run(TWINS[impl], [rel], stream, [], 1 << 30, 1 << 30)
    assert outs[1] == b""
    shown = text.decode("utf-8", "replace")
    assert err == (f"change stream at LSN 0/20, Insert of table s.t, column 'v': cannot read "
                   f"{shown!r} as {P._KIND_NAMES[kind]}")


@pytest.mark.parametrize("impl", sorted(TWINS))
def test_relation_resent_mid_transaction_keeps_rollback_whole(impl):
    """A Relation message re-sent inside a transaction (same buffer) must not hide the
    transaction's earlier rows from ``rollback``."""
    dec = TWINS[impl].Decoder()
    out = bytearray()
    spec = ("s.t", ("v",), bytes([Kind.INT4]), b"\0", (0,), b"\0", (0,))
    dec.set_relation(1, *spec, out)
    one = [(b"b", struct.pack(">i", 1))]
    data = (row(1, begin(9, 0, 1)) + row(2, insert(1, one)) + row(3, commit(9, 10, 0))
            + row(4, begin(19, 0, 2)) + row(5, insert(1, one))
            + row(6, relation_msg(1, "s", "t", [("v", 23, -1, True)])) + row(7, insert(1, one)))
    pos, ev = dec.feed(data, 0, len(data), 1 << 30, 1 << 30)
    assert ev == P.EV_RELATION
    kept = bytes(out)
    dec.set_relation(1, *spec, out)
    pos, ev = dec.feed(data, pos, len(data), len(kept) + 10, 1 << 30)
    assert ev == P.EV_TOO_LARGE and dec.window_txns == 1
    dec.rollback()
    first_txn = len(kept) // 2   # two equal rows were written, one per transaction
    assert bytes(out) == kept[:first_txn] and dec.window_changes == 1


@pytest.mark.parametrize("impl", sorted(TWINS))
def test_rebound_relation_lets_go_of_its_old_rows(impl):
    """Binding a relation to a new window's buffer drops the decoder's hold on the old one:
    a window's rows must be freed once the reader and the apply are done with them, not
    kept until the peek's decoder dies (a drain held two windows' rows at once)."""
    dec = TWINS[impl].Decoder()
    spec = ("s.t", ("v",), bytes([Kind.INT4]), b"\0", (0,), b"\0", (0,))
    old = bytearray()
    unbound = sys.getrefcount(old)
    dec.set_relation(1, *spec, old)
    assert sys.getrefcount(old) > unbound
    dec.set_relation(1, *spec, bytearray())
    assert sys.getrefcount(old) == unbound
    dec.set_relation(2, *spec, None)   # a skipped relation holds no buffer either
    dec.set_relation(2, *spec, None)
    assert sys.getrefcount(old) == unbound
