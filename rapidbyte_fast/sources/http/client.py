"""HTTP requests for one reader: a pooled keep-alive client, retries, a rate limit.

urllib3 is the client: its ``PoolManager`` keeps ``concurrency`` connections alive per host
and is safe to share between threads; a request costs a few tens of microseconds of Python
and its socket reads release the GIL, so fetch threads overlap decoding. (httpx and
requests sit on similar pools with more Python per request; asyncio clients would need an
event loop beside the engine's threads.) Our own loop does the retries, so that
``Retry-After`` is honoured, the backoff is the configured one, and the last error names
the attempt count.

429, 5xx, timeouts and connection errors are retried with exponential backoff and jitter;
other statuses fail at once. Every URL and body excerpt in an error is masked.
"""
from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Callable, Mapping

import urllib3
from urllib3.exceptions import HTTPError as TransportError
from urllib3.exceptions import MaxRetryError, NewConnectionError
from urllib3.exceptions import TimeoutError as TransportTimeout

from ... import __version__
from ...errors import SourceError, StageStopped
from .config import HttpSourceConfig

#: The longest Retry-After we wait for (a server asking for more is an outage).
MAX_RETRY_AFTER_SECS = 600.0
_EXCERPT_BYTES = 200


@dataclass(frozen=True)
class Response:
    """A successful (2xx) response."""

    status: int
    body: bytes
    headers: Mapping[str, str]


class RateLimiter:
    """Spaces requests at least ``1 / requests_per_second`` apart, across threads."""

    def __init__(self, requests_per_second: float) -> None:
        self.interval = 1.0 / requests_per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            stop.wait(slot - now)


def retry_after_secs(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _MaskingFilter(logging.Filter):
    """Masks the secrets of every live client in urllib3's own log lines (its debug lines
    print request URLs, query parameters included)."""

    def __init__(self) -> None:
        super().__init__()
        self.masks: weakref.WeakSet = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.masks:
            text = record.getMessage()
            for mask in list(self.masks):
                text = mask(text)
            record.msg, record.args = text, ()
        return True


_LOG_MASKING = _MaskingFilter()
for _name in ("urllib3", "urllib3.connectionpool", "urllib3.connection", "urllib3.poolmanager",
              "urllib3.response", "urllib3.util.retry"):
    logging.getLogger(_name).addFilter(_LOG_MASKING)


class HttpClient:
    """Sends one reader's requests (thread-safe)."""

    def __init__(self, cfg: HttpSourceConfig, headers: Mapping[str, str],
                 mask: Callable[[str], str], stop: threading.Event) -> None:
        self.cfg, self.mask, self.stop = cfg, mask, stop
        _LOG_MASKING.masks.add(mask)
        self.retry_count = 0
        self.limiter = (RateLimiter(cfg.rate_limit.requests_per_second)
                        if cfg.rate_limit else None)
        base = {"User-Agent": f"rapidbyte-fast/{__version__}", "Accept-Encoding": "gzip, deflate",
                "Accept": "application/json, application/x-ndjson;q=0.9, */*;q=0.1"}
        self.headers = {**base, **headers}
        # Redirects are followed by urllib3 (credentials are dropped on a cross-host
        # redirect); everything else is retried by request() below.
        self.pool = urllib3.PoolManager(
            maxsize=cfg.concurrency, headers=self.headers,
            timeout=urllib3.Timeout(connect=cfg.timeout, read=cfg.timeout),
            retries=urllib3.Retry(total=None, connect=0, read=0, status=0, other=0,
                                  redirect=5, raise_on_status=False))

    def request(self, method: str, url: str, body: bytes | None = None) -> Response:
        """The 2xx response to ``method url``, after retries; SourceError otherwise."""
        retry = self.cfg.retry
        headers = {"Content-Type": "application/json"} if body is not None else None
        attempt = 0
        while True:
            attempt += 1
            if self.stop.is_set():
                raise StageStopped("the read was cancelled")
            if self.limiter is not None:
                self.limiter.wait(self.stop)
            wait = None
            try:
                resp = self.pool.request(method, url, body=body, headers=headers,
                                         preload_content=True)
            except TransportError as exc:
                problem = self._transport_problem(exc)
            else:
                if 200 <= resp.status < 300:
                    return Response(resp.status, resp.data, resp.headers)
                problem = f"HTTP {resp.status} {resp.reason or ''}".rstrip()
                if resp.status != 429 and resp.status < 500:
                    excerpt = resp.data[:_EXCERPT_BYTES].decode("utf-8", "replace")
                    raise SourceError(self.mask(
                        f"{method} {url}: {problem}: {' '.join(excerpt.split())}"))
                wait = retry_after_secs(resp.headers.get("Retry-After"))
            if attempt >= retry.max_attempts:
                s = "s" if attempt > 1 else ""
                raise SourceError(self.mask(
                    f"{method} {url} failed after {attempt} attempt{s}: {problem}"))
            if wait is None:
                cap = min(retry.max_delay_secs, retry.min_delay_secs * 2 ** (attempt - 1))
                wait = random.uniform(cap / 2, cap)
            self.retry_count += 1
            self.stop.wait(min(wait, MAX_RETRY_AFTER_SECS))

    def _transport_problem(self, exc: TransportError) -> str:
        reason = exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc
        # (a refused connection is a NewConnectionError, itself a ConnectTimeoutError)
        if isinstance(reason, TransportTimeout) and not isinstance(reason, NewConnectionError):
            return f"timed out (timeout {self.cfg.timeout:g} s)"
        return f"connection error: {' '.join(str(reason).split())[:160]}"

    def close(self) -> None:
        self.pool.clear()
