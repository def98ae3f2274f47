"""pgoutput change stream → COPY-binary change rows per relation (Python twin).

Reference implementation of ``rapidbyte_fast._native.pgoutput``: same API, same bytes, same
events and errors. Input is the output of ``COPY (SELECT lsn, data FROM
pg_logical_slot_peek_binary_changes(...)) TO STDOUT (FORMAT binary)`` after its header: COPY
tuples of (pg_lsn, bytea), one pgoutput message each (``sources/cdc/protocol.py`` has the
message layouts).

For every change the decoder appends one COPY-binary tuple to its relation's caller-owned
``out`` buffer, so that ``copy_decode.decode`` turns the rows into Arrow columns with the same
value decoders (and errors) as a full load. The tuple's fields are:

=====================  =========  ===================================================
field                  kind       value
=====================  =========  ===================================================
the relation's         its plan   the new row (insert, update) or the old row
columns, in order                 (delete: key columns only unless REPLICA IDENTITY
                                  FULL); NULL for an unchanged TOAST value
``_rb_op``             TEXT       ``I`` insert, ``U`` update, ``D`` delete, ``T`` truncate
``_rb_lsn``            INT8       commit LSN of the transaction (Begin's final LSN)
``_rb_seq``            INT8       ordinal of the change in its transaction, from 0
``_rb_commit_ts``      TIMESTAMPTZ commit time of the transaction
``_rb_unchanged``      BYTEA      NULL, or a bitmap of the columns whose value was not sent
                                  (unchanged TOAST; bit i = byte i//8, bit i%8, LSB
                                  first: PostgreSQL's ``get_bit`` on bytea, Arrow's order)
one per key column     key's plan old key of an update that carried the old row (``K`` /
                                  ``O``: the key changed, or REPLICA IDENTITY FULL); NULL
                                  otherwise
=====================  =========  ===================================================

A truncate appends one row per truncated relation (all columns NULL, ``_rb_op`` = ``T``).
(``_rb_lsn``, ``_rb_seq``) orders every change of the stream in commit order.

Binary values (``b``) are the types' send format, which is COPY binary's per-field format:
they are copied as they are. Text values (``t``, servers before 14 or text mode) are parsed
here into that same send format, so both modes give identical Arrow output. Parsing expects
the session settings the reader pins (DateStyle ISO, IntervalStyle postgres, TimeZone UTC,
bytea_output hex, extra_float_digits 3).

A window holds whole transactions: ``feed`` stops with ``EV_LIMIT`` after a Commit once the
window holds ``max_bytes`` or ``max_changes``, and with ``EV_TOO_LARGE`` as soon as it passes
``max_bytes`` inside a transaction (``rollback`` then drops that transaction's rows).
"""
from __future__ import annotations

import re
import struct

from ..column_plan import Kind
from ..sources.cdc.protocol import (
    EV_END,
    EV_LIMIT,
    EV_MORE,
    EV_ORIGIN,
    EV_RELATION,
    EV_TOO_LARGE,
    EV_TYPE,
    F_BINARY_VALUE,
    F_COLUMN_COUNT,
    F_FRAMING,
    F_OUTSIDE_TXN,
    F_TEXT_VALUE,
    F_TRUNCATED,
    F_TUPLE_KIND,
    F_UNKNOWN_MESSAGE,
    F_UNKNOWN_RELATION,
    fault,
)

#: Fields after the relation's columns (op, lsn, seq, commit_ts, unchanged).
META_FIELDS = 5
#: Event name → code (the compiled twin exports the values it was compiled with).
EVENTS = {"EV_MORE": EV_MORE, "EV_RELATION": EV_RELATION, "EV_TYPE": EV_TYPE,
          "EV_ORIGIN": EV_ORIGIN, "EV_LIMIT": EV_LIMIT, "EV_TOO_LARGE": EV_TOO_LARGE,
          "EV_END": EV_END}

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_NULL = b"\xff\xff\xff\xff"
_ROW_HEAD = struct.Struct(">hi")    # COPY tuple: nfields (2), length of the lsn field (8)
_BEGIN = struct.Struct(">QqI")
_COMMIT = struct.Struct(">BQQq")

