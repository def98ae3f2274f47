"""The ``sql`` transform: a DataFusion query run on every batch of a stream.

Each batch is registered in the instance's own ``SessionContext`` under the stream's table
name (``public.orders`` → ``orders``) and as ``input``, and the query's result replaces it.
Re-registering and re-planning costs ~1.3 ms per batch (bench.transforms), noise next to a
100k-row batch, so the context is kept and only the tables change.

The output schema is found at ``open()`` by running the query on an empty batch, so bad SQL
and unknown columns fail before data flows. Since each batch is queried alone, a query whose
answer depends on other rows (GROUP BY, aggregates, DISTINCT, ORDER BY, LIMIT, window
functions, subqueries, self-joins, rows not read from the input) would give one answer per
batch: its logical plan is refused then, naming the construct. A column keeps its input's field metadata
(``pg_type``) only when DataFusion carried it (a column reference, possibly renamed) and the
Arrow type is still the input's; computed columns get the destination's default mapping.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
from datafusion import DataFrame, SessionConfig, SessionContext, SQLOptions
from datafusion.common import RexType
from datafusion.plan import LogicalPlan

from ..config import SqlConfig, transform_config
from ..errors import ConfigError, DataError
from ..pgtypes import quote_ident, split_table
from .output_schema import carried_schema

#: Batches stay whole through DataFusion: its default (8192 rows) slices a 100k-row batch
#: into 13 and halves throughput (bench.transforms).
_BATCH_ROWS = 1 << 20

#: Queries only: DDL, DML (COPY TO writes files) and SET are refused.
_QUERY_ONLY = SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)

#: View types are not read by the destination kernels; they leave as their plain twins.
_PLAIN_TYPES = {pa.string_view(): pa.utf8(), pa.binary_view(): pa.binary()}

_IDENT = r'"(?:[^"]|"")*"|[^\s".,\']+'
_NAMED = [
    re.compile(rf"No field named ((?:{_IDENT})(?:\.(?:{_IDENT}))*)"),
    re.compile(r"table '(?:[^']*\.)?([^'.]+)' not found"),
    re.compile(r"Invalid function '([^']+)'"),
]
# String literals and comments, blanked before searching the query for a name.
_NOT_CODE = re.compile(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/", re.DOTALL)


def _session() -> SessionContext:
    config = (
        SessionConfig()
        .with_target_partitions(1)  # one batch in, rows out in the same order
        .with_batch_size(_BATCH_ROWS)
        # CAST(x AS VARCHAR) gives Utf8, not Utf8View (option since DataFusion 49)
        .set("datafusion.sql_parser.map_string_types_to_utf8view", "false")
    )
    return SessionContext(config)


def _line_col(query: str, offset: int) -> str:
    """``offset`` in DataFusion's words (1-based line and character column)."""
    line = query.count("\n", 0, offset) + 1
    column = offset - (query.rfind("\n", 0, offset) + 1) + 1
    return f"at Line: {line}, Column: {column}"


def _position(query: str, message: str) -> str | None:
    """Where the name DataFusion complains about first appears in the query (DataFusion
    gives positions for parse errors only)."""
    if "found: EOF" in message:
        return _line_col(query, len(query.rstrip()))
    for pattern in _NAMED:
        match = pattern.search(message)
        if match is None:
            continue
        parts = [q.replace('""', '"') if q else u
                 for q, u in re.findall(r'"((?:[^"]|"")*)"|([^."]+)', match.group(1))]
        words = [rf'(?:{re.escape(quote_ident(p))}|(?<![\w$"]){re.escape(p)}(?![\w$"]))'
                 for p in parts]
        code = _NOT_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), query)
        found = re.search(r"\s*\.\s*".join(words), code, re.IGNORECASE)
        return _line_col(query, found.start()) if found else None
    return None


def _message(exc: Exception, query: str) -> str:
    """DataFusion's error on one line: wrappers removed, position added when we can."""
    text = str(exc).removeprefix("DataFusion error: ")
    text = re.sub(r'ParserError\("(.*)"\)', r"\1", text, flags=re.DOTALL)
    text = re.split(r"\ncaused by\n", text)[-1]  # the cause, not the optimizer rule's name
    text = " ".join(text.split())
    if "at Line:" not in text:
        where = _position(query, text)
        if where:
            text = f"{text} {where}"
    return text


