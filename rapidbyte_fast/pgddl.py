"""Destination DDL for user-defined types: the enums, domains and composites a table needs.

A source column of such a type carries the type's definition in its Arrow field
(``pg_type_def``, see ``pgtypes.type_defs``). Before the destination creates a table,
``ensure_types`` makes each of them available, innermost first:

1. the type as the source named it (``mood``, ``app.mood``) exists in the destination
   database with the same definition: it is used (a copy within one database);
2. else a type of that name exists in the destination schema with the same definition: it
   is used (an earlier run created it);
3. else it is created in the destination schema, and ``pg_type`` (and the definitions that
   refer to it) are rewritten to name it there, as ``format_type`` prints it.

A same-named type with another definition, or one we cannot create (base types of
extensions, custom ranges), is a DestinationError that says what to create first. The DDL
runs in the caller's transaction, so a failed load leaves no types behind.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import json
import re

from psycopg import sql

from .errors import DestinationError
from .lazy_schema import rebuilt
from .pgtypes import (
    PG_TYPE_DEF_KEY, PG_TYPE_KEY, check_type_sql, declared_base, field_pg_type,
    field_type_defs, qualified, quote_ident, split_array_type, type_defs,
)

if TYPE_CHECKING:
    import pyarrow as pa


def ensure_types(conn, schema: str, arrow_schema: pa.Schema) -> pa.Schema:
    """Create the user-defined types of ``arrow_schema`` missing in the destination (in
    ``schema``) and check that every other column type exists; returns the schema with
    ``pg_type`` naming the types the table must use."""
    renames: dict[str, str] = {}   # source name → destination name
    done: set[str] = set()
    fields = []
    unknown = []
    for f in arrow_schema:
        defs = field_type_defs(f)
        for d in defs:
            if d["ref"] not in done:
                _ensure(conn, schema, d, renames)
                done.add(d["ref"])
        pg_type = field_pg_type(f)
        if not defs and not declared_base(pg_type):
            unknown.append((f.name, pg_type))
        renamed = _rename(pg_type, renames)
        if renamed != pg_type:
            meta = {**f.metadata, PG_TYPE_KEY: renamed.encode(),
                    PG_TYPE_DEF_KEY: json.dumps([_renamed_def(d, renames)
                                                 for d in defs]).encode()}
            f = f.with_metadata(meta)
        fields.append(f)
    _check_exist(conn, unknown)
    return rebuilt(arrow_schema, fields)


def _check_exist(conn, columns: list[tuple[str, str]]) -> None:
    if not columns:
        return
    names = [t for _, t in columns]
    found = dict(conn.execute("SELECT t, to_regtype(t) IS NOT NULL FROM unnest(%s::text[]) t",
                              (names,)).fetchall())
    missing = [f"column {c}: type {t}" for c, t in columns if not found.get(t)]
    if missing:
        raise DestinationError(
            f"{'; '.join(missing)} does not exist in the destination database; create it "
            "there first (CREATE EXTENSION for an extension's type)")


def _rename(type_text: str, renames: dict[str, str]) -> str:
    core, dims = split_array_type(type_text)
    return renames.get(core, core) + "[]" * dims


def _renamed_def(d: dict, renames: dict[str, str]) -> dict:
    out = {**d, "ref": _rename(d["ref"], renames)}
    if d["kind"] == "domain":
        out["base"] = _rename(d["base"], renames)
        out["checks"] = [_rename_casts(c, renames) for c in d["checks"]]
        if d["default"] is not None:
            out["default"] = _rename_casts(d["default"], renames)
    elif d["kind"] == "composite":
        out["attributes"] = [[a, _rename(t, renames)] for a, t in d["attributes"]]
    return out


def _rename_casts(expr: str, renames: dict[str, str]) -> str:
    """An expression with the casts to renamed types (``'sad'::app.mood``, as deparsed
    constants of user types read) naming their destination types."""
    for old, new in renames.items():
        expr = re.sub(re.escape("::" + old) + r"(?![A-Za-z0-9_$\"])", lambda _: "::" + new,
                      expr)
    return expr


def _regtype(conn, name: str) -> int | None:
    return conn.execute("SELECT to_regtype(%s)::oid", (name,)).fetchone()[0]


def _ensure(conn, schema: str, d: dict, renames: dict[str, str]) -> None:
    """Make type ``d`` available; record its destination name in ``renames`` if it moves."""
    ref, kind = d["ref"], d["kind"]
    if kind not in ("enum", "domain", "composite"):
        if _regtype(conn, ref) is None:
            raise DestinationError(
                f"type {ref} ({kind}) does not exist in the destination database; create "
                "it there first (CREATE EXTENSION for an extension's type)")
        return
    want = _renamed_def(d, renames)
    ddl = _create_sql(schema, want)
    for name in (ref, qualified(schema, d["name"])):
        oid = _regtype(conn, name)
        if oid is None:
            continue
        have = type_defs(conn, oid)
        have_def = have[-1] if have else {"kind": "base"}
        problem = _difference(want, have_def)
        if problem:
            raise DestinationError(
                f"type {name} exists in the destination but {problem}; make it match the "
                f"source, or drop or rename it so that it can be created as: {ddl}")
        _record(conn, oid, ref, renames)
        return
    try:
        conn.execute(ddl)
    except Exception as exc:  # psycopg.Error: the message says why, the DDL says how
        diag = getattr(exc, "diag", None)
        why = (diag.message_primary if diag is not None else None) or str(exc)
        raise DestinationError(f"cannot create type {d['name']} in schema {schema} ({why}); "
                               f"create it there first: {ddl}") from None
    _record(conn, _regtype(conn, qualified(schema, d["name"])), ref, renames)


def _record(conn, oid: int, ref: str, renames: dict[str, str]) -> None:
    name = conn.execute("SELECT format_type(%s, NULL)", (oid,)).fetchone()[0]
    if name != ref:
        renames[ref] = name


def _difference(want: dict, have: dict) -> str:
    """What differs between two definitions ('' when they match)."""
    if have["kind"] != want["kind"]:
        return f"is of kind {have['kind']}, not {want['kind']}"
    if want["kind"] == "enum" and have["labels"] != want["labels"]:
        return f"has the labels {have['labels']}, not {want['labels']}"
    if want["kind"] == "domain":
        for key in ("base", "not_null", "checks"):
            if have[key] != want[key]:
                return f"has {key} {have[key]!r}, not {want[key]!r}"
    if want["kind"] == "composite" and have["attributes"] != want["attributes"]:
        return f"has the attributes {have['attributes']}, not {want['attributes']}"
    return ""


def _create_sql(schema: str, d: dict) -> str:
    """The CREATE statement of a definition (with destination names)."""
    name = qualified(schema, d["name"])
    where = f"type {d['ref']}"
    if d["kind"] == "enum":
        labels = ", ".join(sql.Literal(label).as_string(None) for label in d["labels"])
        return f"CREATE TYPE {name} AS ENUM ({labels})"
    if d["kind"] == "composite":
        attrs = ", ".join(f"{quote_ident(a)} {check_type_sql(t, where)}"
                          for a, t in d["attributes"])
        return f"CREATE TYPE {name} AS ({attrs})"
    parts = [f"CREATE DOMAIN {name} AS {check_type_sql(d['base'], where)}"]
    if d["default"] is not None:
        parts.append(f"DEFAULT {_expression(d['default'], where)}")
    if d["not_null"]:
        parts.append("NOT NULL")
    parts += [_expression(c, where) for c in d["checks"]]
    return " ".join(parts)


def _expression(text: str, where: str) -> str:
    """A default or CHECK clause from a carried definition: one clause, no statement break
    (definitions may come from a plugin's schema, not only from a source catalog)."""
    if ";" in text:
        raise DestinationError(f"{where}: the definition clause {text!r} contains ';'; create "
                               "the type in the destination first")
    return text
