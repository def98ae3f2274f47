"""The memory budget (``resources.max_memory``): how large each worker's batches may be and
how deep its queues, so that the rows a run holds at once stay within the budget.

A worker (one pipe: reader → queue → [transform → queue] →) writer holds, at most, the
batches in its queues, one batch in each stage's hands, the temporaries of compression
between stages, and the fixed buffers of reading and COPY writing. ``per_worker`` solves
that sum for the batch size and the queue depth; ``max_batch_bytes``, ``max_batch_rows`` and
``max_inflight_batches`` stay upper bounds the budget can only lower. The budget is for the
whole process: workers that run at the same time split it (a stream's shards in
``per_worker``; tasks run side by side through ``Budget.shared``), and an executor running
tasks in other processes (a Dask worker) resolves the budget there, in that process and
its cgroup: ``resolve(plan.resources.max_memory).shared(tasks_at_once)``, passed to
``executors.local.run_task``. The budget never counts the interpreter and libraries
loaded before the run (its *baseline*); on Linux a cgroup memory limit lower than baseline
plus budget lowers the budget to what the cgroup leaves.
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .config.sizes import MIN_MEMORY_BUDGET
from .connector import MAX_BATCH_BYTES, MAX_BATCH_ROWS

if TYPE_CHECKING:
    from .plan import TaskPlan

#: Per process, outside the workers: what a run touches besides its rows (connections,
#: libpq and socket buffers, code pages of kernels loaded on first use, allocator slack).
#: A 20-row run of the large dataset peaks 22 MB above the baseline.
RUN_RESERVE = 24 << 20
#: Per worker, outside the batches: the COPY writer's two flush buffers (4 MB each for rows
#: under 64 KB, destinations/postgres/loader.py) and the reader's 1 MB chunks (two while a
#: tuple straddles them).
WORKER_RESERVE = 10 << 20
#: A batch cut at N bytes of column data holds more: validity bytes, bytearray growth slack
#: (1/8), packed bitmaps. A margin, not a fit: with it every run measured (the README's
#: table, tests/integration/test_memory_budget.py) peaked at least 8 MB under its limit.
BATCH_OVERHEAD = 1.25
#: Queue depth the budget aims for before it shrinks batches to deepen queues further: a
#: deeper queue only absorbs longer stalls of the writer, which is bound by the server.
#: 10M bench_events rows, Arrow path, COPY flush time: 28.6 s with 16 queued batches (before
#: the budget), 28.9 s with 13 (256 MB), 31.8 s with 3 (128 MB) on a loaded machine.
TARGET_QUEUE = 4
#: The smallest batch worth its per-batch costs (config's own floor for max_batch_bytes).
MIN_BATCH_BYTES = 64 << 10
#: Passthrough moves the source's raw COPY chunks, 1 MB each (sources/postgres/reader.py).
RAW_CHUNK_BYTES = 1 << 20
#: glibc's mallopt parameter number, and the threshold we fix: blocks from 2 MB up (batch
#: columns) are mmapped and unmapped when freed, while the 1 MB read chunks and COPY
#: buffers are reused from the heap. python -m bench run, bench_events-copy 10M rows, RSS
#: above baseline / minor page faults: glibc's dynamic threshold +148 MB / 128k, fixed at
#: 128 KB +68 MB / 858k (3 s more system CPU), at 2 MB +72 MB / 247k, at 4 MB +118 MB / 314k.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 2 << 20
_released = _pool_set = False
#: cgroup files say "no limit" with "max" (v2) or a number near 2^63 (v1).
_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class Budget:
    """The memory a run may use for its rows, and where that number came from."""

    #: bytes for every worker running at once
    bytes: int
    #: resources.max_memory as configured
    configured: int
    #: the cgroup's memory limit, when there is one
    cgroup_limit: int | None
    #: resident bytes of the process when the run started (not counted in the budget)
    baseline: int
    #: tasks running at once that split it (``shared``)
    tasks: int = 1

    def shared(self, tasks: int) -> Budget:
        """One task's budget when ``tasks`` tasks run at once in this process (streams side
        by side, or a Dask worker's threads): the run's reserve is paid once."""
        rows = max(self.bytes - RUN_RESERVE, 0) // max(tasks, 1)
        return replace(self, bytes=RUN_RESERVE + rows, tasks=max(tasks, 1))

    def describe(self) -> str:
        """One line for the log and the summary."""
        text = f"memory budget {mb(self.bytes)}"
        if self.bytes < self.configured:
            text += (f" (cgroup memory limit {mb(self.cgroup_limit or 0)} minus baseline "
                     f"{mb(self.baseline)}; resources.max_memory is {mb(self.configured)})")
        else:
            text += f" (resources.max_memory), baseline RSS {mb(self.baseline)}"
            if self.cgroup_limit is not None:
                text += f", cgroup memory limit {mb(self.cgroup_limit)}"
        return text


@dataclass(frozen=True)
class Sizing:
    """One worker's share of the budget, as batch and queue bounds."""

    #: bytes of column data at which a reader cuts a batch
    batch_bytes: int
    batch_rows: int
    #: batches (or raw chunks) each of the worker's queues holds at most
    queue_batches: int
    #: the share of the budget these bounds were solved for
    worker_bytes: int

    def describe(self) -> str:
        """One line for the debug log."""
        return (f"{mb(self.worker_bytes)} per worker: batches of {self.batch_bytes >> 10:,} KB"
                f" or {self.batch_rows:,} rows, queues of {self.queue_batches}")


