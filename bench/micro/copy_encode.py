"""Micro-benchmark of the COPY encoder: Arrow record batch → COPY BINARY / COPY TEXT rows.

Cases: the bench_events-like narrow table and the ~20-column wide table of ``codec`` (far
larger than L2), each encoded whole per timed call. Baselines are the obvious alternatives:
psycopg's own binary COPY row formatter (``BinaryFormatter.write_row`` with a Transformer set
to the column types, no server involved; rows are handed over as ready Python tuples, so the
Arrow → Python conversion is not even charged to it) and ``pyarrow.csv.write_csv`` into a
BytesIO for the text format (minus the bytea and uuid columns, which it cannot write; MB/s
is over the columns it did write). The Python twin and psycopg run on a slice of the rows (they
are two orders of magnitude slower); every result is per row / per Arrow byte processed.
"""
from __future__ import annotations

import io
import uuid

import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg._copy_base import BinaryFormatter
from psycopg.adapt import Transformer
from psycopg.pq import Format

from rapidbyte_fast._impl import twins
from rapidbyte_fast.column_plan import ColumnPlan, Kind, column_inputs, kind_for_arrow

from .codec import narrow_batch, wide_batch
from .harness import measure

_OIDS = {Kind.BOOL: 16, Kind.INT2: 21, Kind.INT4: 23, Kind.INT8: 20, Kind.FLOAT4: 700,
         Kind.FLOAT8: 701, Kind.TEXT: 25, Kind.BYTEA: 17, Kind.DATE: 1082,
         Kind.TIMESTAMP: 1114, Kind.TIMESTAMPTZ: 1184, Kind.UUID: 2950, Kind.NUMERIC: 1700}


def plan_for(batch: pa.RecordBatch) -> ColumnPlan:
    """The column plan the destination would resolve for ``batch``."""
    resolved = [kind_for_arrow(f.type) for f in batch.schema]
    return ColumnPlan(tuple(batch.schema.names), tuple(k for k, _, _ in resolved),
                      tuple(s for _, _, s in resolved), tuple(p for _, p, _ in resolved))


def head(batch: pa.RecordBatch, rows: int) -> pa.RecordBatch:
    """The first ``rows`` rows with compact buffers (so nbytes is what they really hold)."""
    return batch.take(pa.array(range(min(rows, batch.num_rows))))


def python_rows(batch: pa.RecordBatch) -> list[tuple]:
    """Rows as the Python objects psycopg dumps (uuid columns as uuid.UUID)."""
    columns = []
    for field, col in zip(batch.schema, batch.columns):
        values = col.to_pylist()
        if field.type == pa.binary(16):
            values = [None if v is None else uuid.UUID(bytes=v) for v in values]
        columns.append(values)
    return list(zip(*columns))


def _psycopg_binary(batch: pa.RecordBatch, plan: ColumnPlan):
    rows = python_rows(batch)
    oids = [_OIDS[Kind(k)] for k in plan.kinds]

    def run() -> None:
        tx = Transformer()
        tx.set_dumper_types(oids, Format.BINARY)
        formatter = BinaryFormatter(tx)
        for row in rows:
            formatter.write_row(row)
        formatter.end()

    return run


def _without_binary(batch: pa.RecordBatch) -> pa.RecordBatch:
    # write_csv rejects bytes that are not UTF-8 (bytea, uuid): it gets the other columns.
    keep = [i for i, f in enumerate(batch.schema)
            if not (pa.types.is_binary(f.type) or pa.types.is_fixed_size_binary(f.type))]
    return batch.select(keep)


def _ours(fn, batch: pa.RecordBatch, plan: ColumnPlan):
    cols = column_inputs(batch, plan)
    n = batch.num_rows
    return lambda: fn(plan, cols, 0, n, bytearray())


def run(rows: int) -> list[dict]:
    """narrow / wide × binary / text, for c, python and the baseline."""
    encoder = twins("copy_encode")
    small = max(1000, rows // 50)
    results = []
    for shape, batch in (("narrow", narrow_batch(rows)), ("wide", wide_batch(max(1, rows // 4)))):
        plan = plan_for(batch)
        sub = head(batch, small)
        for fmt in ("binary", "text"):
            case = f"{fmt}-{shape}"
            impls = {impl: (_ours(getattr(mod, f"encode_{fmt}"), b, plan), b)
                     for impl, mod in encoder.items()
                     for b in [batch if impl == "c" else sub]}
            if fmt == "binary":
                impls["baseline:psycopg-write_row"] = (_psycopg_binary(sub, plan), sub)
            else:
                textual = _without_binary(batch)
                impls["baseline:pyarrow-write_csv"] = (
                    lambda b=textual: pacsv.write_csv(b, io.BytesIO()), textual)
            for impl, (fn, b) in impls.items():
                results.append(measure("copy_encode", case, impl, fn, b.num_rows, b.nbytes))
    return results
