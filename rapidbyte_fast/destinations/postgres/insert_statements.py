"""The statements of ``load_method: insert``, chosen once per table (``insert_statements``):

* ``ArrayInsert``: each column of a slice of a batch is one binary array parameter (the
  array_params kernel) and the server unnests them in step, so no value is parsed from
  text::

      INSERT INTO t (a, b) SELECT pg_catalog.unnest($1::pg_catalog.int4[]),
                                  pg_catalog.unnest($2::pg_catalog.text[])

* ``ValuesInsert``: multi-row ``INSERT ... VALUES`` literals (the insert_sql kernel), for a
  table with a column that has no binary array form: a target type COPY gets as text, an
  enum or domain target, an array column (arrays of arrays are multidimensional to
  PostgreSQL).

The unnest calls are in the select list, not in ``FROM unnest(...)``: a set-returning
function in FROM is materialized into a tuplestore first (an ad-hoc run of 1M rows of
(int4, text, float8) on 2026-12-07, 50k rows a statement: 2.6 s in FROM, 2.3 s in the
select list, alternated in one process).
"""
from __future__ import annotations

import psycopg
from psycopg import pq
from psycopg.adapt import Dumper

from ... import _impl
from ...column_plan import ColumnPlan, Kind
from ...pgtypes import TYPE_OIDS, TargetEncoding, declared_base


class _Encoded(Dumper):
    """A bytearray already in a parameter's binary format, sent as it is; its type is left
    to the statement (OID 0: the ``$n::type[]`` cast names it)."""

    format = pq.Format.BINARY

    def dump(self, obj: bytearray) -> bytearray:
        return obj


class ArrayInsert:
    """Unnest INSERTs of one table over one connection."""

    def __init__(self, conn: psycopg.Connection, rel: str, cols: str, plan: ColumnPlan,
                 pg_cfg, types: list[str]) -> None:
        self.plan, self.pg = plan, pg_cfg
        self.oids = tuple(TYPE_OIDS[t] for t in types)
        self._cur = psycopg.RawCursor(conn)
        self._cur.adapters.register_dumper(bytearray, _Encoded)
        unnests = ", ".join(f"pg_catalog.unnest(${k + 1}::pg_catalog.{t}[])"
                            for k, t in enumerate(types))
        self.sql = f"INSERT INTO {rel} ({cols}) SELECT {unnests}".encode()

    def encode(self, cols: list, row: int, stop: int,
               row_bytes: float) -> tuple[int, list[bytearray], int]:
        """(end, parameters, their bytes) of the statement of rows [row, end): at most
        ``insert_batch_rows``, fewer when their arrays (about ``row_bytes`` Arrow bytes a
        row, plus a length word per value) would pass ``insert_batch_bytes``."""
        per_row = row_bytes + 4 * len(self.oids)
        rows = max(1, min(self.pg.insert_batch_rows, int(self.pg.insert_batch_bytes / per_row)))
        end = min(stop, row + rows)
        params = [bytearray() for _ in self.oids]
        size = _impl.array_params.encode_arrays(self.plan, cols, self.oids, row, end, params)
        return end, params, size

    def execute(self, params: list[bytearray]) -> None:
        """Run one statement (prepared by psycopg from its fifth run on)."""
        self._cur.execute(self.sql, params)


class ValuesInsert:
    """Multi-row ``INSERT ... VALUES`` statements of one table over one connection."""

    def __init__(self, conn: psycopg.Connection, rel: str, cols: str, plan: ColumnPlan,
                 pg_cfg) -> None:
        self.plan, self.pg = plan, pg_cfg
        self._prefix = f"INSERT INTO {rel} ({cols}) VALUES ".encode()
        self._cur = conn.cursor()

    def encode(self, cols: list, row: int, stop: int, row_bytes: float) -> tuple[int, bytes, int]:
        """(end, statement, its bytes) for rows [row, end), cut by ``insert_batch_rows`` and
        ``insert_batch_bytes``."""
        buf = bytearray()
        used, size = _impl.insert_sql.build_insert(self.plan, cols, row, stop, buf, self._prefix,
                                                   b"", self.pg.insert_batch_rows,
                                                   self.pg.insert_batch_bytes)
        return row + used, bytes(buf), size

    def execute(self, statement: bytes) -> None:
        """Run one statement."""
        self._cur.execute(statement)


def insert_statements(conn: psycopg.Connection, rel: str, cols: str, wp: TargetEncoding,
                      pg_types: list[str], pg_cfg) -> ArrayInsert | ValuesInsert:
    """Unnest INSERTs when every column (``pg_types``: the load table's column types in plan
    order, as format_type prints them) has a binary array form, else VALUES statements."""
    plan = wp.plan
    types = [declared_base(t) for t in pg_types]
    if wp.binary_ok and types and len(types) == len(plan.kinds) and all(
            k != Kind.ARRAY and t in TYPE_OIDS for k, t in zip(plan.kinds, types)):
        return ArrayInsert(conn, rel, cols, plan, pg_cfg, types)
    return ValuesInsert(conn, rel, cols, plan, pg_cfg)
