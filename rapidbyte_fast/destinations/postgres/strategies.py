"""Write modes as strategies: where a load's rows go, and how they reach the target.

- ``Append``: into the target, range by range (or, read in parallel without being
  resumable, into a staging table moved into the target at the end);
- ``Replace``: into a staging table, swapped in at the end with its primary key;
- ``Merge`` (upsert, and incremental streams): into a staging table whose rows are merged
  into the target at each checkpoint and at the end, with the stream's cursor.

A strategy runs its DDL on the load's main connection; ``prepare`` returns the columns to
load and the existing target's types when rows load straight into it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import logging
import re

import psycopg

from ...errors import DestinationError
from ...lazy_schema import LazySchema, rebuilt
from ...pgddl import ensure_types
from ...pgtypes import (
    derived_name, describe_table, field_pg_type, qualified, quote_ident, table_exists,
)
from ...state import cursors, progress
from ...table_facts import TableFacts, facts_of
from . import created_tables, ddl, target_catalog, target_objects
from .evolution import TargetColumn, evolve
from .loader import dest_error
from .spec import WriteSpec

if TYPE_CHECKING:
    import pyarrow as pa


_log = logging.getLogger("rapidbyte_fast")


class Strategy:
    """What every write mode shares: the target, its evolution, staging tables."""

    def __init__(self, spec: WriteSpec, evolution, options=None) -> None:
        self.spec = spec
        self.evolution = evolution
        #: the destination's ``config`` (``on_dependent_views``, ``indexes``)
        self.options = options
        self.target = qualified(spec.schema, spec.table)
        self.load_table = spec.staging or spec.table
        self.load_schema = spec.staging_schema if spec.staging else spec.schema
        #: the rows of the stream are in a committed staging table (outlives a rollback)
        self.stage_committed = False
        #: the load created the target (without its key, added at the end)
        self.created = False
        self.names: list[str] = []
        self.new_cursor: cursors.Cursor | None = None
        #: what the source had, for the tables this load creates
        self.facts = TableFacts()
        #: the columns loaded (set by ``prepare``)
        self.columns_schema: pa.Schema | LazySchema | tuple = ()
        #: what the load left out of the target, for the summary (also logged)
        self.notes: list[str] = []

    def _note(self, text: str) -> None:
        self.notes.append(text)
        _log.warning("%s%s", self.spec.prefix, text)

    @property
    def load_rel(self) -> str:
        """The qualified name of the table rows are loaded into."""
        return qualified(self.load_schema, self.load_table)

    def prepare(self, conn: psycopg.Connection, schema: pa.Schema
                ) -> tuple[pa.Schema, dict[str, str] | None]:
        """DDL before the load: returns the columns to load, and the target's types when
        rows load into an existing target."""
        spec = self.spec
        self.facts = facts_of(schema)  # (before the types' names change to the destination's)
        schema = ensure_types(conn, spec.schema, schema)
        if spec.discard is not None:
            progress.reset(conn, spec.schema, spec.pipeline, spec.stream)
            _log.warning("%sstarting over: an unfinished %s load (%d of %d key ranges) cannot "
                         "be resumed with this configuration", spec.prefix,
                         spec.discard.write_mode, len(spec.discard.done), spec.discard.ranges)
        exists = table_exists(conn, spec.schema, spec.table)
        target_types = None
        if exists and spec.write_mode != "replace":
            schema = self._evolve(conn, schema)
            target_types = self._existing_types(conn, schema)
        schema = self._prepare_target(conn, schema, exists)
        self._drop_orphan_stages(conn)
        if spec.staging is not None:
            if spec.ranged is None or not spec.ranged.columns:  # a new staging table
                # durable: false: a replace's staging (its new target) skips the WAL
                unlogged = spec.strategy == "replace" and not getattr(
                    self.options, "durable", True)
                if spec.strategy == "replace" and not exists:  # (the new target)
                    self._create(conn, self.load_rel, self.load_table, schema, identities=False,
                                 unlogged=unlogged)
                else:
                    conn.execute(ddl.create_table_sql(
                        self.load_rel, self.load_table, _columns(schema),
                        seq=spec.write_mode == "upsert", unlogged=unlogged))
            target_types = None  # the staging table has the source's types
        elif not table_exists(conn, spec.schema, spec.table):
            self._create(conn, self.target, spec.table, schema)
            self.created = True
        if spec.ranged is not None and not spec.ranged.columns:  # a new ranged load
            record = spec.ranged.with_staging(spec.staging, progress.columns_fingerprint(schema),
                                              self.created and bool(spec.primary_key))
            progress.save(conn, spec.schema, spec.pipeline, spec.stream, record)
        self.names = list(schema.names)
        self.columns_schema = schema
        return schema, target_types

    def _create(self, conn: psycopg.Connection, rel: str, table: str, schema: pa.Schema,
                pk: tuple[str, ...] = (), identities: bool = True,
                unlogged: bool = False) -> None:
        """Create a table that becomes the target, with what its source had (indexes
        come after the load: ``_complete_created``)."""
        facts = self.facts
        conn.execute(ddl.create_table_sql(rel, table, created_tables.columns(
            schema, facts, identities), pk, constraints=created_tables.checks(facts),
            unlogged=unlogged))
        for text in created_tables.comments_sql(rel, facts):
            conn.execute(text)
        for note in created_tables.notes(facts):
            self._note(note)

    def _complete_created(self, conn: psycopg.Connection, rel: str) -> None:
        """After the load into a target this load created (appended or merged into): the
        source's secondary indexes, and its identity columns' positions."""
        self._build_indexes(conn, rel, unique=False)
        for text in created_tables.identity_sql(rel, self.columns_schema, self.facts, False):
            conn.execute(text)

    def _build_indexes(self, conn: psycopg.Connection, rel: str, unique: bool) -> None:
        """The source's secondary indexes on ``rel`` (``unique`` ones only when it holds a
        copy of the source), unless ``indexes: none``."""
        spec = self.spec
        if getattr(self.options, "indexes", "source") == "source":
            for index in self.facts.indexes:
                name = next((n for n in (index.name, derived_name(spec.table, "_" + index.name))
                             if conn.execute("SELECT to_regclass(%s) IS NULL",
                                             (qualified(spec.schema, n),)).fetchone()[0]), None)
                if name is None:
                    self._note(f"index {index.name} is not created: its name is taken")
                    continue
                conn.execute(created_tables.index_sql(rel, index, name, unique))

    def _prepare_target(self, conn: psycopg.Connection, schema: pa.Schema,
                        exists: bool) -> pa.Schema:
        """What the mode needs of the target before the load."""
        return schema

    def checkpoint(self, conn: psycopg.Connection) -> None:
        """Commit what is loaded so far (only a merge checkpoints)."""

    def finish(self, conn: psycopg.Connection, rows_written: int) -> None:
        """Put the loaded rows in place (in the final transaction)."""
        spec = self.spec
        add_pk = spec.ranged.add_pk if spec.ranged is not None else self.created
        if spec.primary_key and add_pk:
            conn.execute(ddl.add_primary_key_sql(self.target, spec.table, spec.primary_key))
        if self.created or spec.ranged is not None and spec.ranged.add_pk:
            self._complete_created(conn, self.target)

    def abort(self, conn: psycopg.Connection) -> None:
        """After a rollback: drop a committed staging table that cannot be resumed."""
        if self.spec.staging and self.stage_committed and self.spec.ranged is None:
            conn.execute(f"DROP TABLE IF EXISTS {self.load_rel}")
            conn.commit()

    def _evolve(self, conn: psycopg.Connection, schema: pa.Schema) -> pa.Schema:
        spec = self.spec
        table = describe_table(conn, spec.schema, spec.table)
        have = {c.name: TargetColumn(c.pg_type, c.not_null) for c in table.columns}
        fields = [(f.name, field_pg_type(f), f.nullable) for f in schema]
        plan = evolve(self.target, have, table.primary_key, fields, self.evolution)
        if plan.problems:
            raise DestinationError(f"{spec.prefix}schema changed: " + "; ".join(plan.problems))
        if not plan.keep:
            raise DestinationError(f"{spec.prefix}no source column can be loaded")
        for sql in plan.statements:
            conn.execute(sql)
        for col in plan.added:
            _log.info("%sadded column %s", spec.prefix, col)
        return rebuilt(schema, [schema.field(n) for n in plan.keep])

    def _existing_types(self, conn: psycopg.Connection, schema: pa.Schema) -> dict[str, str]:
        spec = self.spec
        have = {c.name: c for c in describe_table(conn, spec.schema, spec.table).columns}
        missing = [n for n in schema.names if n not in have]
        if missing:
            raise DestinationError(f"{spec.prefix}table {spec.schema}.{spec.table} has no "
                                   f"column {', '.join(missing)}")
        return {n: ("text" if have[n].typtype == "e" else have[n].base_type)
                for n in schema.names}

    def _drop_orphan_stages(self, conn: psycopg.Connection) -> None:
        """Drop staging tables of this target left by a crashed run (one that could not
        clean up), except the one a ranged load resumes. A staging table in use by a
        concurrent run is locked, and skipped."""
        spec = self.spec
        keep = spec.ranged.staging if spec.ranged is not None else None
        tag = re.compile(rf"{ddl.STAGE_TAG}[0-9a-f]{{8}}$")
        for (name,) in conn.execute(ddl.STAGES_SQL, (spec.schema, "%\\_\\_rbf\\_stage\\_%")
                                    ).fetchall():
            m = tag.search(name)
            if name in (keep, spec.staging) or m is None or derived_name(
                    spec.table, m.group()) != name:
                continue
            rel = qualified(spec.schema, name)
            try:
                with conn.transaction():
                    conn.execute(f"LOCK TABLE {rel} IN ACCESS EXCLUSIVE MODE NOWAIT")
                    conn.execute(f"DROP TABLE {rel}")
                _log.info("%sdropped %s, left by an interrupted run", spec.prefix, name)
            except psycopg.errors.LockNotAvailable:
                continue


class Append(Strategy):
    """Rows go into the target (or, read in parallel and not resumable, through staging)."""

    def finish(self, conn: psycopg.Connection, rows_written: int) -> None:
        if self.spec.staging is None:
            super().finish(conn, rows_written)
            return
        conn.execute(ddl.insert_select_sql(self.load_rel, self.target, self.names, None))
        conn.execute(f"DROP TABLE {self.load_rel}")
        if self.created:
            self._complete_created(conn, self.target)


class Replace(Strategy):
    """Rows go into a staging table, swapped in (with its key) at the end; what users built
    on the old table is recreated on the new one in the swap transaction."""

    @property
    def recreate_dependents(self) -> bool:
        """Are dependent views and other tables' foreign keys recreated (else refused)?"""
        return getattr(self.options, "on_dependent_views", "recreate") == "recreate"

    def _prepare_target(self, conn: psycopg.Connection, schema: pa.Schema,
                        exists: bool) -> pa.Schema:
        if exists:
            check_no_dependents(conn, self.spec, self.recreate_dependents)
        return schema

    def finish(self, conn: psycopg.Connection, rows_written: int) -> None:
        spec, stage = self.spec, self.load_rel
        exists = table_exists(conn, spec.schema, spec.table)
        if (exists and rows_written == 0 and not spec.allow_empty_replace
                and not conn.execute(f"SELECT EXISTS (SELECT 1 FROM {stage})").fetchone()[0]
                and conn.execute(f"SELECT EXISTS (SELECT 1 FROM {self.target})").fetchone()[0]):
            raise DestinationError(
                f"{spec.prefix}the source returned no rows; refusing to replace the "
                f"non-empty table {spec.schema}.{spec.table} "
                "(set destination.allow_empty_replace: true to allow it)")
        if spec.primary_key:
            conn.execute(ddl.add_primary_key_sql(stage, self.load_table, spec.primary_key))
        objs = None
        if exists:
            check_no_dependents(conn, spec, self.recreate_dependents)
            # no DDL on the old table from here to the swap (reads and writes go on)
            conn.execute(f"LOCK TABLE {self.target} IN SHARE UPDATE EXCLUSIVE MODE")
            objs, notes = target_objects.keep(target_catalog.capture(conn, self.target),
                                              set(self.names), bool(spec.primary_key))
            for note in notes:
                self._note(note)
            self._run(conn, target_objects.prebuild_sql(objs, stage))
            self._run(conn, target_objects.before_drop_sql(objs))
        else:
            self._build_indexes(conn, stage, unique=True)
        for sql in ddl.swap_sql(stage, self.load_table, self.target, spec.table, exists,
                                bool(spec.primary_key)):
            conn.execute(sql)
        if objs is not None:
            self._run(conn, target_objects.after_swap_sql(objs, self.target, spec.schema))
        else:  # (identities added now are named after the target, not the stage)
            for text in created_tables.identity_sql(self.target, self.columns_schema,
                                                    self.facts, add=True):
                conn.execute(text)

    def _run(self, conn: psycopg.Connection, steps: list[target_objects.Step]) -> None:
        """Run the statements recreating the old table's objects; a failure names the
        object (and the swap's transaction rolls back: the old table stays)."""
        for what, text in steps:
            try:
                conn.execute(text)
            except psycopg.Error as exc:
                raise dest_error(f"{self.spec.prefix}cannot recreate {what} on the new "
                                 f"table: ", exc) from None


