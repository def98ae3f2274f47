"""Postgres types and identifiers: catalog introspection, kinds, Arrow fields and DDL types.

A column's Postgres type travels in Arrow field metadata (``pg_type``, exactly as
``format_type`` prints it) so that the destination recreates the same type. Types without a
binary decoder of ours are read as ``col::text`` and carried as text (DESIGN §5).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import pyarrow as pa

from .column_plan import ColumnPlan, Kind, kind_for_arrow
from .errors import ConfigError, DataError, SourceError

MAX_IDENT_BYTES = 63
PG_TYPE_KEY = b"pg_type"
PRIMARY_KEY_KEY = b"primary_key"

#: Base types decoded from their binary form; everything else is selected as ``::text``.
_BINARY_KINDS = {
    "bool": Kind.BOOL, "int2": Kind.INT2, "int4": Kind.INT4, "int8": Kind.INT8,
    "float4": Kind.FLOAT4, "float8": Kind.FLOAT8,
    "text": Kind.TEXT, "varchar": Kind.TEXT, "bpchar": Kind.TEXT, "name": Kind.TEXT,
    "json": Kind.TEXT, "bytea": Kind.BYTEA, "date": Kind.DATE, "time": Kind.TIME,
    "timestamp": Kind.TIMESTAMP, "timestamptz": Kind.TIMESTAMPTZ, "interval": Kind.INTERVAL,
    "uuid": Kind.UUID, "jsonb": Kind.JSONB,
}
#: Target base types whose binary receive function accepts our kind's bytes as they are.
_BINARY_TARGETS = {
    Kind.BOOL: {"bool"}, Kind.INT2: {"int2"}, Kind.INT4: {"int4"}, Kind.INT8: {"int8"},
    Kind.FLOAT4: {"float4"}, Kind.FLOAT8: {"float8"},
    Kind.TEXT: {"text", "varchar", "bpchar", "name", "json"},
    Kind.BYTEA: {"bytea"}, Kind.DATE: {"date"}, Kind.TIME: {"time"},
    Kind.TIMESTAMP: {"timestamp"}, Kind.TIMESTAMPTZ: {"timestamptz"},
    Kind.INTERVAL: {"interval"}, Kind.UUID: {"uuid"}, Kind.NUMERIC: {"numeric"},
    Kind.NUMERIC_TEXT: {"numeric"}, Kind.JSONB: {"jsonb"},
}

# format_type() output: optional schema, a (possibly quoted, multi-word) name, typmods,
# time zone suffix and array brackets. Anything else is refused before it reaches DDL.
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_TYPE_RE = re.compile(
    rf"^(?:{_IDENT}\.)?(?:{_IDENT}(?: [A-Za-z_][A-Za-z0-9_]*)*)"
    r"(?:\(\s*-?\d+(?:\s*,\s*-?\d+)?\s*\))?"
    r"(?: with(?:out)? time zone)?(?:\[\])*$"
)


def quote_ident(name: str) -> str:
    """A Postgres identifier, always quoted (so case, spaces and keywords survive)."""
    if "\x00" in name:
        raise ConfigError(f"identifier {name!r} contains a NUL character")
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    """``"schema"."table"``."""
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def split_table(name: str, default_schema: str) -> tuple[str, str]:
    """``schema.table`` or ``table`` (with ``"quoted.parts"``) → (schema, table)."""
    parts = re.findall(r'"((?:[^"]|"")*)"|([^."]+)', name)
    idents = [q.replace('""', '"') if q else u for q, u in parts]
    if len(idents) == 1:
        return default_schema, idents[0]
    if len(idents) == 2:
        return idents[0], idents[1]
    raise ConfigError(f"stream name {name!r}: expected 'table' or 'schema.table'")


def derived_name(base: str, tag: str) -> str:
    """``base`` + ``tag`` kept within 63 bytes by a hash suffix, so derived names never
    collide or get silently truncated by Postgres."""
    name = f"{base}{tag}"
    if len(name.encode()) <= MAX_IDENT_BYTES:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    keep = MAX_IDENT_BYTES - len(tag.encode()) - 9
    head = base.encode()[:keep].decode("utf-8", "ignore")
    return f"{head}_{digest}{tag}"


def check_type_sql(pg_type: str, where: str) -> str:
    """Refuse anything that is not a plain type name before it is spliced into DDL."""
    if not _TYPE_RE.match(pg_type):
        raise DataError(f"{where}: {pg_type!r} is not a valid Postgres type name")
    return pg_type


@dataclass(frozen=True)
class PgColumn:
    """One source column: its Postgres type, how we read it and how we carry it."""

    name: str
    pg_type: str
    base_type: str
    typtype: str
    not_null: bool
    kind: Kind
    precision: int = 0
    scale: int = 0
    as_text: bool = False

    def select_sql(self) -> str:
        """Expression in the COPY query (``::text`` for types read in text form)."""
        return f"{quote_ident(self.name)}::text" if self.as_text else quote_ident(self.name)

    def field(self) -> pa.Field:
        """The Arrow field, carrying the Postgres type in metadata."""
        t = ColumnPlan((self.name,), (self.kind,), (self.scale,), (self.precision,)).arrow_type(0)
        return pa.field(self.name, t, nullable=not self.not_null,
                        metadata={PG_TYPE_KEY: self.pg_type.encode()})


@dataclass(frozen=True)
class PgTable:
    """A table's columns (in order) and primary key."""

    schema: str
    name: str
    columns: tuple[PgColumn, ...]
    primary_key: tuple[str, ...]

    def arrow_schema(self) -> pa.Schema:
        """Arrow schema of the table, with ``pg_type`` field and ``primary_key`` metadata."""
        meta = {PRIMARY_KEY_KEY: ",".join(self.primary_key).encode()} if self.primary_key else None
        return pa.schema([c.field() for c in self.columns], metadata=meta)

    def plan(self) -> ColumnPlan:
        """The kernels' column plan for reading this table."""
        return ColumnPlan(
            names=tuple(c.name for c in self.columns),
            kinds=tuple(int(c.kind) for c in self.columns),
            scales=tuple(c.scale for c in self.columns),
            precisions=tuple(c.precision for c in self.columns),
        )


_COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       bt.typname, t.typtype,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
_PK_SQL = """
SELECT a.attname
FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = %s::regclass AND i.indisprimary
ORDER BY array_position(i.indkey::int2[], a.attnum)
"""


def table_exists(conn, schema: str, table: str) -> bool:
    """True when ``schema.table`` is a table/view the connection can see."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (qualified(schema, table),)).fetchone()
    return bool(row[0])


def describe_table(conn, schema: str, table: str) -> PgTable:
    """Columns and primary key of ``schema.table`` from the catalog."""
    if not table_exists(conn, schema, table):
        raise SourceError(f"table {schema}.{table} does not exist")
    reg = qualified(schema, table)
    cols = tuple(_column(*row) for row in conn.execute(_COLUMNS_SQL, (reg,)).fetchall())
    pk = tuple(r[0] for r in conn.execute(_PK_SQL, (reg,)).fetchall())
    return PgTable(schema, table, cols, pk)


def _column(name: str, pg_type: str, not_null: bool, base: str, typtype: str, typmod: int):
    if base == "numeric":
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
        if typmod >= 0 and 0 < precision <= 38 and scale <= precision:
            return PgColumn(name, pg_type, base, typtype, not_null, Kind.NUMERIC, precision, scale)
        return PgColumn(name, pg_type, base, typtype, not_null, Kind.NUMERIC_TEXT)
    kind = _BINARY_KINDS.get(base)
    if kind is not None:
        return PgColumn(name, pg_type, base, typtype, not_null, kind)
    if typtype == "e":  # an enum's binary form is its label
        return PgColumn(name, pg_type, base, typtype, not_null, Kind.TEXT)
    return PgColumn(name, pg_type, base, typtype, not_null, Kind.TEXT, as_text=True)


def project(table: PgTable, columns: tuple[str, ...] | None, stream: str) -> PgTable:
    """The table restricted to ``columns`` (in the order given), or all columns."""
    if columns is None:
        return table
    by_name = {c.name: c for c in table.columns}
    missing = [c for c in columns if c not in by_name]
    if missing:
        raise ConfigError(
            f"stream {stream}: columns {', '.join(missing)} not in table "
            f"{table.schema}.{table.name} (has: {', '.join(by_name)})"
        )
    return PgTable(table.schema, table.name, tuple(by_name[c] for c in columns),
                   tuple(k for k in table.primary_key if k in columns))


# Arrow-native types (no pg_type metadata) → the Postgres type a data engineer expects.
def pg_type_for_arrow(t: pa.DataType) -> str:
    """Postgres type for an Arrow type that carries no ``pg_type`` metadata."""
    if pa.types.is_dictionary(t):
        return pg_type_for_arrow(t.value_type)
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})" if t.precision <= 1000 else "numeric"
    if pa.types.is_timestamp(t):
        return "timestamp with time zone" if t.tz else "timestamp without time zone"
    simple = [
        (pa.types.is_boolean, "boolean"), (pa.types.is_int8, "smallint"),
        (pa.types.is_int16, "smallint"), (pa.types.is_int32, "integer"),
        (pa.types.is_int64, "bigint"), (pa.types.is_uint8, "smallint"),
        (pa.types.is_uint16, "integer"), (pa.types.is_uint32, "bigint"),
        (pa.types.is_uint64, "numeric(20,0)"), (pa.types.is_float16, "real"),
        (pa.types.is_float32, "real"), (pa.types.is_float64, "double precision"),
        (pa.types.is_string, "text"), (pa.types.is_large_string, "text"),
        (pa.types.is_binary, "bytea"), (pa.types.is_large_binary, "bytea"),
        (pa.types.is_fixed_size_binary, "bytea"), (pa.types.is_date, "date"),
        (pa.types.is_time, "time without time zone"), (pa.types.is_interval, "interval"),
    ]
    for test, name in simple:
        if test(t):
            return name
    raise DataError(f"Arrow type {t} has no Postgres mapping yet")


def field_pg_type(field: pa.Field) -> str:
    """The Postgres type a destination column gets for this Arrow field."""
    meta = field.metadata or {}
    if PG_TYPE_KEY in meta:
        return check_type_sql(meta[PG_TYPE_KEY].decode(), f"column {field.name}")
    return pg_type_for_arrow(field.type)


def _physical(t: pa.DataType) -> pa.DataType:
    """The Arrow type our kernels read for a value of type ``t``."""
    if pa.types.is_dictionary(t):
        return _physical(t.value_type)
    if pa.types.is_large_string(t):
        return pa.utf8()
    if pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_int8(t) or pa.types.is_uint8(t):
        return pa.int16()
    if pa.types.is_uint16(t):
        return pa.int32()
    if pa.types.is_uint32(t):
        return pa.int64()
    if pa.types.is_uint64(t):
        return pa.decimal128(20, 0)
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_date64(t):
        return pa.date32()
    if pa.types.is_time(t):
        return pa.time64("us")
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz="UTC" if t.tz else None)
    if pa.types.is_fixed_size_binary(t) and t.byte_width != 16:
        return pa.binary()
    return t


@dataclass(frozen=True)
class WritePlan:
    """How batches of one Arrow schema are encoded for one destination table."""

    plan: ColumnPlan
    arrow_types: tuple[pa.DataType, ...]
    binary_ok: bool


def write_plan(schema: pa.Schema, target_base_types: dict[str, str] | None = None) -> WritePlan:
    """Kinds for encoding ``schema``; ``binary_ok`` is False when some target column cannot
    receive our binary form (then COPY runs in text format and Postgres parses the text)."""
    kinds, scales, precisions, types = [], [], [], []
    binary_ok = True
    for f in schema:
        t = _physical(f.type)
        pg_type = field_pg_type(f)
        try:
            kind, precision, scale = kind_for_arrow(t)
        except KeyError:
            raise DataError(f"column {f.name}: Arrow type {f.type} is not supported yet") from None
        base = pg_type.split("(")[0].split("[")[0].strip()
        if kind == Kind.TEXT and base == "jsonb":
            kind = Kind.JSONB
        elif kind == Kind.TEXT and base == "numeric":
            kind = Kind.NUMERIC_TEXT
        target = (target_base_types or {}).get(f.name) or _base_of(pg_type)
        if target not in _BINARY_TARGETS.get(kind, ()):
            binary_ok = False
        kinds.append(int(kind))
        scales.append(scale)
        precisions.append(precision)
        types.append(t)
    plan = ColumnPlan(tuple(schema.names), tuple(kinds), tuple(scales), tuple(precisions))
    return WritePlan(plan, tuple(types), binary_ok)


_BASE_NAMES = {
    "boolean": "bool", "smallint": "int2", "integer": "int4", "bigint": "int8", "real": "float4",
    "double precision": "float8", "text": "text", "character varying": "varchar",
    "character": "bpchar", "name": "name", "json": "json", "jsonb": "jsonb", "bytea": "bytea",
    "date": "date", "time without time zone": "time", "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz", "interval": "interval", "uuid": "uuid",
    "numeric": "numeric",
}


def _base_of(pg_type: str) -> str:
    """Catalog name (``int4``) of a format_type name (``integer``); '' if not a known base."""
    if pg_type.endswith("[]"):
        return ""
    plain = re.sub(r"\(.*?\)", "", pg_type).strip()
    return _BASE_NAMES.get(plain, "")


def conform(batch: pa.RecordBatch, wp: WritePlan) -> pa.RecordBatch:
    """Cast columns whose Arrow type differs from what the kernels read (e.g. large_string)."""
    cols = list(batch.columns)
    changed = False
    for i, t in enumerate(wp.arrow_types):
        if cols[i].type != t:
            cols[i] = cols[i].cast(t)
            changed = True
    return pa.RecordBatch.from_arrays(cols, schema=None, names=batch.schema.names) if changed else batch
