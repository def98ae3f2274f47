"""Pages of an HTTP stream into column sinks, through the ``json_decode`` kernel.

A ``Page`` is one response body with its record list located (``data_path``) and lookups
of single values (totals, next cursors, next URLs). ``KeyTable`` maps raw key paths to
columns. ``survey`` checks a page and learns its keys (or refuses keys the schema lacks);
``fill`` appends it to ``ColumnSinks``. Every fault becomes a ``DataError`` naming the
stream, the page, its (masked) URL, the byte offset and, for a value, the record and field.
"""
from __future__ import annotations

import codecs
import json
import re
import struct
from typing import Any, Callable, Mapping

from ..._impl import json_decode as jd
from ...column_plan import ColumnSinks
from ...errors import DataError

#: Flattened key paths become column names joined by this (``address__city``).
FLATTEN_JOIN = "__"
_EXCERPT = 40
_EMPTY_LIST = re.compile(rb"\[\s*\]")


def raw_key(name: str) -> bytes:
    """A key as JSON writes it between its quotes (how the kernel matches keys)."""
    return json.dumps(name, ensure_ascii=False)[1:-1].encode()


def path_keys(dotted: str) -> tuple[bytes, ...]:
    """``"a.b"`` → the raw keys (``()`` for an empty path)."""
    return tuple(raw_key(part) for part in dotted.split(".")) if dotted else ()


def column_name(raw_path: bytes) -> str:
    """The column name of a raw key path (flattened parts joined by ``__``)."""
    parts = raw_path.split(jd.PATH_SEP)
    return FLATTEN_JOIN.join(json.loads(b'"' + p + b'"') for p in parts)


class Page:
    """One response: its body, where its records are, and lookups of other values."""

    __slots__ = ("stream", "index", "url", "body", "headers", "start", "end", "ndjson", "whole",
                 "arrays")

    def __init__(self, stream: str, index: int, url: str, body: bytes,
                 headers: Mapping[str, str], data_path: tuple[bytes, ...], ndjson: bool) -> None:
        self.stream, self.index, self.url, self.body = stream, index, url, body
        self.headers, self.ndjson = headers, ndjson
        #: the records as one array per field, once a pool thread has decoded them
        self.arrays: list | None = None
        # a UTF-8 byte order mark (some servers send one) is not part of the JSON text
        self.start, self.end = (3 if body.startswith(codecs.BOM_UTF8) else 0), len(body)
        #: the records are the whole document: nothing but whitespace may follow them
        self.whole = not data_path
        if ndjson:
            return
        # the record list's end is found by survey: locating it would read it once more
        status, a, _ = jd.locate(body, self.start, len(body), data_path, False)
        if status == jd.UNKNOWN_KEY:
            where = ".".join(k.decode() for k in data_path[:a + 1])
            raise DataError(f"{self.where()}: data_path {where!r} is not in the response "
                            f"(starts {self.excerpt(0)})")
        if status != jd.OK:
            raise self.malformed(status, a)
        self.start = a
        if body.startswith(b"null", a):
            self.end = a

    def where(self) -> str:
        return f"stream {self.stream}: page {self.index} ({self.url})"

    @property
    def empty(self) -> bool:
        """True when the page holds no records."""
        if self.ndjson:
            return not self.body[self.start:].strip()
        return self.start == self.end or _EMPTY_LIST.match(self.body, self.start) is not None

    def value(self, dotted: str) -> Any:
        """The value at a dotted path of the body (None when absent)."""
        status, a, b = jd.locate(self.body, 0, len(self.body), path_keys(dotted))
        if status == jd.UNKNOWN_KEY:
            return None
        if status != jd.OK:
            raise self.malformed(status, a)
        return json.loads(self.body[a:b])

    def malformed(self, status: int, offset: int) -> DataError:
        what = "nested too deeply" if status == jd.TOO_DEEP else "malformed JSON"
        near = self.excerpt(max(0, offset - 10))
        return DataError(f"{self.where()}: {what} at byte {offset} (near {near})")

    def excerpt(self, start: int) -> str:
        """A few bytes of the body from ``start``, for messages."""
        return repr(self.body[start:start + _EXCERPT].decode("utf-8", "replace"))