class Merge(Strategy):
    """Rows go into a staging table, merged into the target at each checkpoint and at the
    end, together with the cursor they reach."""

    def _prepare_target(self, conn: psycopg.Connection, schema: pa.Schema,
                        exists: bool) -> pa.Schema:
        spec = self.spec
        if not exists:
            self._create(conn, self.target, spec.table, schema, spec.primary_key)
            self.created = True
        if spec.write_mode == "upsert":
            ok = conn.execute(ddl.CONFLICT_TARGET_SQL,
                              (self.target, list(spec.primary_key))).fetchone()[0]
            if not ok:
                raise DestinationError(
                    f"{spec.prefix}upsert needs a primary key or unique index on "
                    f"({', '.join(spec.primary_key)}) in {spec.schema}.{spec.table}")
        return schema

    def checkpoint(self, conn: psycopg.Connection) -> None:
        self._move(conn, drop=False)

    def finish(self, conn: psycopg.Connection, rows_written: int) -> None:
        self._move(conn, drop=True)
        if self.created:
            self._complete_created(conn, self.target)

    def _move(self, conn: psycopg.Connection, drop: bool) -> None:
        """Move the staged rows into the target with one set-based statement, and save the
        cursor they reach, in the current transaction."""
        stage = self.load_rel
        done = None if drop else self._complete_rows(conn)
        if self.spec.cursor is not None:
            self._save_cursor(conn, done)
        if self.spec.write_mode == "upsert":
            conn.execute(ddl.upsert_sql(stage, self.target, self.names, self.spec.primary_key,
                                        done))
        else:
            conn.execute(ddl.insert_select_sql(stage, self.target, self.names, done))
        if drop:
            conn.execute(f"DROP TABLE {stage}")
        elif done:
            conn.execute(f"DELETE FROM {stage} WHERE {done}")
        else:
            conn.execute(f"TRUNCATE {stage}")

    def _complete_rows(self, conn: psycopg.Connection) -> str | None:
        """At a checkpoint of an incremental stream without a tie-breaker, the rows of the
        highest cursor value read so far may go on in the rest of the stream, and the next
        run reads only ``cursor > last``: the condition selecting the rows below it (None:
        every staged row). Reads are in cursor order with NULLs last, so once a NULL cursor
        is staged every row is complete."""
        cursor = self.spec.cursor
        if cursor is None or cursor.tie_breaker is not None:
            return None
        c = quote_ident(cursor.field)
        top, top_type, has_null = conn.execute(
            f"SELECT max({c})::text, pg_typeof(max({c}))::text, bool_or({c} IS NULL) "
            f"FROM {self.load_rel}").fetchone()
        if top is None or has_null:
            return None
        return f"{c} < {psycopg.sql.Literal(top).as_string(conn)}::{top_type}"

    def _save_cursor(self, conn: psycopg.Connection, where: str | None) -> None:
        cursor, spec = self.spec.cursor, self.spec
        field, tie = quote_ident(cursor.field), cursor.tie_breaker
        # order by the stage's columns (s.col), not by the ::text outputs of the same name
        order = f"s.{field} DESC" + (f", s.{quote_ident(tie)} DESC" if tie else "")
        tie_sql = f"s.{quote_ident(tie)}::text" if tie else "NULL"
        row = conn.execute(
            f"SELECT s.{field}::text, {tie_sql} FROM {self.load_rel} AS s "
            f"WHERE s.{field} IS NOT NULL{' AND ' + where if where else ''} "
            f"ORDER BY {order} LIMIT 1").fetchone()
        if row is not None:
            self.new_cursor = cursors.Cursor(row[0], row[1])
            cursors.save(conn, spec.schema, spec.pipeline, spec.stream, self.new_cursor)


