"""The executor: each task runs as a source thread and a destination thread joined by a
bounded queue. A failure in either stage stops the other promptly (the source's COPY is
cancelled) and surfaces as one error; nothing waits forever.
"""
from __future__ import annotations

import logging
import queue
import resource
import threading
import time
import uuid
from typing import Callable, Iterator

import pyarrow as pa

from . import _impl, faults, partitions, passthrough, resume, retry
from .config import PipelineConfig
from .destinations.postgres import PostgresDestination
from .errors import ConfigError, PipelineAborted, RapidbyteError
from .pgtypes import check_type_sql, quote_ident
from .state import cursors
from .state.dlq import DeadLetterStore
from .state.history import RunHistory
from .transforms import chain as chain_mod
from .plan import Task, make_tasks
from .result import RunResult, StreamResult
from .sources.postgres import PostgresSource, connect

_END = object()
_log = logging.getLogger("rapidbyte_fast")
#: How often blocked queue operations wake up to notice that another stage failed.
_POLL_SECS = 0.1


class _RangeEnd:
    """Queue item: every row of range ``index`` has been sent."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


Progress = Callable[[int, int], None]


class _GenerateAdapter:
    """Gives the generate source the same shape as PostgresSource."""

    def __init__(self, task: Task, cfg: PipelineConfig) -> None:
        from .sources.generate import GenerateSource

        gen = cfg.source.config
        dataset = gen.dataset or task.stream.name
        self._src = GenerateSource(dataset, gen.rows, gen.start_id)
        self.timings = {"source_generate_secs": 0.0}
        self.bytes_read = 0

    def open(self) -> pa.Schema:
        return self._src.schema()

    def batches(self, max_bytes: int, max_rows: int) -> Iterator[pa.RecordBatch]:
        it = self._src.batches(max_rows, max_bytes)
        while True:
            t0 = time.perf_counter()
            batch = next(it, None)
            self.timings["source_generate_secs"] += time.perf_counter() - t0
            if batch is None:
                return
            self.bytes_read += batch.nbytes
            yield batch

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Frames:
    """Optional compression of batches between the stages (resources.compression)."""

    def __init__(self, codec: str, level: int) -> None:
        self.codec, self.level = codec, level
        self.compress_secs = self.decompress_secs = 0.0

    def pack(self, batch: pa.RecordBatch):
        if self.codec == "none":
            return batch
        t0 = time.perf_counter()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        frame = bytearray()
        _impl.codec.compress(self.codec, sink.getvalue(), frame, self.level)
        self.compress_secs += time.perf_counter() - t0
        return frame

    def unpack(self, item) -> pa.RecordBatch:
        if self.codec == "none":
            return item
        t0 = time.perf_counter()
        raw = bytearray()
        _impl.codec.decompress(item, raw)
        batch = pa.ipc.open_stream(pa.py_buffer(raw)).read_next_batch()
        self.decompress_secs += time.perf_counter() - t0
        return batch


def _start_incremental(task: Task, source, dest) -> str | None:
    """Filter the source by the committed cursor; returns the cursor value read."""
    stream = task.stream
    cols = {c.name: c for c in source.table.columns}
    for field in (stream.cursor_field, stream.tie_breaker_field):
        if field is not None and field not in cols:
            raise ConfigError(f"stream {stream.name}: cursor column {field} is not a column "
                              f"of {source.table.schema}.{source.table.name}")
    dest.incremental = (task.pipeline, stream.cursor_field, stream.tie_breaker_field)
    last = dest.load_cursor()
    tie = stream.tie_breaker_field
    source.where = cursors.predicate(
        quote_ident(stream.cursor_field), check_type_sql(cols[stream.cursor_field].pg_type, stream.name),
        quote_ident(tie) if tie else None,
        check_type_sql(cols[tie].pg_type, stream.name) if tie else None, last)
    source.order_by = (stream.cursor_field,) + ((tie,) if tie else ())
    return last.value if last else None


def _choose_path(task: Task, cfg: PipelineConfig, source, dest) -> tuple[str, str]:
    """("passthrough" | "arrow", why): raw COPY bytes when nothing needs the values."""
    if task.source_use != "postgres":
        return "arrow", f"source is {task.source_use}"
    if cfg.destination.config.passthrough == "off":
        return "arrow", "passthrough: off"
    if cfg.transforms:
        return "arrow", "transforms need the values"
    if cfg.destination.config.load_method != "copy":
        return "arrow", "load_method is insert"
    table = source.table
    cols = [c.name for c in table.columns]
    src_types = passthrough.column_types(source.conn, table.schema, table.name)
    reason = passthrough.source_reason(src_types, cols)
    if reason is None and cfg.destination.write_mode != "replace":
        dst_types = dest.existing_column_types()
        if dst_types is not None:
            reason = passthrough.target_reason(src_types, dst_types, cols)
    return ("arrow", reason) if reason else ("passthrough", "identical column types")


def _ranged_load(task: Task, cfg: PipelineConfig, source, chain: list, shards: int,
                 earlier: resume.Progress | None, resumable: bool) -> resume.Progress | None:
    """The ranged (resumable) load of a full refresh: ``earlier`` when it can go on, else a
    new one when the table spans more than one checkpoint interval (or is sharded) and has
    a key to cut (an integer ``partition_key`` or primary key, else the primary key); None
    for a load in one piece."""
    mode = cfg.destination.write_mode
    if (task.source_use != "postgres" or task.stream.sync_mode != "full_refresh" or chain
            or mode not in ("replace", "append")):
        return None
    table = source.table
    int_key = partitions.integer_key(table, task.stream.partition_key, task.stream.name)
    key = (int_key,) if int_key else table.primary_key
    if not key:
        return None
    if earlier is not None and resumable and earlier.key == key:
        return earlier
    res = cfg.resources
    pieces = max(shards, resume.range_count(source.conn, table, res.checkpoint_interval_bytes,
                                            res.checkpoint_interval_rows))
    found = resume.key_cuts(source.conn, table, key, pieces) if pieces > 1 else None
    if found is None or not found[0]:
        return None
    types = {c.name: c.pg_type for c in table.columns}
    return resume.Progress(mode, key, tuple(types[c] for c in key), *found)


def _run_with_retries(task: Task, cfg: PipelineConfig, progress: Progress | None,
                      result: RunResult, run_id: str) -> StreamResult:
    attempt = 0
    while True:
        try:
            return run_task(task, cfg, progress, run_id)
        except RapidbyteError as exc:
            attempt += 1
            if attempt > cfg.resources.max_retries or not retry.is_transient(exc):
                raise
            wait = retry.backoff_secs(attempt)
            result.retry_count += 1
            _log.warning("stream %s: transient error (%s); retry %d of %d in %.1fs",
                         task.stream.name, exc, attempt, cfg.resources.max_retries, wait)
            time.sleep(wait)


def run_pipeline(cfg: PipelineConfig, progress: Progress | None = None) -> RunResult:
    """Run every task of ``cfg``; raise the first error, else return the result."""
    _impl.warn_if_python()
    faults.arm()
    result = RunResult(pipeline=cfg.pipeline, impl=_impl.IMPL,
                       compression=cfg.resources.compression)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    tasks = make_tasks(cfg)
    history = RunHistory(cfg.state.backend, cfg.state.resolved_connection())
    run_id = uuid.uuid4().hex
    result.run_id = run_id
    for task in tasks:
        history.started(run_id, cfg.pipeline, task.stream.name)
        try:
            sr = _run_with_retries(task, cfg, progress, result, run_id)
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            history.finished(run_id, task.stream.name, status, 0, 0, "", str(exc) or status)
            raise
        history.finished(run_id, task.stream.name, "succeeded", sr.records_written,
                         sr.bytes_written, sr.path, None)
        result.streams.append(sr)
    result.duration_secs = time.perf_counter() - t0
    result.process_cpu_secs = time.process_time() - cpu0
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return result


class _Pump:
    """One shard's reader and writer threads joined by a bounded queue."""

    def __init__(self, source, write, finish, path: str, cfg: PipelineConfig, frames: _Frames,
                 stop: threading.Event, fail: Callable[[BaseException], None],
                 progress: Progress | None, name: str, chain: list | None = None,
                 ranges: list[tuple[int, str]] | None = None,
                 end_range: Callable[[int], None] | None = None) -> None:
        self.source, self.write, self.finish, self.path = source, write, finish, path
        #: a ranged load: (index, predicate) of each range to read, and how to commit one
        self.ranges, self.end_range = ranges, end_range
        self.res = cfg.resources
        self.frames, self.stop, self.fail, self.progress = frames, stop, fail, progress
        self.chain = chain or []
        cap = self.res.max_inflight_batches
        self.q: queue.Queue = queue.Queue(maxsize=cap)
        # with transforms: source → q_in → transform thread → q → destination
        self.q_in: queue.Queue = queue.Queue(maxsize=cap) if self.chain else self.q
        self.records_read = self.batches = 0
        self.times = {"source_emit_wait_secs": 0.0, "dest_recv_wait_secs": 0.0,
                      "source_duration_secs": 0.0, "dest_duration_secs": 0.0,
                      "transform_wait_secs": 0.0}
        self.threads = [threading.Thread(target=self._read, name=f"rbf-src-{name}", daemon=True),
                        threading.Thread(target=self._write, name=f"rbf-dst-{name}", daemon=True)]
        if self.chain:
            self.threads.append(threading.Thread(target=self._transform,
                                                 name=f"rbf-xf-{name}", daemon=True))

    def _put(self, item, q: queue.Queue | None = None,
             wait_key: str = "source_emit_wait_secs") -> None:
        q = self.q_in if q is None else q
        t0 = time.perf_counter()
        while True:
            if self.stop.is_set():
                raise PipelineAborted("destination stopped")
            try:
                q.put(item, timeout=_POLL_SECS)
                break
            except queue.Full:
                continue
        self.times[wait_key] += time.perf_counter() - t0

    def _get(self, q: queue.Queue | None = None, wait_key: str = "dest_recv_wait_secs"):
        q = self.q if q is None else q
        t0 = time.perf_counter()
        while True:
            if self.stop.is_set():
                raise PipelineAborted("source stopped")
            try:
                item = q.get(timeout=_POLL_SECS)
                break
            except queue.Empty:
                continue
        self.times[wait_key] += time.perf_counter() - t0
        return item

    def _transform(self) -> None:
        try:
            while (item := self._get(self.q_in, "transform_wait_secs")) is not _END:
                for out in chain_mod.apply_chain(self.chain, self.frames.unpack(item)):
                    self._put(self.frames.pack(out), self.q, "transform_wait_secs")
            for out in chain_mod.finish_chain(self.chain):
                self._put(self.frames.pack(out), self.q, "transform_wait_secs")
            self._put(_END, self.q, "transform_wait_secs")
        except BaseException as exc:
            self.fail(exc)

    def _read_all(self) -> None:
        if self.path == "passthrough":
            for chunk in self.source.raw_chunks():
                self.batches += 1
                self._put(chunk)
                faults.hit("source.batch")
        else:
            for batch in self.source.batches(self.res.max_batch_bytes, self.res.max_batch_rows):
                self.records_read += batch.num_rows
                self.batches += 1
                self._put(self.frames.pack(batch))
                faults.hit("source.batch")

    def _read(self) -> None:
        t0 = time.perf_counter()
        try:
            if self.ranges is None:
                self._read_all()
            for index, where in self.ranges or ():
                self.source.range_where = where
                self._read_all()
                self._put(_RangeEnd(index))
            self._put(_END)
        except BaseException as exc:
            self.fail(exc)
        finally:
            self.times["source_duration_secs"] = time.perf_counter() - t0

    def _write(self) -> None:
        t0 = time.perf_counter()
        try:
            while (item := self._get()) is not _END:
                if type(item) is _RangeEnd:
                    self.end_range(item.index)
                    continue
                if self.path == "passthrough":
                    rows = self.write(item)
                    nbytes = len(item)
                else:
                    batch = self.frames.unpack(item)
                    self.write(batch)
                    rows, nbytes = batch.num_rows, batch.nbytes
                faults.hit("dest.batch")
                if self.progress is not None:
                    self.progress(rows, nbytes)
            self.finish()
        except BaseException as exc:
            self.fail(exc)
        finally:
            self.times["dest_duration_secs"] = time.perf_counter() - t0


