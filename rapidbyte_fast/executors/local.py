"""The local executor: runs one ``TaskPlan`` in threads of this process.

Each of the plan's W workers is a pipe: a reader thread reads its share of the key ranges
(every W-th) into a bounded queue, an optional transform thread runs the chain, and a
writer thread loads what arrives, committing each range where the plan says so. A failure
in any stage stops the others promptly (the readers' COPYs are cancelled) and surfaces as
one error; nothing waits forever.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid

from .. import faults, memory_budget, registry
from ..connector import KeyRange
from ..errors import RapidbyteError, StageStopped, StopRequested
from ..plan import TaskPlan
from ..result import StreamResult, merge_timings
from ..row_guard import Rejects
from ..deferred import deferred
from ..state.dlq import DeadLetterStore, DeadLetterTable
from .pipe import POLL_SECS, Frames, OnRows, Pipe, PipeSettings

# the transform stage: loaded only by a pipeline with transforms
chain_mod = deferred("rapidbyte_fast.transforms.chain")

_log = logging.getLogger("rapidbyte_fast")


class _Run:
    """The shared state of one task's threads: the first error, and the stop signal."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.readers: list = []

    def fail(self, exc: BaseException) -> None:
        if not isinstance(exc, StageStopped):
            self.errors.append(exc)
        self.stop.set()
        for r in self.readers:
            r.cancel()


def pipe_settings(plan: TaskPlan, budget: memory_budget.Budget | None = None) -> PipeSettings:
    """The queue, batch and compression settings of every pipe of ``plan``: its workers'
    share of ``budget`` (default: resources.max_memory as ``memory_budget.resolve`` lowers it
    in this process, so a Dask worker's memory is bounded exactly as a local task's)."""
    res = plan.resources
    budget = budget or memory_budget.resolve(res.max_memory)
    sizing = memory_budget.for_plan(plan, budget.bytes, tasks=budget.tasks)
    _log.debug("stream %s: %s", plan.stream.name, sizing.describe())
    return PipeSettings(sizing.queue_batches, sizing.batch_bytes, sizing.batch_rows,
                        plan.path == "passthrough", Frames(res.compression, res.compression_level))


def load_rejects(plan: TaskPlan, run_id: str) -> Rejects | None:
    """Where the rows the destination refuses go (``on_data_error``); None: they fail it."""
    mode = plan.dest_config.on_data_error
    if mode == "fail":
        return None
    return Rejects(plan.stream.name, mode, DeadLetterTable(plan.write.schema, plan.pipeline,
                                                           run_id) if mode == "dlq" else None)


def run_ranges(plan: TaskPlan, ranges: tuple[KeyRange, ...], snapshot: str | None,
               prepared: tuple, run_id: str = "", on_rows: OnRows | None = None
               ) -> StreamResult:
    """Read and commit some key ranges of a load committed per range whose destination
    another process has prepared (``prepared``, from its ``open``), on connections of its
    own: what one task of a distributed load does. Ranges already marked committed are
    skipped (a retried task whose first run got that far); a range that fails rolls back,
    and one the destination refuses rows of sets them aside as ``on_data_error`` says."""
    src = registry.source(plan.source_use)(plan.source_config, plan.source_endpoint)
    dest = registry.destination(plan.dest_use)(plan.dest_config, plan.dest_endpoint)
    faults.bind(plan.source_endpoint, plan.dest_endpoint)
    settings = pipe_settings(plan)
    run = _Run()
    load = dest.open_load(plan.write, None, load_rejects(plan, run_id))
    load.attach(prepared)
    pipe = None
    t_start = time.perf_counter()
    try:
        writer = load.writer()
        done = writer.committed()
        todo = tuple(r for r in ranges if r.index not in done)
        reader = src.reader(plan.info, plan.cursor, snapshot=snapshot,
                            hold_snapshot=snapshot is None and len(todo) > 1)
        run.readers.append(reader)
        if todo:
            reader.open()
        pipe = Pipe(reader, writer, todo, [], settings, run.stop, run.fail, on_rows,
                    f"{plan.stream.name}-r{ranges[0].index if ranges else 0}")
        pipe.start()
        pipe.join()
        if run.errors:
            raise run.errors[0]
    except BaseException:
        run.fail(StageStopped("stopped"))
        if pipe is not None:
            pipe.join(timeout=10)
        load.abort()
        raise
    finally:
        for r in run.readers:
            r.close()
        load.close()
    return stream_result(plan, load, run.readers, [pipe], [], settings.frames,
                         time.perf_counter() - t_start)


