"""Micro-benchmark of the binary array parameters of ``load_method: insert``: Arrow record
batch → one binary array per column per statement, the parameters of ``INSERT ... SELECT
unnest($1::int4[]), ...``.

Each timed call encodes the whole table (narrow bench_events-like rows, or the ~20-column wide
shape of ``codec``) in statements of 5000 rows (the ``insert_batch_rows`` default), fresh
bytearrays each, as the destination does. The baseline is what a psycopg user would do:
each column's values as a Python list (``to_pylist``, not charged to it) dumped by psycopg's
binary list dumper. The Python twin and the baseline run on a slice of the rows.
"""
from __future__ import annotations

import pyarrow as pa
from psycopg.adapt import PyFormat, Transformer

from rapidbyte_fast._impl import twins
from rapidbyte_fast.column_plan import column_inputs

from .codec import narrow_batch, wide_batch
from .copy_encode import _OIDS, head, plan_for, python_rows
from .harness import measure

ROWS_PER_STATEMENT = 5000


def _ours(mod, batch: pa.RecordBatch):
    plan = plan_for(batch)
    cols = column_inputs(batch, plan)
    oids = tuple(_OIDS[k] for k in plan.kinds)
    n = batch.num_rows

    def run() -> None:
        for lo in range(0, n, ROWS_PER_STATEMENT):
            mod.encode_arrays(plan, cols, oids, lo, min(n, lo + ROWS_PER_STATEMENT),
                              [bytearray() for _ in oids])

    return run


def _psycopg_lists(batch: pa.RecordBatch):
    rows = python_rows(batch)
    columns = [list(c) for c in zip(*rows)]
    n = batch.num_rows

    def run() -> None:
        tx = Transformer()
        for lo in range(0, n, ROWS_PER_STATEMENT):
            tx.dump_sequence([c[lo:lo + ROWS_PER_STATEMENT] for c in columns],
                             [PyFormat.BINARY] * len(columns))

    return run


def run(rows: int) -> list[dict]:
    """narrow / wide for c, python and psycopg's list dumper."""
    encoder = twins("array_params")
    small = max(1000, rows // 50)
    results = []
    for shape, batch in (("narrow", narrow_batch(rows)), ("wide", wide_batch(max(1, rows // 4)))):
        sub = head(batch, small)
        impls = {impl: (_ours(mod, b), b) for impl, mod in encoder.items()
                 for b in [batch if impl == "c" else sub]}
        impls["baseline:psycopg-list-dumper"] = (_psycopg_lists(sub), sub)
        for impl, (fn, b) in impls.items():
            results.append(measure("array_params", shape, impl, fn, b.num_rows, b.nbytes))
    return results
