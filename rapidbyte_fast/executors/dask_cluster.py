"""The Dask executor: a plan's key ranges (and whole streams) as tasks on a Dask
distributed cluster (``pip install "rapidbyte-fast[dask]"``; ``resources.executor: dask``
or ``run --executor dask://host:8786 | dask://local``).

The driver (this process) plans, as locally, and owns what must happen once: the exported
snapshot (its transaction stays open until every range is read, so every worker reads one
snapshot), the load's DDL (staging table, progress record), the final commit (key and
index build, swap, merge, cursor), the run lock and the run history (engine.py). A load
committed per range ships each key range as a task (``run_ranges``, the function a local
worker's pipe runs too): the worker opens its own source and destination connections and
commits the range with its progress mark. A load committed once runs as one task
(``run_task``) on one worker.

Faults: a worker lost mid-task has its tasks rerun elsewhere by the scheduler; a range
whose mark was committed is skipped by the rerun, and a half-written one was never
committed. Two attempts of one range cannot both commit: the mark's update is conditional
(state/progress.py). A lost driver leaves the committed ranges marked: the next run goes
on with the rest. Tasks in flight never exceed ``resources.max_connections`` (per side,
after the driver's own connections). Each worker's memory is bounded as one local worker's
(``pipe_settings``); a LocalCluster runs one task per worker process.

Start-up is off the run's critical path: the executor connects (importing dask, starting a
LocalCluster, loading the connectors into each worker: 2.3-3.5 s on 2 cores) on a thread of
its own while the driver plans and prepares the destination. Until a LocalCluster it
started is up, the driver loads ranges itself, one at a time, exactly as a task does (it
shares the machine with the workers anyway); it waits for a remote cluster, which it only
connects to.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
import time
import uuid
from dataclasses import replace
from typing import Any

from .. import faults, registry, retry
from ..connector import KeyRange
from ..errors import ConfigError, ConnectionLost, RapidbyteError, SetupError
from ..plan import TaskPlan, task_slots
from ..result import StreamResult, merge_timings
from .local import (load_rejects, pipe_settings, raise_kept, run_ranges, run_task,
                    stream_result)
from .pipe import OnRows

_log = logging.getLogger("rapidbyte_fast")
#: the worker name of the ranges the driver loads while its LocalCluster starts
DRIVER = "driver"
#: seconds to wait for a remote scheduler before giving up
CONNECT_TIMEOUT_SECS = 10
#: How a LocalCluster runs. Measured on 2 cores, 10M rows replaced (dask://local against
#: the local executor in one bench run): with Dask's defaults 1.29-1.36x. Its worker
#: processes got MALLOC_TRIM_THRESHOLD_, which turns off glibc's dynamic mmap threshold, so
#: every large buffer was a fresh mmap (COPY reads 40% slower); unset: 1.07-1.21x. An idle
#: cluster then still used 13% of a core (the 20 ms event-loop tick, the 10 ms profiler,
#: the 100 ms memory monitor in each of 5 servers), taken from the database's two busy
#: backends; with these intervals 2.6%.
LOCAL_CLUSTER_CONFIG = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    # (one task per free slot is ever queued: nothing to steal)
    "distributed.scheduler.work-stealing": False,
}


_MISSING = ("executor dask: the dask package is not installed "
            "(pip install \"rapidbyte-fast[dask]\")")


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ConfigError(_MISSING) from None
    return distributed


def _installed() -> bool:
    """Whether ``distributed`` can be imported, without importing it (~0.8 s)."""
    if "distributed" in sys.modules:
        return sys.modules["distributed"] is not None
    return importlib.util.find_spec("distributed") is not None


class DaskExecutor:
    """Runs plans as tasks of a Dask cluster (``scheduler``: an address, or ``local``);
    ``uses``: the connectors (source, destination) the tasks will load, loaded into each
    worker while the driver plans."""

    name = "dask"

    def __init__(self, scheduler: str, resources: Any, uses: tuple[str, ...] = ()) -> None:
        if not _installed():
            raise ConfigError(_MISSING)
        self.cluster = None
        self.client = None
        self.local = scheduler == "local"
        self.slots_cap = task_slots(resources)
        self._error: BaseException | None = None
        #: seconds the driver waited for the start-up (``executor_start_wait_secs``)
        self.waited = 0.0
        self._connecting = threading.Thread(target=self._connect, args=(scheduler, uses),
                                            name="rbf-dask-connect", daemon=True)
        self._connecting.start()

    def _connect(self, scheduler: str, uses: tuple[str, ...]) -> None:
        try:
            distributed = _distributed()
            if scheduler == "local":
                import dask

                # one single-threaded worker process per core: a task's own stage threads
                # (reader, writer) use the cores, and one pipe per process bounds its
                # memory. LOCAL_CLUSTER_CONFIG: the cluster shares these cores with the
                # database doing the work
                with dask.config.set(LOCAL_CLUSTER_CONFIG):
                    self.cluster = distributed.LocalCluster(
                        n_workers=os.cpu_count() or 1, threads_per_worker=1,
                        processes=True, dashboard_address=None)
                self.client = distributed.Client(self.cluster)
            else:
                try:
                    self.client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_SECS)
                except (OSError, TimeoutError) as exc:
                    raise SetupError(f"executor dask: cannot reach the scheduler at "
                                     f"{scheduler} ({exc})") from None
            if uses:
                self.client.run(_load_connectors, uses)
        except BaseException as exc:  # raised in the driver's thread by ready()
            self._error = exc

    def ready(self):
        """The connected client, once the start-up thread is done; its error if it failed."""
        if self._connecting.is_alive():
            t0 = time.perf_counter()
            self._connecting.join()
            self.waited += time.perf_counter() - t0
        if self._error is not None:
            raise self._error
        return self.client

    def cluster_starting(self) -> bool:
        """Whether a LocalCluster this executor starts is not up yet (a remote cluster is
        only connected to: the driver waits for it)."""
        return self.local and self._connecting.is_alive()

    def close(self) -> None:
        """Disconnect; stop the LocalCluster this executor started."""
        self._connecting.join()
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def slots(self, plan: TaskPlan) -> int:
        """Range tasks in flight at once: the cluster's threads, within the connection
        budget and, when ``parallelism`` is set or the cluster is a LocalCluster (it shares
        this machine, database included), the plan's workers: ``auto`` decides as the
        local executor does (on 2 cores one range at a time: two at once lost, 10M rows
        on dask://local, 32.8-40.7 s against 28.0-28.9 s locally)."""
        threads = sum(self.ready().nthreads().values()) or 1
        n = min(threads, self.slots_cap or threads)
        if self.cluster is not None or plan.resources.parallelism != "auto":
            n = min(n, max(plan.reads.workers, 1))
        return n

    def run(self, plan: TaskPlan, on_rows: OnRows | None, run_id: str,
            cancel: threading.Event | None = None, budget: Any = None) -> StreamResult:
        """Copy one stream: range by range when it commits per range, else as one task
        (``cancel``: the engine's stop, seen by the driver between task results)."""
        waited = self.waited
        sr = (self._run_ranged(plan, on_rows, run_id) if plan.write.commit == "per_range"
              else self._run_one(plan, on_rows, run_id))
        sr.timings["executor_start_wait_secs"] = self.waited - waited
        return sr

    def _run_one(self, plan: TaskPlan, on_rows: OnRows | None, run_id: str) -> StreamResult:
        """The whole stream as one task on one worker."""
        future = self.ready().submit(_stream_task, plan, run_id, pure=False,
                                     key=f"rbf-stream-{plan.stream.name}-"
                                         f"{uuid.uuid4().hex[:8]}")
        sr, worker = _unwrap(self._result(future))
        if on_rows is not None:
            on_rows(sr.records_written, sr.bytes_written)
        sr.cluster_workers = [{"worker": worker, "tasks": 1, "rows": sr.records_written,
                               "seconds": round(sr.duration_secs, 6)}]
        sr.worker_rows, sr.worker_secs = [sr.records_written], [sr.duration_secs]
        return sr

    def _result(self, future):
        distributed = _distributed()
        try:
            return future.result()
        except distributed.KilledWorker as exc:
            raise ConnectionLost(f"executor dask: workers died running {exc.task} "
                                 f"({exc.last_worker})") from None
        except distributed.comm.CommClosedError as exc:
            raise ConnectionLost(f"executor dask: lost the scheduler ({exc})") from None

    def _run_ranged(self, plan: TaskPlan, on_rows: OnRows | None, run_id: str
                    ) -> StreamResult:
        src = registry.source(plan.source_use)(plan.source_config, plan.source_endpoint)
        dest = registry.destination(plan.dest_use)(plan.dest_config, plan.dest_endpoint)
        faults.bind(plan.source_endpoint, plan.dest_endpoint)
        # (the driver's open creates what the tasks' rejects need: the dead-letter table)
        load = dest.open_load(plan.write, None, load_rejects(plan, run_id))
        exporter = None
        parts: list[tuple[StreamResult, str]] = []
        t_start = time.perf_counter()
        try:
            if plan.snapshot != "none" and src.capabilities.snapshots:
                exporter = src.exporter(plan.stream.name)
            load.open(plan.schema)
            self._map_ranges(plan, exporter.snapshot if exporter else None, load.prepared,
                             run_id, on_rows, parts)
            written = (load.ranged_rows() - plan.resumed_rows if plan.write.ranged is not None
                       else sum(p.records_written for p, _ in parts))
            load.commit(None, rows=written)
        except BaseException as exc:
            load.abort()
            raise_kept(exc, plan, len(parts))
            raise
        finally:
            if exporter is not None:
                exporter.close()
            load.close()
        sr = stream_result(plan, load, [], [], [], pipe_settings(plan).frames,
                           time.perf_counter() - t_start)
        sr = _combined(sr, parts)
        sr.records_written = written
        return sr

    def _map_ranges(self, plan: TaskPlan, snapshot: str | None, prepared: tuple,
                    run_id: str, on_rows: OnRows | None,
                    parts: list[tuple[StreamResult, str]]) -> None:
        """Run every pending range as a task, at most ``slots(plan)`` at once; each result
        goes into ``parts`` as (range result, worker) when it arrives. While a LocalCluster
        this executor started is still starting, the driver loads ranges itself, one at a
        time, as a task would (worker ``driver``)."""
        todo = list(plan.reads.ranges)
        while todo and self.cluster_starting():
            sr = run_ranges(plan, (todo.pop(0),), snapshot, prepared, run_id, on_rows)
            parts.append((sr, DRIVER))
        if not todo:
            return
        client = self.ready()
        distributed = _distributed()
        slim = _task_plan(plan)
        # a retried range is exactly-once only when its commit carries a mark
        retries = plan.resources.max_retries if plan.write.ranged is not None else 0
        window = distributed.as_completed()
        running: list = []

        def submit(r: KeyRange) -> None:
            f = client.submit(_range_task, slim, (r,), snapshot, prepared, run_id,
                              retries=retries, pure=False,
                              key=f"rbf-range-{plan.stream.name}-{r.index}-"
                                  f"{uuid.uuid4().hex[:8]}")
            running.append(f)
            window.add(f)

        slots = self.slots(plan)
        for r in todo[:slots]:
            submit(r)
        todo = todo[slots:]
        try:
            for f in window:
                running.remove(f)
                sr, worker = _unwrap(self._result(f))
                parts.append((sr, worker))
                if on_rows is not None:
                    on_rows(sr.records_written, sr.bytes_written)
                if todo:
                    submit(todo.pop(0))
        except BaseException:
            client.cancel(running)
            raise


def _load_connectors(uses: tuple[str, ...]) -> None:
    """Import the connectors a task will use (on each worker, at start-up)."""
    registry.source(uses[0])
    registry.destination(uses[1])


def _task_plan(plan: TaskPlan) -> TaskPlan:
    """The plan a range task needs: without the list of ranges and cut points (each task
    names its own ranges), so a task's size does not grow with the number of ranges."""
    ranged = plan.write.ranged
    write = plan.write if ranged is None else replace(
        plan.write, ranged=replace(ranged, cuts=(), done=frozenset()))
    return replace(plan, reads=replace(plan.reads, ranges=(), cuts=None), write=write)


def _combined(sr: StreamResult, parts: list[tuple[StreamResult, str]]) -> StreamResult:
    """The driver's result (DDL, final commit) with the range tasks' summed in."""
    workers: dict[str, dict] = {}
    for p, worker in parts:
        for name in ("records_read", "records_written", "bytes_read", "bytes_written",
                     "batches", "checkpoints", "records_skipped", "records_dlq",
                     "records_refused"):
            setattr(sr, name, getattr(sr, name) + getattr(p, name))
        sr.copy_format = sr.copy_format or p.copy_format
        w = workers.setdefault(worker, {"worker": worker, "tasks": 0, "rows": 0,
                                        "seconds": 0.0})
        w["tasks"] += 1
        w["rows"] += p.records_written
        w["seconds"] = round(w["seconds"] + p.duration_secs, 6)
    sr.timings = merge_timings(sr.timings, *(p.timings for p, _ in parts))
    sr.cluster_workers = list(workers.values())
    # (the skew keys of @@BENCH_JSON@@ come from these)
    sr.worker_rows = [w["rows"] for w in sr.cluster_workers]
    sr.worker_secs = [w["seconds"] for w in sr.cluster_workers]
    sr.parallelism = max(len(workers), 1)
    return sr


# ---- what runs on the workers ----------------------------------------------------------

_active_runs: dict[str, int] = {}
_runs_lock = threading.Lock()


class _RunIdFilter(logging.Filter):
    """Puts the run id in front of every rapidbyte_fast log line of a worker process."""

    def filter(self, record: logging.LogRecord) -> bool:
        runs = ",".join(sorted(_active_runs))
        if runs and not getattr(record, "rbf_run", None):
            record.rbf_run = runs
            record.msg = f"[run {runs}] {record.msg}"
        return True


_filter = _RunIdFilter()


class _RunLogging:
    """While a task of ``run_id`` runs, this process's log lines carry it."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def __enter__(self) -> None:
        logger = logging.getLogger("rapidbyte_fast")
        with _runs_lock:
            if _filter not in logger.filters:
                logger.addFilter(_filter)
            _active_runs[self.run_id] = _active_runs.get(self.run_id, 0) + 1

    def __exit__(self, *exc) -> None:
        with _runs_lock:
            _active_runs[self.run_id] -= 1
            if not _active_runs[self.run_id]:
                del _active_runs[self.run_id]


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def _guarded(fn, *args) -> tuple:
    """("ok", result, worker), or ("error", exc, worker) for an error no retry cures:
    Dask retries only the transient ones (those raised)."""
    try:
        return "ok", fn(*args), _worker_name()
    except RapidbyteError as exc:
        if retry.is_transient(exc):
            raise
        _log.error("%s", exc)
        return "error", exc, _worker_name()


def _unwrap(outcome: tuple) -> tuple[StreamResult, str]:
    status, value, worker = outcome
    if status == "error":
        raise value
    return value, worker


def _range_task(plan: TaskPlan, ranges: tuple[KeyRange, ...], snapshot: str | None,
                prepared: tuple, run_id: str) -> tuple:
    """One task: read and commit ``ranges`` (on a worker)."""
    with _RunLogging(run_id):
        _log.info("stream %s: key ranges %s", plan.stream.name,
                  ", ".join(str(r.index) for r in ranges))
        return _guarded(run_ranges, plan, ranges, snapshot, prepared, run_id)


def _stream_task(plan: TaskPlan, run_id: str) -> tuple:
    """One task: a whole stream committed once (on a worker)."""
    with _RunLogging(run_id):
        return _guarded(run_task, plan, None, run_id)
