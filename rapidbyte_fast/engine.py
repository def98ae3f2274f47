"""Runs a pipeline: plan every stream (nothing is written until every stream resolves),
lock every target against other runs, then execute each plan, retrying transient failures
from the last commit, and record the run in the history."""
from __future__ import annotations

import logging
import resource
import time
import uuid

from . import _impl, faults, registry, retry
from .config import PipelineConfig
from .errors import RapidbyteError
from .executors.local import run_task
from .executors.pipe import OnRows
from .plan import Planner, TaskPlan, make_plans
from .result import RunResult, StreamResult
from .state.history import RunHistory

_log = logging.getLogger("rapidbyte_fast")


def _run_with_retries(plan: TaskPlan, cfg: PipelineConfig, on_rows: OnRows | None,
                      result: RunResult, run_id: str) -> StreamResult:
    attempt = 0
    while True:
        try:
            return run_task(plan, on_rows, run_id)
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
        plan = _replan(cfg, plan)


def _replan(cfg: PipelineConfig, plan: TaskPlan) -> TaskPlan:
    planner = Planner(cfg)
    try:
        return planner.plan(plan.stream)
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
