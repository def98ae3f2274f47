"""The dead-letter queue: rejected rows kept in Postgres, in ``"<schema>".rbf_dead_letters``.

Each row records the run, pipeline and stream, the rejected record as JSON, every reason
it was rejected (``"rule: message"``) and a category (``validation``, ``load``, ...).
``DeadLetterStore.add`` has the shape of a transform's ``RejectSink``; it buffers and
writes with one COPY per ``batch_rows`` records, so a burst of rejects costs one round trip.

A store that belongs to one attempt of a load (``attempt``) writes its rows as not yet
committed; the load marks them committed (``mark_committed``) in the transaction that
commits the rows they were rejected from. The rows of an attempt that rolled back (a
failure, a retry) stay invisible and are deleted by the next run's first attempt, so a
retry never duplicates them.

Rows the destination itself refuses are found by the loader, inside its transaction: a
``DeadLetterTable`` writes them on that connection, so they commit (or roll back) with the
rows of their key range or checkpoint, in whichever process loads it.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import threading
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ..errors import DestinationError
from ..pgtypes import PG_TYPE_KEY, qualified, quote_ident, table_exists
from ..pgconn import connect
from ..deferred import deferred

pa = deferred("pyarrow")

TABLE = "rbf_dead_letters"

_COLUMNS = ("run_id", "pipeline", "stream", "record", "errors", "category", "attempt",
            "committed")

#: One dead letter: (stream, record as JSON, reasons, category).
Letter = tuple[str, str, list[str], str]


def ensure_table(conn: psycopg.Connection, schema: str) -> None:
    """Create the dead-letter table of ``schema`` (which exists) when missing; give one made
    before attempts existed their columns."""
    table = sql.Identifier(schema, TABLE)
    if table_exists(conn, schema, TABLE):
        conn.execute(sql.SQL(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS attempt text NOT NULL DEFAULT '', "
            "ADD COLUMN IF NOT EXISTS committed boolean NOT NULL DEFAULT true").format(table))
        return
    conn.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, run_id text NOT NULL,"
        " pipeline text NOT NULL, stream text NOT NULL, record jsonb NOT NULL,"
        " errors text[] NOT NULL, category text NOT NULL,"
        " created_at timestamptz NOT NULL DEFAULT now(),"
        " attempt text NOT NULL DEFAULT '', committed boolean NOT NULL DEFAULT true)"
    ).format(table))
    conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (pipeline, id)").format(
        sql.Identifier(f"{TABLE}_pipeline_idx"), table))


def _copy_rows(conn: psycopg.Connection, schema: str, rows: list[tuple]) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(schema, TABLE), sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)))
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


@dataclass(frozen=True)
class DeadLetterTable:
    """Where a load's refused rows go: written on the load's own connection, so they are
    committed with the rows they were refused from (picklable: range tasks carry it)."""

    schema: str
    pipeline: str
    run_id: str

    def write(self, conn: psycopg.Connection, letters: list[Letter]) -> None:
        """Add ``letters`` in ``conn``'s transaction (the table exists: ``ensure_table``)."""
        _copy_rows(conn, self.schema, [(self.run_id, self.pipeline, *letter, "", True)
                                       for letter in letters])