def _source_for(task: Task, cfg: PipelineConfig, where: str | None = None,
                snapshot: str | None = None):
    if task.source_use == "postgres":
        return PostgresSource(task.source_conninfo, task.source_schema, task.stream.name,
                              task.stream.columns, where=where, snapshot=snapshot)
    return _GenerateAdapter(task, cfg)


def run_task(task: Task, cfg: PipelineConfig, progress: Progress | None = None,
             run_id: str = "") -> StreamResult:
    """Copy one stream: per shard, a source thread → bounded queue → (transform thread →
    bounded queue →) destination thread."""
    res = cfg.resources
    dlq = (DeadLetterStore(task.dest_conninfo, cfg.destination.config.schema_name,
                           cfg.pipeline, run_id)
           if cfg.transforms and cfg.destination.on_data_error == "dlq" else None)
    chain = chain_mod.build(cfg, dlq.add if dlq is not None else None)
    source = _source_for(task, cfg)
    dest = PostgresDestination(task.dest_conninfo, cfg.destination, task.stream.name,
                               task.pipeline)
    faults.bind(task.source_conninfo, task.dest_conninfo)
    frames = _Frames(res.compression, res.compression_level)
    sr = StreamResult(stream=task.stream.name, target="", load_method=dest.load_method)
    stop = threading.Event()
    errors: list[BaseException] = []
    sources = [source]
    pumps: list[_Pump] = []
    exporter = None
    ranged: resume.Progress | None = None
    t_start = time.perf_counter()

    def open_shard(where: str | None, snapshot: str):
        shard = _source_for(task, cfg, where=where, snapshot=snapshot)
        sources.append(shard)  # (closed with the others, also when open fails)
        shard.open()
        return shard

    def fail(exc: BaseException) -> None:
        if not isinstance(exc, PipelineAborted):
            errors.append(exc)
        stop.set()
        for s in sources:
            s.cancel()

    try:
        schema = chain_mod.open_chain(chain, task.stream.name, source.open())
        if task.stream.sync_mode == "incremental":
            sr.cursor_before = _start_incremental(task, source, dest)
        sr.path, sr.path_reason = _choose_path(task, cfg, source, dest)
        earlier, resumable = dest.unfinished_load(schema)
        shards = 1
        if (task.source_use == "postgres" and task.stream.sync_mode == "full_refresh"
                and not chain):  # transforms like validate/unique are stateful per stream
            shards = partitions.shard_count(source.conn, source.table, res.parallelism,
                                            cfg.destination.write_mode)
        ranged = _ranged_load(task, cfg, source, chain, shards, earlier, resumable)
        discard = earlier if earlier is not None and ranged is not earlier else None
        parts = None
        if ranged is None and shards > 1:
            exporter = partitions.SnapshotExporter(
                connect(task.source_conninfo, f"source stream {task.stream.name}"))
            parts = partitions.plan(source.conn, exporter, source.table,
                                    task.stream.partition_key, shards, task.stream.name)
        passthrough_path = sr.path == "passthrough"
        if ranged is not None:
            dest.open(schema, passthrough=passthrough_path, shards=shards, progress=ranged,
                      discard=discard)
            pending = ranged.pending()
            workers = min(shards, len(pending))
            sr.ranges, sr.resumed_ranges = ranged.ranges, len(ranged.done)
            sr.resumed_rows = ranged.rows_done
            sr.parallelism, sr.partitioning = max(workers, 1), f"key {', '.join(ranged.key)}"
            if sr.resumed_ranges:
                _log.info("stream %s: resuming an unfinished %s at key range %d of %d "
                          "(%d rows already committed)", task.stream.name, ranged.write_mode,
                          sr.resumed_ranges + 1, sr.ranges, sr.resumed_rows)
            if workers > 1:
                exporter = partitions.SnapshotExporter(
                    connect(task.source_conninfo, f"source stream {task.stream.name}"))
            elif workers == 1:
                source.hold_snapshot()  # one consistent read across the ranges
            for w in range(workers):
                shard = open_shard(None, exporter.snapshot) if workers > 1 else source
                writer = dest.range_writer()
                pumps.append(_Pump(
                    shard, writer.write_raw if passthrough_path else writer.write,
                    writer.finish, sr.path, cfg, frames, stop, fail, progress,
                    f"{task.stream.name}-{w}",
                    ranges=[(i, ranged.where(i)) for i in pending[w::workers]],
                    end_range=writer.end_range))
        elif parts is None:
            dest.checkpoint_every = (res.checkpoint_interval_bytes, res.checkpoint_interval_rows,
                                     res.checkpoint_interval_seconds)
            dest.open(schema, passthrough=passthrough_path, discard=discard)
            write = dest.write_raw if passthrough_path else dest.write
            pumps.append(_Pump(source, write, dest.commit, sr.path, cfg, frames, stop, fail,
                               progress, task.stream.name, chain))
        else:
            sr.parallelism, sr.partitioning = len(parts.wheres), parts.method
            dest.open(schema, passthrough=passthrough_path, shards=len(parts.wheres),
                      discard=discard)
            for i, where in enumerate(parts.wheres):
                shard = open_shard(where, parts.snapshot)
                loader = dest.shard_loader()
                write = loader.write_raw if passthrough_path else loader.write
                pumps.append(_Pump(shard, write, lambda ld=loader: dest.commit_shard(ld),
                                   sr.path, cfg, frames, stop, fail, progress,
                                   f"{task.stream.name}-{i}"))
        sr.target = f"{dest.schema_name}.{dest.table_name}"
        sr.copy_format = (dest.loaders[0].copy_format if dest.loaders else "")
        for p in pumps:
            for t in p.threads:
                t.start()
        for p in pumps:
            for t in p.threads:
                t.join()
        if errors:
            raise errors[0]
        if parts is not None or ranged is not None:
            dest.commit()
    except BaseException as exc:
        # e.g. Ctrl-C in the main thread: stop every stage before rolling back
        stop.set()
        for s in sources:
            s.cancel()
        for p in pumps:
            for t in p.threads:
                if t.is_alive():
                    t.join(timeout=10)
        dest.abort()
        kept = len(ranged.done) + dest.checkpoints if ranged is not None else 0
        if kept and isinstance(exc, RapidbyteError) and len(exc.args) == 1:
            exc.args = (f"{exc} ({kept} of {ranged.ranges} key ranges are committed: the next "
                        "run goes on from there)",)
        raise
    finally:
        for t in chain:
            t.close()
        if dlq is not None:
            dlq.close()
        for s in sources:
            s.close()
        if exporter is not None:
            exporter.close()
            exporter.conn.close()
        dest.close()
    sr.duration_secs = time.perf_counter() - t_start
    if dest.new_cursor is not None:
        sr.cursor_after = dest.new_cursor.value
    elif sr.cursor_before is not None:
        sr.cursor_after = sr.cursor_before
    sr.records_written = dest.rows_written
    sr.records_read = (sr.records_written if sr.path == "passthrough"
                       else sum(p.records_read for p in pumps))
    sr.batches = sum(p.batches for p in pumps)
    sr.bytes_read = sum(s.bytes_read for s in sources)
    sr.bytes_written = dest.bytes_written
    timings: dict[str, float] = {}
    for part in [*(s.timings for s in sources), dest.all_timings(), *(p.times for p in pumps)]:
        for k, v in part.items():
            timings[k] = timings.get(k, 0.0) + v
    for t in chain:
        timings["transform_duration_secs"] = (timings.get("transform_duration_secs", 0.0)
                                              + t.stats.get("seconds", 0.0))
        for key, stat in (("skipped", "records_skipped"), ("dead_lettered", "records_dlq")):
            setattr(sr, stat, getattr(sr, stat) + int(t.stats.get(key, 0)))
        if "plugin_load_ms" in t.stats:
            timings["transform_module_load_ms"] = (timings.get("transform_module_load_ms", 0.0)
                                                   + t.stats["plugin_load_ms"])
    sr.transform_count = len(chain)
    sr.checkpoints = dest.checkpoints
    timings["compress_secs"] = frames.compress_secs
    timings["decompress_secs"] = frames.decompress_secs
    sr.timings = timings
    return sr


def run(path_or_config, env=None, progress: Progress | None = None) -> RunResult:
    """Python API: run a pipeline from a YAML path, a dict or a PipelineConfig."""
    from .config import load_config

    cfg = path_or_config if isinstance(path_or_config, PipelineConfig) else load_config(
        path_or_config, env)
    return run_pipeline(cfg, progress)


__all__ = ["run", "run_pipeline", "run_task", "RapidbyteError"]
