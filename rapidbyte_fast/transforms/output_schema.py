"""What a transform's output schema may keep of its input's Postgres type metadata.

``pg_type``, ``pg_type_def`` and ``primary_key`` end up in destination DDL (column types,
CREATE DOMAIN defaults and checks, the key), so a transform's output keeps a field's metadata
only when the field is one of its input fields passed through (same Arrow type and the same
metadata), and keeps the primary key only if all its columns pass through under their names.
Metadata that a SQL expression or a WASM plugin made up is dropped: the destination then
maps the Arrow type itself. Shared by the sql and wasm transforms.
"""
from __future__ import annotations

import pyarrow as pa

from ..pgtypes import PRIMARY_KEY_KEY


def _described(field: pa.Field) -> tuple[pa.DataType, tuple]:
    return field.type, tuple(sorted((field.metadata or {}).items()))


def carried_schema(result: pa.Schema, source: pa.Schema) -> pa.Schema:
    """``result`` with field metadata kept only where it still describes the column, and the
    source's schema metadata, its primary key only if its columns pass through (same name,
    type and metadata as in ``source``)."""
    carried = {_described(f) for f in source if f.metadata}
    fields = [f if _described(f) in carried else f.remove_metadata() for f in result]
    meta = dict(source.metadata or {})
    key = meta.pop(PRIMARY_KEY_KEY, None)
    if key is not None:
        out = {f.name: _described(f) for f in fields if f.metadata}
        if all(k in source.names and out.get(k) == _described(source.field(k))
               for k in key.decode().split(",")):
            meta[PRIMARY_KEY_KEY] = key
    return pa.schema(fields, metadata=meta or None)
