"""Micro-benchmark of the INSERT builder: Arrow record batch → multi-row INSERT statements.

Each timed call turns the whole table (narrow bench_events-like rows, or the ~20-column wide
shape of ``codec``) into statements of at most 1000 rows / 4 MB, a fresh bytearray each, as
the destination sends them. The baseline is the per-value builder the seed started from:
columns read once (``to_pylist``), then one format call per cell returning a new str, joined
per row and per statement. The Python twin and the baseline run on a slice of the rows.
"""
from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid

import pyarrow as pa

from rapidbyte_fast._impl import twins
from rapidbyte_fast.column_plan import column_inputs

from .codec import narrow_batch, wide_batch
from .copy_encode import head, plan_for, python_rows
from .harness import measure

MAX_ROWS = 1000
MAX_BYTES = 4 << 20


def sql_literal(v: object) -> str:
    """One cell as an SQL literal, a new str per call (the baseline's unit of work)."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return "'NaN'" if math.isnan(v) else ("'Infinity'" if v > 0 else "'-Infinity'")
        return f"'{v!r}'"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, bytes):
        return "'\\x" + v.hex() + "'"
    if isinstance(v, (dt.datetime, dt.date, dt.time, decimal.Decimal, uuid.UUID)):
        return f"'{v}'"
    raise TypeError(type(v))


def _baseline(batch: pa.RecordBatch, prefix: str):
    def run() -> None:
        rows = python_rows(batch)
        for k in range(0, len(rows), MAX_ROWS):
            stmt = prefix + ",".join("(" + ",".join(sql_literal(v) for v in row) + ")"
                                     for row in rows[k:k + MAX_ROWS])
            stmt.encode()

    return run


def _ours(mod, batch: pa.RecordBatch, prefix: bytes):
    plan = plan_for(batch)
    cols = column_inputs(batch, plan)
    n = batch.num_rows

    def run() -> None:
        pos = 0
        while pos < n:
            rows, _ = mod.build_insert(plan, cols, pos, n, bytearray(), prefix, b"",
                                       MAX_ROWS, MAX_BYTES)
            pos += rows

    return run


def run(rows: int) -> list[dict]:
    """narrow / wide for c, python and the per-value baseline."""
    builder = twins("insert_sql")
    small = max(1000, rows // 50)
    results = []
    for shape, batch in (("narrow", narrow_batch(rows)), ("wide", wide_batch(max(1, rows // 4)))):
        names = ", ".join(f'"{n}"' for n in batch.schema.names)
        prefix = f'INSERT INTO "bench"."t" ({names}) VALUES '
        sub = head(batch, small)
        impls = {impl: (_ours(mod, batch if impl == "c" else sub, prefix.encode()),
                        batch if impl == "c" else sub) for impl, mod in builder.items()}
        impls["baseline:per-value"] = (_baseline(sub, prefix), sub)
        for impl, (fn, b) in impls.items():
            results.append(measure("insert_sql", shape, impl, fn, b.num_rows, b.nbytes))
    return results
