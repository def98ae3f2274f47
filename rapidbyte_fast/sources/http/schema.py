"""The schema of an HTTP stream: inferred from the value classes its first pages showed,
widened where they disagree, overridden per field by ``schema:``.

Inference (per field, over the whole inference window): only nulls → ``text``; booleans →
``boolean``; integers → ``bigint`` (beyond int64 → ``numeric``); integers and decimals →
``double precision`` (``numeric`` when an integer was beyond int64); ``YYYY-MM-DD`` strings
→ ``date``; ISO 8601 date-times (dates among them) → ``timestamp with time zone``; objects
and lists → ``jsonb``; any other mix → ``text`` (non-strings as their JSON text).

The schema is fixed once inferred: the destination creates its table from the first batch,
so a schema changing mid-stream could not be honoured. A later page that does not fit
(an unknown field, a decimal in a ``bigint`` field) fails the read with an error naming the
page, record and field, and how to declare the field's type.

Every Arrow field carries ``pg_type`` in its metadata. The kernel fills a few physical
kinds; declared types it does not fill (``integer``, ``real``, ``timestamp``) are cast
after it, and any other type (``uuid``, ``inet``, ...) travels as text for Postgres to parse.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import pyarrow as pa

from ..._impl import json_decode as jd
from ...column_plan import ColumnPlan
from ...pgtypes import PG_TYPE_KEY, declared_base

TEXT, BIGINT, FLOAT, BOOLEAN, NUMERIC = "text", "bigint", "double precision", "boolean", "numeric"
DATE, TIMESTAMPTZ, JSONB = "date", "timestamp with time zone", "jsonb"

_NUMBERS = jd.V_INT | jd.V_FLOAT | jd.V_BIGINT
_TIMES = jd.V_DATE | jd.V_TS

#: catalog base type → (kernel kind, Arrow type of the field)
_PHYSICAL: dict[str, tuple[int, pa.DataType]] = {
    "bool": (jd.K_BOOL, pa.bool_()),
    "int2": (jd.K_INT8, pa.int16()),
    "int4": (jd.K_INT8, pa.int32()),
    "int8": (jd.K_INT8, pa.int64()),
    "float4": (jd.K_FLOAT8, pa.float32()),
    "float8": (jd.K_FLOAT8, pa.float64()),
    "numeric": (jd.K_NUMERIC_TEXT, pa.utf8()),
    "date": (jd.K_DATE, pa.date32()),
    "timestamptz": (jd.K_TIMESTAMPTZ, pa.timestamp("us", tz="UTC")),
    "timestamp": (jd.K_TIMESTAMPTZ, pa.timestamp("us")),
    "json": (jd.K_JSONB, pa.utf8()),
    "jsonb": (jd.K_JSONB, pa.utf8()),
}
#: Arrow type of what the kernel fills, per kind
KERNEL_TYPES: dict[int, pa.DataType] = {
    jd.K_BOOL: pa.bool_(), jd.K_INT8: pa.int64(), jd.K_FLOAT8: pa.float64(),
    jd.K_DATE: pa.date32(), jd.K_TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),
    jd.K_TEXT: pa.utf8(), jd.K_NUMERIC_TEXT: pa.utf8(), jd.K_JSONB: pa.utf8(),
}
#: Short names users write → the names ``format_type`` prints (which the destination reads)
_ALIASES = {
    "int": "integer", "int4": "integer", "int2": "smallint", "int8": "bigint",
    "float": "double precision", "float8": "double precision", "float4": "real",
    "bool": "boolean", "decimal": "numeric", "varchar": "character varying",
    "char": "character", "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone", "time": "time without time zone",
    "timetz": "time with time zone",
}
_TYPMOD = re.compile(r"^([a-z0-9_ ]+?)\s*(\(.*\))?$")
_KIND_WORDS = {
    jd.K_BOOL: "a boolean", jd.K_INT8: "an integer", jd.K_FLOAT8: "a number",
    jd.K_DATE: "a YYYY-MM-DD date", jd.K_TIMESTAMPTZ: "an ISO 8601 date-time",
    jd.K_NUMERIC_TEXT: "a number",
}


def canonical(pg_type: str) -> str:
    """``pg_type`` with a short built-in name spelled as Postgres prints it
    (``decimal(12,2)`` → ``numeric(12,2)``, ``timestamptz`` → ``timestamp with time zone``)."""
    m = _TYPMOD.match(pg_type.strip().lower())
    if m is None or m.group(1) not in _ALIASES:
        return pg_type
    return _ALIASES[m.group(1)] + (m.group(2) or "")


def inferred_type(mask: int) -> str:
    """The Postgres type of a field whose values showed the classes in ``mask``."""
    m = mask & ~jd.V_NULL
    if m == 0:
        return TEXT
    if m == jd.V_BOOL:
        return BOOLEAN
    if m & ~_NUMBERS == 0:
        if m & jd.V_BIGINT:
            return NUMERIC
        return FLOAT if m & jd.V_FLOAT else BIGINT
    if m & ~_TIMES == 0:
        return TIMESTAMPTZ if m & jd.V_TS else DATE
    if m & ~(jd.V_OBJ | jd.V_ARR) == 0:
        return JSONB
    return TEXT


@dataclass(frozen=True)
class FieldPlan:
    """One column: its name, Postgres type, what the kernel fills and the Arrow type."""

    name: str
    pg_type: str
    kind: int
    arrow_type: pa.DataType

    @classmethod
    def of(cls, name: str, pg_type: str) -> "FieldPlan":
        pg_type = canonical(pg_type)
        kind, arrow_type = _PHYSICAL.get(declared_base(pg_type), (jd.K_TEXT, pa.utf8()))
        return cls(name, pg_type, kind, arrow_type)

    def field(self) -> pa.Field:
        return pa.field(self.name, self.arrow_type, nullable=True,
                        metadata={PG_TYPE_KEY: self.pg_type.encode()})

    def describe(self) -> str:
        """What a value of this column must be (for mismatch errors)."""
        return f"{_KIND_WORDS.get(self.kind, 'text')} (the {self.pg_type} the schema says)"


def plan_fields(names: list[str], masks: bytearray, overrides: dict[str, str]) -> list[FieldPlan]:
    """The columns: every field seen (in order of first appearance), typed by its classes
    unless ``overrides`` names its type, then the overridden fields never seen."""
    n = len(names)
    classes = struct.unpack(f"<{n}H", bytes(masks[:2 * n])) if n else ()
    out = [FieldPlan.of(name, overrides.get(name) or inferred_type(m))
           for name, m in zip(names, classes)]
    out += [FieldPlan.of(name, t) for name, t in overrides.items() if name not in names]
    return out


def arrow_schema(fields: list[FieldPlan]) -> pa.Schema:
    return pa.schema([f.field() for f in fields])


def fields_of(schema: pa.Schema) -> list[FieldPlan]:
    """The plans back from a schema this module made."""
    return [FieldPlan.of(f.name, f.metadata[PG_TYPE_KEY].decode()) for f in schema]


def kernel_plan(fields: list[FieldPlan]) -> ColumnPlan:
    """The sinks' plan: one kernel kind per column."""
    n = len(fields)
    return ColumnPlan(tuple(f.name for f in fields), tuple(f.kind for f in fields),
                      (0,) * n, (0,) * n)