#: Plan nodes that combine rows, by what the user wrote (Aggregate: see _across_rows).
_ACROSS_ROWS = {"Distinct": "DISTINCT", "Sort": "ORDER BY", "Limit": "LIMIT/OFFSET",
                "WindowExpr": "a window function"}
#: Plan nodes that work row by row, or make constant rows (fine beside input rows in a join).
_ROW_BY_ROW = {"Projection", "Filter", "SubqueryAlias", "Unnest", "TableScan", "Union", "Join",
               "Values", "EmptyRelation"}
_SUBQUERIES = {"ScalarSubquery", "Exists", "InSubquery"}
#: Join types that drop the unmatched rows of the right / the left side.
_DROPS_RIGHT = {"Inner", "Left", "LeftSemi", "LeftAnti"}
_DROPS_LEFT = {"Inner", "Right", "RightSemi", "RightAnti"}


def _per_batch_construct(plan: LogicalPlan) -> str | None:
    """What in a query's logical plan would be computed per batch instead of over the
    stream (None: the query works row by row)."""
    reads, construct = _across_rows(plan)
    if construct is None and not reads:
        return "a query that does not read the input"
    return construct


def _across_rows(node: LogicalPlan) -> tuple[bool, str | None]:
    """(whether ``node`` reads the input, the first construct that combines rows)."""
    variant = node.to_variant()
    kind = type(variant).__name__
    children = [_across_rows(child) for child in node.inputs()]
    for reads, construct in children:
        if construct is not None:
            return reads, construct
    reads = kind == "TableScan" or any(r for r, _ in children)
    if any(_has_subquery(e) for e in _expressions(kind, variant)):
        return reads, "a subquery"
    if not reads:
        return False, None   # constant rows: VALUES, or an aggregate over them
    if kind == "Aggregate":
        return True, "GROUP BY" if variant.group_by_exprs() else "an aggregate function"
    if kind in _ACROSS_ROWS:
        return True, _ACROSS_ROWS[kind]
    if kind == "Union" and not all(r for r, _ in children):
        return True, "UNION with rows not read from the input"
    if kind == "Join":
        left, right = (r for r, _ in children)
        kept = str(variant.join_type())
        if left and right:
            return True, "a JOIN of the input with itself"
        if kept not in (_DROPS_RIGHT if left else _DROPS_LEFT):
            return True, "a JOIN that keeps rows not read from the input"
    if kind not in _ROW_BY_ROW:
        return True, kind
    return True, None


def _expressions(kind: str, variant) -> list:
    """The expressions of a row-by-row plan node (where a subquery can hide)."""
    if kind == "Projection":
        return list(variant.projections())
    if kind == "Filter":
        return [variant.predicate()]
    if kind == "Join":
        found = [e for pair in variant.on() for e in pair]
        return found + ([variant.filter()] if variant.filter() is not None else [])
    if kind == "Values":
        return [e for row in variant.values() for e in row]
    return []


def _has_subquery(expr) -> bool:
    stack = [expr]
    while stack:
        e = stack.pop()
        if e.rex_type() in (RexType.Reference, RexType.Literal, RexType.Other):
            continue
        if e.rex_type() == RexType.ScalarSubquery or e.variant_name() in _SUBQUERIES:
            return True
        stack.extend(e.rex_call_operands())
    return False


def _plain(result: pa.Schema) -> pa.Schema:
    """``result`` with view types made plain."""
    return pa.schema([f.with_type(_PLAIN_TYPES.get(f.type, f.type)) for f in result],
                     metadata=result.metadata)


def _table_names(stream: str) -> list[str]:
    table = split_table(stream, "public")[1]
    # Quoted so the stream's exact spelling is the table name, as in Postgres.
    return [quote_ident(name) for name in dict.fromkeys([table, "input"])]


def _query_location(index: int | None) -> str:
    return f"transforms[{index}].config.query" if index is not None else "config.query"


