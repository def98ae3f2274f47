"""``load_method: insert`` without literals: each column of a slice of a batch is one binary
array parameter (the array_params kernel), and the server unnests them in step::

    INSERT INTO t (a, b) SELECT pg_catalog.unnest($1::pg_catalog.int4[]),
                                pg_catalog.unnest($2::pg_catalog.text[])

so no value is parsed from text. A table with a column that has no binary array form (a
target type COPY gets as text, an enum or domain target, an array column: arrays of arrays
are multidimensional to PostgreSQL) keeps the multi-row ``VALUES`` statements of insert_sql;
``array_insert`` decides once per table.

The unnest calls are in the select list, not in ``FROM unnest(...)``: a set-returning
function in FROM is materialized into a tuplestore first (1M rows of 3 columns, 50k per
statement: 2.6 s in FROM, 2.3 s in the select list, same run; bench/array_insert.py).
"""
from __future__ import annotations

import psycopg
from psycopg import pq
from psycopg.adapt import Dumper

from ..._impl import array_params
from ...column_plan import Kind
from ...pgtypes import TYPE_OIDS, TargetEncoding, declared_base


class _Encoded(Dumper):
    """A bytearray already in a parameter's binary format, sent as it is; its type is left
    to the statement (OID 0: the ``$n::type[]`` cast names it)."""

    format = pq.Format.BINARY

    def dump(self, obj: bytearray) -> bytearray:
        return obj


class ArrayInsert:
    """The statement and encoder of one table's unnest INSERTs over one connection (see
    ``array_insert``)."""

    def __init__(self, conn: psycopg.Connection, rel: str, cols: str, types: list[str],
                 oids: tuple[int, ...]) -> None:
        self.oids = oids
        self._cur = psycopg.RawCursor(conn)
        self._cur.adapters.register_dumper(bytearray, _Encoded)
        unnests = ", ".join(f"pg_catalog.unnest(${k + 1}::pg_catalog.{t}[])"
                            for k, t in enumerate(types))
        self.sql = f"INSERT INTO {rel} ({cols}) SELECT {unnests}".encode()

    def encode(self, plan, cols: list, lo: int, hi: int) -> list[bytearray]:
        """The parameters for rows [lo, hi): one binary array per column."""
        outs = [bytearray() for _ in self.oids]
        array_params.encode_arrays(plan, cols, self.oids, lo, hi, outs)
        return outs

    def execute(self, params: list[bytearray]) -> None:
        """Run the statement (prepared by psycopg from its fifth run on)."""
        self._cur.execute(self.sql, params)


def array_insert(conn: psycopg.Connection, rel: str, cols: str, wp: TargetEncoding,
                 pg_types: list[str]) -> ArrayInsert | None:
    """The unnest INSERT of a table whose every column (``pg_types``: the load table's
    column types in plan order) has a binary array form, else None."""
    plan = wp.plan
    if not wp.binary_ok or len(pg_types) != len(plan.kinds):
        return None
    types = [declared_base(t) for t in pg_types]
    if any(k == Kind.ARRAY or t not in TYPE_OIDS for k, t in zip(plan.kinds, types)):
        return None
    return ArrayInsert(conn, rel, cols, types, tuple(TYPE_OIDS[t] for t in types))
