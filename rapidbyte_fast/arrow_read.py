"""``rapidbyte_fast.read()``: a Postgres table (or a projection and filter of it) as a
``pyarrow.RecordBatchReader``, an Arrow C stream that polars, duckdb and pandas take as is,
and ``read_to_parquet()``, which streams one to a Parquet file.

It reads exactly as a pipeline's source does: the Postgres source connector describes the
table (identifiers validated against the catalog and always quoted), cuts it into the same
key ranges, and its COPY binary reader decodes them with the same kernels. ``parallel=N``
reads N ranges at once, one thread and connection each, all in one exported snapshot; the
decoders release the GIL, and a bounded queue keeps at most N batches waiting, so memory
stays a few batches whatever the table's size.
"""
from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from .connector import MAX_BATCH_BYTES, MAX_BATCH_ROWS, KeyRange, StreamInfo
from .errors import ConfigError, DataError
from .pgtypes import PgTable, qualified
from .pgurl import EMBEDDED_URL, URL_FORMS, url_conninfo, url_form_ok
from .redact import redact
from .sources.postgres import PostgresSourceConnector
from .sources.postgres.reader import PostgresReader


# read() builds no pipeline config: importing the config package (pydantic, YAML) took a
# fresh process's read of 1,000 rows from 0.71 s to 0.96 s (median of 7 alternated runs,
# load average 1.3; 0.3-0.6 s more on a loaded machine). These are the fields of
# ``source.config`` and of a stream that the Postgres source connector reads to describe,
# cut and read a table.
@dataclass(frozen=True)
class _Source:
    """``source.config`` of a read: tables without a schema are in ``public``."""

    schema_name: str = "public"


@dataclass(frozen=True)
class _Stream:
    """The stream of a read: the table and its columns (all when None)."""

    name: str
    columns: tuple[str, ...] | None
    partition_key: str | None = None


def read(url: str, table: str, columns: Sequence[str] | None = None, where: str | None = None,
         parallel: int | None = None, *, batch_rows: int = MAX_BATCH_ROWS,
         batch_bytes: int = MAX_BATCH_BYTES) -> pa.RecordBatchReader:
    """Read ``table`` (``"name"`` in schema public, or ``"schema.name"``) of the database at
    ``url`` (a libpq URL or key=value conninfo) as Arrow record batches.

    ``columns`` projects (in the order given; names are checked against the catalog and
    quoted). ``where`` is a SQL boolean expression over the table's columns (the table is
    aliased ``t``); it is spliced into the query as written, so it must be trusted SQL, like
    a view's definition, never text from an untrusted user. It runs in a read-only
    transaction. ``parallel=N`` reads N key ranges concurrently in one snapshot: batches then
    arrive in no particular order across ranges (``None`` or 1 keeps the table's scan order
    within one connection). Each batch holds at most ``batch_rows`` rows and about
    ``batch_bytes`` bytes.

    The table is described, and ``where`` checked, before this returns: a missing table or
    column, a bad URL or a failing ``where`` raise a one-line ``RapidbyteError``. The
    reader's schema carries each column's Postgres type in field metadata (``pg_type``).
    """
    if batch_rows < 1 or batch_bytes < 1:
        raise ConfigError(f"read {table}: batch_rows and batch_bytes must be at least 1")
    src, info, table_def, ranges = _plan(url, table, columns, where, parallel)
    batches = (_one_reader(src, info, ranges, batch_rows, batch_bytes) if len(ranges) == 1
               else _parallel_readers(src, info, ranges, min(parallel or 1, len(ranges)),
                                      batch_rows, batch_bytes))
    return pa.RecordBatchReader.from_batches(table_def.arrow_schema(), batches)


def read_to_parquet(url: str, table: str, path: str | os.PathLike[str],
                    columns: Sequence[str] | None = None, where: str | None = None,
                    parallel: int | None = None, *, batch_rows: int = MAX_BATCH_ROWS,
                    batch_bytes: int = MAX_BATCH_BYTES, compression: str = "zstd") -> int:
    """Stream ``read(url, table, columns, where, parallel)`` into the Parquet file ``path``
    (one row group per batch), holding a few batches at most; returns the rows written.
    The file appears only when complete: it is written beside ``path`` and renamed."""
    import pyarrow.parquet as pq

    reader = read(url, table, columns, where, parallel, batch_rows=batch_rows,
                  batch_bytes=batch_bytes)
    dest = Path(path)
    part = dest.with_name(f".{dest.name}.part")
    rows = 0
    try:
        _check_parquet_types(table, reader.schema)
        with pq.ParquetWriter(part, reader.schema, compression=compression) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        part.replace(dest)
    finally:
        reader.close()
        part.unlink(missing_ok=True)
    return rows


def _check_parquet_types(table: str, schema: pa.Schema) -> None:
    """DataError naming the columns Parquet has no type for (e.g. interval, whose Arrow
    month-day-nano type Parquet cannot store losslessly)."""
    import pyarrow.parquet as pq

    bad = []
    for f in schema:
        try:
            pq.ParquetWriter(pa.BufferOutputStream(), pa.schema([f])).close()
        except pa.ArrowNotImplementedError:
            bad.append(f"{f.name} ({(f.metadata or {}).get(b'pg_type', b'').decode()})")
    if bad:
        raise DataError(f"read {table}: Parquet cannot store column {', '.join(bad)}; "
                        "leave it out with columns=[...]")


