"""A Relation message → the column plan of its change batches (data columns, change
metadata, old key), with the same kinds and Arrow fields as a full load of the table.

Types are looked up by the OIDs the message names (the message, not today's catalog, says
which columns the changes after it carry) with the select list of ``pgtypes``' column query,
so that ``pgtypes.column_of_row`` decides kinds exactly as for a full load; the primary key comes
from the catalog, else the replica identity columns the message flags (REPLICA IDENTITY
USING INDEX).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ...column_plan import ColumnPlan, Kind
from ...deferred import deferred
from ...errors import SourceError
from ...pgtypes import PgColumn, column_of_row, qualified, type_defs
from .protocol import Relation

pa = deferred("pyarrow")

#: Change metadata after the data columns (see ``_py/pgoutput.py`` for their meaning), each
#: with its Arrow type's maker (pyarrow is imported by the first window, not the bootstrap).
META_COLUMNS = (
    ("_rb_op", Kind.TEXT, lambda: pa.utf8(), "text"),
    ("_rb_lsn", Kind.INT8, lambda: pa.int64(), "bigint"),
    ("_rb_seq", Kind.INT8, lambda: pa.int64(), "bigint"),
    ("_rb_commit_ts", Kind.TIMESTAMPTZ, lambda: pa.timestamp("us", tz="UTC"),
     "timestamp with time zone"),
    ("_rb_unchanged", Kind.BYTEA, lambda: pa.binary(), "bytea"),
)
OLD_KEY_PREFIX = "_rb_old_"

_TYPES_SQL = """
SELECT u.name, format_type(u.typ, u.typmod), coalesce(a.attnotnull, false),
       CASE WHEN bt.typnamespace = 'pg_catalog'::regnamespace THEN bt.typname::text
            ELSE format_type(bt.oid, NULL) END,
       t.typtype, CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE u.typmod END,
       coalesce(a.attndims, 0), et.typname, et.oid, bt.oid, u.typ,
       t.typnamespace <> 'pg_catalog'::regnamespace
           OR bt.typnamespace <> 'pg_catalog'::regnamespace
           OR coalesce(ut.typnamespace <> 'pg_catalog'::regnamespace, false)
FROM unnest(%s::text[], %s::oid[], %s::int4[]) WITH ORDINALITY AS u(name, typ, typmod, ord)
JOIN pg_type t ON t.oid = u.typ
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typname = '_' || et.typname
    AND et.typnamespace = 'pg_catalog'::regnamespace
LEFT JOIN pg_type ut ON ut.oid = bt.typelem
LEFT JOIN pg_attribute a ON a.attrelid = %s AND a.attname = u.name AND NOT a.attisdropped
ORDER BY u.ord
"""
_PK_SQL = """
SELECT a.attname FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = %s AND i.indisprimary
ORDER BY array_position(i.indkey::int2[], a.attnum)
"""


@dataclass(frozen=True)
class RelationPlan:
    """How the changes of one relation (as one Relation message describes it) are decoded."""

    relation: Relation
    columns: tuple[PgColumn, ...]
    key: tuple[str, ...]
    key_index: tuple[int, ...]
    plan: ColumnPlan          # data columns, then META_COLUMNS, then the old key columns
    schema: pa.Schema         # of the change batches (pg_type metadata, primary_key)

    @property
    def table(self) -> str:
        return f"{self.relation.schema}.{self.relation.name}"

    @property
    def text_only(self) -> bytes:
        """1 per data column whose type has no binary decoder of ours (carried as text)."""
        return bytes(int(c.as_text) for c in self.columns)

    def signature(self) -> tuple:
        """What the apply's schema evolution compares: names and Postgres types."""
        return tuple((c.name, c.pg_type) for c in self.columns)


