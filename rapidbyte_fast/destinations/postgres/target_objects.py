"""What users built on a replace's target, and how it is rebuilt on the table swapped in.

A replace loads a new table and drops the old one. Everything built on the old table is
captured from the catalog first (``target_catalog.capture``: a frozen ``TargetObjects``),
then recreated with its exact definition in the swap transaction, so that a failed swap
leaves the old table as it was. The SQL is made by pure functions of the capture:

- ``prebuild_sql``: the indexes (secondary, and those behind primary key and UNIQUE
  constraints), built on the loaded staging table under temporary names before the swap;
- ``before_drop_sql``: what would block (or be lost with) ``DROP TABLE``: dependent views,
  other tables' foreign keys to it, the ownership of its serial sequences;
- ``after_swap_sql``: the rest, on the new table under the target's name: indexes renamed
  to their names, owner, NOT NULL, defaults, identity, constraints (foreign keys added NOT
  VALID, then validated), replica identity, storage parameters, triggers, row-level
  security, grants, comments, publication membership, the dependent views (with their
  grants and comments) and the foreign keys of other tables.

Like ``ALTER TABLE … DROP COLUMN``, objects that need a column the new table does not have
are left out (``keep`` says which); a dependent view using such a column fails the swap.
Tablespaces, toast storage parameters, security labels and the grants' grantors other than
the owner are not carried.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from psycopg import sql

from ...pgtypes import derived_name, quote_ident

#: (what, SQL): what names the object, for an error when the statement fails
Step = tuple[str, str]


@dataclass(frozen=True)
class Grant:
    """One privilege of one role (``""``: PUBLIC) on a relation, or on one of its columns."""

    grantee: str
    privilege: str
    grantable: bool = False
    column: str = ""


@dataclass(frozen=True)
class RelationMeta:
    """What any relation carries: owner, grants, comments, storage parameters."""

    owner: str
    grants: tuple[Grant, ...] = ()
    #: the owner's default privileges it was revoked
    owner_revoked: tuple[str, ...] = ()
    comment: str | None = None
    column_comments: tuple[tuple[str, str], ...] = ()
    reloptions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Index:
    """An index; ``tail`` is its definition from ``USING`` on (pg_get_indexdef)."""

    name: str
    unique: bool
    tail: str
    columns: tuple[str, ...] = ()
    comment: str | None = None
    #: the constraint it backs (primary key, UNIQUE, EXCLUDE), else ""
    constraint: str = ""


@dataclass(frozen=True)
class Constraint:
    """A table constraint: ``kind`` is p, u, x, c or f; ``definition`` its
    pg_get_constraintdef text."""

    name: str
    kind: str
    definition: str
    columns: tuple[str, ...] = ()
    #: the index behind a primary key or UNIQUE constraint
    index: str = ""
    deferral: str = ""
    comment: str | None = None


@dataclass(frozen=True)
class Trigger:
    """A user trigger (pg_get_triggerdef) and its firing state (pg_trigger.tgenabled)."""

    name: str
    definition: str
    enabled: str = "O"
    columns: tuple[str, ...] = ()
    comment: str | None = None


@dataclass(frozen=True)
class Policy:
    """A row-level security policy."""

    name: str
    permissive: bool
    command: str
    roles: tuple[str, ...]
    using: str | None
    check: str | None
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Identity:
    """An identity column: ALWAYS or BY DEFAULT, its sequence's options and position."""

    column: str
    always: bool
    options: str
    last_value: int | None


@dataclass(frozen=True)
class Publication:
    """Membership of a publication, with its column list and row filter."""

    name: str
    columns: tuple[str, ...] = ()
    where: str | None = None


