"""pgoutput change stream → COPY-binary change rows per relation (compiled twin of
``rapidbyte_fast._py.pgoutput``; same API, bytes, events and errors)."""
from collections.abc import Buffer

#: Fields after the relation's columns (op, lsn, seq, commit_ts, unchanged).
META_FIELDS: int
#: Event name → code as compiled in (mirror of ``sources.cdc.protocol``).
EVENTS: dict[str, int]

class Decoder:
    """Decoding state of one change stream: relations, open transaction, window counters."""

    in_txn: bool
    xid: int
    commit_lsn: int
    commit_ts: int
    seq: int
    msg_start: int
    msg_end: int
    msg_lsn: int
    msg_oid: int
    window_bytes: int
    window_changes: int
    window_txns: int
    end_lsn: int
    last_commit_lsn: int
    last_commit_ts: int
    messages: int

    def __init__(self) -> None: ...
    def reset_window(self) -> None:
        """Start a new window (the caller has taken every ``out`` buffer's rows)."""
    def set_relation(self, oid: int, table: str, names: tuple[str, ...], kinds: bytes,
                     elem_kinds: bytes, elem_oids: tuple[int, ...], text_only: bytes,
                     keys: tuple[int, ...], out: bytearray | None) -> None:
        """Register (or replace) relation ``oid``; ``out`` None skips its changes."""
    def rollback(self) -> None:
        """Drop the rows of the open transaction (a window cut before it) and close it."""
    def feed(self, src: Buffer, pos: int, end: int, max_bytes: int,
             max_changes: int) -> tuple[int, int]:
        """Decode the complete messages of ``src[pos:end]``: ``(new_pos, event)``.
        DataError (LSN, table and column named; ``out`` unchanged) on a bad message."""
