"""Reading one HTTP stream: pages fetched and decoded by a thread pool, gathered in the
caller's thread into Arrow record batches of the stream's fixed schema.

Without a schema from the planner (``StreamInfo.schema`` empty), ``open`` infers it from
the first ``infer_pages`` pages (at most ``INFER_MAX_BYTES`` of them), which are kept and
become the first batches: nothing is fetched twice and nothing is yielded before the
schema is known. Batches gather whole pages until ``max_rows`` or ``max_bytes``, then are
cut to fit both. Once the schema is fixed, each pool thread decodes the page it fetched
into arrays (the kernels release the GIL, so pages decode on every core while the caller
gathers and the destination loads); pages fetched before that are decoded by the caller.
Memory: the fetch window (``concurrency`` pages with their arrays) and the batch being
gathered.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import pyarrow as pa

from ...column_plan import ColumnSinks
from ...connector import CursorPlan, KeyRange, StreamInfo
from ...errors import ConfigError, DataError, RapidbyteError, SourceError, StageStopped
from . import cursor as cursors
from .auth import Masker, auth_headers, auth_params
from .client import HttpClient
from .config import HttpSourceConfig, HttpStream
from .decode import KeyTable, Page, fill, path_keys, survey
from .pagination import Paging, Request, fetch_pages, with_params
from .schema import KERNEL_TYPES, FieldPlan, arrow_schema, fields_of, kernel_plan, plan_fields
from .templates import render

#: The inference window stops early past this many response bytes (bounds memory when
#: pages are large).
INFER_MAX_BYTES = 32 << 20
#: Batches end at this many bytes even when the engine allows more: the engine queues up to
#: max_inflight_batches of them while Postgres ingests. 1M records of python -m bench http
#: through a 16-batch queue into Postgres: peak RSS 163-164 MB at 4 MB, 201-205 MB at 8 MB,
#: 213-215 MB at 16 MB; process CPU 2.76-2.82 s, 2.69-3.16 s and 3.01 s (two runs each;
#: wall times on the shared machine too noisy to rank).
BATCH_BYTES = 4 << 20


def endpoint_url(cfg: HttpSourceConfig, stream: HttpStream) -> str:
    """The stream's URL: ``path`` joined to ``base_url`` (or ``path`` if absolute)."""
    if stream.path.startswith(("http://", "https://")):
        return stream.path
    if not stream.path:
        return cfg.base_url
    return cfg.base_url.rstrip("/") + "/" + stream.path.lstrip("/")


def _param_text(value: object, now: dt.datetime) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return render(value, now) if isinstance(value, str) else str(value)


