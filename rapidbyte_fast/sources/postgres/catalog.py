"""What a Postgres source table carries beyond its columns, read from the catalog for the
tables a destination creates (``table_facts``): CHECK constraints, comments, defaults,
identity columns, secondary indexes and its foreign keys' names.

Definitions that need objects of the source database other than built-ins (a function, a
type, an operator class of an extension; for a default, a sequence) cannot be carried:
they are left out with a note, except a sequence's ``nextval`` default (and an identity),
which become an identity column.
"""
from __future__ import annotations

import psycopg

from ...pgtypes import PgTable, qualified
from ...table_facts import Check, Index, TableFacts

#: the objects outside pg_catalog that a catalog object (``classid``, ``objid``) needs
_OUTSIDE = """ARRAY(
    SELECT o.type || ' ' || o.identity
    FROM pg_depend d, pg_identify_object(d.refclassid, d.refobjid, 0) o
    WHERE d.classid = '{catalog}'::regclass AND d.objid = {objid} AND d.deptype = 'n'
      AND NOT (d.refclassid = 'pg_class'::regclass AND d.refobjid = %(oid)s)
      AND o.schema IS DISTINCT FROM 'pg_catalog')"""
_COLUMNS_OF = """ARRAY(
    SELECT DISTINCT a.attname::text FROM pg_depend d JOIN pg_attribute a
        ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
    WHERE d.classid = '{catalog}'::regclass AND d.objid = {objid}
      AND d.refclassid = 'pg_class'::regclass AND d.refobjid = %(oid)s)"""

_CHECKS_SQL = f"""
SELECT con.conname, pg_get_constraintdef(con.oid), con.convalidated,
       {_COLUMNS_OF.format(catalog="pg_constraint", objid="con.oid")},
       {_OUTSIDE.format(catalog="pg_constraint", objid="con.oid")}
FROM pg_constraint con WHERE con.conrelid = %(oid)s AND con.contype = 'c' ORDER BY 1
"""
_DEFAULTS_SQL = f"""
SELECT a.attname, pg_get_expr(ad.adbin, ad.adrelid), a.attidentity <> '',
       {_OUTSIDE.format(catalog="pg_attrdef", objid="ad.oid")},
       EXISTS (SELECT 1 FROM pg_depend d JOIN pg_class s ON s.oid = d.refobjid
               WHERE d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                 AND d.refclassid = 'pg_class'::regclass AND s.relkind = 'S')
FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
  AND (ad.oid IS NOT NULL OR a.attidentity <> '')
ORDER BY a.attnum
"""
#: secondary indexes (and those of UNIQUE constraints), not the primary key's
_INDEXES_SQL = f"""
SELECT c.relname, i.indisunique, pg_get_indexdef(i.indexrelid),
       'CREATE ' || CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END || 'INDEX '
           || quote_ident(c.relname) || ' ON ' || quote_ident(n.nspname) || '.'
           || quote_ident(t.relname) || ' ',
       {_COLUMNS_OF.format(catalog="pg_class", objid="i.indexrelid")},
       {_OUTSIDE.format(catalog="pg_class", objid="i.indexrelid")}
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
WHERE i.indrelid = %(oid)s AND NOT i.indisprimary AND i.indisvalid
  AND coalesce(con.contype, 'u') = 'u'
ORDER BY 1
"""
_COMMENTS_SQL = """
SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a
WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped
  AND col_description(a.attrelid, a.attnum) IS NOT NULL ORDER BY a.attnum
"""


def table_facts(conn: psycopg.Connection, table: PgTable) -> TableFacts:
    """The facts of ``table`` (whose columns are the stream's, after projection)."""
    oid = conn.execute("SELECT %s::regclass::oid",
                       (qualified(table.schema, table.name),)).fetchone()[0]
    p = {"oid": oid}
    names = {c.name for c in table.columns}
    left_out: list[str] = []
    checks = []
    for name, definition, valid, cols, outside in conn.execute(_CHECKS_SQL, p).fetchall():
        if not set(cols) <= names:
            continue
        if outside or not valid:
            left_out.append(f"check {name} is not created: " + (
                f"it needs {', '.join(outside)}" if outside else "it is NOT VALID"))
            continue
        checks.append(Check(name, definition, tuple(sorted(cols))))
    defaults, identities = _defaults(conn, p, table, left_out)
    indexes = []
    for name, unique, definition, prefix, cols, outside in conn.execute(
            _INDEXES_SQL, p).fetchall():
        if not set(cols) <= names or not definition.startswith(prefix):
            continue
        if outside:
            left_out.append(f"index {name} is not created: it needs {', '.join(outside)}")
            continue
        indexes.append(Index(name, unique, definition[len(prefix):], tuple(sorted(cols))))
    comment = conn.execute("SELECT obj_description(%(oid)s, 'pg_class')", p).fetchone()[0]
    fks = [r[0] for r in conn.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = %(oid)s AND contype = 'f' "
        "ORDER BY 1", p).fetchall()]
    return TableFacts(
        {c.name: c.pg_type for c in table.columns}, comment,
        tuple((c, t) for c, t in conn.execute(_COMMENTS_SQL, p).fetchall() if c in names),
        tuple(checks), defaults, identities, tuple(indexes), tuple(fks), tuple(left_out))


def _defaults(conn: psycopg.Connection, p: dict, table: PgTable, left_out: list[str]
              ) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """(column, expression) of the defaults that can be carried, and the identity
    columns: a sequence default of a NOT NULL integer column becomes an identity."""
    cols = {c.name: c for c in table.columns}
    defaults, identities = [], []
    for col, expr, identity, outside, sequence in conn.execute(_DEFAULTS_SQL, p).fetchall():
        if col not in cols:
            continue
        if identity or (sequence and len(outside) == 1):
            if cols[col].not_null and cols[col].pg_type in _INTEGERS:
                identities.append(col)
            else:
                left_out.append(f"default of column {col} is not created: {expr} needs a "
                                "sequence, and the column is not a NOT NULL integer")
        elif outside:
            left_out.append(f"default of column {col} is not created: it needs "
                            f"{', '.join(outside)}")
        else:
            defaults.append((col, expr))
    return tuple(defaults), tuple(identities)


_INTEGERS = ("smallint", "integer", "bigint")
