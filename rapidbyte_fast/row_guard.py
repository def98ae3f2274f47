"""Row-level bad values at load time (``on_data_error: skip|dlq``).

A guarded loader sends each batch in its own savepoint. When the server (or our encoder)
refuses it, the savepoint is rolled back and the batch is narrowed down to the rows that
are refused: straight to the row when the refusal names it (a COPY error's line, an
encoder error's row), else by bisection. Those rows are skipped or dead-lettered with the
server's message and SQLSTATE (the loader writes the letters in its own transaction, so they
commit with the rows around them); every other row loads. ``fail`` (the default) never gets
here: the first refusal fails the load.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable


from .state.dlq import DeadLetterTable, Letter, records_json

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class Refusal:
    """Why rows [lo, hi) of an attempt were refused; ``row`` is the refused row when known."""

    reason: str
    sqlstate: str
    row: int | None = None


#: Loads rows [lo, hi) of the current batch in a savepoint; None when they all loaded.
Attempt = Callable[[int, int], "Refusal | None"]


class Rejects:
    """Where one stream's refused rows go: counted only (``skip``), or dead-lettered with
    their reason into ``letters`` (``dlq``). Shared by the stream's writers (thread-safe)."""

    def __init__(self, stream: str, mode: str, letters: DeadLetterTable | None) -> None:
        if mode not in ("skip", "dlq") or (mode == "dlq") != (letters is not None):
            raise ValueError(f"on_data_error {mode!r} with dead letters {letters!r}")
        self.stream, self.mode, self.letters = stream, mode, letters
        self.skipped = self.dead_lettered = 0
        self._lock = threading.Lock()

    def reject(self, batch: pa.RecordBatch, row: int, refusal: Refusal) -> Letter | None:
        """Drop row ``row`` of ``batch`` for ``refusal``; its dead letter, if any."""
        with self._lock:
            if self.letters is None:
                self.skipped += 1
                return None
            self.dead_lettered += 1
        return (self.stream, records_json(batch, [row])[0],
                [f"{refusal.sqlstate}: {refusal.reason}"], "load")


def load_guarded(batch: pa.RecordBatch, attempt: Attempt, rejects: Rejects
                 ) -> tuple[int, list[Letter]]:
    """Load every row of ``batch`` the destination accepts, rejecting the others; returns
    the rows loaded and the dead letters of those rejected (in row order)."""
    loaded = 0
    letters: list[Letter] = []
    stack = [(0, batch.num_rows)]
    # (ranges are taken in row order: the top of the stack is always the lowest range)
    while stack:
        lo, hi = stack.pop()
        if lo >= hi:
            continue
        refusal = attempt(lo, hi)
        if refusal is None:
            loaded += hi - lo
        elif refusal.row is not None and lo <= refusal.row < hi:
            letters.append(rejects.reject(batch, refusal.row, refusal))
            # rows before it passed every check up to it: they load in one go, normally
            stack += [(refusal.row + 1, hi), (lo, refusal.row)]
        elif hi - lo == 1:
            letters.append(rejects.reject(batch, lo, refusal))
        else:
            mid = (lo + hi) // 2
            stack += [(mid, hi), (lo, mid)]
    return loaded, [x for x in letters if x is not None]