def run_task(plan: TaskPlan, on_rows: OnRows | None = None, run_id: str = "",
             cancel: threading.Event | None = None,
             budget: memory_budget.Budget | None = None, snapshot: str | None = None,
             before_commit=None) -> StreamResult:
    """Copy one stream as planned; ``cancel`` set stops it (rolled back as on a signal).
    Its workers share ``budget`` (``pipe_settings``); every reader imports ``snapshot`` (a
    cdc bootstrap's), and ``before_commit(conn)`` runs in the rows' commit (where a
    bootstrap saves its LSN)."""
    src = registry.source(plan.source_use)(plan.source_config, plan.source_endpoint)
    dest = registry.destination(plan.dest_use)(plan.dest_config, plan.dest_endpoint)
    on_data_error = plan.dest_config.on_data_error
    # a transform's dead letters are scoped to this attempt: visible once its rows commit
    dlq = (DeadLetterStore(plan.dest_endpoint, plan.write.schema, plan.pipeline, run_id,
                           attempt=uuid.uuid4().hex)
           if on_data_error == "dlq" and plan.transforms else None)
    chain = (chain_mod.build(plan.transforms, on_data_error,
                             dlq.add if dlq is not None else None) if plan.transforms else [])
    rejects = load_rejects(plan, run_id)
    faults.bind(plan.source_endpoint, plan.dest_endpoint)
    settings = pipe_settings(plan, budget)
    run = _Run()
    hooks = [h for h in (dlq.mark_committed if dlq is not None else None, before_commit) if h]
    load = dest.open_load(plan.write, (lambda conn: [h(conn) for h in hooks]) if hooks else None,
                          rejects)
    pipes: list[Pipe] = []
    exporter = None
    t_start = time.perf_counter()
    try:
        if plan.snapshot == "export" and snapshot is None:
            exporter = src.exporter(plan.stream.name)
            snapshot = exporter.snapshot
        workers = plan.reads.workers
        for w in range(workers):
            reader = src.reader(plan.info, plan.cursor, snapshot=snapshot,
                                hold_snapshot=plan.snapshot == "hold" and snapshot is None)
            run.readers.append(reader)  # (closed with the others, also when open fails)
            reader.open()
        if plan.resumed_ranges:
            _log.info("stream %s: resuming an unfinished %s at key range %d of %d (%d rows "
                      "already committed)", plan.stream.name, plan.write.write_mode,
                      plan.resumed_ranges + 1, plan.total_ranges, plan.resumed_rows)
        if chain:
            chain_mod.open_chain(chain, plan.stream.name, plan.info.schema)
        load.open(plan.schema)
        for w, reader in enumerate(run.readers):
            pipes.append(Pipe(reader, load.writer(), plan.reads.ranges[w::workers],
                              chain if w == 0 else [], settings, run.stop, run.fail,
                              on_rows, f"{plan.stream.name}-{w}"))
        for p in pipes:
            p.start()
        _wait(pipes, cancel)
        if run.errors:
            raise run.errors[0]
        load.commit(pipes[0].last_loader if pipes and plan.write.commit == "once" else None)
    except BaseException as exc:
        # e.g. Ctrl-C in the main thread: stop every stage before rolling back
        run.stop.set()
        for r in run.readers:
            r.cancel()
        for p in pipes:
            p.join(timeout=10)
        load.abort()
        raise_kept(exc, plan, load.checkpoints)
        raise
    finally:
        for t in chain:
            t.close()
        if dlq is not None:
            dlq.close()
        for r in run.readers:
            r.close()
        if exporter is not None:
            exporter.close()
        load.close()
    return stream_result(plan, load, run.readers, pipes, chain, settings.frames,
                         time.perf_counter() - t_start)


def _wait(pipes: list[Pipe], cancel: threading.Event | None) -> None:
    """Until every pipe has ended; ``cancel`` set raises StopRequested."""
    for p in pipes:
        while not p.join(POLL_SECS):
            if cancel is not None and cancel.is_set():
                raise StopRequested(0)


def raise_kept(exc: BaseException, plan: TaskPlan, committed: int) -> None:
    """Raise ``exc`` saying how many key ranges of a resumable load stay committed
    (``committed`` by this attempt, besides those it resumed after); return when none."""
    kept = len(plan.write.ranged.done) + committed if plan.write.ranged is not None else 0
    if kept and isinstance(exc, RapidbyteError):
        raise exc.noted(f"({kept} of {plan.total_ranges} key ranges are committed: the "
                        "next run goes on from there)") from exc.__cause__


def stream_result(plan: TaskPlan, load, readers: list, pipes: list[Pipe], chain: list,
                  frames: Frames, seconds: float) -> StreamResult:
    rejects = load.rejects
    chain_timings, skipped, dead = chain_mod.stats(chain) if chain else ({}, 0, 0)
    w = plan.write
    sr = StreamResult(
        stream=plan.stream.name, target=f"{w.schema}.{w.table}", load_method=w.load_method,
        path=plan.path, path_reason=plan.path_reason, duration_secs=seconds,
        records_written=load.rows_written, bytes_written=load.bytes_written,
        batches=sum(p.batches for p in pipes), bytes_read=sum(r.bytes_read for r in readers),
        parallelism=max(plan.reads.workers, 1) if plan.reads.partitioning else 1,
        partitioning=plan.reads.partitioning, checkpoints=load.checkpoints,
        ranges=plan.total_ranges if w.ranged is not None else 0,
        resumed_ranges=plan.resumed_ranges, resumed_rows=plan.resumed_rows,
        records_skipped=skipped + (rejects.skipped if rejects else 0),
        records_dlq=dead + (rejects.dead_lettered if rejects else 0),
        records_refused=rejects.skipped + rejects.dead_lettered if rejects else 0,
        transform_count=len(chain),
        copy_format=load.copy_format, notes=list(load.strategy.notes),
        worker_rows=[p.rows_written for p in pipes],
        worker_secs=[p.times["dest_duration_secs"] for p in pipes],
        cursor_before=plan.cursor.value if plan.cursor is not None else None)
    sr.records_read = (sr.records_written if plan.path == "passthrough"
                       else sum(p.records_read for p in pipes))
    new = load.strategy.new_cursor
    sr.cursor_after = new.value if new is not None else sr.cursor_before
    sr.timings = merge_timings(*(r.timings for r in readers), load.all_timings(),
                               *(p.times for p in pipes), chain_timings,
                               {"compress_secs": frames.compress_secs,
                                "decompress_secs": frames.decompress_secs})
    return sr
