"""Reads what users built on a replace's target from the catalog (``capture``), into the
frozen description that ``target_objects`` turns into SQL. Runs in the caller's
transaction, after the target is locked against DDL."""
from __future__ import annotations

import psycopg

from ...errors import DestinationError
from .target_objects import (
    Constraint, ForeignKey, Grant, Identity, Index, Policy, Publication, RelationMeta,
    TargetObjects, Trigger, View,
)

#: (catalog, object oid) → the target's columns the object needs
Needs = dict[tuple[str, int], tuple[str, ...]]

_DEPENDS_SQL = """
SELECT d.classid::regclass::text, d.objid, array_agg(DISTINCT a.attname::text)
FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = %s AND d.refobjsubid > 0
GROUP BY 1, 2
"""


def capture(conn: psycopg.Connection, rel: str) -> TargetObjects:
    """Everything built on the table ``rel`` (qualified)."""
    oid = conn.execute("SELECT %s::regclass::oid", (rel,)).fetchone()[0]
    needs: Needs = {(r[0], r[1]): tuple(sorted(r[2]))
                    for r in conn.execute(_DEPENDS_SQL, (oid,)).fetchall()}
    enabled, forced, ident, index = conn.execute(_TABLE_SQL, (oid,)).fetchone()
    return TargetObjects(
        meta=relation_meta(conn, oid), **_columns(conn, oid),
        indexes=_indexes(conn, oid, needs), constraints=_constraints(conn, oid, needs),
        triggers=tuple(Trigger(r[0], r[1], r[2], needs.get(("pg_trigger", r[4]), ()), r[3])
                       for r in conn.execute(_TRIGGERS_SQL, (oid,)).fetchall()),
        row_security=(enabled, forced),
        policies=tuple(Policy(*r[:3], tuple(r[3]), r[4], r[5], needs.get(("pg_policy", r[6]), ()))
                       for r in conn.execute(_POLICIES_SQL, (oid,)).fetchall()),
        replica_identity=(ident, index),
        publications=tuple(Publication(r[0], tuple(r[1]), r[2])
                           for r in conn.execute(_publications_sql(conn), (oid,)).fetchall()),
        views=tuple(View(r[1], r[2], relation_meta(conn, r[0]), r[3])
                    for r in conn.execute(_VIEWS_SQL, (oid,)).fetchall()),
        foreign_keys=tuple(ForeignKey(r[0], r[1], r[2], needs.get(("pg_constraint", r[3]), ()))
                           for r in conn.execute(_REFERENCING_SQL, (oid,)).fetchall()))


_META_SQL = """
SELECT pg_get_userbyid(c.relowner), obj_description(c.oid, 'pg_class'),
       coalesce(c.reloptions, '{}'), c.relacl IS NOT NULL,
       ARRAY(SELECT d.privilege_type FROM aclexplode(acldefault('r', c.relowner)) d
             EXCEPT SELECT x.privilege_type FROM aclexplode(c.relacl) x
             WHERE x.grantee = c.relowner)
FROM pg_class c WHERE c.oid = %s
"""
_GRANTS_SQL = """
SELECT coalesce(r.rolname, ''), x.privilege_type, x.is_grantable, ''
FROM pg_class c, aclexplode(c.relacl) x LEFT JOIN pg_roles r ON r.oid = x.grantee
WHERE c.oid = %(oid)s AND x.grantee <> c.relowner
UNION ALL
SELECT coalesce(r.rolname, ''), x.privilege_type, x.is_grantable, a.attname
FROM pg_attribute a, aclexplode(a.attacl) x LEFT JOIN pg_roles r ON r.oid = x.grantee
WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY 4, 1, 2
"""
_COLUMN_COMMENTS_SQL = """
SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
  AND col_description(a.attrelid, a.attnum) IS NOT NULL ORDER BY a.attnum
"""


def relation_meta(conn: psycopg.Connection, oid: int) -> RelationMeta:
    """Owner, grants, comments and storage parameters of a table or view."""
    owner, comment, reloptions, has_acl, revoked = conn.execute(_META_SQL, (oid,)).fetchone()
    grants = tuple(Grant(*r) for r in conn.execute(_GRANTS_SQL, {"oid": oid}).fetchall())
    comments = tuple(conn.execute(_COLUMN_COMMENTS_SQL, (oid,)).fetchall())
    return RelationMeta(owner, grants, tuple(sorted(revoked)) if has_acl else (), comment,
                        comments, tuple(reloptions))


_COLUMNS_SQL = """
SELECT a.attname, a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid), a.attidentity,
       a.attgenerated, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache,
       s.seqcycle, CASE WHEN s.seqrelid IS NOT NULL THEN pg_sequence_last_value(s.seqrelid) END
FROM pg_attribute a
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
LEFT JOIN pg_depend d ON a.attidentity <> '' AND d.classid = 'pg_class'::regclass
    AND d.refclassid = 'pg_class'::regclass AND d.refobjid = a.attrelid
    AND d.refobjsubid = a.attnum AND d.deptype = 'i'
LEFT JOIN pg_sequence s ON s.seqrelid = d.objid
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""
#: serial sequences: owned by a column (OWNED BY), dropped with the table
_SEQUENCES_SQL = """
SELECT d.objid::regclass::text, a.attname FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.refobjid = %s AND d.deptype = 'a' ORDER BY 2
"""


def _columns(conn: psycopg.Connection, oid: int) -> dict:
    not_null, defaults, identities, generated = [], [], [], []
    for (name, nn, default, ident, gen, start, inc, lo, hi, cache, cycle,
         last) in conn.execute(_COLUMNS_SQL, (oid,)).fetchall():
        if nn:
            not_null.append(name)
        if gen:
            generated.append(name)
        elif ident:
            opts = (f"START WITH {start} INCREMENT BY {inc} MINVALUE {lo} MAXVALUE {hi} "
                    f"CACHE {cache} {'' if cycle else 'NO '}CYCLE")
            identities.append(Identity(name, ident == "a", opts, last))
        elif default is not None:
            defaults.append((name, default))
    sequences = tuple(conn.execute(_SEQUENCES_SQL, (oid,)).fetchall())
    return {"not_null": tuple(not_null), "defaults": tuple(defaults), "sequences": sequences,
            "identities": tuple(identities), "generated": tuple(generated)}


_INDEXES_SQL = """
SELECT c.relname, i.indisunique, pg_get_indexdef(i.indexrelid),
       'CREATE ' || CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END || 'INDEX '
           || quote_ident(c.relname) || ' ON ' || quote_ident(n.nspname) || '.'
           || quote_ident(t.relname) || ' ',
       obj_description(i.indexrelid, 'pg_class'), coalesce(con.conname, ''), i.indexrelid
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
    AND con.contype IN ('p', 'u', 'x')