STRATEGIES: dict[str, type[Strategy]] = {"append": Append, "replace": Replace, "merge": Merge}


def check_no_dependents(conn: psycopg.Connection, spec: WriteSpec, recreate: bool) -> None:
    """A replace drops the old table: refuse, naming them, when what depends on it cannot
    be recreated: materialized views, and (unless ``recreate``) views and other tables'
    foreign keys."""
    rel = qualified(spec.schema, spec.table)
    views = conn.execute(ddl.DEPENDENT_VIEWS_SQL, (rel,)).fetchall()
    matviews = [name for name, kind in views if kind == "m"]
    views = [] if recreate else [name for name, kind in views if kind != "m"]
    fks = [] if recreate else [r[0] for r in conn.execute(ddl.REFERENCING_KEYS_SQL, (rel,))]
    if views or fks or matviews:
        what = "; ".join(filter(None, [
            f"views {', '.join(views)} depend on it" if views else "",
            f"materialized views {', '.join(matviews)} depend on it" if matviews else "",
            f"foreign keys {', '.join(fks)} reference it" if fks else ""]))
        raise DestinationError(
            f"{spec.prefix}replace cannot swap in a new {spec.schema}.{spec.table}: {what} "
            "(drop and recreate them around the load, or use write_mode append or upsert)")


def _columns(schema: pa.Schema) -> list[tuple[str, str]]:
    return [(f.name, field_pg_type(f)) for f in schema]

