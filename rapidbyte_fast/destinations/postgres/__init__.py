"""The Postgres destination connector: tells the planner what it needs to know about each
stream's target (does it exist, its column types, an unfinished resumable load, the
committed cursor), decides the write strategy of each stream (``plan_write``), and runs
the planned loads (``TableLoad``). The only destination module that knows it writes
Postgres."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING


from ... import passthrough
from ...config import PostgresDestinationConfig
from ...connector import Capabilities, ChangePlan, CursorPlan, KeyCuts, RangePlan, StreamInfo
from ...pgconn import connect, resolve_conninfo
from ...errors import DestinationError
from ...row_guard import Rejects
from ...pgtypes import primary_key_of, qualified, quote_ident, split_table, table_exists
from ...state import cursors, progress
from .ddl import stage_name
from .loader import adaptive_flush_bytes
from .run_lock import RunLock
from .spec import WriteSpec
from .table_load import TableLoad


if TYPE_CHECKING:
    import pyarrow as pa
    from .change_apply import ChangeApply

__all__ = ["PostgresDestinationConnector", "TargetState", "WriteSpec", "TableLoad",
           "adaptive_flush_bytes"]


@dataclass(frozen=True)
class TargetState:
    """A stream's target as the planner finds it."""

    schema: str
    table: str
    #: ``{column: (format_type, portable binary)}``, None when the target does not exist
    column_types: dict[str, tuple[str, bool]] | None
    #: an unfinished ranged load of the stream, and whether it can go on as configured
    earlier: progress.RangedLoad | None
    earlier_usable: bool
    cursor: cursors.Cursor | None


def _denied(conn, schema: str, table: str, mode: str) -> str | None:
    """What the destination role may not do that the load needs, or None."""
    has_schema = conn.execute("SELECT to_regnamespace(%s) IS NOT NULL",
                              (quote_ident(schema),)).fetchone()[0]
    if not has_schema:
        ok = conn.execute("SELECT has_database_privilege(current_database(), 'CREATE')"
                          ).fetchone()[0]
        return None if ok else f"may not create schema {schema} (GRANT CREATE ON DATABASE)"
    if not conn.execute("SELECT has_schema_privilege(%s, 'USAGE')", (schema,)).fetchone()[0]:
        return f"may not use schema {schema} (GRANT USAGE ON SCHEMA)"
    exists = table_exists(conn, schema, table)
    # a new target, a replace's staging table and the state tables are made in the schema
    if (not exists or mode == "replace") and not conn.execute(
            "SELECT has_schema_privilege(%s, 'CREATE')", (schema,)).fetchone()[0]:
        return f"may not create tables in schema {schema} (GRANT CREATE ON SCHEMA)"
    if exists:
        rel = qualified(schema, table)
        if not conn.execute("SELECT has_table_privilege(%s, 'INSERT')", (rel,)).fetchone()[0]:
            return f"may not insert into {schema}.{table} (GRANT INSERT)"
        if mode == "replace" and not conn.execute(
                "SELECT pg_has_role(relowner, 'USAGE') FROM pg_class WHERE oid = %s::regclass",
                (rel,)).fetchone()[0]:
            return f"does not own {schema}.{table}, which a replace swaps out"
    return None


