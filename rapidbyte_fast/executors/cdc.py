"""Runs a change-capture stream (``sync_mode: cdc``): the first run bootstraps, later runs
drain; ``run --follow`` keeps draining until it is told to stop.

*Bootstrap*: create the slot over a replication connection with an exported snapshot,
and run the stream's full load (the local executor, its workers importing that
snapshot); the load's commit saves the slot's consistent point as the stream's position.
The changes after that point are exactly those the load did not see: no gap, no
duplicate. A crash before that commit leaves no position: the next run drops the slot
and bootstraps again.

*Drain*: move the slot to the saved position (a crash after a destination commit left it
behind), then read windows of whole transactions without consuming them, stage the
windows of one peek and apply them in one destination transaction that saves the last
one's end position, and only then advance the slot.
A crash at any point neither loses nor repeats a change. The drain ends after the window
whose peek reached the end of the WAL (``ChangeReader.caught_up``), or at an empty read.

*Follow*: after the bootstrap or the drain, poll the slot (``FOLLOW_POLL_SECS`` apart while
it has nothing new) and apply each window as a drain does, until the ``follow`` event is
set (the CLI's first SIGTERM or SIGINT): the window in flight lands, its commit and the
slot's advance, and the stream ends. With ``cdc_window_seconds`` the next window's change
count is sized from the last window's read rate, so that reading one takes about that
long (a peek is materialised by the server before it is sent: cutting it on the client
would throw the rest of the server's work away, to be decoded again by the next peek).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import replace

from .. import faults, registry
from ..connector import ChangePlan
from ..plan import TaskPlan
from ..result import StreamResult, merge_timings
from .local import run_task
from .pipe import OnRows

_log = logging.getLogger("rapidbyte_fast")
#: ``run --follow``: the sleep between two polls of a slot that had nothing new. One empty
#: poll (slot check, flush position, peek, advance) takes ~5 ms of wall here (p50, load
#: average 9). ``python -m bench cdc-follow`` (README "Running modes"): 0.1 s gave a lag of
#: p50 0.110 s / p95 0.173 s and costs an idle follower 4.2% of a core (client and server);
#: 0.2 s gave 0.141 s / 0.270 s at 2.4%.
FOLLOW_POLL_SECS = 0.1
#: With a time bound (``cdc_window_seconds``), the first window and the smallest: reading
#: a window of 10,000 changes (int, text, int rows) took 170-250 ms here (load average
#: 10), well under the default bound, and a smaller window mostly pays the per-window cost
#: (peek, staging table, commit, advance).
TIMED_WINDOW_MIN_CHANGES = 10_000
#: The run summary's lag figures cover at most this many of the last windows (a follower
#: runs for days: its memory must not grow with them).
LAG_SAMPLES = 10_000


def run_changes(plan: TaskPlan, on_rows: OnRows | None = None, run_id: str = "",
                follow: threading.Event | None = None) -> StreamResult:
    """Bootstrap or drain one cdc stream as planned; with ``follow``, then keep draining
    until the event is set (the window in flight lands first)."""
    assert plan.changes is not None
    src = registry.source(plan.source_use)(plan.source_config, plan.source_endpoint)
    dest = registry.destination(plan.dest_use)(plan.dest_config, plan.dest_endpoint)
    faults.bind(plan.source_endpoint, plan.dest_endpoint)
    res = plan.resources
    reader = src.change_reader(plan.changes, res.max_batch_rows, res.max_batch_bytes)
    try:
        reader.open()
        if not plan.changes.bootstrap:
            return _drain(plan, plan.changes, dest, reader, on_rows, follow)
        sr = _bootstrap(plan, src, dest, reader, on_rows, run_id)
        if follow is None:
            return sr
        changes = replace(plan.changes, position=sr.cursor_after)
        return _then(sr, _drain(plan, changes, dest, reader, on_rows, follow))
    finally:
        reader.close()
        src.close()


def _bootstrap(plan: TaskPlan, src, dest, reader, on_rows: OnRows | None,
               run_id: str) -> StreamResult:
    changes = plan.changes
    if reader.slot_exists():
        # left by a bootstrap that did not commit: its snapshot is gone
        _log.warning("stream %s: dropping slot %s, left by an unfinished bootstrap",
                     plan.stream.name, changes.slot)
        src.drop_slot(changes.slot)
    created = reader.create_slot()
    faults.hit("cdc.slot_created")
    position = reader.position_text(created.consistent_lsn)
    sr = run_task(plan, on_rows, run_id, snapshot=created.snapshot,
                  before_commit=dest.bootstrap_commit(plan.write, changes, position,
                                                      created.consistent_lsn))
    reader.release_snapshot()
    sr.cursor_after = position
    return sr


def _then(boot: StreamResult, drain: StreamResult) -> StreamResult:
    """A bootstrap and the drain that followed it, as one stream's result."""
    boot.records_read += drain.records_read
    boot.records_written += drain.records_written
    boot.bytes_written += drain.bytes_written
    boot.checkpoints += drain.checkpoints
    boot.duration_secs += drain.duration_secs
    boot.cursor_after = drain.cursor_after
    boot.timings = merge_timings(boot.timings, drain.timings)
    boot.notes += drain.notes
    boot.path_reason += ", then followed"
    return boot