class HttpReader:
    """Reads one HTTP stream (a ``SourceReader``)."""

    def __init__(self, cfg: HttpSourceConfig, stream: HttpStream, info: StreamInfo,
                 cursor: CursorPlan | None = None, schema_only: bool = False) -> None:
        self.cfg, self.stream, self.cursor = cfg, stream, cursor
        #: only the schema is wanted: fetch no page past the inference window
        self.schema_only = schema_only
        self.timings = {"source_connect_secs": 0.0, "source_fetch_secs": 0.0,
                        "source_decode_secs": 0.0}
        self.bytes_read = 0
        self.pages_read = 0
        self.mask = Masker(cfg)
        self.stop = threading.Event()
        self.keys = KeyTable()
        self.fields: list[FieldPlan] | None = None
        self.inferred_pages = 0
        if len(info.schema):
            self.fields = fields_of(info.schema)
            self.keys = KeyTable([f.name for f in self.fields], info.extra["paths"])
        self._lock = threading.Lock()
        self._client: HttpClient | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pages: Iterator[Page] | None = None
        self._held: list[Page] = []
        self._last: pa.Scalar | None = None
        #: set once the fields are fixed (see _fix): pool threads then decode what they fetch
        self._decoding = False
        if self.fields is not None:
            self._fix()

    # -- SourceReader ----------------------------------------------------------------------
    def open(self) -> pa.Schema:
        t0 = time.perf_counter()
        self._client = HttpClient(self.cfg, {**self.cfg.headers, **auth_headers(self.cfg)},
                                  self.mask, self.stop)
        self._pool = ThreadPoolExecutor(self.cfg.concurrency,
                                        thread_name_prefix=f"rbf-http-{self.stream.name}")
        self.timings["source_connect_secs"] += time.perf_counter() - t0
        try:
            if self.fields is None:
                self._infer()
            schema = self.schema()
            if self.cursor is not None and self.cursor.value is not None:
                where = f"stream {self.stream.name}"
                t = schema.field(self.cursor.field).type
                self._last = cursors.last_scalar(self.cursor.value, t, where)
        except RapidbyteError as exc:
            raise self._masked(exc) from None
        return schema

    def schema(self) -> pa.Schema:
        return arrow_schema(self.fields or [])

    def batches(self, max_bytes: int, max_rows: int,
                key_range: KeyRange | None = None) -> Iterator[pa.RecordBatch]:
        try:
            yield from self._batches(max_bytes, max_rows)
        except RapidbyteError as exc:
            raise self._masked(exc) from None

    def cancel(self) -> None:
        self.stop.set()

    def _masked(self, exc: RapidbyteError) -> RapidbyteError:
        """The same error with the source's secrets masked in its message (a response body
        quoted in it may echo them)."""
        err = copy.copy(exc)
        err.args = tuple(self.mask(a) if isinstance(a, str) else a for a in exc.args)
        if isinstance(err, ConfigError):
            err.problems = [self.mask(p) for p in err.problems]
        return err

    def close(self) -> None:
        self.stop.set()
        if self._pages is not None:
            self._pages.close()
        if self._pool is not None:
            # no wait: a request in flight ends when client.close() drops its connection
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.close()

    @property
    def retry_count(self) -> int:
        return self._client.retry_count if self._client else 0

    # -- reading ---------------------------------------------------------------------------
    def _page_stream(self) -> Iterator[Page]:
        if self._pages is None:
            self._pages = fetch_pages(self._paging(), self._fetch, self.cfg.concurrency,
                                      self._pool)
        return self._pages

    def _paging(self) -> Paging:
        now = dt.datetime.now(dt.timezone.utc)
        params = {k: _param_text(v, now) for k, v in {**self.cfg.params, **self.stream.params}.items()}
        inc, cur = self.stream.incremental, self.cursor
        if inc is not None and cur is not None:
            value = None
            if cur.value is not None:
                known = self.fields is not None and cur.field in self.schema().names
                t = self.schema().field(cur.field).type if known else None
                value = cursors.param_value(inc, cur.value, t, f"stream {self.stream.name}")
            elif inc.initial_value is not None:
                value = render(inc.initial_value, now)
            if value is not None:
                params[inc.param] = value
        secret = auth_params(self.cfg)
        url = with_params(endpoint_url(self.cfg, self.stream), {**params, **secret})
        paging = Paging(self.stream, url, secret)
        if self.schema_only:
            paging.max_pages = min(paging.max_pages or self.stream.infer_pages,
                                   self.stream.infer_pages)
        return paging

    def _fetch(self, request: Request) -> Page:
        """Runs in a pool thread: one page, located."""
        t0 = time.perf_counter()
        body = None if self.stream.body is None else json.dumps(self.stream.body).encode()
        resp = self._client.request(self.stream.method, request.url, body)
        page = Page(self.stream.name, request.index, self.mask(request.url), resp.body,
                    resp.headers, path_keys(self.stream.data_path), self.stream.format == "ndjson")
        t1 = time.perf_counter()
        self._timed("source_fetch_secs", t1 - t0)
        if self._decoding and not page.empty:
            page.arrays = self._decode(page)
            self._timed("source_decode_secs", time.perf_counter() - t1)
        return page

    def _timed(self, stage: str, secs: float) -> None:
        """Add to a stage's time (summed over the pool's threads and the caller's)."""
        with self._lock:
            self.timings[stage] += secs

    def _fix(self) -> None:
        """The fields are known: plan the kernel's columns once and let the pool decode."""
        fields = self.fields
        self._schema = arrow_schema(fields)
        self._plan = kernel_plan(fields)
        self._kinds = bytes(f.kind for f in fields)
        self._decoding = True

    def _decode(self, page: Page) -> list[pa.Array]:
        """A non-empty page as one array per field (any thread: the key table, fields and
        plan are only read once fixed, and the kernels release the GIL)."""
        fields, keys, flatten = self.fields, self.keys, self.stream.flatten
        sinks = ColumnSinks(self._plan)
        records, sizes = survey(page, keys, flatten, bytearray(2 * len(keys.names)),
                                self._unknown)
        fill(page, keys, flatten, self._kinds, records, sizes, sinks,
             lambda col: fields[col].describe())
        arrays = sinks.finish()
        for i, f in enumerate(fields):
            arr = arrays[i]
            if arr.type == pa.utf8():
                try:
                    arr.validate(full=True)
                except pa.ArrowInvalid:
                    raise DataError(f"stream {self.stream.name}: field {f.name!r} has "
                                    "invalid UTF-8 in a response") from None
            if f.arrow_type != KERNEL_TYPES[f.kind]:
                try:
                    arrays[i] = arr.cast(f.arrow_type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise DataError(f"stream {self.stream.name}: field {f.name!r} does not "
                                    f"fit {f.pg_type}: {exc}") from None
        return arrays

    def _infer(self) -> None:
        """Learn the fields from the first pages (kept for ``batches``)."""
        masks, seen = bytearray(), 0
        for page in self._page_stream():
            self._held.append(page)
            if not page.empty:
                survey(page, self.keys, self.stream.flatten, masks, None)
            seen += len(page.body)
            if len(self._held) >= self.stream.infer_pages or seen >= INFER_MAX_BYTES:
                break
        self.inferred_pages = len(self._held)
        self.fields = plan_fields(self.keys.names, masks, self.stream.schema_)
        if not self.fields:
            raise SourceError(f"stream {self.stream.name}: the first {len(self._held)} page(s) "
                              "hold no records to infer the fields from (declare them under "
                              "schema:, e.g. id: bigint)")
        self.keys.names = [f.name for f in self.fields]   # declared, unseen fields last
        self._fix()
        if self.stream.incremental is not None:
            cursors.check_cursor_field(self.stream.name, self.stream.incremental, self.schema())

    def _unknown(self, name: str) -> str:
        how = (f"the schema was inferred from the first {self.inferred_pages} page(s)"
               if self.inferred_pages else "the schema was inferred when the run was planned")
        return (f"field {name!r} is not in the stream's schema ({how}); declare it under "
                f"schema: (e.g. {name}: text) or raise infer_pages")

    def _batches(self, max_bytes: int, max_rows: int) -> Iterator[pa.RecordBatch]:
        max_bytes = min(max_bytes, BATCH_BYTES)
        pending: list[list[pa.Array]] = []
        rows = size = 0
        held, self._held = self._held, []
        for page in self._chain(held):
            if self.stop.is_set():
                raise StageStopped("the read was cancelled")
            self.pages_read += 1
            self.bytes_read += len(page.body)
            if page.empty:
                continue
            arrays = page.arrays
            if arrays is None:  # fetched before the fields were fixed
                t0 = time.perf_counter()
                arrays = self._decode(page)
                self._timed("source_decode_secs", time.perf_counter() - t0)
            pending.append(arrays)
            rows += len(arrays[0]) if arrays else 0
            size += sum(a.nbytes for a in arrays)
            if rows >= max_rows or size >= max_bytes:
                yield from self._emit(pending, max_bytes, max_rows)
                pending, rows, size = [], 0, 0
        if pending:
            yield from self._emit(pending, max_bytes, max_rows)

    def _chain(self, held: list[Page]) -> Iterator[Page]:
        yield from held
        yield from self._page_stream()

    def _emit(self, pages: list[list[pa.Array]], max_bytes: int,
              max_rows: int) -> Iterator[pa.RecordBatch]:
        """One batch of the gathered pages' arrays, cut to fit ``max_bytes`` and
        ``max_rows``."""
        t0 = time.perf_counter()
        arrays = pages[0] if len(pages) == 1 else [
            pa.concat_arrays([p[i] for p in pages]) for i in range(len(self.fields))]
        batch = pa.RecordBatch.from_arrays(arrays, schema=self._schema)
        if self._last is not None:
            batch = cursors.newer(batch, self.cursor.field, self._last)
        self._timed("source_decode_secs", time.perf_counter() - t0)
        if batch.num_rows == 0:
            return
        rows = min(max_rows, max(1, batch.num_rows * max_bytes // max(batch.nbytes, 1)))
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)
