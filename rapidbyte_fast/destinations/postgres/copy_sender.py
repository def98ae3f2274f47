"""Double-buffered COPY FROM STDIN: one buffer is filled by the encoder while the other is
sent to the server by a sender thread, so encoding and network/server time overlap."""
from __future__ import annotations

import queue
import threading
import time

import psycopg

from ...errors import StageStopped


class CopySender:
    """Owns two buffers; ``take()`` gives an empty one, ``send(buf)`` queues a full one."""

    def __init__(self, copy: psycopg.Copy, buffers: int = 2) -> None:
        self._copy = copy
        self._free: queue.Queue[bytearray] = queue.Queue()
        self._full: queue.Queue[bytearray | None] = queue.Queue()
        for _ in range(buffers):
            self._free.put(bytearray())
        self._error: BaseException | None = None
        self.flush_secs = 0.0
        self.bytes_sent = 0
        self._thread = threading.Thread(target=self._run, name="rbf-copy-sender", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (buf := self._full.get()) is not None:
            if self._error is None:
                t0 = time.perf_counter()
                try:
                    self._copy.write(memoryview(buf))
                    self.bytes_sent += len(buf)
                except BaseException as exc:  # handed to the encoder thread in take()/close()
                    self._error = exc
                self.flush_secs += time.perf_counter() - t0
            buf.clear()
            self._free.put(buf)

    def take(self) -> bytearray:
        """An empty buffer to encode into (waits while both are in flight)."""
        buf = self._free.get()
        self._raise()
        return buf

    def send(self, buf: bytearray) -> None:
        """Queue a filled buffer for sending."""
        self._full.put(buf)

    def close(self) -> None:
        """Wait until everything queued is sent; re-raise a send error."""
        self._full.put(None)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, StageStopped("COPY sender stopped")
            raise err