class PostgresDestinationConnector:
    """``destination: use: postgres``; ``config`` is the whole ``destination`` section."""

    name = "postgres"
    capabilities = Capabilities(raw_copy=True, key_ranges=True, incremental=True,
                                change_capture=True)
    config_model = PostgresDestinationConfig

    def __init__(self, config, endpoint: str | None = None) -> None:
        self.config = config
        self.pg = config.config
        self.endpoint = endpoint or resolve_conninfo(self.pg)

    def describe(self) -> str:
        """Where rows go and how, for ``check`` (connects)."""
        with connect(self.endpoint, "destination") as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        return (f"({self.pg.describe()}, PostgreSQL {version}), schema {self.pg.schema_name}, "
                f"write_mode {self.config.write_mode}, load_method {self.pg.load_method}")

    def target_of(self, stream: str) -> tuple[str, str]:
        """(schema, table) a stream loads into."""
        return self.pg.schema_name, split_table(stream, self.pg.schema_name)[1]

    def inspect(self, pipeline: str, stream: str, schema: pa.Schema) -> TargetState:
        """The target of ``stream`` (whose rows have ``schema``), on a short connection."""
        dest_schema, table = self.target_of(stream)
        mode = self.config.write_mode
        with connect(self.endpoint, f"destination for stream {stream}") as conn:
            denied = _denied(conn, dest_schema, table, mode)
            if denied:
                raise DestinationError(f"stream {stream} → {dest_schema}.{table}: the "
                                       f"destination role {denied}; nothing was written")
            exists = table_exists(conn, dest_schema, table)
            types = passthrough.column_types(conn, dest_schema, table) if exists else None
            earlier = progress.load(conn, dest_schema, pipeline, stream)
            usable = earlier is not None and earlier.write_mode == mode and (
                earlier.staging is not None
                and earlier.columns == progress.columns_fingerprint(schema)
                and table_exists(conn, dest_schema, earlier.staging)
                if mode == "replace" else exists)
            cursor = cursors.load(conn, dest_schema, pipeline, stream)
        return TargetState(dest_schema, table, types, earlier, usable, cursor)

    def raw_copy_reason(self, transforms: bool) -> str | None:
        """Why the configuration rules out raw COPY bytes, or None."""
        if self.pg.passthrough == "off":
            return "passthrough: off"
        if transforms:
            return "transforms need the values"
        if self.pg.load_method != "copy":
            return "load_method is insert"
        return None

    def target_copy_reason(self, state: TargetState, info: StreamInfo) -> str | None:
        """Why the existing target cannot take the source's raw COPY bytes, or None."""
        if state.column_types is not None and self.config.write_mode != "replace":
            src = info.extra.get("raw_types")
            if src is not None:
                return passthrough.target_reason(src, state.column_types, info.schema.names)
        return None

    def primary_key(self, schema: pa.Schema) -> tuple[str, ...]:
        """The key of a target the load creates: configured, else the source's; an append
        target is a log, keyed only when ``primary_key`` is configured."""
        configured = tuple(self.config.primary_key or ())
        if configured or self.config.write_mode == "append":
            return configured
        return primary_key_of(schema)

    def plan_write(self, pipeline: str, stream: str, schema: pa.Schema, state: TargetState,
                   reads: RangePlan, raw: bool, cursor: CursorPlan | None,
                   checkpoint_every: tuple[int, int, float], mode: str | None = None
                   ) -> WriteSpec:
        """The writes of one stream: strategy, load table, commit policy; ``mode``
        overrides the write mode (a cdc replica's bootstrap replaces, even with an empty
        source)."""
        allow_empty = self.config.allow_empty_replace or mode is not None
        mode = mode or self.config.write_mode
        strategy = ("replace" if mode == "replace"
                    else "merge" if mode == "upsert" or cursor is not None else "append")
        ranged, discard = self._ranged(mode, state, reads.cuts)
        commit = "per_range" if ranged is not None or reads.workers > 1 else "once"
        staging, staging_schema = None, state.schema
        if ranged is not None and ranged.staging is not None:  # resuming a replace
            staging = ranged.staging
        elif strategy != "append" or (commit == "per_range" and ranged is None):
            staging = stage_name(state.table, uuid.uuid4().hex[:8])
            if strategy == "merge" and reads.workers == 1:
                staging_schema = "pg_temp"  # merged into the target, never renamed
        return WriteSpec(
            pipeline, stream, state.schema, state.table, mode, strategy,
            "copy" if raw else self.pg.load_method, raw, self.primary_key(schema), staging,
            staging_schema, commit,
            checkpoint_every if strategy == "merge" and commit == "once" else (0, 0, 0.0),
            ranged, discard, cursor, state.column_types is not None, allow_empty)

    def _ranged(self, mode: str, state: TargetState, cuts: KeyCuts | None
                ) -> tuple[progress.RangedLoad | None, progress.RangedLoad | None]:
        """The resumable load's record (the earlier one when its cuts go on) and the
        earlier unfinished load to forget."""
        earlier = state.earlier
        if cuts is None:
            return None, earlier
        if earlier is not None and state.earlier_usable and earlier.cuts == cuts.cuts and \
                earlier.key == cuts.key:
            return earlier, None
        return progress.RangedLoad(mode, cuts.key, cuts.key_types, cuts.cuts,
                                   cuts.has_null), earlier

    def lock(self, pipeline: str, run_id: str, streams: list[str]) -> RunLock:
        """Hold every stream's target against other runs until ``close``; LockedError
        naming the holder when another run holds one."""
        return RunLock(self.endpoint, pipeline, run_id,
                       sorted({self.target_of(s) for s in streams}))

    def open_load(self, spec: WriteSpec, before_commit=None,
                  rejects: Rejects | None = None) -> TableLoad:
        """The load of one planned stream (call ``open`` on it); ``before_commit(conn)`` runs
        in every transaction that commits rows; ``rejects`` takes the rows the server
        refuses (else they fail the load)."""
        return TableLoad(self.endpoint, spec, self.pg, self.config.schema_evolution,
                         before_commit, rejects)

    def open_change_apply(self, spec: WriteSpec, changes: ChangePlan) -> ChangeApply:
        """The applies of a cdc stream's windows (call ``open`` on it)."""
        from .change_apply import ChangeApply   # (imports pyarrow: not for a passthrough run)

        return ChangeApply(self.endpoint, spec, self.pg, self.config.schema_evolution, changes)

    def bootstrap_commit(self, spec: WriteSpec, changes: ChangePlan, position: str,
                         lsn: int):
        """What a cdc bootstrap load runs in its commit transaction (``before_commit``):
        the target gets its cdc columns, and ``position`` is saved with the rows."""
        from .change_apply import bootstrap_sql

        rel = qualified(spec.schema, spec.table)

        def before_commit(conn) -> None:
            have = {r[0] for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                "AND attnum > 0 AND NOT attisdropped", (rel,))}
            for text in bootstrap_sql(rel, changes, lsn, have):
                conn.execute(text)
            cursors.ensure_table(conn, spec.schema)
            cursors.save(conn, spec.schema, spec.pipeline, spec.stream,
                         cursors.Cursor(position))

        return before_commit
