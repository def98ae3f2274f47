"""Postgres types and identifiers: catalog introspection, kinds, Arrow fields and DDL types.

A column's Postgres type travels in Arrow field metadata (``pg_type``, as ``format_type``
prints it, plus ``[]`` per extra declared array dimension) so that the destination recreates
the same type; a user-defined type (enum, domain, composite) also carries its definition
(``pg_type_def``) so that a destination lacking it can create it (``pgddl``). Types without
a binary decoder of ours are read as ``col::text`` and carried as text (DESIGN §5); 1-D
arrays of the kinds we decode become Arrow lists, arrays declared with more dimensions are
carried as text.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re
from dataclasses import dataclass, replace

from .column_plan import ColumnPlan, Kind, kind_for_arrow
from .deferred import deferred
from .errors import ConfigError, DataError, SourceError
from .lazy_schema import LazyField, LazySchema

pa = deferred("pyarrow")
# only over-long derived names are hashed: importing hashlib (OpenSSL) cost every read() in a
# fresh process 7 ms (-X importtime, hashlib + _hashlib)
hashlib = deferred("hashlib")

MAX_IDENT_BYTES = 63
PG_TYPE_KEY = b"pg_type"
PG_TYPE_DEF_KEY = b"pg_type_def"
PRIMARY_KEY_KEY = b"primary_key"

#: Built-in base types decoded from their binary form (by OID: a user type may have the same
#: name in another schema); everything else is selected as ``::text``.
_BINARY_KINDS = {
    "bool": Kind.BOOL, "int2": Kind.INT2, "int4": Kind.INT4, "int8": Kind.INT8,
    "float4": Kind.FLOAT4, "float8": Kind.FLOAT8,
    "text": Kind.TEXT, "varchar": Kind.TEXT, "bpchar": Kind.TEXT, "name": Kind.TEXT,
    "json": Kind.TEXT, "bytea": Kind.BYTEA, "date": Kind.DATE, "time": Kind.TIME,
    "timestamp": Kind.TIMESTAMP, "timestamptz": Kind.TIMESTAMPTZ, "interval": Kind.INTERVAL,
    "uuid": Kind.UUID, "jsonb": Kind.JSONB,
}
#: OIDs of the built-in types above (fixed in every PostgreSQL): binary arrays name them.
TYPE_OIDS = {
    "bool": 16, "bytea": 17, "name": 19, "int8": 20, "int2": 21, "int4": 23, "text": 25,
    "json": 114, "float4": 700, "float8": 701, "bpchar": 1042, "varchar": 1043,
    "date": 1082, "time": 1083, "timestamp": 1114, "timestamptz": 1184, "interval": 1186,
    "numeric": 1700, "uuid": 2950, "jsonb": 3802,
}
_KIND_OF_OID = {TYPE_OIDS[name]: kind for name, kind in _BINARY_KINDS.items()}
_NUMERIC_OID = TYPE_OIDS["numeric"]
#: The reg* types (regproc, regprocedure, regoper, regoperator, regclass, regtype, regconfig,
#: regdictionary, regnamespace, regrole, regcollation): their binary form is an OID that
#: names another object, or none, in another database, so they travel by name (text).
REG_TYPE_OIDS = frozenset({24, 2202, 2203, 2204, 2205, 2206, 3734, 3769, 4089, 4096, 4191})
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

# format_type() output: a one-word (possibly quoted, schema-qualified) name with typmods, or
# one of the SQL-standard names of several words that format_type prints, then array
# brackets. Anything else (``integer references t``) is refused before it reaches DDL.
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_TYPMOD = r"\(\s*-?\d+(?:\s*,\s*-?\d+)?\s*\)"
_INTERVAL_FIELDS = (r"year|month|day|hour|minute|second|year to month|day to hour"
                    r"|day to minute|day to second|hour to minute|hour to second"
                    r"|minute to second")
_TYPE_RE = re.compile(
    rf"^(?:(?:{_IDENT}\.)?{_IDENT}(?:{_TYPMOD})?"
    rf"|(?:bit varying|character varying|double precision)(?:{_TYPMOD})?"
    r"|(?:time|timestamp)(?:\(\d+\))? with(?:out)? time zone"
    rf"|interval (?:{_INTERVAL_FIELDS})(?:\(\d+\))?"
    r")(?:\[\])*$"
)


def quote_ident(name: str) -> str:
    """A Postgres identifier, always quoted (so case, spaces and keywords survive).

    Names longer than 63 bytes are refused: PostgreSQL would silently truncate them.
    """
    if "\x00" in name:
        raise ConfigError(f"identifier {name!r} contains a NUL character")
    if len(name.encode()) > MAX_IDENT_BYTES:
        raise ConfigError(f"identifier {name!r} is {len(name.encode())} bytes long; "
                          f"PostgreSQL names have at most {MAX_IDENT_BYTES} bytes")
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
    elem_kind: int = 0                 # ARRAY: the elements' kind
    elem_oid: int = 0                  # ARRAY: the elements' type OID
    type_defs: tuple[dict, ...] = ()   # user-defined types the column's type needs

    def select_sql(self) -> str:
        """Expression in the COPY query (``::text`` for types read in text form)."""
        return f"{quote_ident(self.name)}::text" if self.as_text else quote_ident(self.name)

    def field(self) -> pa.Field:
        """The Arrow field, carrying the Postgres type (and its definition) in metadata."""
        plan = ColumnPlan((self.name,), (self.kind,), (self.scale,), (self.precision,),
                          (self.elem_kind,), (self.elem_oid,))
        return pa.field(self.name, plan.arrow_type(0), nullable=not self.not_null,
                        metadata=self.field_metadata())

    def field_metadata(self) -> dict[bytes, bytes]:
        """The field's metadata: its Postgres type (and the type's definition)."""
        meta = {PG_TYPE_KEY: self.pg_type.encode()}
        if self.type_defs:
            meta[PG_TYPE_DEF_KEY] = json.dumps(self.type_defs).encode()
        return meta


@dataclass(frozen=True)
class PgTable:
    """A table's columns (in order) and primary key."""

    schema: str
    name: str
    columns: tuple[PgColumn, ...]
    primary_key: tuple[str, ...]
    validate_utf8: bool = False   # the database does not guarantee UTF-8 text (SQL_ASCII)

    def arrow_schema(self) -> pa.Schema:
        """Arrow schema of the table, with ``pg_type`` field and ``primary_key`` metadata."""
        return pa.schema([c.field() for c in self.columns], metadata=self._metadata())

    def lazy_schema(self) -> LazySchema:
        """``arrow_schema`` as a ``LazySchema``: the same names, nullability and metadata,
        without importing pyarrow until an Arrow type is asked for."""
        return LazySchema(tuple(LazyField(c.name, not c.not_null, c.field_metadata())
                                for c in self.columns), self._metadata(), self.arrow_schema)

    def _metadata(self) -> dict[bytes, bytes] | None:
        return {PRIMARY_KEY_KEY: ",".join(self.primary_key).encode()} if self.primary_key else None

    def column_plan(self) -> ColumnPlan:
        """The kernels' column plan for reading this table."""
        return ColumnPlan(
            names=tuple(c.name for c in self.columns),
            kinds=tuple(int(c.kind) for c in self.columns),
            scales=tuple(c.scale for c in self.columns),
            precisions=tuple(c.precision for c in self.columns),
            elem_kinds=tuple(int(c.elem_kind) for c in self.columns),
            elem_oids=tuple(c.elem_oid for c in self.columns),
            validate_utf8=self.validate_utf8,
        )