_INT = re.compile(rb"[+-]?[0-9]+")
_FLOAT = re.compile(rb"NaN|-?Infinity|[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NUMERIC = re.compile(rb"([+-]?)([0-9]+)(?:\.([0-9]+))?")
_DATE = re.compile(rb"([0-9]{4,})-([0-9]{2})-([0-9]{2})")
_CLOCK = re.compile(rb"([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?")
_OFFSET = re.compile(rb"([+-])([0-9]{2})(?::([0-9]{2})(?::([0-9]{2}))?)?")
_INTERVAL_PART = re.compile(rb"([+-]?[0-9]+) (years?|mons?|days?)")
_INTERVAL_CLOCK = re.compile(rb"([+-]?)([0-9]+):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?")
_UUID = re.compile(rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   rb"[0-9a-fA-F]{12}")
_HEX = re.compile(rb"\\x((?:[0-9a-fA-F]{2})*)")
_ARRAY_DIMS = re.compile(rb"((?:\[[+-]?[0-9]+:[+-]?[0-9]+\])+)=")
_ARRAY_DIM = re.compile(rb"\[([+-]?[0-9]+):[+-]?[0-9]+\]")

_INT_RANGE = {Kind.INT2: (-(2**15), 2**15 - 1, ">h"), Kind.INT4: (-(2**31), 2**31 - 1, ">i"),
              Kind.INT8: (-(2**63), 2**63 - 1, ">q")}
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
_US_PER_DAY = 86_400_000_000
#: Years of a date, and interval fields and hours, at or above these are refused (the
#: compiled twin's bounded arithmetic).
_YEAR_MAX = 10**9
_BIG = 10**18
_PG_EPOCH_DAYS = 730_425   # days from 0000-03-01 (day 0 of _days_from_civil) to 2000-01-01


class _Rel:
    __slots__ = ("oid", "table", "names", "kinds", "elem_kinds", "elem_oids", "text_only",
                 "keys", "out", "stamp", "mark")

    def __init__(self, oid, table, names, kinds, elem_kinds, elem_oids, text_only, keys, out):
        self.oid, self.table, self.names = oid, table, names
        self.kinds, self.elem_kinds, self.elem_oids = kinds, elem_kinds, elem_oids
        self.text_only, self.keys, self.out = text_only, keys, out
        self.stamp = -1   # serial of the last transaction that wrote rows here
        self.mark = 0     # length of ``out`` before that transaction


class _Fault(Exception):
    """Internal: a fault of the message being decoded."""

    def __init__(self, code: int, col: int = -1, kind: int = 0, value: int = 0,
                 text: bytes = b"", rel: _Rel | None = None) -> None:
        super().__init__(code)
        self.code, self.col, self.kind, self.value, self.text, self.rel = (
            code, col, kind, value, text, rel)


class Decoder:
    """Decoding state of one change stream: registered relations, the open transaction,
    and the current window's counters."""

    def __init__(self) -> None:
        self._rels: dict[int, _Rel] = {}
        self._serial = 0
        self.in_txn = False
        self.xid = 0
        self.commit_lsn = 0
        self.commit_ts = 0
        self.seq = 0
        #: span in ``src`` and LSN of the message an event stopped at
        self.msg_start = self.msg_end = self.msg_lsn = 0
        #: relation OID of the change an EV_TOO_LARGE stopped at
        self.msg_oid = 0
        #: the messages decoded so far (a peek that returned fewer rows than it asked for
        #: reached the end of the WAL)
        self.messages = 0
        self.reset_window()

    def reset_window(self) -> None:
        """Start a new window (the caller has taken every ``out`` buffer's rows)."""
        self.window_bytes = self.window_changes = self.window_txns = 0
        self.end_lsn = self.last_commit_lsn = 0
        #: commit time of the window's last transaction (microseconds since 2000-01-01)
        self.last_commit_ts = 0
        self._txn_bytes = self._txn_changes = 0

    def set_relation(self, oid: int, table: str, names: tuple[str, ...], kinds: bytes,
                     elem_kinds: bytes, elem_oids: tuple[int, ...], text_only: bytes,
                     keys: tuple[int, ...], out: bytearray | None) -> None:
        """Register (or replace) relation ``oid``: its columns' kinds (``column_plan.Kind``),
        array element kinds and OIDs, which columns are read only as text (a binary value
        is refused), the indexes of its key columns, and the buffer its rows are appended
        to (None: skip the relation's changes)."""
        n = len(names)
        if not (len(kinds) == len(elem_kinds) == len(elem_oids) == len(text_only) == n):
            raise ValueError(f"relation {table}: column specs of different lengths")
        if any(not 0 <= k < n for k in keys):
            raise ValueError(f"relation {table}: key index out of range")
        if out is not None and not isinstance(out, bytearray):
            raise TypeError("out must be a bytearray")
        rel = _Rel(oid, table, tuple(names), bytes(kinds), bytes(elem_kinds),
                   tuple(elem_oids), bytes(text_only), tuple(keys), out)
        old = self._rels.get(oid)
        if old is not None and old.out is out:  # re-sent mid-transaction: keep its mark
            rel.stamp, rel.mark = old.stamp, old.mark
        self._rels[oid] = rel

    def rollback(self) -> None:
        """Drop the rows of the open transaction (a window cut before it) and close it."""
        for rel in self._rels.values():
            if rel.stamp == self._serial and rel.out is not None:
                del rel.out[rel.mark:]
                rel.stamp = -1
        self.window_bytes = self._txn_bytes
        self.window_changes = self._txn_changes
        self.in_txn = False

    def feed(self, src, pos: int, end: int, max_bytes: int, max_changes: int) -> tuple[int, int]:
        """Decode the complete messages of ``src[pos:end]``; returns ``(new_pos, event)``.

        ``EV_MORE``: every complete message was decoded (call again from ``new_pos`` with
        more bytes). ``EV_RELATION``/``EV_TYPE``/``EV_ORIGIN``: the message at
        ``src[msg_start:msg_end]`` is for the caller. ``EV_LIMIT``: a Commit filled the
        window. ``EV_TOO_LARGE``: the window passed ``max_bytes`` in a transaction.
        ``EV_END``: the COPY trailer. A bad message raises DataError naming its LSN, table
        and column, with the relation's ``out`` unchanged.
        """
        buf = memoryview(src).cast("B")
        if not 0 <= pos <= end <= len(buf):
            raise ValueError(f"invalid range [{pos}, {end}) of a {len(buf)}-byte buffer")
        while end - pos >= 2:
            (nfields,) = _I16.unpack_from(buf, pos)
            if nfields == -1:
                return pos + 2, EV_END
            if end - pos < 18:
                break
            nf, n1 = _ROW_HEAD.unpack_from(buf, pos)
            (lsn,) = _U64.unpack_from(buf, pos + 6)
            (n2,) = _I32.unpack_from(buf, pos + 14)
            if nf != 2 or n1 != 8 or n2 < 1:
                raise fault(F_FRAMING, lsn if n1 == 8 else 0, 0, "", "", 0, 0, b"")
            if end - pos - 18 < n2:
                break
            start = pos + 18
            pos = start + n2
            self.msg_start, self.msg_end, self.msg_lsn = start, pos, lsn
            event = self._message(bytes(buf[start:pos]), lsn, max_bytes, max_changes)
            self.messages += 1
            if event != EV_MORE:
                return pos, event
        return pos, EV_MORE

    # ------------------------------------------------------------------ messages

    def _message(self, msg: bytes, lsn: int, max_bytes: int, max_changes: int) -> int:
        t = msg[0]
        rel = None
        try:
            if t == 0x42:  # B
                if len(msg) != 21:
                    raise _Fault(F_TRUNCATED)
                self.commit_lsn, self.commit_ts, self.xid = _BEGIN.unpack_from(msg, 1)
                self.in_txn = True
                self.seq = 0
                self._serial += 1
                self._txn_bytes, self._txn_changes = self.window_bytes, self.window_changes
                return EV_MORE
            if t == 0x43:  # C
                if len(msg) != 26:
                    raise _Fault(F_TRUNCATED)
                if not self.in_txn:
                    raise _Fault(F_OUTSIDE_TXN)
                _, commit_lsn, end_lsn, commit_ts = _COMMIT.unpack_from(msg, 1)
                self.in_txn = False
                self.window_txns += 1
                self.last_commit_lsn, self.end_lsn = commit_lsn, end_lsn
                self.last_commit_ts = commit_ts
                if self.window_bytes >= max_bytes or self.window_changes >= max_changes:
                    return EV_LIMIT
                return EV_MORE
            if t == 0x52:  # R
                return EV_RELATION
            if t == 0x59:  # Y
                return EV_TYPE
            if t == 0x4F:  # O
                return EV_ORIGIN
            if t in (0x49, 0x55, 0x44, 0x54):  # I U D T
                if not self.in_txn:
                    raise _Fault(F_OUTSIDE_TXN)
                if t == 0x54:
                    rel = self._truncate(msg, lsn)
                else:
                    rel = self._change(t, msg)
                if rel is not None and self.window_bytes > max_bytes:
                    self.msg_oid = rel.oid
                    return EV_TOO_LARGE
                return EV_MORE
            raise _Fault(F_UNKNOWN_MESSAGE)
        except _Fault as f:
            rel = f.rel
            table = rel.table if rel is not None else ""
            column = rel.names[f.col] if rel is not None and f.col >= 0 else ""
            raise fault(f.code, lsn, t, table, column, f.kind, f.value, f.text) from None

    def _relation(self, msg: bytes, p: int) -> _Rel:
        if len(msg) < p + 4:
            raise _Fault(F_TRUNCATED)
        (oid,) = _U32.unpack_from(msg, p)
        rel = self._rels.get(oid)
        if rel is None:
            raise _Fault(F_UNKNOWN_RELATION, value=oid)
        return rel

    def _change(self, t: int, msg: bytes) -> _Rel | None:
        rel = self._relation(msg, 1)
        p = 5
        old = None
        if len(msg) <= p:
            raise _Fault(F_TRUNCATED, -1, 0, 0, b"", rel)
        marker = msg[p]
        if t == 0x44 or (t == 0x55 and marker in (0x4B, 0x4F)):  # D, or U with K/O
            if marker not in (0x4B, 0x4F):
                raise _Fault(F_TUPLE_KIND, -1, 0, marker, b"", rel)
            old, p = _tuple(msg, p + 1, rel)
            if t == 0x55:
                if len(msg) <= p:
                    raise _Fault(F_TRUNCATED, -1, 0, 0, b"", rel)
                marker = msg[p]
        if t != 0x44:
            if marker != 0x4E:
                raise _Fault(F_TUPLE_KIND, -1, 0, marker, b"", rel)
            new, p = _tuple(msg, p + 1, rel)
        if p != len(msg):
            raise _Fault(F_TRUNCATED, -1, 0, 0, b"", rel)
        if rel.out is None:
            return None
        if t == 0x44:
            self._row(rel, b"D", old, None)
        else:
            self._row(rel, b"I" if t == 0x49 else b"U", new, old)
        return rel

    def _truncate(self, msg: bytes, lsn: int) -> _Rel | None:
        if len(msg) < 6:
            raise _Fault(F_TRUNCATED)
        (nrels,) = _I32.unpack_from(msg, 1)
        if nrels < 0 or len(msg) != 6 + 4 * nrels:
            raise _Fault(F_TRUNCATED)
        rels = [self._relation(msg, 6 + 4 * i) for i in range(nrels)]
        last = None
        for rel in rels:
            if rel.out is not None:
                self._row(rel, b"T", None, None)
                last = rel
        return last

    def _row(self, rel: _Rel, op: bytes, values: list | None, old: list | None) -> None:
        """Append one change row (values: (marker, bytes) per column, None = all NULL)."""
        ncols = len(rel.names)
        parts = [_I16.pack(ncols + META_FIELDS + len(rel.keys))]
        unchanged = bytearray((ncols + 7) // 8)
        any_unchanged = False
        for c in range(ncols):
            if values is None:
                parts.append(_NULL)
                continue
            marker, value = values[c]
            if marker == 0x75:  # u
                unchanged[c >> 3] |= 1 << (c & 7)
                any_unchanged = True
            parts.append(_field(rel, c, marker, value))
        parts.append(b"\0\0\0\x01" + op)
        parts.append(b"\0\0\0\x08" + _U64.pack(self.commit_lsn))
        parts.append(b"\0\0\0\x08" + _U64.pack(self.seq))
        parts.append(b"\0\0\0\x08" + struct.pack(">q", self.commit_ts))
        parts.append(_I32.pack(len(unchanged)) + unchanged if any_unchanged else _NULL)
        for k in rel.keys:
            parts.append(_NULL if old is None else _field(rel, k, *old[k]))
        row = b"".join(parts)
        if rel.stamp != self._serial:
            rel.stamp, rel.mark = self._serial, len(rel.out)
        rel.out += row
        self.seq += 1
        self.window_bytes += len(row)
        self.window_changes += 1


def _tuple(msg: bytes, p: int, rel: _Rel) -> tuple[list, int]:
    """(marker, value) per column of the TupleData at ``msg[p:]``, and the position after."""
    if len(msg) < p + 2:
        raise _Fault(F_TRUNCATED, -1, 0, 0, b"", rel)
    (ncols,) = _I16.unpack_from(msg, p)
    p += 2
    if ncols != len(rel.names):
        raise _Fault(F_COLUMN_COUNT, -1, 0, ncols, b"", rel)
    out = []
    for c in range(ncols):
        if len(msg) <= p:
            raise _Fault(F_TRUNCATED, c, 0, 0, b"", rel)
        marker = msg[p]
        p += 1
        if marker in (0x6E, 0x75):  # n u
            out.append((marker, b""))
            continue
        if marker not in (0x74, 0x62):  # t b
            raise _Fault(F_TUPLE_KIND, c, 0, marker, b"", rel)
        if len(msg) < p + 4:
            raise _Fault(F_TRUNCATED, c, 0, 0, b"", rel)
        (n,) = _I32.unpack_from(msg, p)
        p += 4
        if n < 0 or len(msg) - p < n:
            raise _Fault(F_TRUNCATED, c, 0, 0, b"", rel)
        out.append((marker, msg[p:p + n]))
        p += n
    return out, p


def _field(rel: _Rel, c: int, marker: int, value: bytes) -> bytes:
    """Column ``c``'s COPY-binary field for a (marker, value) of a tuple."""
    if marker in (0x6E, 0x75):
        return _NULL
    kind = rel.kinds[c]
    if marker == 0x62:
        if rel.text_only[c]:
            raise _Fault(F_BINARY_VALUE, c, kind, 0, b"", rel)
        return _I32.pack(len(value)) + value
    if kind == Kind.ARRAY:
        wire = array_wire(rel.elem_kinds[c], rel.elem_oids[c], value)
    else:
        wire = text_wire(kind, value)
    if wire is None:
        raise _Fault(F_TEXT_VALUE, c, kind, 0, value, rel)
    return _I32.pack(len(wire)) + wire


# ---------------------------------------------------------------- text → send format

def text_wire(kind: int, text: bytes) -> bytes | None:
    """The binary send format of a scalar value given in PostgreSQL's text output (None when
    the text is not one)."""
    if kind == Kind.TEXT:
        return text
    if kind == Kind.JSONB:
        return b"\x01" + text
    if kind in _INT_RANGE:
        lo, hi, fmt = _INT_RANGE[kind]
        if not _INT.fullmatch(text):
            return None
        v = int(text)
        return struct.pack(fmt, v) if lo <= v <= hi else None
    if kind == Kind.BOOL:
        return {b"t": b"\x01", b"f": b"\x00"}.get(text)
    if kind in (Kind.FLOAT4, Kind.FLOAT8):
        if not _FLOAT.fullmatch(text):
            return None
        v = float(text)
        if kind == Kind.FLOAT8:
            return struct.pack(">d", v)
        try:
            return struct.pack(">f", v)
        except OverflowError:
            return None
    if kind == Kind.BYTEA:
        m = _HEX.fullmatch(text)
        return bytes.fromhex(m.group(1).decode()) if m else None
    if kind in (Kind.NUMERIC, Kind.NUMERIC_TEXT):
        return _numeric_wire(text)
    if kind == Kind.DATE:
        days = _date_days(text)
        return None if days is None else struct.pack(">i", days)
    if kind == Kind.TIME:
        m = _CLOCK.fullmatch(text)
        us = _clock_us(m, 24) if m else None
        return None if us is None else struct.pack(">q", us)
    if kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
        us = _timestamp_us(text, kind == Kind.TIMESTAMPTZ)
        return None if us is None else struct.pack(">q", us)
    if kind == Kind.INTERVAL:
        return _interval_wire(text)
    if kind == Kind.UUID:
        return bytes.fromhex(text.replace(b"-", b"").decode()) if _UUID.fullmatch(text) else None
    return None


def _numeric_wire(text: bytes) -> bytes | None:
    special = {b"NaN": 0xC000, b"Infinity": 0xD000, b"-Infinity": 0xF000}.get(text)
    if special is not None:
        return struct.pack(">hhHh", 0, 0, special, 0)
    m = _NUMERIC.fullmatch(text)
    if not m:
        return None
    sign, whole, frac = m.group(1), m.group(2).lstrip(b"0"), m.group(3) or b""
    dscale = len(frac)
    if dscale > 0x3FFF:
        return None
    whole = b"0" * (-len(whole) % 4) + whole
    frac = frac + b"0" * (-len(frac) % 4)
    digits = whole + frac
    groups = [int(digits[i:i + 4]) for i in range(0, len(digits), 4)]
    weight = len(whole) // 4 - 1
    first = 0
    while first < len(groups) and groups[first] == 0:
        first += 1
    weight -= first
    last = len(groups)
    while last > first and groups[last - 1] == 0:
        last -= 1
    groups = groups[first:last]
    if not groups:
        weight = 0
    if len(groups) > 0x7FFF or not -0x8000 <= weight <= 0x7FFF:
        return None
    neg = 0x4000 if sign == b"-" and groups else 0
    return struct.pack(f">hhHh{len(groups)}H", len(groups), weight, neg, dscale, *groups)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days from 2000-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400  # floor division: the C twin writes (y - 399) / 400 for y < 0
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - _PG_EPOCH_DAYS


def _month_days(y: int, m: int) -> int:
    if m == 2:
        return 29 if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _ymd(m: re.Match, bc: bool) -> int | None:
    """Days from 2000-01-01 of a matched Y-M-D (None when it is no date)."""
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if y == 0 or y >= _YEAR_MAX or not 1 <= mo <= 12:
        return None
    if bc:
        y = 1 - y
    if not 1 <= d <= _month_days(y, mo):
        return None
    return _days_from_civil(y, mo, d)


def _date_days(text: bytes) -> int | None:
    if text == b"infinity":
        return I32_MAX
    if text == b"-infinity":
        return I32_MIN
    bc = text.endswith(b" BC")
    m = _DATE.fullmatch(text[:-3] if bc else text)
    days = _ymd(m, bc) if m else None
    if days is None or not I32_MIN < days < I32_MAX:
        return None
    return days


def _clock_us(m: re.Match, max_hour: int) -> int | None:
    h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3))
    frac = m.group(4) or b""
    if h > max_hour or mi > 59 or s > 59:
        return None
    us = ((h * 60 + mi) * 60 + s) * 1_000_000 + (int(frac.ljust(6, b"0")) if frac else 0)
    return None if us > _US_PER_DAY else us  # 24:00:00 is the only time past 23:59:59.999999