def resolve(max_memory: int, baseline: int | None = None,
            cgroup: int | None | bool = True) -> Budget:
    """The run's budget: ``max_memory``, lowered to what a cgroup memory limit leaves above
    ``baseline`` (default: the process's resident bytes now). ``cgroup``: True reads this
    process's cgroup, None means no limit, an int is the limit. Called where the rows will
    move (any executor's process), it also makes freed memory go back to the OS there."""
    release_freed_memory()
    base = resident_bytes() if baseline is None else baseline
    limit = cgroup_limit() if cgroup is True else (cgroup or None)
    budget = max_memory
    if limit is not None and limit - base < budget:
        budget = max(limit - base, MIN_MEMORY_BUDGET)
    return Budget(budget, max_memory, limit, base)


def per_worker(budget_bytes: int, workers: int = 1, *, raw: bool = False,
               transforms: bool = False, compressed: bool = False,
               bytes_per_row: float = 0.0, max_batch_bytes: int = MAX_BATCH_BYTES,
               max_batch_rows: int = MAX_BATCH_ROWS, max_inflight_batches: int = 16) -> Sizing:
    """Batch and queue bounds for each of ``workers`` workers sharing ``budget_bytes``.

    ``raw``: the worker moves raw COPY chunks (passthrough); ``transforms``: it runs a
    transform stage (a second queue, and the stage holds its input and output);
    ``compressed``: batches cross the queues compressed (the frames are counted as whole
    batches, and packing/unpacking holds two more); ``bytes_per_row``: the source's estimate
    (0: unknown), which turns a byte bound into a row bound.
    """
    share = max(budget_bytes - RUN_RESERVE, 0) // max(workers, 1)
    room = max(share - WORKER_RESERVE, 0) / BATCH_OVERHEAD
    if raw:
        depth = int(room // RAW_CHUNK_BYTES) - 2
        return Sizing(max_batch_bytes, max_batch_rows,
                      max(1, min(max_inflight_batches, depth)), share)
    # in hand at once: the batch the reader fills and the one the writer encodes; a
    # transform's input and output; compression's IPC stream and frame (reader), frame
    # being decompressed (writer)
    held = 2 + (2 if transforms else 0) + (3 if compressed else 0)
    queues = 2 if transforms else 1
    batch = min(max_batch_bytes, int(room / (held + queues * TARGET_QUEUE)))
    rows = max_batch_rows
    if bytes_per_row > 0:
        rows = max(1, min(rows, int(max(batch, MIN_BATCH_BYTES) / bytes_per_row)))
        # a row bound that cuts first makes batches smaller: deepen the queues instead
        batch = min(batch, int(rows * bytes_per_row))
    batch = max(batch, MIN_BATCH_BYTES)
    depth = int((room / batch - held) // queues)
    return Sizing(batch, rows, max(1, min(max_inflight_batches, depth)), share)


def for_plan(plan: TaskPlan, budget_bytes: int, concurrent_workers: int = 0,
             tasks: int = 1) -> Sizing:
    """``per_worker`` for a ``TaskPlan``'s workers; ``concurrent_workers``: every worker
    sharing the budget at once (default: the plan's own). ``tasks``: the tasks running side
    by side (``Budget.tasks``): each also gets 1/tasks of the configured batch bounds and
    queue depth. One stream rarely fills its budget: its batches
    stop at max_batch_rows and the writer keeps its queue short, so splitting the budget
    alone let two streams hold about twice what one does. 10 tables of 1M bench_events
    rows, 2 at a time, against 149 MB (Arrow path) and 71 MB (passthrough) for one table:
    Arrow path 210-236 MB before, 177-198 MB with the batch bounds split, passthrough 105-111
    and 80-89 MB; the walls did not move beyond their noise (load average 4-6)."""
    res, info = plan.resources, plan.info
    workers = max(plan.reads.workers, 1)
    return per_worker(
        budget_bytes, max(concurrent_workers, workers), raw=plan.path == "passthrough",
        transforms=bool(plan.transforms), compressed=res.compression != "none",
        bytes_per_row=info.est_bytes / info.est_rows if info.est_rows > 0 else 0.0,
        max_batch_bytes=max(res.max_batch_bytes // tasks, MIN_BATCH_BYTES),
        max_batch_rows=max(res.max_batch_rows // tasks, 1),
        max_inflight_batches=max(res.max_inflight_batches // tasks, 1))


def release_freed_memory() -> None:
    """Make freed batch memory go back to the OS at once, so the process's resident size
    follows the rows it holds (called once, before a run moves rows).

    glibc raises its mmap threshold each time a large block is freed (up to 32 MB), after
    which batch-sized buffers come from heaps that it does not return; a fixed threshold
    keeps them mmapped. Arrow's own allocations go to jemalloc with no decay delay when
    pyarrow has it (mimalloc keeps freed pages for a while). The large dataset from
    Postgres, zstd between stages, max_memory 64 MB: RSS above baseline 71 MB as it was,
    43 MB with the threshold fixed, 36 MB with jemalloc too. Arrow's pool is set only in a
    process that has imported pyarrow (an Arrow-path plan has, when its run resolves its
    budget): a passthrough run never imports it.
    """
    global _released, _pool_set
    if not _released:
        _released = True
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL(None)
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    pa = sys.modules.get("pyarrow")
    if _pool_set or pa is None:
        return
    _pool_set = True
    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(0)
        pa.set_memory_pool(pool)
    except NotImplementedError:  # a pyarrow built without jemalloc keeps its default
        pass


def cgroup_limit(root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup"
                 ) -> int | None:
    """The memory limit of this process's cgroup (v2 ``memory.max`` of it and its
    ancestors; v1 ``hierarchical_memory_limit`` or ``memory.limit_in_bytes``), or None."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    base = Path(root)
    limits: list[int] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.strip("/")
        if controllers == "" and (base / "cgroup.controllers").exists():
            # v2: a limit anywhere up the tree binds (the namespace may hide the path)
            for d in _up(base, rel):
                limits += _number(d / "memory.max")
        elif "memory" in controllers.split(","):
            for d in (base / "memory" / rel, base / "memory"):
                if d.is_dir():
                    stat = _stat(d / "memory.stat").get("hierarchical_memory_limit")
                    limits += [stat] if stat is not None else _number(
                        d / "memory.limit_in_bytes")
                    break
    limits = [v for v in limits if 0 < v < _UNLIMITED]
    return min(limits) if limits else None


def _up(base: Path, rel: str) -> list[Path]:
    parts = rel.split("/") if rel else []
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def _number(path: Path) -> list[int]:
    try:
        text = path.read_text().strip()
    except OSError:
        return []
    return [int(text)] if text.isdigit() else []


def _stat(path: Path) -> dict[str, int]:
    try:
        rows = (line.split() for line in path.read_text().splitlines())
        return {r[0]: int(r[1]) for r in rows if len(r) == 2 and r[1].isdigit()}
    except OSError:
        return {}


def peak_resident_bytes() -> int:
    """The process's peak resident memory. On Linux ``VmHWM`` of ``/proc/self/status``: the
    rusage peak also counts the parent's memory the process had between fork and exec
    (a run started by a 500 MB pytest reports 500 MB)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def resident_bytes() -> int:
    """The process's resident memory now (Linux ``/proc/self/statm``; elsewhere its peak)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * _page_size()
    except (OSError, IndexError, ValueError):
        return peak_resident_bytes()


@lru_cache(maxsize=1)
def _page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


def mb(n: int) -> str:
    """Bytes as whole MB, for messages."""
    return f"{n / (1 << 20):,.0f} MB"