class KeyTable:
    """Raw key paths → columns, in the layout the kernel reads."""

    def __init__(self, names: list[str] | None = None,
                 pairs: list[tuple[bytes, int]] = ()) -> None:
        self.names: list[str] = list(names or [])
        self.paths: list[bytes] = [raw for raw, _ in pairs]
        self.cols: list[int] = [col for _, col in pairs]
        self._pack()

    def pairs(self) -> list[tuple[bytes, int]]:
        """(raw path, column) of every key (picklable: the planner passes it back)."""
        return list(zip(self.paths, self.cols))

    def add(self, raw_path: bytes) -> int:
        """The column of a new key path: its name's column, or a new one."""
        name = column_name(raw_path)
        col = self.names.index(name) if name in self.names else len(self.names)
        if col == len(self.names):
            self.names.append(name)
        self.paths.append(raw_path)
        self.cols.append(col)
        self._pack()
        return col

    def _pack(self) -> None:
        offs = [0]
        for p in self.paths:
            offs.append(offs[-1] + len(p))
        self.packed = (b"".join(self.paths), struct.pack(f"<{len(offs)}i", *offs),
                       struct.pack(f"<{len(self.cols)}i", *self.cols))


def survey(page: Page, keys: KeyTable, flatten: bool, masks: bytearray,
           on_unknown: Callable[[str], str] | None) -> tuple[int, bytearray]:
    """(records, sizes) of a page; value classes ORed into ``masks``. New keys are learned
    when ``on_unknown`` is None, else refused with the message it makes of the name."""
    sizes, unknown = bytearray(), bytearray()
    while True:
        if len(masks) < 2 * len(keys.names):
            masks += bytes(2 * len(keys.names) - len(masks))
        status, records, offset = jd.survey(page.body, page.start, page.end, page.ndjson,
                                            *keys.packed, flatten, masks, sizes, unknown,
                                            on_unknown is None)
        if status == jd.OK:
            if page.whole and page.body[offset:].strip():
                raise page.malformed(jd.MALFORMED, offset + len(page.body[offset:]) -
                                     len(page.body[offset:].lstrip()))
            return records, sizes
        if status == jd.UNKNOWN_KEY:
            if on_unknown is not None:
                name = column_name(bytes(unknown))
                raise DataError(f"{page.where()}: {on_unknown(name)}")
            keys.add(bytes(unknown))
            continue
        if status == jd.NOT_OBJECT:
            raise DataError(f"{page.where()}: record {records + 1} is not a JSON object "
                            f"(starts {page.excerpt(offset)})")
        raise page.malformed(status, offset)


def fill(page: Page, keys: KeyTable, flatten: bool, kinds: bytes, records: int,
         sizes: bytearray, sinks: ColumnSinks, describe: Callable[[int], str]) -> None:
    """Append a surveyed page to ``sinks``; DataError when a value does not fit its column
    (``describe(col)`` says what the column is)."""
    status, row, offset, col = jd.fill(page.body, page.start, page.end, page.ndjson,
                                       *keys.packed, flatten, kinds, records, sizes,
                                       sinks.valid, sinks.offsets, sinks.data)
    if status == jd.OK:
        sinks.rows += row
        return
    name = keys.names[col] if col >= 0 else "?"
    if status == jd.DUP_KEY:
        raise DataError(f"{page.where()}, record {row + 1}: field {name!r} appears twice")
    if status == jd.MISMATCH:
        raise DataError(f"{page.where()}, record {row + 1}: field {name!r} has "
                        f"{page.excerpt(offset)}, which is not {describe(col)}")
    raise page.malformed(status, offset)
