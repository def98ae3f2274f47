"""The incremental cursor of an HTTP stream: the committed value (Postgres text, as the
destination stored it) sent as a query parameter, and the filter ``cursor > last`` that
drops records an API returns again (``since`` parameters are often inclusive).
"""
from __future__ import annotations

import datetime as dt
import re

import pyarrow as pa

from ...errors import ConfigError, DataError
from ...pgtypes import PG_TYPE_KEY
from .config import Incremental

_PG_TIMESTAMP = re.compile(
    r"(\d{4,})-(\d\d)-(\d\d)(?:[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?"
    r"(?:([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?)?)?")
#: Arrow types a cursor field may have (ordered, with a text form to send)
_ORDERED = (pa.types.is_integer, pa.types.is_floating, pa.types.is_timestamp,
            pa.types.is_date, pa.types.is_string)


def check_cursor_field(stream: str, inc: Incremental, schema: pa.Schema) -> None:
    """ConfigError unless ``cursor_field`` is an ordered field of the records."""
    if inc.cursor_field not in schema.names:
        raise ConfigError(f"stream {stream}: incremental.cursor_field {inc.cursor_field!r} is "
                          f"not a field of the records (fields: {', '.join(schema.names)})")
    field = schema.field(inc.cursor_field)
    t = field.type
    numeric = (field.metadata or {}).get(PG_TYPE_KEY, b"").startswith(b"numeric")
    if numeric or not any(test(t) for test in _ORDERED):
        raise ConfigError(f"stream {stream}: incremental.cursor_field {inc.cursor_field!r} is "
                          f"{'numeric' if numeric else t}; a cursor must be an integer, float, date, "
                          "timestamp or text")


def _instant(text: str, where: str) -> dt.datetime:
    m = _PG_TIMESTAMP.fullmatch(text.strip())
    if m is None:
        raise DataError(f"{where}: the committed cursor {text!r} is not a date or timestamp")
    y, mo, d, hh, mi, ss, frac, sign, oh, om, osec = m.groups()
    offset = dt.timedelta(hours=int(oh or 0), minutes=int(om or 0), seconds=int(osec or 0))
    when = dt.datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0),
                       int((frac or "0").ljust(6, "0")), tzinfo=dt.timezone.utc)
    return when - offset if sign == "+" else when + offset


def param_value(inc: Incremental, committed: str, t: pa.DataType | None, where: str) -> str:
    """The committed cursor as the API expects it (``incremental.format``); ``t`` is the
    cursor field's type (None: judged from the text)."""
    fmt = inc.format
    if t is None:
        shape = _PG_TIMESTAMP.fullmatch(committed.strip())
        temporal, is_date = shape is not None, shape is not None and shape.group(4) is None
    else:
        temporal = pa.types.is_timestamp(t) or pa.types.is_date(t)
        is_date = pa.types.is_date(t)
    if fmt == "raw" or not temporal:
        return committed
    when = _instant(committed, where)
    if fmt == "auto":
        fmt = "date" if is_date else "iso8601"
    if fmt == "iso8601":
        text = when.strftime("%Y-%m-%dT%H:%M:%S")
        return text + (f".{when.microsecond:06d}" if when.microsecond else "") + "Z"
    if fmt == "unix":
        return str(int(when.timestamp()))
    if fmt == "unix_ms":
        return str(int(when.timestamp()) * 1000 + when.microsecond // 1000)
    if fmt == "date":
        return when.date().isoformat()
    return when.strftime(fmt)


def last_scalar(committed: str, t: pa.DataType, where: str) -> pa.Scalar:
    """The committed cursor as a scalar of the field's type (for ``cursor > last``)."""
    try:
        if pa.types.is_timestamp(t):
            return pa.scalar(_instant(committed, where), pa.timestamp("us", tz="UTC")).cast(t)
        if pa.types.is_date(t):
            return pa.scalar(_instant(committed, where).date(), t)
        if pa.types.is_integer(t):
            return pa.scalar(int(committed), t)
        if pa.types.is_floating(t):
            return pa.scalar(float(committed), t)
    except ValueError:
        raise DataError(f"{where}: the committed cursor {committed!r} is not a {t}") from None
    return pa.scalar(committed, pa.utf8())


def newer(batch: pa.RecordBatch, field: str, last: pa.Scalar) -> pa.RecordBatch:
    """The rows of ``batch`` whose cursor is above ``last`` (NULL cursors are dropped, as
    ``cursor > last`` drops them in SQL)."""
    # imported here: pyarrow.compute costs 0.1 s of start-up CPU (after pyarrow, measured on
    # a loaded 2-core machine) and only incremental reads need it
    import pyarrow.compute as pc

    keep = pc.greater(batch.column(field), last)
    if keep.null_count == 0 and pc.all(keep).as_py():
        return batch
    return batch.filter(keep)
