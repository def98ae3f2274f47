"""The Postgres source connector: describes tables from the catalog, cuts them into key
ranges, and opens COPY readers (Arrow batches, or the raw COPY binary stream for
passthrough). The only source module that knows it reads Postgres."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import psycopg

from ... import passthrough
from ...connector import Capabilities, ChangePlan, CursorPlan, KeyCuts, KeyRange, RangePlan, StreamInfo
from ...deferred import deferred
from ...errors import SourceError
from ...pgconn import connect, resolve_conninfo
from ...pgtypes import (PgTable, carried_as_text, describe_table, project, qualified,
                        split_table)
from ...table_facts import attach
from . import catalog, ranges
from .reader import PostgresReader

# only over-long slot names are hashed (see pgtypes.hashlib)
hashlib = deferred("hashlib")

if TYPE_CHECKING:
    # (not at run time: rapidbyte_fast.read() builds this connector without the config
    # package, whose pydantic models cost a fresh process about 0.25 s to import)
    from ...config import PostgresSourceConfig

_TABLES_SQL = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY c.relname
"""

_BASE_TABLES_SQL = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND c.relname NOT LIKE 'rbf\\_%%' ORDER BY c.relname
"""


class PostgresSourceConnector:
    """``source: use: postgres``."""

    name = "postgres"
    capabilities = Capabilities(raw_copy=True, key_ranges=True, incremental=True,
                                change_capture=True, snapshots=True, cursor_ordered=True)
    # (no config_model: a built-in's is picked by config.connectors.connector_config_model)

    def __init__(self, config: PostgresSourceConfig, endpoint: str | None = None) -> None:
        self.config = config
        self.endpoint = endpoint or resolve_conninfo(config)
        self._conn: psycopg.Connection | None = None

    @property
    def catalog(self) -> psycopg.Connection:
        """The connection describing and cutting tables (opened on first use)."""
        if self._conn is None:
            self._conn = connect(self.endpoint, "source")
        return self._conn

    def describe(self, stream: Any, text_columns: frozenset[str] = frozenset()) -> StreamInfo:
        """The stream's table now; ``text_columns`` are read and carried as exact text (an
        earlier attempt met arrays their Arrow list type cannot carry)."""
        schema, table = split_table(stream.name, self.config.schema_name)
        info = self._info(stream.name, schema, table, stream.columns, text_columns)
        rel = qualified(schema, table)
        denied = [c for (c,) in self.catalog.execute(
            "SELECT c FROM unnest(%s::text[]) c WHERE NOT has_table_privilege(%s, 'SELECT') "
            "AND NOT has_column_privilege(%s, c, 'SELECT')", (info.schema.names, rel, rel))]
        if denied:
            raise SourceError(f"stream {stream.name}: the source role may not read "
                              f"{schema}.{table} (no SELECT on {', '.join(denied)})")
        return info

    def _info(self, name: str, schema: str, table: str, columns: tuple[str, ...] | None,
              text_columns: frozenset[str] = frozenset()) -> StreamInfo:
        conn = self.catalog
        try:
            full = describe_table(conn, schema, table)
            est_rows, est_bytes = conn.execute(
                "SELECT greatest(reltuples, 0)::bigint, pg_relation_size(oid) FROM pg_class "
                "WHERE oid = %s::regclass", (qualified(schema, table),)).fetchone()
            raw_types = passthrough.column_types(conn, schema, table)
            t = carried_as_text(project(full, columns, name), text_columns)
            facts = catalog.table_facts(conn, t)
        except SourceError as exc:
            raise SourceError(f"stream {name}: {exc}") from None
        except psycopg.Error as exc:
            raise SourceError(f"stream {name}: {' '.join(str(exc).split())}",
                              sqlstate=exc.sqlstate) from None
        # (the facts ride on the schema, to the tables a destination creates; the schema
        # is lazy: a passthrough run never builds its Arrow types)
        return StreamInfo(name, attach(t.lazy_schema(), facts), t.primary_key, est_rows,
                          est_bytes, f"{schema}.{table}", {"table": t, "raw_types": raw_types})

    def stream_names(self) -> list[str]:
        """The tables of the configured schema, as stream names (``streams: "*"``): plain
        and partitioned tables, not partitions (their parent reads them)."""
        return [r[0] for r in self.catalog.execute(_BASE_TABLES_SQL,
                                                   (self.config.schema_name,)).fetchall()]

    def discover(self) -> list[StreamInfo]:
        schema = self.config.schema_name
        names = [r[0] for r in self.catalog.execute(_TABLES_SQL, (schema,)).fetchall()]
        return [self._info(n if schema == "public" else f"{schema}.{n}", schema, n, None)
                for n in names]

    def raw_copy_reason(self, info: StreamInfo) -> str | None:
        return passthrough.source_reason(info.extra["raw_types"], info.schema.names)

    def plan_ranges(self, info: StreamInfo, stream: Any, workers: Any, write_mode: str,
                    resumable: bool, earlier: KeyCuts | None,
                    interval: tuple[int, int]) -> RangePlan:
        table: PgTable = info.extra["table"]
        workers = ranges.worker_count(info.est_rows, workers, write_mode)
        int_key = ranges.integer_key(table, stream.partition_key, stream.name)
        key = (int_key,) if int_key else table.primary_key
        if resumable and key:
            cuts = earlier if earlier is not None and earlier.key == key else None
            if cuts is None:
                pieces = max(workers, ranges.range_count(info.est_rows, info.est_bytes,
                                                         *interval))
                cuts = ranges.key_cuts(self.catalog, table, key, pieces) if pieces > 1 else None
            if cuts is not None and cuts.cuts:
                return RangePlan(_key_ranges(cuts), workers, f"key {', '.join(key)}", cuts)
        if workers <= 1:
            return RangePlan()
        if int_key:
            cuts = ranges.key_cuts(self.catalog, table, (int_key,), workers)
            if cuts is not None and cuts.cuts:
                return RangePlan(_key_ranges(cuts), workers, f"key {int_key}")
            return RangePlan()
        blocks = ranges.block_ranges(self.catalog, table, workers)
        if not blocks:
            return RangePlan()
        return RangePlan(tuple(KeyRange(i, p) for i, p in enumerate(blocks)), workers, "ctid")

    def reader(self, info: StreamInfo, cursor: CursorPlan | None = None,
               snapshot: str | None = None, hold_snapshot: bool = False) -> PostgresReader:
        return PostgresReader(self.endpoint, info.extra["table"], info.name, cursor, snapshot,
                              hold_snapshot)

    def exporter(self, stream: str) -> ranges.SnapshotExporter:
        """A connection holding a snapshot the workers of ``stream`` import."""
        return ranges.SnapshotExporter(connect(self.endpoint, f"source stream {stream}"))

    def plan_changes(self, pipeline: str, stream: Any, info: StreamInfo, several: bool,
                     position: str | None) -> ChangePlan:
        """The change plan of a cdc stream: checks the server, the table's key and (after
        the bootstrap) the slot, each refusal with its fix."""
        from ..cdc import slot as cdc_slot
        from ..cdc.relations import identity_problem

        cfg, conn = self.config, self.catalog
        level = conn.execute("SHOW wal_level").fetchone()[0]
        if level != "logical":
            raise SourceError(f"stream {stream.name}: change capture needs wal_level = "
                              f"logical, the source has {level} (ALTER SYSTEM SET wal_level "
                              "= logical; then restart the server)")
        table: PgTable = info.extra["table"]
        rel = qualified(table.schema, table.name)
        replident = conn.execute("SELECT relreplident FROM pg_class WHERE oid = %s::regclass",
                                 (rel,)).fetchone()[0]
        problem = identity_problem(rel, replident, table.primary_key)
        if problem:
            raise SourceError(f"stream {stream.name}: {problem}")
        key = table.primary_key or tuple(r[0] for r in conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass "
            "AND i.indisreplident ORDER BY array_position(i.indkey::int2[], a.attnum)",
            (rel,)))
        slot = self.slot_of(pipeline, stream.name, several)
        if position is not None:
            try:
                cdc_slot.usable(conn, slot)
            except SourceError as exc:
                raise SourceError(f"stream {stream.name}: {exc} (rapidbyte-fast state reset "
                                  f"<pipeline> --stream {stream.name} forgets the position)"
                                  ) from None
        return ChangePlan(cfg.publication or _derived_name(pipeline), slot,
                          info.qualified_name, key, cfg.cdc_window_bytes,
                          cfg.cdc_window_changes, window_secs=cfg.cdc_window_seconds)

    def slot_of(self, pipeline: str, stream: str, several: bool) -> str:
        """The slot of a cdc stream: ``replication_slot``, else derived from the pipeline
        name (and the stream's, when the pipeline captures several)."""
        from ..cdc import slot as cdc_slot

        if several and self.config.replication_slot:
            raise SourceError("source.config.replication_slot: one slot per cdc stream; "
                              "leave it out when a pipeline captures several streams")
        return cdc_slot.check_name(self.config.replication_slot or _derived_name(
            pipeline + ("_" + stream if several else "")))

    def change_reader(self, plan: ChangePlan, max_batch_rows: int, max_batch_bytes: int):
        """A reader of the changes of a planned cdc stream (``sources.cdc.ChangeReader``)."""
        from ..cdc.reader import ChangeReader

        return ChangeReader(self.endpoint, plan.publication, plan.slot, [plan.table],
                            max_window_bytes=plan.window_bytes,
                            max_window_changes=plan.window_changes,
                            max_batch_rows=max_batch_rows, max_batch_bytes=max_batch_bytes,
                            budget_setting="source.config.cdc_window_bytes")

    def drop_slot(self, slot: str) -> bool:
        """Drop a cdc stream's slot (``state reset``); False when there was none."""
        from ..cdc import slot as cdc_slot

        return cdc_slot.drop(self.catalog, slot)

    def slot_status(self, slot: str):
        """Lag and retained WAL of a slot (None when it does not exist)."""
        from ..cdc import slot as cdc_slot

        return cdc_slot.status(self.catalog, slot)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _key_ranges(cuts: KeyCuts) -> tuple[KeyRange, ...]:
    return tuple(KeyRange(i, ranges.key_range_sql(cuts.key, cuts.key_types, cuts.cuts, i,
                                                  cuts.has_null))
                 for i in range(cuts.count))


def _derived_name(text: str) -> str:
    """A slot or publication name made from a pipeline (and stream) name: ``rbf_`` and
    lower-case letters, digits and underscores, shortened with a hash past 63 chars."""
    name = "rbf_" + re.sub(r"[^a-z0-9_]", "_", text.lower())
    if len(name) > 63:
        name = name[:54] + "_" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return name
