"""Which failures are worth retrying, and how long to wait before the next attempt.

A stream is loaded all-or-nothing (one transaction, or a staging table dropped on failure),
or in pieces each committed together with the state that says where to go on (a cursor, a
key range mark), so a retry can neither lose nor duplicate rows.
"""
from __future__ import annotations

import random

from .errors import RapidbyteError

#: SQLSTATEs of transient failures: connection lost (class 08), admin/crash shutdown,
#: serialization failure, deadlock, too many connections, cannot connect now.
TRANSIENT_SQLSTATES = frozenset({
    "40001", "40P01", "53300", "57P01", "57P02", "57P03",
})


def is_transient(exc: BaseException) -> bool:
    """True for errors a retry may cure."""
    if not isinstance(exc, RapidbyteError):
        return False
    state = exc.sqlstate or ""
    return exc.retryable or state.startswith("08") or state in TRANSIENT_SQLSTATES


def backoff_secs(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter for retry ``attempt`` (1-based)."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
