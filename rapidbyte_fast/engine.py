"""Runs a pipeline: plan every stream (nothing is written until every stream resolves),
lock every target against other runs, then execute each plan, retrying transient failures
from the last commit, and record the run in the history."""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace

from . import _impl, faults, load_errors, memory_budget, registry, retry
from .config import PipelineConfig
from .errors import ArrayShapeError, ConfigError, DataError, RapidbyteError, StopRequested
from .executors.choice import Executor, open_executor
from .executors.pipe import OnRows
from .plan import Learned, Planner, TaskPlan, make_plans
from .result import RunResult, StreamResult
from .state.history import RunHistory

_log = logging.getLogger("rapidbyte_fast")
#: ``parallel_streams: auto`` runs one stream per core, at most this many. 10 tables x 300k
#: rows, passthrough replace, 2 cores (shared, load average 8), 2 rounds: 1 at a time
#: 20.6/31.0 s, 2: 18.4/14.2 s, 4: 17.4/11.3 s; peak RSS 125, 139, 171 MB (1 table: 110 MB).
#: Beyond the cores, a stream's COPY threads mostly wait and memory grows with every stream.
AUTO_PARALLEL_STREAMS = 4
_COUNT_LOCK = threading.Lock()


def _run_with_retries(plan: TaskPlan, cfg: PipelineConfig, on_rows: OnRows | None,
                      result: RunResult, run_id: str, cancel: threading.Event,
                      budget: memory_budget.Budget, executor: Executor,
                      follow: threading.Event | None = None) -> StreamResult:
    attempt = 0
    learned = Learned()
    while True:
        try:
            if plan.changes is not None:
                from .executors.cdc import run_changes   # (loads the change-capture stack)

                return run_changes(plan, on_rows, run_id, follow)
            return executor.run(plan, on_rows, run_id, cancel, budget)
        except ArrayShapeError as exc:
            if exc.column in learned.text_columns:
                raise
            # not a bad value: the column's declared shape is narrower than its values
            learned = replace(learned, text_columns=learned.text_columns | {exc.column})
            _log.warning("stream %s: %s; the stream starts again with column %r carried as "
                         "exact text", plan.stream.name, exc, exc.column)
        except DataError as exc:
            if (plan.path != "passthrough" or cfg.destination.on_data_error == "fail"
                    or not load_errors.is_refusal(exc.sqlstate)):
                raise
            # a raw COPY stream cannot drop one row: what is not committed goes again on the
            # Arrow path, where refused rows are set aside one by one
            learned = replace(learned, arrow_reason="the destination refused a value on "
                              f"passthrough, and on_data_error is "
                              f"{cfg.destination.on_data_error}")
            _log.warning("stream %s: %s; what is not committed is loaded again on the Arrow "
                         "path, setting refused rows aside", plan.stream.name, exc)
        except RapidbyteError as exc:
            attempt += 1
            if attempt > cfg.resources.max_retries or not retry.is_transient(exc):
                raise
            wait = retry.backoff_secs(attempt)
            with _COUNT_LOCK:
                result.retry_count += 1
            _log.warning("stream %s: transient error (%s); retry %d of %d in %.1fs",
                         plan.stream.name, exc, attempt, cfg.resources.max_retries, wait)
            if cancel.wait(wait):  # the run is stopping
                raise StopRequested(0) from exc
        # planned again: the retry goes on from what the failed attempt committed
        plan = _replan(cfg, plan, learned)


def _replan(cfg: PipelineConfig, plan: TaskPlan, learned: Learned) -> TaskPlan:
    planner = Planner(cfg)
    try:
        return planner.plan(plan.stream, learned)
    finally:
        planner.close()


def run_pipeline(cfg: PipelineConfig, on_rows: OnRows | None = None,
                 executor: str | None = None,
                 follow: threading.Event | None = None) -> RunResult:
    """Run every stream of ``cfg``; raise the first error, else return the result.
    ``executor`` (``run --executor``) overrides ``resources.executor``. With ``follow``
    (``run --follow``) every stream must be cdc: they run at once and keep applying the
    source's changes until the event is set, then land the window in flight and return."""
    if follow is not None:
        check_follow(cfg)
    _impl.warn_if_python()
    faults.arm()
    result = RunResult(pipeline=cfg.pipeline, impl=_impl.IMPL,
                       compression=cfg.resources.compression)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    # (a cluster starts while the streams are planned)
    runner = open_executor(cfg.resources, executor, (cfg.source.use, cfg.destination.use))
    result.executor = runner.name
    try:
        plans = make_plans(cfg)
        # measured once every stream is planned (the connectors and the libraries they
        # use are loaded: pyarrow's first array imports pandas when it is installed,
        # ~50 MB) and before any row moves: they are the interpreter's baseline, not the
        # budget's
        result.memory = memory_budget.resolve(cfg.resources.max_memory)
        _log.info("%s", result.memory.describe())
        run_id = uuid.uuid4().hex
        result.run_id = run_id
        dest = registry.destination(cfg.destination.use)(cfg.destination,
                                                         plans[0].dest_endpoint)
        lock = dest.lock(cfg.pipeline, run_id, [p.stream.name for p in plans])
        try:
            _run_plans(cfg, plans, on_rows, result, runner, follow)
        finally:
            lock.close()
    finally:
        runner.close()
    result.duration_secs = time.perf_counter() - t0
    result.process_cpu_secs = time.process_time() - cpu0
    result.peak_rss_mb = memory_budget.peak_resident_bytes() / (1 << 20)
    return result