def _plain(value: Any) -> Any:
    """``value`` (as pyarrow's ``to_pylist`` gives it) as something JSON can hold; text
    forms follow Postgres input syntax so a record can be loaded again."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        # jsonb cannot store U+0000 (nor can Postgres text).
        return value.replace("\x00", "\ufffd")
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return "\\x" + value.hex()
    if isinstance(value, pa.MonthDayNano):
        micros = Decimal(value.nanoseconds) / 1000
        return f"{value.months} mons {value.days} days {micros} microseconds"
    if isinstance(value, dt.timedelta):
        return f"{value.days} days {value.seconds} seconds {value.microseconds} microseconds"
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _uuid_text(value: bytes | None) -> str | None:
    return None if value is None else str(uuid.UUID(bytes=value))


def _converter(field: pa.Field) -> Callable[[Any], Any]:
    is_uuid = (field.metadata or {}).get(PG_TYPE_KEY) == b"uuid"
    if is_uuid and pa.types.is_fixed_size_binary(field.type) and field.type.byte_width == 16:
        return _uuid_text
    return _plain


def records_json(batch: pa.RecordBatch, rows: pa.Array | list[int]) -> list[str]:
    """Rows ``rows`` of ``batch`` as JSON objects keyed by column name, in column order.

    Numbers stay numbers except non-finite floats and decimals (text, exact); timestamps
    are ISO 8601, bytea is ``\\x<hex>``, uuid columns are canonical uuid text.
    """
    taken = batch.take(rows)
    columns = [[convert(v) for v in column.to_pylist()]
               for convert, column in zip(map(_converter, batch.schema), taken.columns)]
    names = batch.schema.names
    return [json.dumps(dict(zip(names, values)), ensure_ascii=False, allow_nan=False)
            for values in zip(*columns)]


class DeadLetterStore:
    """Writes rejected records of one run of ``pipeline``; thread-safe. Records are written by
    ``flush()`` (and every ``batch_rows`` records), and visible once written, or (with an
    ``attempt``) once the load marks them committed; ``close()`` flushes."""

    def __init__(self, conninfo: str, schema: str, pipeline: str = "", run_id: str = "",
                 batch_rows: int = 1000, attempt: str = "") -> None:
        self.schema, self.pipeline, self.run_id = schema, pipeline, run_id
        #: the load attempt the rows belong to ("": rows are committed as written)
        self.attempt = attempt
        self.batch_rows = batch_rows
        #: records written so far
        self.written = 0
        self._where = f"dead-letter table {qualified(schema, TABLE)}"
        self._lock = threading.Lock()
        self._buffer: list[tuple[str, str, str, str, list[str], str]] = []
        self._conn: psycopg.Connection | None = connect(conninfo, self._where)
        try:
            self._create()
        except psycopg.Error as exc:
            self._conn.close()
            raise self._failed(exc) from None

    def _create(self) -> None:
        assert self._conn is not None
        # CREATE ... IF NOT EXISTS still needs CREATE privilege, so only when missing.
        if self._conn.execute("SELECT to_regnamespace(%s) IS NULL",
                              [quote_ident(self.schema)]).fetchone()[0]:
            self._conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                sql.Identifier(self.schema)))
        ensure_table(self._conn, self.schema)
        if self.attempt:
            # rows of earlier runs' attempts that rolled back (not this run's: streams
            # loading side by side each have an attempt in flight)
            self._conn.execute(sql.SQL(
                "DELETE FROM {} WHERE pipeline = %s AND run_id <> %s AND NOT committed"
            ).format(sql.Identifier(self.schema, TABLE)), [self.pipeline, self.run_id])

    def _failed(self, exc: psycopg.Error) -> DestinationError:
        return DestinationError(f"{self._where}: {' '.join(str(exc).split())}")

    def add(self, stream: str, record_json: str, errors: list[str], category: str) -> None:
        """Queue one rejected record (a ``RejectSink``)."""
        with self._lock:
            self._buffer.append((self.run_id, self.pipeline, stream, record_json, list(errors),
                                 category, self.attempt, not self.attempt))
            if len(self._buffer) >= self.batch_rows:
                self._write()

    def flush(self) -> None:
        """Write and commit every queued record."""
        with self._lock:
            self._write()

    def _write(self) -> None:
        if not self._buffer:
            return
        if self._conn is None:
            raise DestinationError(f"{self._where}: the store is closed")
        try:
            _copy_rows(self._conn, self.schema, self._buffer)
        except psycopg.Error as exc:
            raise self._failed(exc) from None
        self.written += len(self._buffer)
        self._buffer.clear()

    def mark_committed(self, conn: psycopg.Connection) -> None:
        """Write what is queued, then mark this attempt's rows committed in ``conn``'s
        transaction (the one that commits the load's rows)."""
        self.flush()
        conn.execute(sql.SQL("UPDATE {} SET committed = true WHERE run_id = %s AND attempt = %s "
                             "AND NOT committed").format(sql.Identifier(self.schema, TABLE)),
                     [self.run_id, self.attempt])

    def close(self) -> None:
        """Flush and disconnect."""
        with self._lock:
            try:
                self._write()
            finally:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None


def list_dead_letters(conninfo: str, schema: str, pipeline: str, limit: int = 100,
                      run_id: str | None = None) -> list[dict]:
    """The newest ``limit`` dead letters of ``pipeline`` (of one run if ``run_id``), newest
    first, as dicts with keys id, run_id, pipeline, stream, record (parsed JSON), errors,
    category, created_at. No table yet means no dead letters."""
    where = f"dead-letter table {qualified(schema, TABLE)}"
    with connect(conninfo, where) as conn:
        try:
            if not table_exists(conn, schema, TABLE):
                return []
            query = sql.SQL(
                "SELECT id, run_id, pipeline, stream, record, errors, category, created_at"
                " FROM {} WHERE pipeline = %s AND committed"
                " AND (%s::text IS NULL OR run_id = %s)"
                " ORDER BY id DESC LIMIT %s"
            ).format(sql.Identifier(schema, TABLE))
            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(query, [pipeline, run_id, run_id, limit]).fetchall()
        except psycopg.Error as exc:
            raise DestinationError(f"{where}: {' '.join(str(exc).split())}") from None
