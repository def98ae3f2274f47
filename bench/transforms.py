"""Transform throughput on bench_events (1M rows in 100k-row batches by default).

Cases: the seed's ``transform`` query (upper-case a column, double another) and
``transform_filter`` query (``amount >= 5000``, half the rows) through ``SqlTransform``; the
same filter in pyarrow.compute as the baseline; a ``validate`` rule set (not_null, range,
accepted_values, regex, unique id) through ``ValidateTransform``; and the fixed cost of the
sql transform per batch (register, plan, run and deregister on an empty batch).

Run: ``python -m bench.transforms [--rows N] [--json PATH]``.
"""
from __future__ import annotations

import argparse
import json
import sys

import pyarrow as pa
import pyarrow.compute as pc

from rapidbyte_fast.sources.generate import generate_batches
from rapidbyte_fast.transforms.sql import SqlTransform
from rapidbyte_fast.transforms.validate import ValidateTransform

from .micro.harness import environment, measure

BATCH_ROWS = 100_000
QUERIES = {
    "transform": "SELECT id, upper(event_type) AS event_type, user_id, amount * 2 AS amount, "
                 "is_active, payload, created_at FROM bench_events",
    "transform_filter": "SELECT * FROM bench_events WHERE amount >= 5000",
}
RULES = [
    {"not_null": ["id", "event_type", "payload"]},
    {"range": {"column": "amount", "min": 0, "max": 10_000}},
    {"accepted_values": {"column": "event_type",
                         "values": ["click", "purchase", "view", "signup", "logout"]}},
    {"regex": {"column": "event_type", "pattern": "^[a-z]+$"}},
    {"unique": ["id"]},
]


def _rows_out(out: list[list[pa.RecordBatch]]) -> int:
    return sum(b.num_rows for batches in out for b in batches)


def run(rows: int = 1_000_000) -> list[dict]:
    batches = list(generate_batches("bench_events", 1, rows + 1, BATCH_ROWS))
    schema = batches[0].schema
    nbytes = sum(b.nbytes for b in batches)
    results = []

    def pyarrow_filter() -> list[list[pa.RecordBatch]]:
        return [[b.filter(pc.greater_equal(b.column("amount"), 5000))] for b in batches]

    for case, query in QUERIES.items():
        sql = SqlTransform({"query": query})
        sql.open("bench_events", schema)
        if case == "transform_filter":  # same answer as the baseline, or the timing is moot
            assert _rows_out([sql.apply(b) for b in batches]) == _rows_out(pyarrow_filter())
        results.append(measure("transform", case, "datafusion",
                               lambda: [sql.apply(b) for b in batches], rows, nbytes))
    results.append(measure("transform", "transform_filter", "baseline:pyarrow.compute",
                           pyarrow_filter, rows, nbytes))

    def validate() -> list[list[pa.RecordBatch]]:
        check = ValidateTransform({"rules": RULES}, "fail", None)  # fresh: unique holds state
        check.open("bench_events", schema)
        return [check.apply(b) for b in batches]

    assert _rows_out(validate()) == rows
    results.append(measure("transform", "validate", "pyarrow.compute", validate, rows, nbytes))

    empty = batches[0].slice(0, 0)
    per_batch = SqlTransform({"query": QUERIES["transform"]})
    per_batch.open("bench_events", schema)
    results.append(measure("transform", "sql_per_batch_overhead", "datafusion",
                           lambda: per_batch.apply(empty), 1, 0))
    return results


def _table(results: list[dict]) -> str:
    base = {r["case"]: r for r in results if r["impl"].startswith("baseline")}
    lines = [f"{'case':<24} {'impl':<26} {'rows/s':>14} {'MB/s':>9} {'ms/call':>9} "
             f"{'vs baseline':>12}"]
    for r in results:
        b = base.get(r["case"])
        vs = f"{r['rows_per_s'] / b['rows_per_s']:.2f}x" if b else "-"
        lines.append(f"{r['case']:<24} {r['impl']:<26} {r['rows_per_s']:>14,.0f} "
                     f"{r['mb_per_s']:>9,.1f} {r['secs'] * 1e3:>9.2f} {vs:>12}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.transforms", description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000, help="bench_events rows")
    ap.add_argument("--json", dest="json_path", help="write results with an environment header")
    args = ap.parse_args(argv)
    results = run(args.rows)
    print(_table(results))
    if args.json_path:
        import datafusion

        from rapidbyte_fast import _impl

        env = environment(_impl.IMPL)
        env["versions"]["datafusion"] = datafusion.__version__
        with open(args.json_path, "w") as f:
            json.dump({"env": env, "results": results}, f, indent=1)
        print(f"wrote {args.json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
