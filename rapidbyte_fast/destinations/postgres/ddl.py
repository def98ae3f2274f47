"""The SQL of a Postgres load, as pure functions of names and columns: creating tables,
adding the primary key, moving staged rows (plain or as an upsert), swapping a staging
table in. Every name is quoted here or arrives quoted (``rel``: a qualified relation)."""
from __future__ import annotations

from ...pgtypes import derived_name, quote_ident

#: Arrival-order column of upsert staging tables: the last duplicate key wins.
SEQ_COLUMN = "__rbf_seq"
#: The upsert target's alias (a bare name that a column name would shadow)
TARGET_ALIAS = '"__rbf_target"'
#: Staging tables are named ``<table>__rbf_stage_<8 hex>`` (within 63 bytes).
STAGE_TAG = "__rbf_stage_"


def column_list(names: list[str] | tuple[str, ...]) -> str:
    """``"a", "b"``."""
    return ", ".join(quote_ident(n) for n in names)


def pkey_name(table: str) -> str:
    """The primary key constraint name of ``table`` (quoted)."""
    return quote_ident(derived_name(table, "_pkey"))


def create_table_sql(rel: str, table: str, columns: list[tuple[str, str]],
                     pk: tuple[str, ...] = (), seq: bool = False,
                     constraints: list[str] | None = None, unlogged: bool = False) -> str:
    """``CREATE [UNLOGGED] TABLE rel`` with ``columns`` (name, type and column clauses), the
    primary key ``pk`` (named after ``table``), table ``constraints`` clauses and, for
    upsert staging, the arrival-order column."""
    defs = [f"{quote_ident(n)} {t}" for n, t in columns]
    if seq:
        defs.append(f"{quote_ident(SEQ_COLUMN)} bigserial")
    if pk:
        defs.append(f"CONSTRAINT {pkey_name(table)} PRIMARY KEY ({column_list(pk)})")
    defs += constraints or []
    return f"CREATE {'UNLOGGED ' if unlogged else ''}TABLE {rel} ({', '.join(defs)})"


def add_primary_key_sql(rel: str, table: str, pk: tuple[str, ...]) -> str:
    """Add the primary key (named after ``table``) to ``rel``."""
    return f"ALTER TABLE {rel} ADD CONSTRAINT {pkey_name(table)} PRIMARY KEY ({column_list(pk)})"


def insert_select_sql(stage: str, target: str, names: list[str], where: str | None) -> str:
    """Append the staged rows (those matching ``where``) to the target."""
    cols = column_list(names)
    return (f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {stage}"
            + (f" WHERE {where}" if where else ""))


def upsert_sql(stage: str, target: str, names: list[str], pk: tuple[str, ...],
               where: str | None) -> str:
    """Upsert the staged rows into the target in one statement: the last staged row of a
    key wins, and a row equal to the target's is not rewritten."""
    cols, keys = column_list(names), column_list(pk)
    rest = [n for n in names if n not in pk]
    # a row equal byte for byte (*<>, any column type) is not rewritten: an upsert of 1M
    # unchanged bench_events rows took 8.5 s instead of 15.2 s (2 runs each)
    action = ("DO UPDATE SET " + ", ".join(
        f"{quote_ident(n)} = EXCLUDED.{quote_ident(n)}" for n in rest)
        + f" WHERE {TARGET_ALIAS} *<> EXCLUDED") if rest else "DO NOTHING"
    return (f"INSERT INTO {target} AS {TARGET_ALIAS} ({cols}) SELECT DISTINCT ON ({keys}) "
            f"{cols} FROM {stage}" + (f" WHERE {where}" if where else "")
            + f" ORDER BY {keys}, {quote_ident(SEQ_COLUMN)} DESC ON CONFLICT ({keys}) {action}")


def swap_sql(stage_rel: str, stage: str, target_rel: str, table: str, target_exists: bool,
             has_pk: bool) -> list[str]:
    """Put the staging table in the target's place: drop the old table, rename the new
    one, and give its primary key the target's constraint name."""
    out = [f"DROP TABLE {target_rel}"] if target_exists else []
    out.append(f"ALTER TABLE {stage_rel} RENAME TO {quote_ident(table)}")
    if has_pk:
        out.append(f"ALTER TABLE {target_rel} RENAME CONSTRAINT {pkey_name(stage)} "
                   f"TO {pkey_name(table)}")
    return out


def stage_name(table: str, tag: str) -> str:
    """The staging table of ``table`` with the 8-hex ``tag``."""
    return derived_name(table, f"{STAGE_TAG}{tag}")


#: Views (and materialized views: relkind m) that read the table
DEPENDENT_VIEWS_SQL = (
    "SELECT DISTINCT v.oid::regclass::text, v.relkind FROM pg_depend d "
    "JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class "
    "WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %s::regclass "
    "AND v.oid <> d.refobjid ORDER BY 1")
#: Foreign keys of other tables referencing the table
REFERENCING_KEYS_SQL = (
    "SELECT conname || ' on ' || conrelid::regclass::text FROM pg_constraint "
    "WHERE contype = 'f' AND confrelid = %s::regclass AND conrelid <> confrelid ORDER BY 1")
#: Is there a unique index on exactly these columns (an ON CONFLICT target)?
CONFLICT_TARGET_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = %s::regclass "
    "AND i.indisunique AND i.indpred IS NULL AND "
    "(SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a "
    "WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)) = "
    "(SELECT array_agg(c ORDER BY c) FROM unnest(%s::text[]) c))")
#: Staging tables of one schema (candidates for orphan cleanup)
STAGES_SQL = (
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname LIKE %s")