def primary_key_of(schema: pa.Schema) -> tuple[str, ...]:
    """The primary key columns a schema's metadata names (``()`` when none, or when one is
    not a column: a key column whose name holds a comma cannot be carried yet)."""
    raw = (schema.metadata or {}).get(PRIMARY_KEY_KEY)
    pk = tuple(raw.decode().split(",")) if raw else ()
    return pk if all(k in schema.names for k in pk) else ()


# The element of a built-in array type (``_int4`` → ``int4``; not int2vector and friends).
_COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       CASE WHEN bt.typnamespace = 'pg_catalog'::regnamespace THEN bt.typname::text
            ELSE format_type(bt.oid, NULL) END,
       t.typtype,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
       a.attndims, et.typname, et.oid, bt.oid, a.atttypid,
       t.typnamespace <> 'pg_catalog'::regnamespace
           OR bt.typnamespace <> 'pg_catalog'::regnamespace
           OR coalesce(ut.typnamespace <> 'pg_catalog'::regnamespace, false)
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typname = '_' || et.typname
    AND et.typnamespace = 'pg_catalog'::regnamespace
LEFT JOIN pg_type ut ON ut.oid = bt.typelem
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
    """Columns and primary key of ``schema.table`` from the catalog. Text read from a
    SQL_ASCII database is checked to be UTF-8 by the decoders (PgTable.validate_utf8)."""
    if not table_exists(conn, schema, table):
        raise SourceError(f"table {schema}.{table} does not exist")
    reg = qualified(schema, table)
    cols = []
    for *row, type_oid, user_type in conn.execute(_COLUMNS_SQL, (reg,)).fetchall():
        col = column_of_row(*row)
        if user_type:
            col = replace(col, type_defs=tuple(type_defs(conn, type_oid)))
        cols.append(col)
    pk = tuple(r[0] for r in conn.execute(_PK_SQL, (reg,)).fetchall())
    encoding = conn.info.parameter_status("server_encoding")
    return PgTable(schema, table, tuple(cols), pk, validate_utf8=encoding == "SQL_ASCII")


