"""WASM plugin benchmarks: module load time with and without the AOT cache, and transform
throughput on bench_events for the WASM filter against the same filter in pyarrow.compute
(and the WASM mask, which has no pyarrow equivalent).

    python -m bench.plugins [--rows 1000000] [--json PATH]

Load times are the median of repeated ``Plugin.load`` calls in one process after the
engine exists; throughput is best-of-N over the whole stream (open, every batch, finish).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from bench.micro.harness import environment, measure
from rapidbyte_fast.plugins import discovery, host
from rapidbyte_fast.plugins.host import Plugin
from rapidbyte_fast.sources.generate import generate_batches
from rapidbyte_fast.transforms.wasm import WasmTransform

FILTER = {"column": "amount", "op": ">=", "value": 5000}
MASK = {"columns": ["event_type", "payload"], "mode": "hash"}


def load_times(name: str, repeats: int = 30) -> list[dict]:
    """Median ms of Plugin.load: compiling every time vs deserializing the AOT entry."""
    path = discovery.resolve(name)
    host.engine()
    results = []
    with tempfile.TemporaryDirectory() as cache:
        os.environ["RAPIDBYTE_CACHE_DIR"] = cache
        for label, aot in (("compile (RAPIDBYTE_WASM_AOT=0)", "0"), ("AOT cache hit", "1")):
            os.environ["RAPIDBYTE_WASM_AOT"] = aot
            Plugin.load(path)  # fills the cache for the second case
            samples = []
            for _ in range(repeats):
                plugin = Plugin.load(path)
                assert plugin.cache_hit is (aot == "1")
                samples.append(plugin.load_ms)
            results.append({"plugin": name, "case": label, "load_ms": statistics.median(samples),
                            "min_ms": min(samples), "wasm_bytes": path.stat().st_size})
    os.environ.pop("RAPIDBYTE_WASM_AOT")
    os.environ.pop("RAPIDBYTE_CACHE_DIR")
    return results


def _through(transform: WasmTransform, batches: list[pa.RecordBatch]) -> int:
    transform.open("bench_events", batches[0].schema)
    rows = sum(b.num_rows for batch in batches for b in transform.apply(batch))
    rows += sum(b.num_rows for b in transform.finish())
    transform.close()
    return rows


def throughput(rows: int) -> list[dict]:
    """rows/s and MB/s over ``rows`` bench_events rows in 100k-row batches."""
    batches = list(generate_batches("bench_events", 1, rows + 1, 100_000))
    nbytes = sum(b.nbytes for b in batches)
    case = f"filter amount>=5000, bench_events {rows:,} rows"
    wasm_filter = WasmTransform("transform-filter", FILTER)
    kept = _through(wasm_filter, batches)

    def arrow_filter() -> int:
        return sum(b.filter(pc.greater_equal(b["amount"], FILTER["value"])).num_rows
                   for b in batches)

    assert arrow_filter() == kept, "the WASM filter and pyarrow.compute disagree"
    return [
        measure("plugin_transform", case, "wasm", lambda: _through(wasm_filter, batches),
                rows, nbytes),
        measure("plugin_transform", case, "baseline:pyarrow.compute", arrow_filter, rows, nbytes),
        measure("plugin_transform", f"mask (fnv-1a hash) event_type+payload, {rows:,} rows", "wasm",
                lambda: _through(WasmTransform("transform-mask", MASK), batches), rows, nbytes),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.plugins", description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--json", dest="json_path", help="write results with an environment header")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    loads = [r for name in ("transform-filter", "transform-mask") for r in load_times(name)]
    print(f"{'plugin':<18} {'load':<32} {'median ms':>10} {'min ms':>8}")
    for r in loads:
        print(f"{r['plugin']:<18} {r['case']:<32} {r['load_ms']:>10.3f} {r['min_ms']:>8.3f}")
    runs = throughput(args.rows)
    base = next(r for r in runs if r["impl"].startswith("baseline"))
    print(f"\n{'case':<52} {'impl':<26} {'rows/s':>14} {'MB/s':>9} {'vs baseline':>12}")
    for r in runs:
        ratio = f"{r['rows_per_s'] / base['rows_per_s']:.2f}x" if r["case"] == base["case"] else "-"
        print(f"{r['case']:<52} {r['impl']:<26} {r['rows_per_s']:>14,.0f} {r['mb_per_s']:>9,.1f} "
              f"{ratio:>12}")
    print(f"\n({time.perf_counter() - started:.1f} s)")
    if args.json_path:
        env = environment(os.environ.get("RAPIDBYTE_IMPL", "auto"))
        env["versions"]["wasmtime"] = json.loads(host.engine_settings())["wasmtime"]
        Path(args.json_path).write_text(json.dumps(
            {"env": env, "load": loads, "results": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
