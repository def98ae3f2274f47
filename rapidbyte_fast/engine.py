"""Runs a pipeline: plan every stream (nothing is written until every stream resolves),
lock every target against other runs, then execute each plan, retrying transient failures
from the last commit, and record the run in the history."""
from __future__ import annotations

import logging
import resource
import time
import uuid
from dataclasses import replace

from . import _impl, faults, load_errors, registry, retry
from .config import PipelineConfig
from .errors import ArrayShapeError, DataError, RapidbyteError
from .executors.cdc import run_changes
from .executors.local import run_task
from .executors.pipe import OnRows
from .plan import Learned, Planner, TaskPlan, make_plans
from .result import RunResult, StreamResult
from .state.history import RunHistory

_log = logging.getLogger("rapidbyte_fast")


def _run_with_retries(plan: TaskPlan, cfg: PipelineConfig, on_rows: OnRows | None,
                      result: RunResult, run_id: str) -> StreamResult:
    attempt = 0
    learned = Learned()
    while True:
        try:
            if plan.changes is not None:
                return run_changes(plan, on_rows, run_id)
            return run_task(plan, on_rows, run_id)
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
            result.retry_count += 1
            _log.warning("stream %s: transient error (%s); retry %d of %d in %.1fs",
                         plan.stream.name, exc, attempt, cfg.resources.max_retries, wait)
            time.sleep(wait)
        # planned again: the retry goes on from what the failed attempt committed
        plan = _replan(cfg, plan, learned)


def _replan(cfg: PipelineConfig, plan: TaskPlan, learned: Learned) -> TaskPlan:
    planner = Planner(cfg)
    try:
        return planner.plan(plan.stream, learned)
    finally:
        planner.close()


def run_pipeline(cfg: PipelineConfig, on_rows: OnRows | None = None) -> RunResult:
    """Run every stream of ``cfg``; raise the first error, else return the result."""
    _impl.warn_if_python()
    faults.arm()
    result = RunResult(pipeline=cfg.pipeline, impl=_impl.IMPL,
                       compression=cfg.resources.compression)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    plans = make_plans(cfg)
    run_id = uuid.uuid4().hex
    result.run_id = run_id
    dest = registry.destination(cfg.destination.use)(cfg.destination, plans[0].dest_endpoint)
    lock = dest.lock(cfg.pipeline, run_id, [p.stream.name for p in plans])
    try:
        _run_plans(cfg, plans, on_rows, result)
    finally:
        lock.close()
    result.duration_secs = time.perf_counter() - t0
    result.process_cpu_secs = time.process_time() - cpu0
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return result


def _run_plans(cfg: PipelineConfig, plans: list[TaskPlan], on_rows: OnRows | None,
               result: RunResult) -> None:
    history = RunHistory(cfg.state.backend, cfg.state.resolved_connection())
    run_id = result.run_id
    for plan in plans:
        history.started(run_id, cfg.pipeline, plan.stream.name)
        try:
            sr = _run_with_retries(plan, cfg, on_rows, result, run_id)
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            history.finished(run_id, plan.stream.name, status, 0, 0, "", str(exc) or status)
            raise
        history.finished(run_id, plan.stream.name, "succeeded", sr.records_written,
                         sr.bytes_written, sr.path, None)
        result.streams.append(sr)


def run(path_or_config, env=None, on_rows: OnRows | None = None) -> RunResult:
    """Python API: run a pipeline from a YAML path, a dict or a PipelineConfig."""
    from .config import load_config

    cfg = path_or_config if isinstance(path_or_config, PipelineConfig) else load_config(
        path_or_config, env)
    return run_pipeline(cfg, on_rows)


__all__ = ["run", "run_pipeline", "RapidbyteError"]