WHERE i.indrelid = %s ORDER BY c.relname
"""


def _indexes(conn: psycopg.Connection, oid: int, needs: Needs) -> tuple[Index, ...]:
    out = []
    for name, unique, definition, prefix, comment, constraint, ioid in conn.execute(
            _INDEXES_SQL, (oid,)).fetchall():
        if not definition.startswith(prefix):
            raise DestinationError(f"cannot read the definition of index {name} to recreate "
                                   f"it: {definition}")
        out.append(Index(name, unique, definition[len(prefix):],
                         needs.get(("pg_class", ioid), ()), comment, constraint))
    return tuple(out)


_CONSTRAINTS_SQL = """
SELECT con.conname, con.contype, pg_get_constraintdef(con.oid), coalesce(ic.relname, ''),
       CASE WHEN con.condeferrable THEN ' DEFERRABLE' ELSE '' END
           || CASE WHEN con.condeferred THEN ' INITIALLY DEFERRED' ELSE '' END,
       obj_description(con.oid, 'pg_constraint'), con.oid
FROM pg_constraint con
LEFT JOIN pg_class ic ON ic.oid = con.conindid AND con.contype IN ('p', 'u')
WHERE con.conrelid = %s AND con.contype IN ('p', 'u', 'x', 'c', 'f')
ORDER BY con.contype = 'f', con.conname
"""


def _constraints(conn: psycopg.Connection, oid: int, needs: Needs
                 ) -> tuple[Constraint, ...]:
    return tuple(Constraint(name, kind, definition, needs.get(("pg_constraint", coid), ()),
                            index, deferral, comment)
                 for name, kind, definition, index, deferral, comment, coid
                 in conn.execute(_CONSTRAINTS_SQL, (oid,)).fetchall())


_TABLE_SQL = """
SELECT c.relrowsecurity, c.relforcerowsecurity, c.relreplident,
       coalesce((SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                 WHERE i.indrelid = c.oid AND i.indisreplident), '')
FROM pg_class c WHERE c.oid = %s
"""
_TRIGGERS_SQL = """
SELECT t.tgname, pg_get_triggerdef(t.oid), t.tgenabled, obj_description(t.oid, 'pg_trigger'),
       t.oid
FROM pg_trigger t WHERE t.tgrelid = %s AND NOT t.tgisinternal ORDER BY t.tgname
"""
_POLICIES_SQL = """
SELECT p.polname, p.polpermissive, p.polcmd,
       ARRAY(SELECT CASE WHEN r = 0 THEN '' ELSE pg_get_userbyid(r) END
             FROM unnest(p.polroles) r),
       pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid), p.oid
FROM pg_policy p WHERE p.polrelid = %s ORDER BY p.polname
"""
_PUBLICATIONS_SQL = """
SELECT p.pubname,
       ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = pr.prrelid
             AND a.attnum = ANY(pr.prattrs) ORDER BY a.attnum),
       pg_get_expr(pr.prqual, pr.prrelid)
FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
WHERE pr.prrelid = %s ORDER BY 1
"""
#: before PostgreSQL 15 a publication has no column lists or row filters
_PUBLICATIONS_14_SQL = """
SELECT p.pubname, ARRAY[]::text[], NULL::text
FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
WHERE pr.prrelid = %s ORDER BY 1
"""


def _publications_sql(conn) -> str:
    return _PUBLICATIONS_SQL if conn.info.server_version >= 150000 else _PUBLICATIONS_14_SQL


#: views reading the target, directly or through other views (deepest last)
_VIEWS_SQL = """
WITH RECURSIVE deps(oid, depth) AS (
    SELECT %s::oid, 0
    UNION ALL
    SELECT r.ev_class, deps.depth + 1 FROM deps
    JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = deps.oid
        AND d.classid = 'pg_rewrite'::regclass
    JOIN pg_rewrite r ON r.oid = d.objid
    WHERE r.ev_class <> deps.oid AND deps.depth < 100)
SELECT v.oid, quote_ident(n.nspname) || '.' || quote_ident(v.relname),
       pg_get_viewdef(v.oid), max(deps.depth)
FROM deps JOIN pg_class v ON v.oid = deps.oid JOIN pg_namespace n ON n.oid = v.relnamespace
WHERE deps.depth > 0 AND v.relkind = 'v'
GROUP BY v.oid, n.nspname, v.relname ORDER BY 4, 2
"""
#: foreign keys of other tables referencing the target
_REFERENCING_SQL = """
SELECT con.conrelid::regclass::text, con.conname, pg_get_constraintdef(con.oid), con.oid
FROM pg_constraint con
WHERE con.contype = 'f' AND con.confrelid = %s AND con.conrelid <> con.confrelid
ORDER BY 1, 2
"""
