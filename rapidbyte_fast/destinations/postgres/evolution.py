"""Schema evolution of an existing target, as a pure decision: given the target's columns,
the incoming fields and the ``schema_evolution`` policy, which statements to run, which
fields to load, and which problems refuse the load."""
from __future__ import annotations

from dataclasses import dataclass

from ...pgtypes import quote_ident


@dataclass(frozen=True)
class TargetColumn:
    """A column of the existing target."""

    pg_type: str
    not_null: bool


@dataclass(frozen=True)
class Evolution:
    """What reconciling the source with the target takes."""

    #: DDL to run on the target (in the load's transaction)
    statements: tuple[str, ...]
    #: the incoming fields to load, in order
    keep: tuple[str, ...]
    #: why the load is refused (empty: it is not)
    problems: tuple[str, ...]
    #: columns added, for the log
    added: tuple[str, ...]


def evolve(rel: str, target: dict[str, TargetColumn], primary_key: tuple[str, ...],
           fields: list[tuple[str, str, bool]], policy) -> Evolution:
    """Reconcile ``fields`` (name, pg_type, nullable) with the ``target`` columns of
    ``rel`` under ``policy`` (new_column, removed_column, type_change,
    nullability_change)."""
    statements: list[str] = []
    keep: list[str] = []
    problems: list[str] = []
    added: list[str] = []
    for name, src_type, nullable in fields:
        col = target.get(name)
        if col is None:
            if policy.new_column == "add":
                statements.append(f"ALTER TABLE {rel} ADD COLUMN {quote_ident(name)} {src_type}")
                added.append(f"{name} {src_type}")
                keep.append(name)
            elif policy.new_column == "fail":
                problems.append(f"new column {name} ({src_type}) "
                                "[schema_evolution.new_column: fail]")
            continue
        if src_type != col.pg_type and policy.type_change != "coerce":
            if policy.type_change == "fail":
                problems.append(f"column {name} is {src_type} in the source but {col.pg_type} "
                                "in the destination [schema_evolution.type_change: fail]")
            continue  # "null": the column is not loaded, so it stays NULL
        # a primary key column stays NOT NULL: a NULL would be refused by the key anyway
        if nullable and col.not_null and name not in primary_key:
            if policy.nullability_change == "fail":
                problems.append(f"column {name} is nullable in the source but NOT NULL in the "
                                "destination [schema_evolution.nullability_change: fail]")
                continue
            statements.append(f"ALTER TABLE {rel} ALTER COLUMN {quote_ident(name)} "
                              "DROP NOT NULL")
        keep.append(name)
    names = {n for n, _, _ in fields}
    removed = [n for n in target if n not in names]
    if removed and policy.removed_column == "fail":
        problems.append(f"columns {', '.join(removed)} are gone from the source "
                        "[schema_evolution.removed_column: fail]")
    return Evolution(tuple(statements), tuple(keep), tuple(problems), tuple(added))