@dataclass(frozen=True)
class View:
    """A view reading the target (directly or through other views): ``depth`` 1 reads the
    target, 2 reads a view of depth 1, ..."""

    rel: str
    definition: str
    meta: RelationMeta
    depth: int = 1


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key of another table referencing the target."""

    table: str
    name: str
    definition: str
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class TargetObjects:
    """Everything built on a target table, as the catalog describes it."""

    meta: RelationMeta
    not_null: tuple[str, ...] = ()
    defaults: tuple[tuple[str, str], ...] = ()
    #: serial sequences owned by a column: (sequence, column)
    sequences: tuple[tuple[str, str], ...] = ()
    identities: tuple[Identity, ...] = ()
    indexes: tuple[Index, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    #: row-level security: (enabled, forced)
    row_security: tuple[bool, bool] = (False, False)
    policies: tuple[Policy, ...] = ()
    #: relreplident (d, n, f or i) and, for i, the index
    replica_identity: tuple[str, str] = ("d", "")
    publications: tuple[Publication, ...] = ()
    views: tuple[View, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    #: columns that lost their generated expression (cannot be made generated again)
    generated: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------
# Recreation (pure)


def keep(objs: TargetObjects, columns: frozenset[str] | set[str], has_pk: bool
         ) -> tuple[TargetObjects, list[str]]:
    """The objects the new table (with ``columns``, and its own primary key when
    ``has_pk``) can carry, and a note for each one left out."""
    notes: list[str] = []

    def fits(kind: str, name: str, needs: tuple[str, ...]) -> bool:
        missing = [c for c in needs if c not in columns]
        if missing:
            notes.append(f"{kind} {name} is not recreated: the new table has no column "
                         f"{', '.join(missing)}")
        return not missing

    cons = tuple(c for c in objs.constraints if not (c.kind == "p" and has_pk)
                 and fits("constraint", c.name, c.columns))
    backing = {c.index for c in cons if c.index}
    idx = tuple(i for i in objs.indexes
                if (i.name in backing if i.constraint else fits("index", i.name, i.columns)))
    names = {i.name for i in idx}
    ident = objs.replica_identity
    if ident[0] == "i" and ident[1] not in names:
        notes.append(f"replica identity index {ident[1]} is not recreated: the table "
                     "goes back to the default replica identity")
        ident = ("d", "")
    kept = replace(
        objs, not_null=tuple(c for c in objs.not_null if c in columns),
        defaults=tuple(d for d in objs.defaults if d[0] in columns),
        sequences=tuple(s for s in objs.sequences if s[1] in columns),
        identities=tuple(i for i in objs.identities if i.column in columns),
        indexes=idx, constraints=cons, replica_identity=ident,
        triggers=tuple(t for t in objs.triggers if fits("trigger", t.name, t.columns)),
        policies=tuple(p for p in objs.policies if fits("policy", p.name, p.columns)),
        publications=tuple(p for p in objs.publications
                           if fits("publication", p.name, p.columns)),
        foreign_keys=tuple(f for f in objs.foreign_keys
                           if fits(f"foreign key {f.name} on", f.table, f.columns)),
        meta=_meta_within(objs.meta, columns))
    notes += [f"column {c} is no longer generated (the new table holds the source's values)"
              for c in objs.generated if c in columns]
    return kept, notes


def _meta_within(meta: RelationMeta, columns) -> RelationMeta:
    return replace(meta, grants=tuple(g for g in meta.grants if not g.column
                                      or g.column in columns),
                   column_comments=tuple(c for c in meta.column_comments if c[0] in columns))


def temp_index_name(name: str) -> str:
    """The name an index is built under on the staging table, until the swap."""
    return derived_name(name, "__rbf_new")


def prebuild_sql(objs: TargetObjects, stage_rel: str) -> list[Step]:
    """Build the indexes on the staging table (after its load, before the swap)."""
    return [(f"index {i.name}",
             f"CREATE {'UNIQUE ' if i.unique else ''}INDEX {quote_ident(temp_index_name(i.name))}"
             f" ON {stage_rel} {i.tail}") for i in objs.indexes]


def before_drop_sql(objs: TargetObjects) -> list[Step]:
    """What must go before the old table is dropped: its dependent views, the foreign keys
    of other tables to it, and its serial sequences' ownership (they would be dropped)."""
    out: list[Step] = []
    if objs.views:
        out.append(("dependent views", "DROP VIEW " + ", ".join(v.rel for v in objs.views)))
    out += [(f"foreign key {f.name} on {f.table}",
             f"ALTER TABLE {f.table} DROP CONSTRAINT {quote_ident(f.name)}")
            for f in objs.foreign_keys]
    out += [(f"sequence {s}", f"ALTER SEQUENCE {s} OWNED BY NONE") for s, _ in objs.sequences]
    return out


