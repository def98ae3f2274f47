"""The executor: each task runs as a source thread and a destination thread joined by a
bounded queue. A failure in either stage stops the other promptly (the source's COPY is
cancelled) and surfaces as one error; nothing waits forever.
"""
from __future__ import annotations

import queue
import resource
import threading
import time
from typing import Callable, Iterator

import pyarrow as pa

from . import _impl, passthrough
from .config import PipelineConfig
from .destinations.postgres import PostgresDestination
from .errors import PipelineAborted, RapidbyteError
from .plan import Task, make_tasks
from .result import RunResult, StreamResult
from .sources.postgres import PostgresSource

_END = object()
#: How often blocked queue operations wake up to notice that another stage failed.
_POLL_SECS = 0.1

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


def run_pipeline(cfg: PipelineConfig, progress: Progress | None = None) -> RunResult:
    """Run every task of ``cfg``; raise the first error, else return the result."""
    _impl.warn_if_python()
    result = RunResult(pipeline=cfg.pipeline, impl=_impl.IMPL,
                       compression=cfg.resources.compression)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for task in make_tasks(cfg):
        result.streams.append(run_task(task, cfg, progress))
    result.duration_secs = time.perf_counter() - t0
    result.process_cpu_secs = time.process_time() - cpu0
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return result


def run_task(task: Task, cfg: PipelineConfig, progress: Progress | None = None) -> StreamResult:
    """Copy one stream: source thread → bounded queue → destination thread."""
    res = cfg.resources
    if task.source_use == "postgres":
        source = PostgresSource(task.source_conninfo, task.source_schema, task.stream.name,
                                task.stream.columns)
    else:
        source = _GenerateAdapter(task, cfg)
    dest = PostgresDestination(task.dest_conninfo, cfg.destination, task.stream.name)
    frames = _Frames(res.compression, res.compression_level)
    sr = StreamResult(stream=task.stream.name, target="", load_method=dest.load_method)
    q: queue.Queue = queue.Queue(maxsize=res.max_inflight_batches)
    stop = threading.Event()
    errors: list[BaseException] = []
    waits = {"source_emit_wait_secs": 0.0, "dest_recv_wait_secs": 0.0,
             "source_duration_secs": 0.0, "dest_duration_secs": 0.0}
    t_start = time.perf_counter()

    def fail(exc: BaseException) -> None:
        if not isinstance(exc, PipelineAborted):
            errors.append(exc)
        stop.set()
        source.cancel()

    def put(item) -> None:
        t0 = time.perf_counter()
        while True:
            if stop.is_set():
                raise PipelineAborted("destination stopped")
            try:
                q.put(item, timeout=_POLL_SECS)
                break
            except queue.Full:
                continue
        waits["source_emit_wait_secs"] += time.perf_counter() - t0

    def get():
        t0 = time.perf_counter()
        while True:
            if stop.is_set():
                raise PipelineAborted("source stopped")
            try:
                item = q.get(timeout=_POLL_SECS)
                break
            except queue.Empty:
                continue
        waits["dest_recv_wait_secs"] += time.perf_counter() - t0
        return item

    def read_side() -> None:
        t0 = time.perf_counter()
        try:
            if sr.path == "passthrough":
                for chunk in source.raw_chunks():
                    sr.batches += 1
                    put(chunk)
            else:
                for batch in source.batches(res.max_batch_bytes, res.max_batch_rows):
                    sr.records_read += batch.num_rows
                    sr.batches += 1
                    put(frames.pack(batch))
            put(_END)
        except BaseException as exc:
            fail(exc)
        finally:
            waits["source_duration_secs"] = time.perf_counter() - t0

    def write_side() -> None:
        t0 = time.perf_counter()
        try:
            while (item := get()) is not _END:
                if sr.path == "passthrough":
                    before = dest.rows_written
                    dest.write_raw(item)
                    if progress is not None:
                        progress(dest.rows_written - before, len(item))
                    continue
                batch = frames.unpack(item)
                dest.write(batch)
                if progress is not None:
                    progress(batch.num_rows, batch.nbytes)
            dest.commit()
        except BaseException as exc:
            fail(exc)
        finally:
            waits["dest_duration_secs"] = time.perf_counter() - t0

    threads: list[threading.Thread] = []
    try:
        schema = source.open()
        sr.path, sr.path_reason = _choose_path(task, cfg, source, dest)
        dest.open(schema, passthrough=sr.path == "passthrough")
        sr.target = f"{dest.schema_name}.{dest.table_name}"
        threads = [
            threading.Thread(target=read_side, name=f"rbf-src-{task.stream.name}", daemon=True),
            threading.Thread(target=write_side, name=f"rbf-dst-{task.stream.name}", daemon=True),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    except BaseException:
        # e.g. Ctrl-C in the main thread: stop both stages before rolling back
        stop.set()
        source.cancel()
        for t in threads:
            t.join(timeout=10)
        dest.abort()
        raise
    finally:
        source.close()
        dest.close()
    sr.duration_secs = time.perf_counter() - t_start
    if sr.path == "passthrough":
        sr.records_read = dest.rows_written
    sr.records_written = dest.rows_written
    sr.bytes_read = source.bytes_read
    sr.bytes_written = dest.bytes_written
    sr.copy_format = dest.copy_format if dest.load_method == "copy" else ""
    sr.timings = {**source.timings, **dest.timings, **waits,
                  "compress_secs": frames.compress_secs,
                  "decompress_secs": frames.decompress_secs}
    return sr


def run(path_or_config, env=None, progress: Progress | None = None) -> RunResult:
    """Python API: run a pipeline from a YAML path, a dict or a PipelineConfig."""
    from .config import load_config

    cfg = path_or_config if isinstance(path_or_config, PipelineConfig) else load_config(
        path_or_config, env)
    return run_pipeline(cfg, progress)


__all__ = ["run", "run_pipeline", "run_task", "RapidbyteError"]