def column_of_row(name: str, pg_type: str, not_null: bool, base: str, typtype: str, typmod: int,
            ndims: int, elem: str | None, elem_oid: int | None, base_oid: int) -> PgColumn:
    """A column from its catalog row: ``base`` names the type behind a domain (schema-
    qualified unless built-in), ``elem`` the element of a built-in array type; kinds are
    decided by OID."""
    if elem_oid is not None and (elem_oid in _KIND_OF_OID or elem_oid == _NUMERIC_OID):
        if ndims > 1:  # any shape: exact as text, declared with all its dimensions
            return PgColumn(name, pg_type + "[]" * (ndims - 1), base, typtype, not_null,
                            Kind.TEXT, as_text=True)
        kind, precision, scale = _scalar_kind(elem_oid, typmod)
        return PgColumn(name, pg_type, base, typtype, not_null, Kind.ARRAY, precision, scale,
                        elem_kind=kind, elem_oid=elem_oid)
    if base_oid in _KIND_OF_OID or base_oid == _NUMERIC_OID:
        kind, precision, scale = _scalar_kind(base_oid, typmod)
        return PgColumn(name, pg_type, base, typtype, not_null, kind, precision, scale)
    if typtype == "e":  # an enum's binary form is its label
        return PgColumn(name, pg_type, base, typtype, not_null, Kind.TEXT)
    return PgColumn(name, pg_type, base, typtype, not_null, Kind.TEXT, as_text=True)


def _scalar_kind(oid: int, typmod: int) -> tuple[Kind, int, int]:
    """(kind, precision, scale) of a built-in base type we decode (typmod: numeric's)."""
    if oid == _NUMERIC_OID:
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
        if typmod >= 0 and 0 < precision <= 38 and scale <= precision:
            return Kind.NUMERIC, precision, scale
        return Kind.NUMERIC_TEXT, 0, 0
    return _KIND_OF_OID[oid], 0, 0


