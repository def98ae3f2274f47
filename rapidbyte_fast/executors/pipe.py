"""One worker of a task: a reader thread → bounded queue → (transform thread → bounded
queue →) writer thread. Blocked queue operations wake up every ``POLL_SECS`` to notice that
another stage failed; optional compression of batches between the stages."""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .. import _impl, faults
from ..connector import KeyRange
from ..deferred import deferred
from ..errors import StageStopped

pa = deferred("pyarrow")
# the transform stage: loaded only by a pipeline with transforms
chain_mod = deferred("rapidbyte_fast.transforms.chain")

#: How often blocked queue operations wake up to notice that another stage failed.
POLL_SECS = 0.1
#: Called with (rows, bytes) after each batch written (the progress display).
OnRows = Callable[[int, int], None]
_END = object()


class _RangeEnd:
    """Queue item: every row of range ``index`` has been sent."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


class Frames:
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


@dataclass(frozen=True)
class PipeSettings:
    """What every pipe of a task shares."""

    queue_batches: int
    max_batch_bytes: int
    max_batch_rows: int
    #: raw COPY chunks (passthrough) instead of Arrow batches
    raw: bool
    frames: Frames


class Pipe:
    """One worker's threads, over its share of the key ranges."""

    def __init__(self, reader, writer, ranges: tuple[KeyRange, ...], chain: list,
                 settings: PipeSettings, stop: threading.Event,
                 fail: Callable[[BaseException], None], on_rows: OnRows | None,
                 name: str) -> None:
        self.reader, self.writer, self.ranges, self.chain = reader, writer, ranges, chain
        self.s, self.stop, self.fail, self.on_rows = settings, stop, fail, on_rows
        self.q: queue.Queue = queue.Queue(maxsize=settings.queue_batches)
        # with transforms: source → q_in → transform thread → q → destination
        self.q_in: queue.Queue = (queue.Queue(maxsize=settings.queue_batches) if chain
                                  else self.q)
        self.records_read = self.batches = self.rows_written = 0
        #: the once-committed loader the final commit finishes
        self.last_loader = None
        self.times = {"source_emit_wait_secs": 0.0, "dest_recv_wait_secs": 0.0,
                      "source_duration_secs": 0.0, "dest_duration_secs": 0.0,
                      "transform_wait_secs": 0.0}
        stages = [(self._read, "src"), (self._write, "dst")] + (
            [(self._transform, "xf")] if chain else [])
        #: set when each stage's thread has ended (Thread.join is not used: a join that a
        #: signal handler interrupts marks a running thread as stopped, CPython gh-90882)
        self._ended = [threading.Event() for _ in stages]
        self.threads = [threading.Thread(target=self._stage, args=(fn, ended),
                                         name=f"rbf-{tag}-{name}", daemon=True)
                        for (fn, tag), ended in zip(stages, self._ended)]

    @staticmethod
    def _stage(fn: Callable[[], None], ended: threading.Event) -> None:
        try:
            fn()
        finally:
            ended.set()

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every stage has ended (each for at most ``timeout``); True when all
        have."""
        return all([ended.wait(timeout) for ended in self._ended])

    def _put(self, item, q: queue.Queue | None = None,
             wait_key: str = "source_emit_wait_secs") -> None:
        q = self.q_in if q is None else q
        t0 = time.perf_counter()
        while True:
            if self.stop.is_set():
                raise StageStopped("destination stopped")
            try:
                q.put(item, timeout=POLL_SECS)
                break
            except queue.Full:
                continue
        self.times[wait_key] += time.perf_counter() - t0

    def _get(self, q: queue.Queue | None = None, wait_key: str = "dest_recv_wait_secs"):
        q = self.q if q is None else q
        t0 = time.perf_counter()
        while True:
            if self.stop.is_set():
                raise StageStopped("source stopped")
            try:
                item = q.get(timeout=POLL_SECS)
                break
            except queue.Empty:
                continue
        self.times[wait_key] += time.perf_counter() - t0
        return item

    def _transform(self) -> None:
        frames = self.s.frames
        try:
            while (item := self._get(self.q_in, "transform_wait_secs")) is not _END:
                if type(item) is _RangeEnd:
                    self._put(item, self.q, "transform_wait_secs")
                    continue
                for out in chain_mod.apply_chain(self.chain, frames.unpack(item)):
                    self._put(frames.pack(out), self.q, "transform_wait_secs")
            for out in chain_mod.finish_chain(self.chain):
                self._put(frames.pack(out), self.q, "transform_wait_secs")
            self._put(_END, self.q, "transform_wait_secs")
        except BaseException as exc:
            self.fail(exc)

    def _read_range(self, key_range: KeyRange) -> None:
        if self.s.raw:
            for chunk in self.reader.raw_chunks(key_range):
                self.batches += 1
                self._put(chunk)
                faults.hit("source.batch")
            return
        for batch in self.reader.batches(self.s.max_batch_bytes, self.s.max_batch_rows,
                                         key_range):
            self.records_read += batch.num_rows
            self.batches += 1
            self._put(self.s.frames.pack(batch))
            faults.hit("source.batch")

    def _read(self) -> None:
        t0 = time.perf_counter()
        try:
            for key_range in self.ranges:
                self._read_range(key_range)
                self._put(_RangeEnd(key_range.index))
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
                    self.writer.end_range(item.index)
                    continue
                if self.s.raw:
                    rows = self.writer.write_raw(item)
                    nbytes = len(item)
                else:
                    batch = self.s.frames.unpack(item)
                    self.writer.write(batch)
                    rows, nbytes = batch.num_rows, batch.nbytes
                self.rows_written += rows
                faults.hit("dest.batch")
                if self.on_rows is not None:
                    self.on_rows(rows, nbytes)
            self.last_loader = self.writer.finish()
        except BaseException as exc:
            self.fail(exc)
        finally:
            self.times["dest_duration_secs"] = time.perf_counter() - t0
