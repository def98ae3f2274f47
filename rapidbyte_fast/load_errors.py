"""Bad values met while loading, reported as DataErrors naming stream, column, row and value.

Three places refuse a value:

* the kernels (NUL in text, a date PostgreSQL cannot hold, ...): their DataError names the
  row within the batch; ``in_stream`` makes it the stream's row;
* the server during COPY FROM (out of range for an existing column, invalid JSON, numeric
  overflow, a domain's CHECK): its CONTEXT line names the COPY line, the column and, in
  text format, the value (``copy_error``);
* the server during a multi-row INSERT: nothing names the row, so ``insert_error`` rolls the
  failed transaction back and asks PostgreSQL (``pg_input_is_valid``, 16+) which literal of
  the statement it refuses.

``copy_error`` and ``insert_error`` return None for server errors that are not about a value
(SQLSTATE classes other than 22 and 23): the caller reports those as it always does.
Rows count from 0.
"""
from __future__ import annotations

import re

import psycopg

from . import _impl
from .column_plan import ColumnPlan
from .errors import DataError
from .kernel_inputs import located_error

#: SQLSTATE classes of bad values: data exceptions and integrity constraint violations.
_DATA_CLASSES = ("22", "23")
_COPY_CONTEXT = re.compile(
    r'^COPY .*?, line (?P<line>\d+)(?:, column (?P<column>.*?))?(?:: "(?P<value>.*)")?$')
_PREVIEW = 40
#: The escapes COPY text format gives the bytes it cannot hold as they are.
_COPY_UNESCAPE = {b"\\": b"\\", b"t": b"\t", b"n": b"\n", b"r": b"\r"}


def in_stream(exc: DataError, prefix: str, row_base: int) -> DataError:
    """A kernel's DataError with ``prefix`` (e.g. ``stream orders → raw.orders: ``) in front
    and its batch row moved to the stream row ``row_base + row``."""
    if getattr(exc, "row", None) is None:
        return DataError(f"{prefix}{exc}")
    return located_error(exc.column, row_base + exc.row, exc.detail, prefix, exc.sqlstate,
                         type(exc))


def copy_error(exc: psycopg.Error, prefix: str, row_base: int = 0) -> DataError | None:
    """For a bad value refused by COPY FROM: a DataError naming the column, the stream row
    (``row_base`` + the COPY line - 1) and, when the server shows it, the value."""
    if not is_refusal(exc.sqlstate):
        return None
    m = _copy_context(exc)
    if m is None:
        return DataError(prefix + pg_message(exc), sqlstate=exc.sqlstate)
    value = f" (value: {_preview(m['value'])})" if m["value"] is not None else ""
    detail = f": {pg_message(exc)}{value}"
    row = row_base + int(m["line"]) - 1
    if m["column"]:
        return located_error(m["column"], row, detail, prefix, exc.sqlstate)
    return DataError(f"{prefix}row {row}{detail}", sqlstate=exc.sqlstate)


def copy_position(exc: psycopg.Error) -> tuple[int | None, str | None]:
    """(line, column) of COPY FROM that a server error names (lines count from 1)."""
    m = _copy_context(exc)
    return (None, None) if m is None else (int(m["line"]), m["column"] or None)


def _copy_context(exc: psycopg.Error) -> re.Match | None:
    for line in (exc.diag.context or "").splitlines():
        m = _COPY_CONTEXT.match(line.strip())
        if m:
            return m
    return None


def insert_error(conn: psycopg.Connection, exc: psycopg.Error, prefix: str, plan: ColumnPlan,
                 cols: list, start: int, stop: int, pg_types: list[str],
                 row_base: int = 0) -> DataError | None:
    """For a bad value refused by an INSERT of rows [start, stop) of a batch (``cols`` as
    the kernel got them, ``pg_types`` the target columns' types in plan order): a DataError
    naming the first refused cell (stream row ``row_base + row``) and its value. Rolls
    ``conn`` back, so call it only when the load is failing anyway."""
    if not is_refusal(exc.sqlstate):
        return None
    rows = f"rows {row_base + start}..{row_base + stop - 1}"
    column = exc.diag.column_name
    if column:  # NOT NULL and CHECK violations name the column; their detail, the row
        return DataError(f"{prefix}column {column!r}, {rows}: {pg_message(exc)}",
                         sqlstate=exc.sqlstate)
    conn.rollback()
    for c, (name, pg_type) in enumerate(zip(plan.names, pg_types)):
        found = _first_invalid(conn, cols[c], start, stop, pg_type)
        if found is not None:
            row, text, reason = found
            return located_error(name, row_base + row, f": {reason} (value: {_preview(text)})",
                                 prefix, exc.sqlstate)
    return DataError(f"{prefix}{rows}: {pg_message(exc)}", sqlstate=exc.sqlstate)


def _first_invalid(conn: psycopg.Connection, col: tuple, start: int, stop: int,
                   pg_type: str) -> tuple[int, str, str] | None:
    """(row, text, server's reason) of the first value of ``col`` in [start, stop) that
    ``pg_type``'s input function refuses; None when all are accepted or PostgreSQL cannot
    tell (before 16, or a type that vanished with the rollback)."""
    texts = _text_forms(col, start, stop)
    try:
        found = conn.execute(
            "SELECT i, v, (pg_input_error_info(v, %s)).message "
            "FROM unnest(%s::text[]) WITH ORDINALITY AS u(v, i) "
            "WHERE v IS NOT NULL AND NOT pg_input_is_valid(v, %s) ORDER BY i LIMIT 1",
            (pg_type, texts, pg_type)).fetchone()
    except psycopg.Error:
        found = None
    conn.rollback()
    return None if found is None else (start + found[0] - 1, found[1], found[2])


def _text_forms(col: tuple, start: int, stop: int) -> list[str | None]:
    """The text input form of each value of rows [start, stop) of a kernel column input
    (None = NULL), as the active encoder writes it: one COPY text line per row, unescaped."""
    kind, scale, elem = col[0], col[1], col[6][0] if isinstance(col[6], tuple) else 0
    plan = ColumnPlan(("value",), (kind,), (scale,), (0,), (elem,), (0,))
    out = bytearray()
    _impl.copy_encode.encode_text(plan, [col], start, stop, out)
    return [None if line == b"\\N" else re.sub(rb"\\(.)", lambda m: _COPY_UNESCAPE[m[1]],
                                                  line).decode("utf-8", "replace")
            for line in bytes(out).split(b"\n")[:-1]]


def is_refusal(sqlstate: str | None) -> bool:
    """True for the SQLSTATE of a value the server refuses (not of a failure)."""
    return (sqlstate or "")[:2] in _DATA_CLASSES


def pg_message(exc: psycopg.Error) -> str:
    """A server error's primary message and detail on one line."""
    diag = exc.diag
    msg = diag.message_primary or str(exc)
    if diag.message_detail:
        msg += f" ({diag.message_detail})"
    if exc.sqlstate == "23505":  # only a target with a key refuses a row it has already
        msg += "; the target has a unique key: write_mode upsert updates rows by key"
    return " ".join(msg.split())


def _preview(text: str) -> str:
    return repr(text[:_PREVIEW] + ("..." if len(text) > _PREVIEW else ""))