_TYPE_SQL = """
SELECT t.typtype, n.nspname, t.typname, format_type(t.oid, NULL), t.typbasetype,
       format_type(t.typbasetype, t.typtypmod), t.typnotnull, t.typdefault, t.typelem,
       t.typrelid, t.typcategory, t.typnamespace = 'pg_catalog'::regnamespace
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.oid = %s
"""


def type_defs(conn, oid: int) -> list[dict]:
    """Definitions of the user-defined enum, domain and composite types that type ``oid``
    needs (itself, its elements, a domain's base, a composite's attributes), the ones a type
    depends on first. Each is a dict with ``kind``, ``schema``, ``name``, ``ref`` (the name
    as ``format_type`` prints it) and ``labels`` (enum), ``base``/``not_null``/``default``/
    ``checks`` (domain) or ``attributes`` (composite). Built-in types need none; other kinds
    (base types of extensions, ranges) have no definition we can recreate."""
    out: list[dict] = []
    _collect_defs(conn, oid, out, set())
    return out


def _collect_defs(conn, oid: int, out: list[dict], seen: set[int]) -> None:
    if oid in seen:
        return
    seen.add(oid)
    row = conn.execute(_TYPE_SQL, (oid,)).fetchone()
    if row is None:
        return
    (typtype, schema, name, ref, base_oid, base, not_null, default, elem_oid, relid,
     category, builtin) = row
    if category == "A" and elem_oid:
        _collect_defs(conn, elem_oid, out, seen)
        return
    if builtin:
        return
    d: dict = {"schema": schema, "name": name, "ref": ref}
    if typtype == "e":
        labels = conn.execute("SELECT enumlabel FROM pg_enum WHERE enumtypid = %s "
                              "ORDER BY enumsortorder", (oid,)).fetchall()
        d.update(kind="enum", labels=[r[0] for r in labels])
    elif typtype == "d":
        _collect_defs(conn, base_oid, out, seen)
        checks = conn.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                              "WHERE contypid = %s AND contype = 'c' ORDER BY conname",
                              (oid,)).fetchall()
        d.update(kind="domain", base=base, not_null=not_null, default=default,
                 checks=[r[0] for r in checks])
    elif typtype == "c":
        attrs = conn.execute("SELECT attname, atttypid, format_type(atttypid, atttypmod) "
                             "FROM pg_attribute WHERE attrelid = %s AND attnum > 0 "
                             "AND NOT attisdropped ORDER BY attnum", (relid,)).fetchall()
        for _, att_oid, _ in attrs:
            _collect_defs(conn, att_oid, out, seen)
        d.update(kind="composite", attributes=[[a, t] for a, _, t in attrs])
    else:
        d.update(kind={"b": "base", "r": "range", "m": "multirange"}.get(typtype, typtype))
    out.append(d)


def field_type_defs(field: pa.Field) -> list[dict]:
    """The user-defined type definitions a field carries (see ``type_defs``)."""
    raw = (field.metadata or {}).get(PG_TYPE_DEF_KEY)
    return json.loads(raw) if raw else []


def carried_as_text(table: PgTable, names: frozenset[str]) -> PgTable:
    """The table with columns ``names`` read as ``col::text`` and carried as exact text
    (their declared type stays the destination's)."""
    return replace(table, columns=tuple(
        replace(c, kind=Kind.TEXT, as_text=True, precision=0, scale=0, elem_kind=0, elem_oid=0)
        if c.name in names else c for c in table.columns))


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
    return replace(table, columns=tuple(by_name[c] for c in columns),
                   primary_key=tuple(k for k in table.primary_key if k in columns))


