"""Runs a change-capture stream (``sync_mode: cdc``): the first run bootstraps, later runs
drain.

*Bootstrap*: create the slot over a replication connection with an exported snapshot,
and run the stream's full load (the local executor, its workers importing that
snapshot); the load's commit saves the slot's consistent point as the stream's position.
The changes after that point are exactly those the load did not see: no gap, no
duplicate. A crash before that commit leaves no position: the next run drops the slot
and bootstraps again.

*Drain*: move the slot to the saved position (a crash after a destination commit left it
behind), then read windows of whole transactions without consuming them, apply each in
one destination transaction that saves its end position, and only then advance the slot.
A crash at any point neither loses nor repeats a change.
"""
from __future__ import annotations

import logging
import time

from .. import faults, registry
from ..plan import TaskPlan
from ..result import StreamResult, merge_timings
from .local import run_task
from .pipe import OnRows

_log = logging.getLogger("rapidbyte_fast")


def run_changes(plan: TaskPlan, on_rows: OnRows | None = None, run_id: str = "") -> StreamResult:
    """Bootstrap or drain one cdc stream as planned."""
    assert plan.changes is not None
    src = registry.source(plan.source_use)(plan.source_config, plan.source_endpoint)
    dest = registry.destination(plan.dest_use)(plan.dest_config, plan.dest_endpoint)
    faults.bind(plan.source_endpoint, plan.dest_endpoint)
    res = plan.resources
    reader = src.change_reader(plan.changes, res.max_batch_rows, res.max_batch_bytes)
    try:
        reader.open()
        if plan.changes.bootstrap:
            return _bootstrap(plan, src, dest, reader, on_rows, run_id)
        return _drain(plan, dest, reader, on_rows)
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


def _drain(plan: TaskPlan, dest, reader, on_rows: OnRows | None) -> StreamResult:
    changes = plan.changes
    t0 = time.perf_counter()
    # a crash between a destination commit and the slot's advance: skip what it applied
    reader.advance(reader.parse_position(changes.position))
    apply = dest.open_change_apply(plan.write, changes)
    apply.open()
    windows = txns = n_changes = 0
    position = changes.position
    try:
        while (window := reader.read_window()) is not None:
            segments = [(t.arrow_schema, t.batches) for t in window.tables]
            position = reader.position_text(window.end_lsn)
            apply.apply(segments, position)
            reader.advance(window.end_lsn)
            faults.hit("cdc.advanced")
            windows += 1
            txns += window.transactions
            n_changes += window.changes
            if on_rows is not None:
                on_rows(window.changes, window.bytes)
        if reader.idle_lsn is not None:
            # nothing of ours was written: let the slot release the server's WAL
            reader.advance(reader.idle_lsn)
    finally:
        apply.close()
    w = plan.write
    sr = StreamResult(stream=plan.stream.name, target=f"{w.schema}.{w.table}",
                      load_method="copy", path="cdc", path_reason="change capture drain",
                      duration_secs=time.perf_counter() - t0,
                      records_written=apply.rows_written, bytes_written=apply.bytes_written,
                      checkpoints=windows, cursor_before=changes.position)
    sr.records_read = n_changes
    sr.bytes_read = 0
    sr.cursor_after = position
    sr.timings = merge_timings(reader.timings, apply.all_timings())
    _log.info("stream %s: applied %d changes of %d transactions in %d windows",
              plan.stream.name, n_changes, txns, windows)
    return sr