def identity_problem(table: str, replident: str, primary_key: tuple[str, ...]) -> str | None:
    """Why updates and deletes of ``table`` cannot be applied by key (None: they can)."""
    fix = (f"add a primary key, or ALTER TABLE {table} REPLICA IDENTITY USING INDEX "
           f"<a unique index on NOT NULL columns>")
    if replident == "i" or (replident in ("d", "f") and primary_key):
        return None
    if replident == "n":
        return (f"table {table} has REPLICA IDENTITY NOTHING: its updates and deletes carry "
                f"no key; {fix}")
    identity = "FULL" if replident == "f" else "DEFAULT"
    return (f"table {table} has no primary key (REPLICA IDENTITY {identity}): its changes "
            f"cannot be applied by key; {fix}")


def primary_key(conn, relid: int) -> tuple[str, ...]:
    """Primary key columns of a table (``()`` when it has none)."""
    return tuple(r[0] for r in conn.execute(_PK_SQL, (relid,)).fetchall())


def resolve(conn, rel: Relation) -> RelationPlan:
    """The plan for the changes after Relation message ``rel``."""
    table = f"{rel.schema}.{rel.name}"
    names = [c.name for c in rel.columns]
    rows = conn.execute(_TYPES_SQL, (names, [c.type_oid for c in rel.columns],
                                     [c.typmod for c in rel.columns], rel.oid)).fetchall()
    if len(rows) != len(rel.columns):
        raise SourceError(f"table {table}: a column type of its Relation message no longer "
                          "exists in the catalog")
    cols = []
    for *row, type_oid, user_type in rows:
        col = column_of_row(*row)
        if user_type:
            col = replace(col, type_defs=tuple(type_defs(conn, type_oid)))
        cols.append(col)
    pk = primary_key(conn, rel.oid)
    key = pk if pk and all(k in names for k in pk) else ()
    if not key and rel.replident == "i":
        key = tuple(c.name for c in rel.columns if c.identity)
    problem = identity_problem(qualified(rel.schema, rel.name), rel.replident, key)
    if problem or not key:
        raise SourceError(problem or f"table {table}: its key columns are not published")
    clash = [n for n in names if n.startswith("_rb_")]
    if clash:
        raise SourceError(f"table {table}: column {clash[0]!r} clashes with the change "
                          "metadata columns (_rb_*); rename it to capture its changes")
    key_index = tuple(names.index(k) for k in key)
    return RelationPlan(rel, tuple(cols), key, key_index, _plan(cols, key_index),
                        _schema(cols, key, key_index))


def _plan(cols: list[PgColumn], key_index: tuple[int, ...]) -> ColumnPlan:
    old = [cols[i] for i in key_index]
    every = list(cols) + [None] * len(META_COLUMNS) + old
    return ColumnPlan(
        names=tuple(c.name for c in cols) + tuple(m[0] for m in META_COLUMNS)
        + tuple(OLD_KEY_PREFIX + c.name for c in old),
        kinds=tuple(int(c.kind) for c in cols) + tuple(int(m[1]) for m in META_COLUMNS)
        + tuple(int(c.kind) for c in old),
        scales=tuple(c.scale if c else 0 for c in every),
        precisions=tuple(c.precision if c else 0 for c in every),
        elem_kinds=tuple(int(c.elem_kind) if c else 0 for c in every),
        elem_oids=tuple(c.elem_oid if c else 0 for c in every),
    )


def _schema(cols: list[PgColumn], key: tuple[str, ...], key_index: tuple[int, ...]) -> pa.Schema:
    # every data column is nullable here: a delete carries only the key
    data = [c.field().with_nullable(True) for c in cols]
    meta = [pa.field(name, t(), nullable=name == "_rb_unchanged",
                     metadata={b"pg_type": pg.encode()}) for name, _, t, pg in META_COLUMNS]
    old = [data[i].with_name(OLD_KEY_PREFIX + cols[i].name) for i in key_index]
    return pa.schema(data + meta + old, metadata={b"primary_key": ",".join(key).encode()})