# Arrow-native types (no pg_type metadata) → the Postgres type a data engineer expects.
def pg_type_for_arrow(t: pa.DataType) -> str:
    """Postgres type for an Arrow type that carries no ``pg_type`` metadata: lists of scalars
    become arrays, structs, maps and nested lists ``jsonb``."""
    if pa.types.is_dictionary(t):
        return pg_type_for_arrow(t.value_type)
    if _is_json(t):
        return "jsonb"
    if _is_list(t):
        return pg_type_for_arrow(t.value_type) + "[]"
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
        (pa.types.is_null, "text"),
    ]
    for test, name in simple:
        if test(t):
            return name
    raise DataError(f"Arrow type {t} has no Postgres mapping yet")


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _is_json(t: pa.DataType) -> bool:
    """Structs, maps and lists of anything but scalars: carried as JSON text."""
    if pa.types.is_struct(t) or pa.types.is_map(t):
        return True
    if _is_list(t):
        v = t.value_type.value_type if pa.types.is_dictionary(t.value_type) else t.value_type
        return _is_list(v) or _is_json(v)
    return False


def field_pg_type(field: pa.Field) -> str:
    """The Postgres type a destination column gets for this Arrow field."""
    meta = field.metadata or {}
    if PG_TYPE_KEY in meta:
        return check_type_sql(meta[PG_TYPE_KEY].decode(), f"column {field.name}")
    return pg_type_for_arrow(field.type)


def _physical(t: pa.DataType, as_json: bool = False) -> pa.DataType:
    """The Arrow type our kernels read for a value of type ``t`` (utf8 JSON for values that
    are ``as_json``: structs, maps, nested lists, lists going to a non-array type)."""
    if pa.types.is_dictionary(t):
        return _physical(t.value_type, as_json)
    if as_json or _is_json(t) or pa.types.is_null(t):
        return pa.utf8()
    if _is_list(t):
        return pa.list_(_physical(t.value_type))
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
class TargetEncoding:
    """How batches of one Arrow schema are encoded for one destination table."""

    plan: ColumnPlan
    arrow_types: tuple[pa.DataType, ...]
    binary_ok: bool


def target_encoding(schema: pa.Schema, target_base_types: dict[str, str] | None = None) -> TargetEncoding:
    """Kinds for encoding ``schema``; ``binary_ok`` is False when some target column cannot
    receive our binary form (then COPY runs in text format and Postgres parses the text).

    ``target_base_types`` maps column names to the catalog name of an existing target
    column's base type (``int4``, ``_int4`` for ``integer[]``, ``text`` for an enum);
    columns of tables we create have the field's own type.
    """
    kinds, scales, precisions, types, elem_kinds, elem_oids = [], [], [], [], [], []
    binary_ok = True
    for f in schema:
        pg_type = field_pg_type(f)
        by_ref = {d["ref"]: d for d in field_type_defs(f)}
        declared = declared_base(pg_type, by_ref)
        array = pg_type.endswith("[]") or declared.startswith("_")
        t = _physical(f.type, as_json=_is_list(f.type) and not array)
        elem_kind = elem_oid = 0
        try:
            if pa.types.is_list(t):
                elem, precision, scale = kind_for_arrow(t.value_type)
                elem_kind = _refine(elem, declared[1:])
                kind = Kind.ARRAY
            else:
                kind, precision, scale = kind_for_arrow(t)
                kind = _refine(kind, declared)
        except KeyError:
            raise DataError(f"column {f.name}: Arrow type {f.type} is not supported yet") from None
        target = (target_base_types or {}).get(f.name) or declared
        if kind == Kind.ARRAY:
            ok = target.startswith("_") and target[1:] in _BINARY_TARGETS.get(elem_kind, ())
            elem_oid = TYPE_OIDS[target[1:]] if ok else 0
        else:
            ok = target in _BINARY_TARGETS.get(kind, ())
        binary_ok = binary_ok and ok
        kinds.append(int(kind))
        scales.append(scale)
        precisions.append(precision)
        types.append(t)
        elem_kinds.append(int(elem_kind))
        elem_oids.append(elem_oid)
    plan = ColumnPlan(tuple(schema.names), tuple(kinds), tuple(scales), tuple(precisions),
                      tuple(elem_kinds), tuple(elem_oids))
    return TargetEncoding(plan, tuple(types), binary_ok)


