"""Named fault points for crash and connection-loss tests (``RAPIDBYTE_FAULTS``).

The engine calls ``hit(point)`` at the instants where a crash is most likely to lose or
repeat rows: after each batch read or written, before and after each checkpoint or range
commit, before and after the final commit. ``RAPIDBYTE_FAULTS`` arms some of them, as
``point#n=action`` items separated by commas: on the n-th hit of ``point`` in this process
(1 when ``#n`` is left out) ``action`` happens once:

- ``kill``: SIGKILL this process (nothing is cleaned up, as in a real crash);
- ``term``: SIGTERM this process (the graceful stop: work in flight is rolled back);
- ``terminate-source`` / ``terminate-dest``: ``pg_terminate_backend`` on this process's
  source or destination connections, from a side connection (as a DBA or a failover would).

Unset, ``hit`` is one dictionary lookup: the points cost nothing in production.
"""
from __future__ import annotations

import logging
import os
import signal
import threading

import psycopg

from .errors import ConfigError

ENV = "RAPIDBYTE_FAULTS"
POINTS = frozenset({
    "source.batch", "dest.batch", "dest.checkpoint", "dest.checkpointed",
    "dest.range_commit", "dest.range_committed", "dest.commit", "dest.committed",
    # change capture: slot made (bootstrap), before/after a window's destination commit,
    # after the slot's advance
    "cdc.slot_created", "cdc.apply", "cdc.applied", "cdc.advanced",
})
ACTIONS = frozenset({"kill", "term", "terminate-source", "terminate-dest"})

_log = logging.getLogger("rapidbyte_fast")
_lock = threading.Lock()
_armed: dict[str, tuple[int, str]] = {}
_hits: dict[str, int] = {}
_conninfo: dict[str, str] = {}


def app_name(what: str) -> str:
    """The ``application_name`` of this process's connections (how a DBA, and
    ``terminate-*``, find them in pg_stat_activity): ``rapidbyte-fast[pid] what``."""
    return f"rapidbyte-fast[{os.getpid()}] {what}"[:63]


def arm(spec: str | None = None) -> None:
    """Parse ``spec`` (default: the environment) and reset the hit counters."""
    spec = os.environ.get(ENV, "") if spec is None else spec
    armed: dict[str, tuple[int, str]] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        point, _, action = item.partition("=")
        point, _, nth = point.partition("#")
        if point not in POINTS or action not in ACTIONS or not (nth or "1").isdigit():
            raise ConfigError(f"{ENV}: bad item {item!r} (points: {', '.join(sorted(POINTS))}; "
                              f"actions: {', '.join(sorted(ACTIONS))})")
        armed[point] = (int(nth or 1), action)
    with _lock:
        _armed.clear()
        _armed.update(armed)
        _hits.clear()


def bind(source: str | None, dest: str | None) -> None:
    """Where ``terminate-*`` connects to find and end this process's backends."""
    _conninfo["source"], _conninfo["dest"] = source or "", dest or ""


def hit(point: str) -> None:
    """Count a pass through ``point`` and fire its armed action on the chosen pass."""
    if point not in _armed:
        return
    with _lock:
        n = _hits[point] = _hits.get(point, 0) + 1
        nth, action = _armed[point]
        if n != nth:
            return
    _log.warning("fault injection: %s at %s #%d", action, point, n)
    if action in ("kill", "term"):
        os.kill(os.getpid(), signal.SIGKILL if action == "kill" else signal.SIGTERM)
        return
    side_of = action.removeprefix("terminate-")  # "source" or "dest"
    role = "source" if side_of == "source" else "destination"  # as app_name() names them
    with psycopg.connect(_conninfo[side_of], autocommit=True) as side:
        side.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE application_name LIKE %s AND pid <> pg_backend_pid()",
                     (app_name(role) + "%",))