def _query_error(message: str, query: str, index: int | None) -> ConfigError:
    shown = json.dumps(query, ensure_ascii=False)
    return ConfigError(f"{_query_location(index)}: {message} (query: {shown})")


class _Query:
    """One query bound to one stream's table names in a private context."""

    def __init__(self, query: str, stream: str) -> None:
        self.query = query
        self.names = _table_names(stream)
        self.ctx = _session()

    def dataframe(self, batch: pa.RecordBatch) -> tuple[DataFrame, list[pa.RecordBatch]]:
        """The planned query over ``batch`` and its result."""
        for name in self.names:
            self.ctx.register_record_batches(name, [[batch]])
        try:
            df = self.ctx.sql_with_options(self.query, _QUERY_ONLY)
            return df, df.collect()
        finally:
            for name in self.names:
                self.ctx.deregister_table(name)

    def plan(self, schema: pa.Schema, index: int | None) -> pa.Schema:
        """Run on an empty batch of ``schema``: the output schema, or ConfigError."""
        try:
            df, _ = self.dataframe(pa.RecordBatch.from_pylist([], schema=schema))
        except Exception as exc:  # DataFusion raises bare Exception/ValueError
            raise _query_error(_message(exc, self.query), self.query, index) from None
        construct = _per_batch_construct(df.logical_plan())
        if construct is not None:
            message = (f"{construct} would be computed on each batch alone, not over the whole "
                       "stream; the sql transform works row by row")
            raise _query_error(message, self.query, index)
        result = df.schema()
        nulls = [f.name for f in result if pa.types.is_null(f.type)]
        if nulls:
            message = (f"column {', '.join(nulls)} has no type (a bare NULL); "
                       "cast it, e.g. CAST(NULL AS TEXT)")
            raise _query_error(message, self.query, index)
        return carried_schema(_plain(result), schema)


def validate_sql(query: str, stream: str, schema: pa.Schema,
                 index: int | None = None) -> pa.Schema:
    """The output schema of ``query`` over batches of ``stream`` with ``schema``, or
    ConfigError naming the transform, DataFusion's message, its position and the query."""
    return _Query(query, stream).plan(schema, index)


class SqlTransform:
    """``use: sql`` with ``config: {query: ...}``; ``index`` is its place in ``transforms``."""

    name = "sql"

    def __init__(self, config: SqlConfig | Mapping[str, Any], index: int | None = None) -> None:
        self.query = transform_config(SqlConfig, config, index).query
        self.index = index
        self.stats: dict[str, float] = {"seconds": 0.0, "rows_in": 0.0, "rows_out": 0.0}
        self._bound: _Query | None = None
        self._schema: pa.Schema | None = None
        self._stream = ""

    def open(self, stream: str, schema: pa.Schema) -> pa.Schema:
        t0 = time.perf_counter()
        self._stream = stream
        self._bound = _Query(self.query, stream)
        self._schema = self._bound.plan(schema, self.index)
        self.stats["seconds"] += time.perf_counter() - t0
        return self._schema

    def apply(self, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        assert self._bound is not None and self._schema is not None, "open() first"
        t0 = time.perf_counter()
        try:
            _, result = self._bound.dataframe(batch)
        except Exception as exc:  # e.g. division by zero or a failed cast on this batch
            where = f"transforms[{self.index}] (sql)" if self.index is not None else "sql transform"
            raise DataError(
                f"stream {self._stream}: {where}: {_message(exc, self.query)} "
                f"(query: {json.dumps(self.query, ensure_ascii=False)})"
            ) from None
        out = [self._conform(b) for b in result if b.num_rows]
        self.stats["seconds"] += time.perf_counter() - t0
        self.stats["rows_in"] += batch.num_rows
        self.stats["rows_out"] += sum(b.num_rows for b in out)
        return out

    def _conform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        assert self._schema is not None
        columns = [c if c.type == f.type else c.cast(f.type)
                   for c, f in zip(batch.columns, self._schema)]
        return pa.RecordBatch.from_arrays(columns, schema=self._schema)

    def finish(self) -> list[pa.RecordBatch]:
        return []

    def close(self) -> None:
        self._bound = None