def _refine(kind: Kind, declared: str) -> Kind:
    """Text that is jsonb or numeric is sent in their binary forms."""
    if kind == Kind.TEXT and declared == "jsonb":
        return Kind.JSONB
    if kind == Kind.TEXT and declared == "numeric":
        return Kind.NUMERIC_TEXT
    return kind


_BASE_NAMES = {
    "boolean": "bool", "smallint": "int2", "integer": "int4", "bigint": "int8", "real": "float4",
    "double precision": "float8", "text": "text", "character varying": "varchar",
    "character": "bpchar", "name": "name", "json": "json", "jsonb": "jsonb", "bytea": "bytea",
    "date": "date", "time without time zone": "time", "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz", "interval": "interval", "uuid": "uuid",
    "numeric": "numeric",
}


def declared_base(pg_type: str, defs_by_ref: dict[str, dict] | None = None) -> str:
    """Catalog name of the built-in type behind a ``format_type`` name (``integer`` →
    ``int4``, ``integer[]`` → ``_int4``), seeing through carried domain definitions (an
    enum is ``text``: its binary form is its label); '' when it is none of ours."""
    by_ref = defs_by_ref or {}
    core, dims = split_array_type(pg_type)
    d = by_ref.get(core)
    while d is not None and not dims and d["kind"] == "domain":
        core, dims = split_array_type(d["base"])
        d = by_ref.get(core)
    if d is not None:  # an array of a user type names its OID, which differs per database
        return "text" if d["kind"] == "enum" and not dims else ""
    name = _BASE_NAMES.get(re.sub(r"\(.*?\)", "", core).strip(), "")
    return "_" + name if dims and name else name


def split_array_type(pg_type: str) -> tuple[str, int]:
    """(element type, number of ``[]``) of a ``format_type`` name."""
    core, dims = pg_type, 0
    while core.endswith("[]"):
        core, dims = core[:-2], dims + 1
    return core, dims


def conform(batch: pa.RecordBatch, wp: TargetEncoding) -> pa.RecordBatch:
    """Cast columns whose Arrow type differs from what the kernels read (e.g. large_string);
    structs, maps and nested lists become JSON text."""
    cols = list(batch.columns)
    changed = False
    for i, t in enumerate(wp.arrow_types):
        if cols[i].type != t:
            if t == pa.utf8() and (_is_json(cols[i].type) or _is_list(cols[i].type)):
                cols[i] = json_text(cols[i])
            else:
                cols[i] = cols[i].cast(t)
            changed = True
    return pa.RecordBatch.from_arrays(cols, schema=None, names=batch.schema.names) if changed else batch


def json_text(arr: pa.Array) -> pa.Array:
    """Each value as JSON text, as PostgreSQL's to_jsonb writes it: maps and structs are
    objects, decimals exact numbers, non-finite numbers the strings "NaN"/"Infinity",
    bytes "\\x..." hex strings, dates and times ISO 8601."""
    values = arr.to_pylist(maps_as_pydicts="lossy")
    return pa.array([None if v is None else _json(v) for v in values], pa.utf8())


def _json(v) -> str:
    if v is None or isinstance(v, (bool, int, str)):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)}: {_json(x)}"
                               for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_json(x) for x in v) + "]"
    if isinstance(v, (float, decimal.Decimal)):
        if isinstance(v, float) and math.isfinite(v):
            return repr(v)
        if isinstance(v, decimal.Decimal) and v.is_finite():
            return format(v, "f")
        return '"NaN"' if v != v else ('"Infinity"' if v > 0 else '"-Infinity"')
    if isinstance(v, bytes):
        return json.dumps("\\x" + v.hex())
    if isinstance(v, (dt.date, dt.time)):  # a datetime is a date
        return json.dumps(v.isoformat())
    if isinstance(v, dt.timedelta):
        return json.dumps(str(v))
    if isinstance(v, pa.MonthDayNano):
        return _json({"months": v.months, "days": v.days, "nanoseconds": v.nanoseconds})
    return json.dumps(str(v), ensure_ascii=False)