def _window_size(reader, changes: int, secs: float, bound: float, most: int) -> None:
    """Size the reader's next window to be read in about ``bound`` seconds at the rate the
    last one (``changes`` in ``secs``) was read."""
    rate = changes / max(secs, 1e-6)
    reader.max_window_changes = max(min(TIMED_WINDOW_MIN_CHANGES, most),
                                    min(most, int(rate * bound)))


def _drain(plan: TaskPlan, changes: ChangePlan, dest, reader, on_rows: OnRows | None,
           follow: threading.Event | None) -> StreamResult:
    t0 = time.perf_counter()
    # a crash between a destination commit and the slot's advance: skip what it applied
    reader.advance(reader.parse_position(changes.position))
    apply = dest.open_change_apply(plan.write, changes)
    apply.open()
    windows = txns = n_changes = commits = 0
    lags: deque[float] = deque(maxlen=LAG_SAMPLES)
    most, bound = reader.max_window_changes, changes.window_secs
    if bound:
        reader.max_window_changes = min(TIMED_WINDOW_MIN_CHANGES, most)
    position = changes.position
    name = plan.stream.name
    # the end of the last window staged in the open destination transaction: a drain
    # applies the windows of one peek together, one pass over the target for all of them
    # (python -m bench cdc --no-apitap, 800k changes, load average 1.3-1.9: two 64 MB
    # windows applied one by one 11.46 s, as one 9.79 s)
    staged: int | None = None
    try:
        while True:
            t_read = time.perf_counter()
            window = reader.read_window(same_peek=staged is not None)
            if window is not None:
                if bound:
                    _window_size(reader, window.changes, time.perf_counter() - t_read,
                                 bound, most)
                position = reader.position_text(window.end_lsn)
                apply.stage([(t.arrow_schema, t.batches) for t in window.tables])
                staged = window.end_lsn
                windows, txns = windows + 1, txns + window.transactions
                n_changes += window.changes
                if on_rows is not None:
                    on_rows(window.changes, window.bytes)
                if follow is None and reader.peeking:
                    continue
            elif staged is None:
                if reader.idle_lsn is not None:
                    # nothing of ours was written: let the slot release the server's WAL
                    reader.advance(reader.idle_lsn)
                if follow is None or follow.wait(FOLLOW_POLL_SECS):
                    break
                continue
            # the peek ended (or a follower's window): apply what is staged, then the slot
            caught_up = reader.caught_up if follow is None else None
            apply.commit(position)
            # caught up: nothing of ours was committed after the window before caught_up
            reader.advance(max(staged, caught_up or 0))
            faults.hit("cdc.advanced")
            commits, staged = commits + 1, None
            if caught_up is not None:
                break
            if follow is None or window is None:
                continue
            lag = time.time() - window.last_commit_time
            lags.append(lag)
            _log.info("stream %s: window %d applied: %d changes, %d transactions, lag %.3fs",
                      name, windows, window.changes, window.transactions, lag, extra={"fields": {
                          "stream": name, "window": windows, "changes": window.changes,
                          "transactions": window.transactions, "lag_secs": lag}})
            if follow.is_set():
                break
    finally:
        apply.close()
    w = plan.write
    sr = StreamResult(stream=name, target=f"{w.schema}.{w.table}",
                      load_method="copy", path="cdc",
                      path_reason="change capture " + ("follow" if follow else "drain"),
                      duration_secs=time.perf_counter() - t0,
                      records_written=apply.rows_written, bytes_written=apply.bytes_written,
                      checkpoints=commits, cursor_before=changes.position)
    sr.records_read = n_changes
    sr.bytes_read = 0
    sr.cursor_after = position
    sr.timings = merge_timings(reader.timings, apply.all_timings())
    _log.info("stream %s: applied %d changes of %d transactions in %d windows",
              name, n_changes, txns, windows)
    if follow is not None:
        sr.notes.append(_follow_note(sr.duration_secs, windows, n_changes, txns, lags))
    return sr


def _follow_note(secs: float, windows: int, n_changes: int, txns: int,
                 lags: deque[float]) -> str:
    text = (f"followed for {secs:,.1f}s: {n_changes:,} changes of {txns:,} transactions "
            f"in {windows:,} windows")
    if lags:
        last = sorted(lags)
        text += (f"; commit-to-apply lag p50 {last[len(last) // 2]:.3f}s, "
                 f"max {last[-1]:.3f}s" + (f" (last {len(last):,} windows)"
                                           if len(last) < windows else ""))
    return text
