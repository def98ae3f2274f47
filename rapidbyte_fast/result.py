"""Run results: counts, the timing hierarchy, the human summary and the @@BENCH_JSON@@ line."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

BENCH_PREFIX = "@@BENCH_JSON@@"


def merge_timings(*parts: dict[str, float]) -> dict[str, float]:
    """The timings of several stages and workers, summed key by key."""
    out: dict[str, float] = {}
    for part in parts:
        for k, v in part.items():
            out[k] = out.get(k, 0.0) + v
    return out


@dataclass
class StreamResult:
    """What one stream did."""

    stream: str
    target: str
    records_read: int = 0
    records_written: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    batches: int = 0
    duration_secs: float = 0.0
    path: str = "arrow"
    path_reason: str = ""
    parallelism: int = 1
    partitioning: str = ""
    cursor_before: str | None = None
    cursor_after: str | None = None
    transform_count: int = 0
    checkpoints: int = 0
    #: a ranged (resumable) load: its key ranges, and those an earlier attempt committed
    ranges: int = 0
    resumed_ranges: int = 0
    resumed_rows: int = 0
    records_skipped: int = 0
    records_dlq: int = 0
    #: rows the destination refused (skipped or dead-lettered by on_data_error)
    records_refused: int = 0
    load_method: str = ""
    copy_format: str = ""
    #: what the load left out of the target (objects not recreated, foreign keys)
    notes: list[str] = field(default_factory=list)
    #: rows each worker wrote, and how long its writer ran
    worker_rows: list[int] = field(default_factory=list)
    worker_secs: list[float] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: on a cluster: per worker, {"worker", "tasks", "rows", "seconds"} (executors/dask)
    cluster_workers: list[dict] = field(default_factory=list)


def cluster_workers(streams: list[StreamResult]) -> list[dict]:
    """The cluster workers of every stream, summed per worker."""
    out: dict[str, dict] = {}
    for s in streams:
        for w in s.cluster_workers:
            row = out.setdefault(w["worker"], {"worker": w["worker"], "tasks": 0, "rows": 0,
                                               "seconds": 0.0})
            row["tasks"] += w["tasks"]
            row["rows"] += w["rows"]
            row["seconds"] = round(row["seconds"] + w["seconds"], 6)
    return list(out.values())


@dataclass
class RunResult:
    """What a pipeline run did; ``bench_json()`` is the machine-readable line."""

    pipeline: str
    impl: str
    streams: list[StreamResult] = field(default_factory=list)
    duration_secs: float = 0.0
    process_cpu_secs: float = 0.0
    peak_rss_mb: float = 0.0
    retry_count: int = 0
    compression: str = "none"
    run_id: str = ""
    #: the run's memory budget (a memory_budget.Budget), when it was resolved
    memory: Any = None
    #: where the plans ran: "local" or "dask"
    executor: str = "local"

    @property
    def parallelism(self) -> int:
        return max((s.parallelism for s in self.streams), default=1)

    @property
    def records_read(self) -> int:
        return sum(s.records_read for s in self.streams)

    @property
    def records_written(self) -> int:
        return sum(s.records_written for s in self.streams)

    @property
    def bytes_read(self) -> int:
        return sum(s.bytes_read for s in self.streams)

    @property
    def bytes_written(self) -> int:
        return sum(s.bytes_written for s in self.streams)

    @property
    def path(self) -> str:
        paths = sorted({s.path for s in self.streams})
        return paths[0] if len(paths) == 1 else ",".join(paths) or "arrow"

    def timings(self) -> dict[str, float]:
        """Stage timings summed over streams."""
        return merge_timings(*(s.timings for s in self.streams))

    def bench_dict(self) -> dict:
        """Flat dict of the @@BENCH_JSON@@ line (keys of DESIGN §8; extend, never rename)."""
        d = {
            "pipeline": self.pipeline,
            "run_id": self.run_id,
            "records_read": self.records_read,
            "records_written": self.records_written,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "duration_secs": round(self.duration_secs, 6),
            "path": self.path,
            "parallelism": self.parallelism,
            "retry_count": self.retry_count,
            "process_cpu_secs": round(self.process_cpu_secs, 6),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "rows_per_sec": round(self.records_written / self.duration_secs, 1)
            if self.duration_secs else 0.0,
            "mb_per_sec": round(self.bytes_read / self.duration_secs / 1e6, 3)
            if self.duration_secs else 0.0,
            "impl": self.impl,
            "compression": self.compression,
            "load_method": ",".join(sorted({s.load_method for s in self.streams})),
            "streams": len(self.streams),
            "transform_count": max((s.transform_count for s in self.streams), default=0),
            "records_skipped": sum(s.records_skipped for s in self.streams),
            "records_dlq": sum(s.records_dlq for s in self.streams),
            "records_refused": sum(s.records_refused for s in self.streams),
            "checkpoints": sum(s.checkpoints for s in self.streams),
            "resumed_ranges": sum(s.resumed_ranges for s in self.streams),
            "resumed_rows": sum(s.resumed_rows for s in self.streams),
            **self._utilisation(),
            "executor": self.executor,
        }
        if self.memory is not None:
            m = self.memory
            d.update({"max_memory_mb": round(m.bytes / (1 << 20), 1),
                      "baseline_rss_mb": round(m.baseline / (1 << 20), 1),
                      "memory_budget_source": "cgroup" if m.bytes < m.configured
                      else "max_memory"})
        on_cluster = cluster_workers(self.streams)
        if on_cluster:
            d["cluster_workers"] = on_cluster
        d.update({k: round(v, 6) for k, v in sorted(self.timings().items())})
        return d

    def _utilisation(self) -> dict:
        """CPU use against one core and all cores, each stage's time split into waiting
        and working, and how evenly the workers shared the rows (max / mean; 1 is even)."""
        cores = os.cpu_count() or 1
        one = self.process_cpu_secs / self.duration_secs * 100 if self.duration_secs else 0.0
        t = self.timings()
        rows = [n for s in self.streams for n in s.worker_rows]
        secs = [x for s in self.streams for x in s.worker_secs]
        return {
            "available_cores": cores,
            "process_cpu_pct_one_core": round(one, 1),
            "process_cpu_pct_available_cores": round(one / cores, 1),
            "source_busy_secs": round(t.get("source_duration_secs", 0.0)
                                      - t.get("source_emit_wait_secs", 0.0), 6),
            "dest_busy_secs": round(t.get("dest_duration_secs", 0.0)
                                    - t.get("dest_recv_wait_secs", 0.0), 6),
            "workers": len(rows),
            "worker_records_skew_ratio": round(max(rows) * len(rows) / sum(rows), 3)
            if rows and sum(rows) else 1.0,
            "worker_secs_skew_ratio": round(max(secs) * len(secs) / sum(secs), 3)
            if secs and sum(secs) else 1.0,
        }

    def bench_line(self) -> str:
        """``@@BENCH_JSON@@{...}``."""
        return BENCH_PREFIX + json.dumps(self.bench_dict(), separators=(",", ":"))

    def summary(self) -> str:
        """Human summary, a few lines."""
        t = self.timings()
        rate = self.records_written / self.duration_secs if self.duration_secs else 0.0
        mbps = self.bytes_read / self.duration_secs / 1e6 if self.duration_secs else 0.0
        lines = [
            f"pipeline {self.pipeline}: {self.records_written:,} rows written "
            f"({self.records_read:,} read) in {self.duration_secs:.3f}s — "
            f"{rate:,.0f} rows/s, {mbps:,.1f} MB/s [path={self.path}, impl={self.impl}]",
        ]
        for s in self.streams:
            lines.append(
                f"  {s.stream} → {s.target}: {s.records_written:,} rows, "
                f"{s.bytes_written / 1e6:,.1f} MB, {s.duration_secs:.3f}s "
                f"({s.load_method}{'/' + s.copy_format if s.copy_format else ''}, "
                f"{s.path}{': ' + s.path_reason if s.path_reason else ''})"
            )
            lines += [f"    note: {note}" for note in s.notes]
            rejected = s.records_skipped + s.records_dlq
            if rejected:
                went = "to the dead-letter table" if s.records_dlq else "skipped"
                see = " (rapidbyte-fast dlq list PIPELINE.yaml)" if s.records_dlq else ""
                lines.append(f"    rejected: {rejected:,} rows {went}: {s.records_refused:,} "
                             f"refused by the destination, {rejected - s.records_refused:,} "
                             f"by validation{see}")
            if s.resumed_ranges:
                lines.append(
                    f"    resumed: {s.resumed_ranges} of {s.ranges} key ranges "
                    f"({s.resumed_rows:,} rows) were committed by an earlier attempt")
        on_cluster = cluster_workers(self.streams)
        if on_cluster:
            lines.append(f"  {len(on_cluster)} {self.executor} workers (seconds skew "
                         f"{self._utilisation()['worker_secs_skew_ratio']:.2f}): "
                         + ", ".join(f"{w['worker']} {w['rows']:,} rows in {w['tasks']} "
                                     f"tasks, {w['seconds']:.2f}s" for w in on_cluster))
        keys = [("source", "source_duration_secs"), ("fetch", "source_fetch_secs"),
                ("decode", "source_decode_secs"), ("dest", "dest_duration_secs"),
                ("encode", "dest_encode_secs"), ("flush", "dest_flush_secs"),
                ("commit", "dest_commit_secs")]
        parts = [f"{label} {t[k]:.3f}s" for label, k in keys if k in t]
        lines.append("  timings: " + ", ".join(parts))
        lines.append(f"  cpu {self.process_cpu_secs:.2f}s, peak RSS {self.peak_rss_mb:.0f} MB"
                     + (f"; {self.memory.describe()}" if self.memory is not None else ""))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Everything, nested (for --log-format json and the Python API)."""
        d = self.bench_dict()
        d["stream_results"] = [asdict(s) for s in self.streams]
        return d
