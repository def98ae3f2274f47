"""``check`` and ``discover``: validate a pipeline against the live source and destination."""
from __future__ import annotations

from .config import PipelineConfig
from .partitions import integer_key
from .pgtypes import PgTable, describe_table, project, qualified, split_table
from .plan import resolve_conninfo
from .sources.postgres import connect
from .transforms.chain import build, open_chain

_TABLES_SQL = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY c.relname
"""


def _stream_table(cfg: PipelineConfig, conn, name: str, columns) -> PgTable:
    schema, table = split_table(name, cfg.source.config.schema_name)
    return project(describe_table(conn, schema, table), columns, name)


def _stream_schema(cfg: PipelineConfig, conn, name: str, columns):
    if cfg.source.use == "generate":
        from .sources.generate import dataset_schema

        return dataset_schema(cfg.source.config.dataset or name), []
    t = _stream_table(cfg, conn, name, columns)
    return t.arrow_schema(), list(t.primary_key)


def _describe(name: str, arrow_schema, pk) -> dict:
    return {
        "stream": name,
        "primary_key": pk,
        "columns": [
            {"name": f.name,
             "pg_type": (f.metadata or {}).get(b"pg_type", b"").decode() or "-",
             "arrow_type": str(f.type), "nullable": f.nullable}
            for f in arrow_schema
        ],
    }


def discover_source(cfg: PipelineConfig) -> list[dict]:
    """Every table of the source schema (postgres) or every dataset (generate)."""
    if cfg.source.use == "generate":
        from .sources.generate import DATASETS

        return [_describe(d, *_stream_schema(cfg, None, d, None)) for d in DATASETS]
    conn = connect(resolve_conninfo(cfg.source.config), "source")
    with conn:
        schema = cfg.source.config.schema_name
        names = [r[0] for r in conn.execute(_TABLES_SQL, (schema,)).fetchall()]
        return [_describe(f"{schema}.{n}" if schema != "public" else n,
                          *_stream_schema(cfg, conn, f"{qualified(schema, n)}", None))
                for n in names]


def check_pipeline(cfg: PipelineConfig) -> list[str]:
    """Lines describing a passed check; raises the first problem found."""
    lines = [f"config: ok (pipeline {cfg.pipeline}, {len(cfg.source.streams)} stream(s))"]
    src_conn = None
    if cfg.source.use == "postgres":
        src_conn = connect(resolve_conninfo(cfg.source.config), "source")
        lines.append(f"source: connected ({cfg.source.config.describe()})")
    else:
        lines.append(f"source: {cfg.source.use}")
    try:
        for s in cfg.source.streams:
            table = _stream_table(cfg, src_conn, s.name, s.columns) if src_conn else None
            schema, pk = ((table.arrow_schema(), list(table.primary_key)) if table
                          else _stream_schema(cfg, src_conn, s.name, s.columns))
            info = _describe(s.name, schema, pk)
            lines.append(f"  stream {s.name}: {len(info['columns'])} columns"
                         + (f", primary key {','.join(pk)}" if pk else ""))
            lines += [f"    {c['name']}: {c['pg_type']} → {c['arrow_type']}"
                      for c in info["columns"]]
            if s.sync_mode == "incremental" and s.tie_breaker_field is None:
                lines.append(f"  warning: stream {s.name} is incremental without "
                             "tie_breaker_field: rows that share the last cursor value and "
                             "arrive later will be missed")
            if (table is not None and s.sync_mode == "full_refresh"
                    and cfg.destination.write_mode in ("append", "replace") and not pk
                    and integer_key(table, s.partition_key, s.name) is None):
                lines.append(f"  note: stream {s.name} has no key to cut into ranges (a primary "
                             "key, or an integer partition_key): a failed full refresh starts "
                             "over instead of resuming")
            if cfg.transforms:
                chain = build(cfg, None)
                try:
                    out = open_chain(chain, s.name, schema)
                finally:
                    for t in chain:
                        t.close()
                lines.append(f"  transforms: ok, {len(chain)} step(s) → "
                             + ", ".join(f"{f.name} {f.type}" for f in out))
    finally:
        if src_conn is not None:
            src_conn.close()
    dst = connect(resolve_conninfo(cfg.destination.config), "destination")
    with dst:
        version = dst.execute("SHOW server_version").fetchone()[0]
        lines.append(f"destination: connected ({cfg.destination.config.describe()}, "
                     f"PostgreSQL {version}), schema {cfg.destination.config.schema_name}, "
                     f"write_mode {cfg.destination.write_mode}, "
                     f"load_method {cfg.destination.config.load_method}")
    return lines
