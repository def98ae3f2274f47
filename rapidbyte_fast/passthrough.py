"""Passthrough eligibility: when may raw COPY binary bytes go from source to destination
without decoding?

Only when no transform runs and every column has the same type on both sides and a binary
form that does not embed database-specific OIDs: built-in types, enums (sent as their label)
and domains over built-ins. Composites and arrays of user types carry OIDs that differ
between databases, so they take the Arrow path.
"""
from __future__ import annotations

from .pgtypes import REG_TYPE_OIDS, qualified

FIRST_USER_OID = 16384

_TYPES_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typtype,
       CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END AS base_oid,
       coalesce(NULLIF(bt.typelem, 0), 0) AS elem_oid, et.typtype AS elem_typtype
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def column_types(conn, schema: str, table: str) -> dict[str, tuple[str, bool]]:
    """``{column: (format_type, portable_binary)}`` for a table. A reg* value (regclass,
    regtype, ...) is an OID in binary form, naming another object in another database: only
    its text form (the Arrow path) carries it by name."""
    out = {}
    for name, fmt, typtype, base_oid, elem_oid, elem_typtype in conn.execute(
            _TYPES_SQL, (qualified(schema, table),)).fetchall():
        if typtype == "e":
            portable = True
        elif elem_typtype is not None:  # an array: its element OID is in the binary form
            portable = elem_oid < FIRST_USER_OID and elem_oid not in REG_TYPE_OIDS
        else:
            portable = base_oid < FIRST_USER_OID and base_oid not in REG_TYPE_OIDS
        out[name] = (fmt, portable)
    return out


def source_reason(types: dict[str, tuple[str, bool]], columns: list[str]) -> str | None:
    """Why the source columns cannot be passed through, or None when they can."""
    bad = [c for c in columns if not types[c][1]]
    if bad:
        return f"columns {', '.join(bad)} have a binary form tied to this database's type OIDs"
    return None


def target_reason(src: dict[str, tuple[str, bool]], dst: dict[str, tuple[str, bool]],
                  columns: list[str]) -> str | None:
    """Why an existing destination table cannot take the source's bytes, or None."""
    diff = [f"{c} ({src[c][0]} → {dst[c][0] if c in dst else 'missing'})"
            for c in columns if c not in dst or dst[c][0] != src[c][0]]
    if diff:
        return "destination column types differ: " + ", ".join(diff)
    return None
