"""pgoutput (logical replication protocol 1) outside the hot path: LSNs, the Relation, Type
and Origin messages, and the wording of the decoder kernel's errors (both twins raise
through ``fault`` so their messages are identical).

Message layouts (all integers big-endian, strings NUL-terminated UTF-8):

* Begin ``B`` final_lsn:i64 commit_ts:i64 xid:i32
* Commit ``C`` flags:i8 commit_lsn:i64 end_lsn:i64 commit_ts:i64
* Origin ``O`` origin_lsn:i64 name:str
* Relation ``R`` oid:i32 schema:str name:str replident:i8 ncols:i16
  then per column flags:i8 (1 = part of the replica identity) name:str type_oid:i32 typmod:i32
* Type ``Y`` oid:i32 schema:str name:str
* Insert ``I`` oid:i32 ``N`` tuple; Update ``U`` oid:i32 [``K``|``O`` old tuple] ``N`` tuple;
  Delete ``D`` oid:i32 ``K``|``O`` tuple; Truncate ``T`` nrels:i32 options:i8 oids:i32...
* tuple: ncols:i16 then per column ``n`` (NULL), ``u`` (unchanged TOAST value, not sent),
  ``t`` len:i32 text, or ``b`` len:i32 binary (the type's send format, as in COPY binary)
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ...errors import DataError

#: Commit timestamps count microseconds from 2000-01-01 (the timestamptz binary format).
PG_EPOCH_UNIX_US = 946_684_800_000_000

# Events the decoder kernel's ``feed`` stops at (shared by both twins).
EV_MORE = 0        # input used up (call again with more), or the end of the changes
EV_RELATION = 1    # a Relation message: register it (set_relation), then call again
EV_TYPE = 2        # a Type message (informational)
EV_ORIGIN = 3      # an Origin message (the transaction was replayed from another node)
EV_LIMIT = 4       # a Commit filled the window (bytes or changes): cut the window here
EV_TOO_LARGE = 5   # the window passed max_bytes inside a transaction
EV_END = 6         # the COPY trailer: every change of this read was decoded

# Fault codes of the decoder kernel (both twins), worded by ``fault``.
F_FRAMING = 1          # the COPY row around a message is malformed
F_TRUNCATED = 2        # a message ends before its fields do
F_UNKNOWN_MESSAGE = 3  # a message type this decoder does not know
F_UNKNOWN_RELATION = 4 # a change for a relation without a Relation message
F_COLUMN_COUNT = 5     # a tuple with another column count than its Relation message
F_TUPLE_KIND = 6       # a column marker other than n/u/t/b, or a missing N/K/O marker
F_BINARY_VALUE = 7     # a binary value for a column we only read as text
F_TEXT_VALUE = 8       # a text value that does not parse as its column's type
F_OUTSIDE_TXN = 9      # a change or commit outside Begin ... Commit

_MESSAGE_NAMES = {ord("B"): "Begin", ord("C"): "Commit", ord("O"): "Origin",
                  ord("R"): "Relation", ord("Y"): "Type", ord("I"): "Insert",
                  ord("U"): "Update", ord("D"): "Delete", ord("T"): "Truncate"}
_KIND_NAMES = {1: "boolean", 2: "smallint", 3: "integer", 4: "bigint", 5: "real",
               6: "double precision", 7: "text", 8: "bytea", 9: "date",
               10: "time", 11: "timestamp", 12: "timestamptz", 13: "interval", 14: "uuid",
               15: "numeric", 16: "numeric", 17: "jsonb", 18: "array"}


def lsn_text(lsn: int) -> str:
    """``X/Y`` as PostgreSQL prints a pg_lsn."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    """The integer of a pg_lsn text ``X/Y``."""
    hi, _, lo = text.partition("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def fault(code: int, lsn: int, message: int, table: str, column: str, kind: int,
          value: int, text: bytes) -> DataError:
    """The DataError for kernel fault ``code`` in the message at ``lsn`` (``message`` is its
    type byte, 0 when unknown; ``table``/``column`` are '' when not known)."""
    what = _MESSAGE_NAMES.get(message, f"message {chr(message)!r}" if message else "message")
    where = f"change stream at LSN {lsn_text(lsn)}, {what}"
    if table:
        where += f" of table {table}"
    if column:
        where += f", column {column!r}"
    if code == F_FRAMING:
        detail = "malformed COPY framing of pg_logical_slot_peek_binary_changes output"
    elif code == F_TRUNCATED:
        detail = "message ends before its fields do"
    elif code == F_UNKNOWN_MESSAGE:
        detail = ("unknown pgoutput message type (streaming, two-phase and logical "
                  "messages are not requested by this reader)")
    elif code == F_UNKNOWN_RELATION:
        detail = f"no Relation message was sent for relation OID {value}"
    elif code == F_COLUMN_COUNT:
        detail = f"tuple has {value} columns, its Relation message has a different number"
    elif code == F_TUPLE_KIND:
        detail = f"unexpected tuple marker {chr(value)!r}"
    elif code == F_BINARY_VALUE:
        detail = ("binary value for a type that is carried as text; read this table in "
                  "text mode (binary: false)")
    elif code == F_TEXT_VALUE:
        preview = text[:40].decode("utf-8", "replace")
        more = "..." if len(text) > 40 else ""
        detail = f"cannot read {preview + more!r} as {_KIND_NAMES.get(kind, 'value')}"
    elif code == F_OUTSIDE_TXN:
        detail = "change outside a transaction (no Begin before it)"
    else:
        raise AssertionError(f"unknown fault code {code}")
    return DataError(f"{where}: {detail}")


@dataclass(frozen=True)
class RelationColumn:
    """One published column of a Relation message."""

    name: str
    type_oid: int
    typmod: int
    identity: bool     # part of the replica identity (every column with REPLICA IDENTITY FULL)


@dataclass(frozen=True)
class Relation:
    """A Relation message: the published columns of a table, as of the changes after it."""

    oid: int
    schema: str
    name: str
    replident: str     # 'd' default (primary key), 'n' nothing, 'f' full, 'i' index
    columns: tuple[RelationColumn, ...]


class _Reader:
    """Cursor over one message (errors name the message's LSN)."""

    def __init__(self, msg: bytes, lsn: int) -> None:
        self.msg, self.pos, self.lsn = msg, 1, lsn

    def take(self, fmt: str) -> tuple:
        s = struct.Struct(fmt)
        if self.pos + s.size > len(self.msg):
            raise fault(F_TRUNCATED, self.lsn, self.msg[0], "", "", 0, 0, b"")
        out = s.unpack_from(self.msg, self.pos)
        self.pos += s.size
        return out

    def string(self) -> str:
        end = self.msg.find(b"\0", self.pos)
        if end < 0:
            raise fault(F_TRUNCATED, self.lsn, self.msg[0], "", "", 0, 0, b"")
        out = self.msg[self.pos:end].decode("utf-8", "replace")
        self.pos = end + 1
        return out


def parse_relation(msg: bytes, lsn: int) -> Relation:
    """A Relation message (``msg`` starts with ``R``)."""
    r = _Reader(msg, lsn)
    (oid,) = r.take(">I")
    schema, name = r.string(), r.string()
    replident, ncols = r.take(">Bh")
    cols = []
    for _ in range(ncols):
        (flags,) = r.take(">B")
        col = r.string()
        type_oid, typmod = r.take(">Ii")
        cols.append(RelationColumn(col, type_oid, typmod, bool(flags & 1)))
    return Relation(oid, schema, name, chr(replident), tuple(cols))


def parse_type(msg: bytes, lsn: int) -> tuple[int, str, str]:
    """A Type message: (type OID, schema, name)."""
    r = _Reader(msg, lsn)
    (oid,) = r.take(">I")
    return oid, r.string(), r.string()


def parse_origin(msg: bytes, lsn: int) -> tuple[int, str]:
    """An Origin message: (the origin's commit LSN, origin name)."""
    r = _Reader(msg, lsn)
    (origin_lsn,) = r.take(">Q")
    return origin_lsn, r.string()
