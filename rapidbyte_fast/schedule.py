"""Running a pipeline on a cron schedule (``rapidbyte-fast run PIPELINE --schedule CRON``).

One run at a time: a run that outlasts its interval makes the runs it overlapped be
skipped (the next run is the first fire time after it ended), never queued or stacked.
Each run is logged with its outcome; a failed run is logged and the schedule goes on.
SIGTERM (or ``stop``) ends the schedule after the run in flight, never in the middle of
one. Fire times follow the local time zone, as cron's do. croniter parses the expressions
(five fields, ``@hourly`` style aliases).
"""
from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
from typing import Any, Callable

from croniter import croniter

from .errors import ConfigError
from .redact import redact

_log = logging.getLogger("rapidbyte_fast.schedule")


def check_schedule(expression: str) -> str:
    """``expression`` if croniter accepts it, else ConfigError naming it."""
    if not croniter.is_valid(expression):
        raise ConfigError(f"--schedule: {expression!r} is not a cron expression "
                          "(five fields, e.g. '*/5 * * * *', or @hourly, @daily, ...)")
    return expression


def next_fire(expression: str, after: dt.datetime) -> dt.datetime:
    """The first fire time of ``expression`` strictly after ``after``."""
    return croniter(expression, after).get_next(dt.datetime)


def _rows(result: Any) -> str:
    streams = getattr(result, "streams", None)
    if streams is None:
        return ""
    return f", {sum(s.records_written for s in streams):,} rows written"


def run_on_schedule(expression: str, run_once: Callable[[], Any],
                    stop: threading.Event | None = None,
                    now: Callable[[], dt.datetime] = lambda: dt.datetime.now().astimezone(),
                    ) -> int:
    """Call ``run_once`` at every fire time of ``expression`` until ``stop`` is set (SIGTERM
    sets it when called from the main thread); returns how many runs failed."""
    check_schedule(expression)
    stop = stop or threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    failures = runs = 0
    try:
        while not stop.is_set():
            fire = next_fire(expression, now())
            _log.info("schedule %s: next run at %s", expression, fire.isoformat(timespec="seconds"))
            if stop.wait(max(0.0, (fire - now()).total_seconds())):
                break
            runs += 1
            t0 = time.perf_counter()
            _log.info("schedule: run %d started", runs)
            try:
                result = run_once()
            except Exception as exc:  # a failed run is reported, and the schedule goes on
                failures += 1
                _log.error("schedule: run %d failed after %.1f s: %s", runs,
                           time.perf_counter() - t0, redact(" ".join(str(exc).split())))
            else:
                _log.info("schedule: run %d succeeded in %.1f s%s", runs,
                          time.perf_counter() - t0, _rows(result))
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    _log.info("schedule: stopped after %d run(s), %d failed", runs, failures)
    return failures
