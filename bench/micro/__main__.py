"""Time every kernel with both twins against the obvious alternative and print a table.

Speedups are computed against the baseline measured in the same run (machines are shared
and noisy: absolute numbers move, same-run ratios are what to quote). Refuses to run when the
compiled kernels do not import, rather than time only the Python twins.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from .harness import environment

KERNELS = ("copy_decode", "copy_encode", "insert_sql", "array_params", "codec", "pgoutput")


def _table(results: list[dict]) -> str:
    lines = [f"{'kernel':<12} {'case':<28} {'impl':<26} {'rows/s':>14} {'MB/s':>10} "
             f"{'vs python':>10} {'vs baseline':>12}"]
    by_case: dict[tuple[str, str], dict[str, dict]] = {}
    for r in results:
        by_case.setdefault((r["kernel"], r["case"]), {})[r["impl"]] = r
    for (kernel, case), impls in by_case.items():
        py = impls.get("python")
        base = next((v for k, v in impls.items() if k.startswith("baseline")), None)
        for impl, r in impls.items():
            vs_py = f"{r['rows_per_s'] / py['rows_per_s']:.1f}x" if py else "-"
            vs_base = f"{r['rows_per_s'] / base['rows_per_s']:.1f}x" if base else "-"
            lines.append(f"{kernel:<12} {case:<28} {impl:<26} {r['rows_per_s']:>14,.0f} "
                         f"{r['mb_per_s']:>10,.1f} {vs_py:>10} {vs_base:>12}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__)
    ap.add_argument("--rows", type=int, default=200_000, help="rows per narrow case")
    ap.add_argument("--only", action="append", choices=KERNELS, help="run only these kernels")
    ap.add_argument("--json", dest="json_path", help="write results with an environment header")
    args = ap.parse_args(argv)
    import rapidbyte_fast
    from rapidbyte_fast.errors import ImplementationError

    try:
        from rapidbyte_fast import _impl

        uncompiled = [name for name in args.only or KERNELS if "c" not in _impl.twins(name)]
    except ImplementationError:  # RAPIDBYTE_IMPL=c, and they do not import
        uncompiled = list(args.only or KERNELS)
    if uncompiled:
        # From the repo root `rapidbyte_fast` is the checkout's, so a non-editable install's
        # compiled modules are not the ones imported.
        where = Path(rapidbyte_fast.__file__).parent
        print(f"python -m bench.micro: the compiled kernels ({', '.join(uncompiled)}) do not "
              f"import from {where}, so only the Python twins would be timed. Build them "
              "there: `pip install -e .` (or `python setup.py build_ext --inplace`).",
              file=sys.stderr)
        return 2
    results: list[dict] = []
    for name in args.only or KERNELS:
        mod = importlib.import_module(f"bench.micro.{name}")
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results.extend(mod.run(args.rows))
    print(_table(results))
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"env": environment(_impl.IMPL), "results": results}, f, indent=1)
        print(f"wrote {args.json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