def check_follow(cfg: PipelineConfig) -> None:
    """ConfigError naming each stream that cannot follow its source (only cdc streams
    can: a full refresh or an incremental stream has no change stream to follow)."""
    fixed = [(i, s) for i, s in enumerate(cfg.source.streams)
             if getattr(s, "sync_mode", "full_refresh") != "cdc"]
    if fixed:
        raise ConfigError([
            f"source.streams[{i}] ({s.name}): run --follow needs sync_mode cdc, the stream "
            f"has {getattr(s, 'sync_mode', 'full_refresh')}; run it without --follow (e.g. "
            "with --schedule), in a pipeline of its own" for i, s in fixed])


def stream_workers(setting: str | int, streams: int) -> int:
    """How many streams run at once: ``resources.parallel_streams``, ``auto`` being the
    machine's cores (at most ``AUTO_PARALLEL_STREAMS``), never more than there are."""
    n = min(os.cpu_count() or 1, AUTO_PARALLEL_STREAMS) if setting == "auto" else int(setting)
    return max(1, min(n, streams))


def _run_plans(cfg: PipelineConfig, plans: list[TaskPlan], on_rows: OnRows | None,
               result: RunResult, executor: Executor,
               follow: threading.Event | None = None) -> None:
    """Run the plans, ``parallel_streams`` at a time (all at once when they ``follow``:
    none of them ends by itself). Each stream commits on its own: one that fails does not
    stop or roll back the others, and the run then fails naming every stream's outcome. A
    stop (signal) stops them all."""
    history = RunHistory(cfg.state.backend, cfg.state.resolved_connection())
    run_id = result.run_id
    outcomes: dict[str, StreamResult | BaseException] = {}
    workers = (len(plans) if follow is not None
               else stream_workers(cfg.resources.parallel_streams, len(plans)))
    cancel = threading.Event()
    budget = result.memory.shared(workers)  # streams running at once split the budget
    if workers == 1:
        # in this thread: a signal interrupts the stream's own commit sequence
        for plan in plans:
            history.started(run_id, cfg.pipeline, plan.stream.name)
            future: Future = Future()
            try:
                future.set_result(_run_with_retries(plan, cfg, on_rows, result, run_id,
                                                    cancel, budget, executor, follow))
            except BaseException as exc:
                future.set_exception(exc)
            _finished(history, run_id, plan, future, outcomes)
            if isinstance(outcomes[plan.stream.name], KeyboardInterrupt):
                raise outcomes[plan.stream.name]
    else:
        # (history is written from this thread only: its sqlite connection is not shared)
        with ThreadPoolExecutor(workers, thread_name_prefix="rbf-stream") as pool:
            running = {}
            for plan in plans:
                history.started(run_id, cfg.pipeline, plan.stream.name)
                running[pool.submit(_run_with_retries, plan, cfg, on_rows, result, run_id,
                                    cancel, budget, executor, follow)] = plan
            try:
                for future in _as_done(running):
                    _finished(history, run_id, running[future], future, outcomes)
            except BaseException:
                cancel.set()  # e.g. a signal in this thread: every stream rolls back
                for future in _as_done(running, every=True):
                    if running[future].stream.name not in outcomes:
                        _finished(history, run_id, running[future], future, outcomes)
                raise
    result.streams += [o for o in (outcomes[p.stream.name] for p in plans)
                       if isinstance(o, StreamResult)]
    failed = [(p.stream.name, outcomes[p.stream.name]) for p in plans
              if isinstance(outcomes[p.stream.name], BaseException)]
    if not failed:
        return
    first = failed[0][1]
    if isinstance(first, KeyboardInterrupt):
        raise first
    if len(plans) == 1 or not isinstance(first, RapidbyteError):
        raise first
    raise first.noted("(streams: " + "; ".join(
        f"{p.stream.name} failed" if isinstance(outcomes[p.stream.name], BaseException)
        else f"{p.stream.name} committed {outcomes[p.stream.name].records_written:,} rows"
        for p in plans) + ")") from first.__cause__


def _as_done(running: dict[Future, TaskPlan], every: bool = False):
    """The futures as they finish, waking up often so that a signal handler runs; with
    ``every``, through interruptions too (the streams are stopping)."""
    pending = set(running)
    while pending:
        try:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
        except BaseException:
            if every:
                continue
            raise
        yield from done


def _finished(history: RunHistory, run_id: str, plan: TaskPlan, future: Future,
              outcomes: dict) -> None:
    name = plan.stream.name
    exc = future.exception()
    if exc is None:
        sr = future.result()
        outcomes[name] = sr
        history.finished(run_id, name, "succeeded", sr.records_written, sr.bytes_written,
                         sr.path, None)
        return
    outcomes[name] = exc
    status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
    history.finished(run_id, name, status, 0, 0, "", str(exc) or status)


def run(path_or_config, env=None, on_rows: OnRows | None = None,
        executor: str | None = None, follow: threading.Event | None = None) -> RunResult:
    """Python API: run a pipeline from a YAML path, a dict or a PipelineConfig; with
    ``follow``, its cdc streams keep applying changes until the event is set."""
    from .config import load_config

    cfg = path_or_config if isinstance(path_or_config, PipelineConfig) else load_config(
        path_or_config, env)
    return run_pipeline(cfg, on_rows, executor, follow)


__all__ = ["run", "run_pipeline", "RapidbyteError"]