def after_swap_sql(objs: TargetObjects, rel: str, schema: str) -> list[Step]:
    """Everything else, on the new table ``rel`` (in ``schema``) once it has the target's
    name; order matters: owner before grants, NOT NULL before identity, unique
    constraints before the foreign keys that reference them."""
    out: list[Step] = [
        (f"index {i.name}", f"ALTER INDEX {quote_ident(schema)}."
                            f"{quote_ident(temp_index_name(i.name))} RENAME TO {quote_ident(i.name)}")
        for i in objs.indexes if not i.constraint]  # (USING INDEX renames the others)
    out += _owner_sql(rel, objs.meta.owner, "TABLE")
    if objs.not_null:
        # one statement: Postgres checks every column in one scan of the table (100k
        # bench_events rows, 6 columns: 26 ms, against 6 statements of 14-26 ms each);
        # its error names the column that holds a null
        sets = ", ".join(f"ALTER COLUMN {quote_ident(c)} SET NOT NULL" for c in objs.not_null)
        out.append((f"NOT NULL of {', '.join(objs.not_null)}", f"ALTER TABLE {rel} {sets}"))
    out += _column_sql(objs, rel)
    out += _constraint_sql(objs, rel)
    out += _table_options_sql(objs, rel, schema)
    for t in objs.triggers:
        out.append((f"trigger {t.name}", t.definition))
        if t.enabled != "O":
            how = {"D": "DISABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}[t.enabled]
            out.append((f"trigger {t.name}", f"ALTER TABLE {rel} {how} TRIGGER "
                                             f"{quote_ident(t.name)}"))
    out += _security_sql(objs, rel)
    out += _grants_sql(rel, objs.meta)
    out += _comments_sql(rel, objs.meta, "TABLE")
    out += _object_comments_sql(objs, rel, schema)
    out += [(f"publication {p.name}", f"ALTER PUBLICATION {quote_ident(p.name)} ADD TABLE "
                                      f"{rel}" + _publication_clauses(p)) for p in objs.publications]
    for v in objs.views:
        opts = f" WITH ({', '.join(_options(v.meta.reloptions))})" if v.meta.reloptions else ""
        out.append((f"view {v.rel}", f"CREATE VIEW {v.rel}{opts} AS "
                                     f"{v.definition.rstrip().rstrip(';')}"))
        out += _owner_sql(v.rel, v.meta.owner, "VIEW")
        out += _grants_sql(v.rel, v.meta)
        out += _comments_sql(v.rel, v.meta, "VIEW")
    for f in objs.foreign_keys:
        out += _foreign_key_sql(f.table, f.name, f.definition)
    return out


def _owner_sql(rel: str, owner: str, kind: str) -> list[Step]:
    # (a no-op, with no permission check, when the load's role already owns it)
    return [(f"owner of {rel}", f"ALTER {kind} {rel} OWNER TO {quote_ident(owner)}")]


def _column_sql(objs: TargetObjects, rel: str) -> list[Step]:
    out: list[Step] = []
    for col, expr in objs.defaults:
        out.append((f"default of {col}",
                    f"ALTER TABLE {rel} ALTER COLUMN {quote_ident(col)} SET DEFAULT {expr}"))
    for seq, col in objs.sequences:
        out.append((f"sequence {seq}", f"ALTER SEQUENCE {seq} OWNED BY {rel}.{quote_ident(col)}"))
    for i in objs.identities:
        how = "ALWAYS" if i.always else "BY DEFAULT"
        out.append((f"identity of {i.column}", f"ALTER TABLE {rel} ALTER COLUMN "
                                               f"{quote_ident(i.column)} ADD GENERATED {how} "
                                               f"AS IDENTITY ({i.options})"))
        if i.last_value is not None:
            out.append((f"identity of {i.column}",
                        f"SELECT setval(pg_get_serial_sequence({_lit(rel)}, "
                        f"{_lit(i.column)}), {int(i.last_value)})"))
    return out


def _constraint_sql(objs: TargetObjects, rel: str) -> list[Step]:
    out: list[Step] = []
    for c in objs.constraints:
        what, name = f"constraint {c.name}", quote_ident(c.name)
        if c.kind in "pu":
            how = "PRIMARY KEY" if c.kind == "p" else "UNIQUE"
            out.append((what, f"ALTER TABLE {rel} ADD CONSTRAINT {name} {how} USING INDEX "
                              f"{quote_ident(temp_index_name(c.index))}{c.deferral}"))
        elif c.kind == "f":
            out += _foreign_key_sql(rel, c.name, c.definition)
        else:
            out.append((what, f"ALTER TABLE {rel} ADD CONSTRAINT {name} {c.definition}"))
    return out


def _foreign_key_sql(rel: str, name: str, definition: str) -> list[Step]:
    """A foreign key, added NOT VALID and then validated (unless it was NOT VALID)."""
    what = f"foreign key {name} on {rel}"
    if definition.endswith(" NOT VALID"):
        return [(what, f"ALTER TABLE {rel} ADD CONSTRAINT {quote_ident(name)} {definition}")]
    return [(what, f"ALTER TABLE {rel} ADD CONSTRAINT {quote_ident(name)} {definition} "
                   "NOT VALID"),
            (what, f"ALTER TABLE {rel} VALIDATE CONSTRAINT {quote_ident(name)}")]


def _table_options_sql(objs: TargetObjects, rel: str, schema: str) -> list[Step]:
    out: list[Step] = []
    kind, index = objs.replica_identity
    if kind != "d":
        how = {"n": "NOTHING", "f": "FULL"}.get(kind) or (
            f"USING INDEX {quote_ident(index)}")
        out.append(("replica identity", f"ALTER TABLE {rel} REPLICA IDENTITY {how}"))
    if objs.meta.reloptions:
        out.append(("storage parameters", f"ALTER TABLE {rel} SET "
                                          f"({', '.join(_options(objs.meta.reloptions))})"))
    return out


def _security_sql(objs: TargetObjects, rel: str) -> list[Step]:
    enabled, forced = objs.row_security
    out: list[Step] = []
    if enabled:
        out.append(("row level security", f"ALTER TABLE {rel} ENABLE ROW LEVEL SECURITY"))
    if forced:
        out.append(("row level security", f"ALTER TABLE {rel} FORCE ROW LEVEL SECURITY"))
    cmds = {"*": "ALL", "r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}
    for p in objs.policies:
        roles = ", ".join(quote_ident(r) if r else "PUBLIC" for r in p.roles) or "PUBLIC"
        text = (f"CREATE POLICY {quote_ident(p.name)} ON {rel} AS "
                f"{'PERMISSIVE' if p.permissive else 'RESTRICTIVE'} FOR {cmds[p.command]} "
                f"TO {roles}")
        text += f" USING ({p.using})" if p.using is not None else ""
        text += f" WITH CHECK ({p.check})" if p.check is not None else ""
        out.append((f"policy {p.name}", text))
    return out


def _grants_sql(rel: str, meta: RelationMeta) -> list[Step]:
    out: list[Step] = []
    for g in meta.grants:
        cols = f" ({quote_ident(g.column)})" if g.column else ""
        who = quote_ident(g.grantee) if g.grantee else "PUBLIC"
        out.append((f"grants on {rel}", f"GRANT {g.privilege}{cols} ON {rel} TO {who}"
                                        + (" WITH GRANT OPTION" if g.grantable else "")))
    if meta.owner_revoked:
        out.append((f"grants on {rel}", f"REVOKE {', '.join(meta.owner_revoked)} ON {rel} "
                                        f"FROM {quote_ident(meta.owner)}"))
    return out


def _comments_sql(rel: str, meta: RelationMeta, kind: str) -> list[Step]:
    out: list[Step] = []
    if meta.comment is not None:
        out.append((f"comment on {rel}", f"COMMENT ON {kind} {rel} IS {_lit(meta.comment)}"))
    out += [(f"comment on {rel}", f"COMMENT ON COLUMN {rel}.{quote_ident(c)} IS {_lit(text)}")
            for c, text in meta.column_comments]
    return out


def _object_comments_sql(objs: TargetObjects, rel: str, schema: str) -> list[Step]:
    out: list[Step] = []
    for i in objs.indexes:
        if i.comment is not None and not i.constraint:
            out.append((f"comment on index {i.name}", f"COMMENT ON INDEX {quote_ident(schema)}."
                                                      f"{quote_ident(i.name)} IS {_lit(i.comment)}"))
    out += [(f"comment on constraint {c.name}", f"COMMENT ON CONSTRAINT {quote_ident(c.name)} "
                                                f"ON {rel} IS {_lit(c.comment)}")
            for c in objs.constraints if c.comment is not None]
    out += [(f"comment on trigger {t.name}", f"COMMENT ON TRIGGER {quote_ident(t.name)} ON "
                                             f"{rel} IS {_lit(t.comment)}")
            for t in objs.triggers if t.comment is not None]
    return out


def _publication_clauses(p: Publication) -> str:
    cols = f" ({', '.join(quote_ident(c) for c in p.columns)})" if p.columns else ""
    return cols + (f" WHERE ({p.where})" if p.where is not None else "")


def _options(reloptions: tuple[str, ...]) -> list[str]:
    """``name=value`` storage parameters as ``name = 'value'``."""
    out = []
    for opt in reloptions:
        name, _, value = opt.partition("=")
        out.append(f"{'.'.join(quote_ident(p) for p in name.split('.'))} = {_lit(value)}")
    return out


def _lit(value: str) -> str:
    return sql.Literal(value).as_string(None)