def _timestamp_us(text: bytes, tz: bool) -> int | None:
    if text == b"infinity":
        return I64_MAX
    if text == b"-infinity":
        return I64_MIN
    bc = text.endswith(b" BC")
    if bc:
        text = text[:-3]
    m = _DATE.match(text)
    if not m or text[m.end():m.end() + 1] != b" ":
        return None
    days = _ymd(m, bc)
    c = _CLOCK.match(text, m.end() + 1)
    if days is None or not c:
        return None
    us = _clock_us(c, 23)
    if us is None:
        return None
    rest = text[c.end():]
    offset = 0
    if tz:
        o = _OFFSET.fullmatch(rest)
        if not o:
            return None
        oh, om, osec = int(o.group(2)), int(o.group(3) or 0), int(o.group(4) or 0)
        if om > 59 or osec > 59:
            return None
        offset = (oh * 3600 + om * 60 + osec) * (-1 if o.group(1) == b"-" else 1)
    elif rest:
        return None
    total = days * _US_PER_DAY + us - offset * 1_000_000
    return total if I64_MIN < total < I64_MAX else None


def _interval_wire(text: bytes) -> bytes | None:
    months = days = us = 0
    p, n = 0, len(text)
    seen_unit = False
    while p < n:
        m = _INTERVAL_PART.match(text, p)
        if m:
            v = int(m.group(1))
            if abs(v) >= _BIG:
                return None
            unit = m.group(2)[:3]
            if unit == b"yea":
                months += 12 * v
            elif unit == b"mon":
                months += v
            else:
                days += v
            seen_unit = True
            p = m.end()
        else:
            c = _INTERVAL_CLOCK.match(text, p)
            if not c or c.end() != n:
                return None
            mi, s = int(c.group(3)), int(c.group(4))
            if mi > 59 or s > 59 or int(c.group(2)) >= _BIG:
                return None
            frac = c.group(5) or b""
            us = ((int(c.group(2)) * 60 + mi) * 60 + s) * 1_000_000 + (
                int(frac.ljust(6, b"0")) if frac else 0)
            if c.group(1) == b"-":
                us = -us
            p = n
            seen_unit = True
            break
        if p < n:
            if text[p:p + 1] != b" ":
                return None
            p += 1
            if p == n:
                return None
    if not seen_unit:
        return None
    if not (I32_MIN <= months <= I32_MAX and I32_MIN <= days <= I32_MAX
            and I64_MIN <= us <= I64_MAX):
        return None
    return struct.pack(">qii", us, days, months)