def _plan(url: str, table: str, columns: Sequence[str] | None, where: str | None,
          parallel: int | None) -> tuple[PostgresSourceConnector, StreamInfo, PgTable,
                                         tuple[KeyRange, ...]]:
    """Describe the table, check ``where``, cut the ranges; the catalog connection is closed
    again before returning (the readers open their own when the batches are first asked
    for)."""
    if not isinstance(url, str) or not isinstance(table, str) or not table:
        raise ConfigError("read: url and table must be non-empty strings")
    if isinstance(columns, str):
        raise ConfigError(f"read {table}: columns must be a list of names, not one string "
                          f"(columns=[{columns!r}])")
    if parallel is not None and (isinstance(parallel, bool) or not isinstance(parallel, int)
                                 or parallel < 1):
        raise ConfigError(f"read {table}: parallel must be a positive integer or None "
                          f"(got {parallel!r})")
    if where is not None and (not isinstance(where, str) or not where.strip()):
        raise ConfigError(f"read {table}: where must be a non-empty SQL expression")
    cols = None if columns is None else tuple(columns)
    if cols is not None:
        if not cols:
            raise ConfigError(f"read {table}: columns must not be empty (None reads them all)")
        bad = [c for c in cols if not isinstance(c, str) or not c]
        if bad:
            raise ConfigError(f"read {table}: columns must be non-empty strings "
                              f"(got {bad[0]!r})")
        if len(set(cols)) != len(cols):
            dup = sorted({c for c in cols if cols.count(c) > 1})
            raise ConfigError(f"read {table}: columns {', '.join(dup)} given more than once")
    stream = _Stream(table, cols)
    src = PostgresSourceConnector(_Source(), _endpoint(url))  # type: ignore[arg-type]
    try:
        # (the source describes lazily, for passthrough runs; a read decodes into Arrow)
        info = src.describe(stream).with_arrow()
        table_def: PgTable = info.extra["table"]
        if where is not None:
            _check_where(src, table, table_def, where)
        if parallel is None or parallel == 1:
            ranges: tuple[KeyRange, ...] = (KeyRange(0),)
        else:
            ranges = src.plan_ranges(info, stream, parallel, "replace", False, None,
                                     (0, 0)).ranges
        if where is not None:
            ranges = tuple(KeyRange(r.index, f"({where})" + (
                f" AND {r.predicate}" if r.predicate else "")) for r in ranges)
        return src, info, table_def, ranges
    finally:
        src.close()


def _endpoint(url: str) -> str:
    """The conninfo of ``url`` (as a pipeline's ``source.config: {url: ...}``: the default
    connect timeout unless the URL sets one; ``embedded`` starts the default embedded
    server)."""
    if not url_form_ok(url):
        raise ConfigError(f"read.url: must be {URL_FORMS} (got {redact(url)!r})")
    if url == EMBEDDED_URL:
        from . import embedded  # (starts a server: only for a read that names one)

        return embedded.ensure("default")
    return url_conninfo(url, f"read.url {redact(url)}")


def _check_where(src: PostgresSourceConnector, table: str, table_def: PgTable,
                 where: str) -> None:
    """Plan (not run) the filtered query, so a typo or a missing column fails here with one
    line, before any batch. The extended query protocol refuses a second statement."""
    import psycopg

    cols = ", ".join(c.select_sql() for c in table_def.columns)
    rel = qualified(table_def.schema, table_def.name)
    try:
        src.catalog.execute(f"EXPLAIN SELECT {cols} FROM {rel} AS t WHERE ({where})")
    except psycopg.Error as exc:
        raise ConfigError(f"read {table}: where {where!r} fails: "
                          f"{' '.join(str(exc).split())}") from None


def _one_reader(src: PostgresSourceConnector, info: StreamInfo, ranges: tuple[KeyRange, ...],
                batch_rows: int, batch_bytes: int) -> Iterator[pa.RecordBatch]:
    """The batches of one connection, in the caller's thread, in one read-only snapshot."""
    reader = src.reader(info, hold_snapshot=True)
    try:
        reader.open()
        yield from reader.batches(batch_bytes, batch_rows, ranges[0])
    finally:
        reader.close()


#: what a worker thread puts on the queue when its ranges are done
_DONE = object()


def _parallel_readers(src: PostgresSourceConnector, info: StreamInfo,
                      ranges: tuple[KeyRange, ...], workers: int, batch_rows: int,
                      batch_bytes: int) -> Iterator[pa.RecordBatch]:
    """The batches of ``workers`` threads reading ``ranges`` (worker w reads every w-th),
    in the order they are decoded. The queue holds ``workers`` batches: a slow consumer
    stalls the readers instead of growing memory."""
    exporter = src.exporter(info.name)
    out: queue.Queue = queue.Queue(maxsize=workers)
    stop = threading.Event()
    readers: list[PostgresReader] = []
    threads: list[threading.Thread] = []

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work(reader: PostgresReader, mine: tuple[KeyRange, ...]) -> None:
        try:
            for key_range in mine:
                for batch in reader.batches(batch_bytes, batch_rows, key_range):
                    if not put(batch):
                        return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 (raised again in the consumer's thread)
            put(exc)

    try:
        for w in range(workers):
            reader = src.reader(info, snapshot=exporter.snapshot)
            readers.append(reader)
            reader.open()
        for w, reader in enumerate(readers):
            t = threading.Thread(target=work, args=(reader, ranges[w::workers]),
                                 name=f"rbf-read-{info.name}-{w}", daemon=True)
            threads.append(t)
            t.start()
        running = workers
        while running:
            item = out.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        # also when the consumer stops early: stop the readers, then release everything
        stop.set()
        for r in readers:
            r.cancel()
        for t in threads:
            t.join()
        for r in readers:
            r.close()
        exporter.close()

