"""The COPY BINARY stream format as both decoder twins see it: the file header, the decoder's
error codes and the DataErrors they become, and the error of a COPY OUT that libpq aborted.

Not a twin: the compiled and the Python decoder both call these cold-path helpers, so a
header is parsed, and a bad value worded, the same way whichever implementation runs.
"""
from __future__ import annotations

import struct

from .column_plan import COPY_BINARY_SIGNATURE, ColumnPlan, Kind
from .errors import ArrayShapeError, DataError, SourceError
from .kernel_inputs import located_error

_I32 = struct.Struct(">i")
_PREVIEW = 40  # bytes of a refused value shown in its error

# Decoder error codes (ext/copy_decode.pyx mirrors them in its E_* enum).
E_FIELD_COUNT = 1
E_FIELD_LENGTH = 2
E_TOO_LARGE = 3
E_JSONB_VERSION = 4
E_DATE_RANGE = 5
E_TIMESTAMP_RANGE = 6
E_INTERVAL_RANGE = 7
E_NUMERIC_MALFORMED = 8
E_NUMERIC_RANGE = 9
E_ARRAY_MALFORMED = 10
E_ARRAY_DIMS = 11
E_ARRAY_LBOUND = 12
E_INVALID_UTF8 = 13

_ONE_D_ONLY = ("only 1-D arrays with lower bound 1 become Arrow lists; declare the column "
               "with all its dimensions (e.g. integer[][]) to carry its values as exact text")


def data_error(
    plan: ColumnPlan, code: int, col: int, row: int, value: int = 0, text: str | bytes = "",
    elem: int = -1,
) -> DataError:
    """The DataError for decoder problem ``code`` at (column ``col``, stream row ``row``,
    array element ``elem`` when >= 0); ``text`` is the numeric's text (E_NUMERIC_RANGE) or
    the raw bytes (E_INVALID_UTF8)."""
    if code == E_FIELD_COUNT:
        return DataError(
            f"COPY row {row}: expected {len(plan.kinds)} fields, got {value}")
    where = ": "
    kind = Kind(plan.kinds[col])
    if elem >= 0:
        where = f", array element {elem + 1}: "
        kind = Kind(plan.elem_kinds[col])
    if code == E_FIELD_LENGTH:
        what = f"field length {value} is invalid for {kind.name.lower()}"
    elif code == E_TOO_LARGE:
        what = "more than 2 GiB of data in one batch (lower max_batch_bytes)"
    elif code == E_JSONB_VERSION:
        what = ("empty jsonb value" if value < 0
                else f"unsupported jsonb format version {value}")
    elif code == E_DATE_RANGE:
        what = f"date {value} days after 2000-01-01 is out of range for date32"
    elif code == E_TIMESTAMP_RANGE:
        what = f"timestamp {value} us after 2000-01-01 is out of range for timestamp[us]"
    elif code == E_INTERVAL_RANGE:
        what = f"interval time part of {value} us overflows month_day_nano_interval"
    elif code == E_NUMERIC_MALFORMED:
        what = "malformed numeric value"
    elif code == E_NUMERIC_RANGE:
        p, s = plan.precisions[col], plan.scales[col]
        what = f"numeric value {text} cannot be stored exactly as decimal128({p}, {s})"
    elif code == E_ARRAY_MALFORMED:
        what = "malformed array value"
    elif code == E_ARRAY_DIMS:
        what = f"array with {value} dimensions: {_ONE_D_ONLY}"
    elif code == E_ARRAY_LBOUND:
        what = f"array with lower bound {value}: {_ONE_D_ONLY}"
    elif code == E_INVALID_UTF8:
        shown = bytes(text[:_PREVIEW]).decode("utf-8", "backslashreplace")
        more = "..." if len(text) > _PREVIEW else ""
        what = f"text is not valid UTF-8 (value: {shown + more!r})"
    else:
        raise AssertionError(f"unknown error code {code}")
    shape = code in (E_ARRAY_DIMS, E_ARRAY_LBOUND)
    return located_error(plan.names[col], row, where + what,
                         cls=ArrayShapeError if shape else DataError)


def parse_header(buf: bytes | bytearray | memoryview) -> int:
    """Length of the COPY BINARY file header at the start of ``buf`` (0: need more bytes).

    Raises DataError on a wrong signature, on OIDs in the data or on an unknown critical flag.
    """
    mv = memoryview(buf).cast("B")
    sig = COPY_BINARY_SIGNATURE
    head = bytes(mv[: len(sig)])
    if head != sig[: len(head)]:
        raise DataError("COPY data does not start with the PGCOPY binary signature")
    if len(mv) < len(sig) + 8:
        return 0
    flags = _I32.unpack_from(mv, len(sig))[0] & 0xFFFFFFFF
    if flags & (1 << 16):
        raise DataError("COPY binary data with OIDs is not supported")
    if flags >> 17:
        raise DataError(f"COPY binary header has unknown critical flags 0x{flags:08x}")
    ext = _I32.unpack_from(mv, len(sig) + 4)[0]
    if ext < 0:
        raise DataError(f"COPY binary header has a negative extension length {ext}")
    total = len(sig) + 8 + ext
    return total if len(mv) >= total else 0


def copy_failed(libpq_message: bytes) -> SourceError:
    """The SourceError for a COPY OUT that libpq aborted (PQgetCopyData returned -2)."""
    msg = " ".join(libpq_message.decode("utf-8", "replace").split())
    return SourceError(f"COPY TO STDOUT failed: {msg or 'connection lost'}")