def array_wire(elem_kind: int, elem_oid: int, text: bytes) -> bytes | None:
    """The binary send format of a 1-D array given as ``array_out`` text (``{a,"b c",NULL}``,
    ``[0:1]={1,2}``); a multi-dimensional array becomes a bare header naming its dimension
    count, so the COPY decoder refuses it exactly as it refuses the binary form."""
    p, n = 0, len(text)
    lbound = 1
    ndim = 1
    if text[:1] == b"[":
        m = _ARRAY_DIMS.match(text)
        if not m:
            return None
        dims = _ARRAY_DIM.findall(m.group(1))
        ndim = len(dims)
        lbound = int(dims[0])
        if not I32_MIN <= lbound <= I32_MAX:
            return None
        p = m.end()
    if text[p:p + 1] != b"{":
        return None
    if text[p + 1:p + 2] == b"{":
        ndim = max(ndim, 2)
    if ndim > 1:
        return struct.pack(">iiI", ndim, 0, elem_oid)
    p += 1
    if text[p:] == b"}":
        return struct.pack(">iiI", 0, 0, elem_oid)
    elems: list[bytes | None] = []
    while True:
        if p >= n:
            return None
        if text[p] == 0x22:  # "
            p += 1
            value = bytearray()
            while p < n and text[p] != 0x22:
                if text[p] == 0x5C:  # backslash
                    p += 1
                    if p >= n:
                        return None
                value.append(text[p])
                p += 1
            if p >= n:
                return None
            p += 1
            elems.append(bytes(value))
        else:
            start = p
            while p < n and text[p] not in (0x2C, 0x7D):
                if text[p] in (0x22, 0x5C, 0x7B):
                    return None
                p += 1
            if p == start:
                return None
            value = text[start:p]
            elems.append(None if value.upper() == b"NULL" else value)
        if p >= n:
            return None
        if text[p] == 0x2C:
            p += 1
            continue
        if text[p] != 0x7D:  # }
            return None
        p += 1
        break
    if p != n:
        return None
    parts = [struct.pack(">iiIii", 1, int(any(e is None for e in elems)), elem_oid, len(elems),
                         lbound)]
    for e in elems:
        if e is None:
            parts.append(_NULL)
            continue
        wire = text_wire(elem_kind, e)
        if wire is None:
            return None
        parts.append(_I32.pack(len(wire)) + wire)
    return b"".join(parts)
