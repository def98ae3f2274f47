"""python -m bench: end-to-end benchmarks of rapidbyte-fast, Postgres → Postgres.

  run      scenarios K times each (verified), appended to the history, printed as a table
  matrix   the standard set: datasets × modes × compression, parallelism, transforms
  compare  two git refs on the same seeded data, % change per scenario
  report   Markdown table and PNG chart of the latest results in the history
  peers    psql pipe, psycopg, duckdb, connectorx → ADBC and us on the same data
  inserts  load_method insert against COPY and psycopg executemany on the same data
  resume   resumable full refresh: its cost, and a crashed load resumed vs redone
  http     the HTTP source against dlt's rest_api on one local JSON API
  read     rapidbyte_fast.read() against connectorx and ADBC, a table into Arrow
  cdc      change capture: bootstrap, then a change set drained and verified
  cdc-follow  run --follow: commit-to-visible lag of single-row changes

The database is --dsn, else RAPIDBYTE_BENCH_DSN, else a pgserver of the harness's own.
Kernel micro-benchmarks are a separate tool: python -m bench.micro.
"""
from __future__ import annotations

import argparse
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Callable

from . import cdc, cdc_follow, history, http, read, report
from .database import server
from .history import DEFAULT_RESULTS, RESULTS_DIR
from .runner import TOOL_ROOT, Setup, byte_compile, ensure_seeded, run_scenario
from .scenarios import (COMPRESSIONS, DATASETS, DEFAULT_ROWS, MATRIX, MODES, Scenario, expand,
                        parse)


def _rows_for(rows: int | None) -> Callable[[str], int]:
    return lambda dataset: rows if rows is not None else DEFAULT_ROWS[dataset]


def _seed_all(setup: Setup, scenarios: list[Scenario], rows_for: Callable[[str], int]) -> None:
    for dataset in dict.fromkeys(s.dataset for s in scenarios):
        ensure_seeded(setup, dataset, rows_for(dataset))


def _measure(setup: Setup, scenarios: list[Scenario], rows_for: Callable[[str], int],
             iters: int, results: Path, command: str, profile: bool) -> int:
    """Seed, then time every scenario ``iters`` times round-robin (a scenario that fails or
    is skipped leaves the rotation), append each verified iteration, print the table."""
    _seed_all(setup, scenarios, rows_for)
    run_id, git, ctx = uuid.uuid4().hex[:12], history.git_info(setup.root), history.context()
    records: list[dict] = []
    notes: list[tuple[str, str]] = []
    active = list(scenarios)
    for it in range(iters):
        for sc in list(active):
            rows = rows_for(sc.dataset)
            try:
                out = run_scenario(setup, sc, rows, it)
            except RuntimeError as exc:
                notes.append((sc.name, f"FAILED: {exc}"))
                active.remove(sc)
                continue
            if out.skipped:
                notes.append((sc.name, f"skipped: {out.skipped}"))
                active.remove(sc)
                continue
            rec = history.make_record(
                run_id=run_id, command=command, scenario=sc, rows=rows, iteration=it,
                wall_secs=out.wall_secs, result=out.result, verified=out.verified, git=git,
                ctx=ctx)
            history.append(results, [rec])
            records.append(rec)
            print(f"  iter {it + 1}/{iters} {sc.name}: wall {out.wall_secs:.3f}s, "
                  f"tool {out.result['duration_secs']:.3f}s, path {out.result['path']}, "
                  f"verified {out.verified}", file=sys.stderr, flush=True)
    if profile:
        from .profile import profile as run_profile

        for sc in active:
            notes.append((sc.name, run_profile(setup, sc, rows_for(sc.dataset), RESULTS_DIR)))
    print(report.console_table(report.summarize(records), notes))
    print(f"\n{len(records)} verified results appended to {results}")
    return 1 if any(note.startswith("FAILED") for _, note in notes) else 0


def _chosen(args: argparse.Namespace) -> list[Scenario]:
    named = [parse(n) for n in args.scenario or []]
    axes = (args.dataset, args.mode, args.compression, args.parallelism)
    # --executor X runs every scenario on the local executor and beside it on X
    executors = list(dict.fromkeys(["local", *(args.executor or [])]))
    named = [replace(sc, executor=x) for sc in named for x in executors]
    if named and not any(axes):
        return list(dict.fromkeys(named))
    expanded = expand(args.dataset or ["bench_events"], args.mode or ["copy"],
                      args.compression or ["none"], args.parallelism or ["1"], executors)
    return list(dict.fromkeys(named + expanded))


def cmd_run(args: argparse.Namespace) -> int:
    scenarios = _chosen(args)
    with server(args.dsn) as dsn:
        setup = Setup(dsn, prefix=args.schema_prefix)
        return _measure(setup, scenarios, _rows_for(args.rows), args.iters, args.results, "run",
                        args.profile)


def cmd_matrix(args: argparse.Namespace) -> int:
    with server(args.dsn) as dsn:
        setup = Setup(dsn, prefix=args.schema_prefix)
        return _measure(setup, list(MATRIX), _rows_for(args.rows), args.iters, args.results,
                        "matrix", False)


def cmd_compare(args: argparse.Namespace) -> int:
    from . import compare

    scenarios = [parse(n) for n in args.scenario or ["bench_events-copy",
                                                     "bench_events-passthrough"]]
    refs = [args.ref1, args.ref2]
    shas = [compare.resolve(TOOL_ROOT, ref) for ref in refs]
    rows_for = _rows_for(args.rows)
    run_id, ctx = uuid.uuid4().hex[:12], history.context()
    records: list[dict] = []
    notes: list[tuple[str, str]] = []
    with server(args.dsn) as dsn:
        base = Setup(dsn, prefix=args.schema_prefix)
        _seed_all(base, scenarios, rows_for)  # seeded once, by the current tree's tool
        with compare.worktrees(TOOL_ROOT, refs) as paths:
            sides = [(ref, sha, replace(base, root=path))
                     for ref, sha, path in zip(refs, shas, paths)]
            active = list(scenarios)
            for it in range(args.iters):
                for sc in list(active):
                    for ref, sha, setup in (sides if it % 2 == 0 else sides[::-1]):
                        try:
                            out = run_scenario(setup, sc, rows_for(sc.dataset), it)
                        except RuntimeError as exc:
                            out = None
                            notes.append((sc.name, f"FAILED on {ref}: {exc}"))
                        if out is None or out.skipped:
                            if out is not None:
                                notes.append((sc.name, f"skipped on {ref}: {out.skipped}"))
                            active.remove(sc)
                            break
                        records.append(history.make_record(
                            run_id=run_id, command="compare", ref=ref, scenario=sc,
                            rows=rows_for(sc.dataset), iteration=it, wall_secs=out.wall_secs,
                            result=out.result, verified=out.verified,
                            git={"git_sha": sha, "git_branch": ref, "git_dirty": False},
                            ctx=ctx))
                        print(f"  iter {it + 1}/{args.iters} {sc.name} @ {ref}: "
                              f"{out.wall_secs:.3f}s", file=sys.stderr, flush=True)
    history.append(args.results, records)
    a, b = compare.split_by_ref(records, refs)
    print(compare.compare_table(refs[0], refs[1], a, b))
    for name, note in notes:
        print(f"{name}: {note}")
    slower = compare.regressions(records, refs[0], refs[1])
    for line in slower:
        print(f"REGRESSION {line}")
    if any(note.startswith("FAILED") for _, note in notes):
        return 1
    return 3 if slower else 0


def cmd_report(args: argparse.Namespace) -> int:
    records = report.select(history.load(args.results), args.last, args.sha)
    if not records:
        print(f"no results in {args.results}" + (" that match" if args.last or args.sha
                                                 else ""), file=sys.stderr)
        return 1
    summaries = report.latest(records)
    args.out.mkdir(parents=True, exist_ok=True)
    md_path, png_path = args.out / "report.md", args.out / "rows_per_sec.png"
    md_path.write_text(report.markdown(summaries, records[-1].get("machine")))
    try:
        report.chart(summaries, png_path)
        print(f"wrote {md_path} and {png_path}")
    except ImportError:
        print(f"wrote {md_path}; no chart: matplotlib is not installed (the bench extra)")
    return 0


def _run_entries(args: argparse.Namespace, entries: Callable[[Setup], list]) -> int:
    """Seed bench_events, time ``entries(setup)`` round-robin (peers.run_peers), print the
    table; non-zero when an entry failed."""
    from . import peers

    rows = args.rows or DEFAULT_ROWS["bench_events"]
    with server(args.dsn) as dsn:
        setup = Setup(dsn, prefix=args.schema_prefix)
        ensure_seeded(setup, "bench_events", rows)
        chosen = entries(setup)
        try:
            peers.run_peers(setup, rows, args.iters, chosen)
        finally:
            peers.drop_schemas(setup, chosen)
    print(peers.table(chosen, rows))
    return 1 if any(e.errors for e in chosen) else 0


def cmd_peers(args: argparse.Namespace) -> int:
    from . import peers

    return _run_entries(args, lambda setup: peers.select(peers.entries(setup, args.parallelism),
                                                         args.only))


def cmd_inserts(args: argparse.Namespace) -> int:
    from . import inserts

    return _run_entries(args, lambda setup: inserts.entries(setup, args.batch_rows or []))


def cmd_resume(args: argparse.Namespace) -> int:
    from . import resume

    rows = args.rows or DEFAULT_ROWS["bench_events"]
    with server(args.dsn) as dsn:
        setup = Setup(dsn, prefix=args.schema_prefix)
        ensure_seeded(setup, "bench_events", rows)
        out = resume.measure(setup, rows, args.iters)
    print(resume.table(out, rows))
    return 0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dsn", help="database to use (default: RAPIDBYTE_BENCH_DSN, else "
                                      "the harness's own pgserver)")
    common.add_argument("--schema-prefix", default="bench",
                        help="schemas used: PREFIX_src, PREFIX_dst, PREFIX_peer_* "
                             "(default: %(default)s)")
    common.add_argument("--rows", type=int, help="rows per dataset (default per dataset: "
                        + ", ".join(f"{k} {v:,}" for k, v in DEFAULT_ROWS.items()) + ")")
    common.add_argument("--iters", type=int, default=3, help="iterations (default: 3)")
    common.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help="history file (default: bench/results/results.jsonl)")

    run = sub.add_parser("run", parents=[common], help="run scenarios")
    run.add_argument("--dataset", action="append", choices=DATASETS)
    run.add_argument("--mode", action="append", choices=MODES)
    run.add_argument("--compression", action="append", choices=COMPRESSIONS)
    run.add_argument("--parallelism", action="append", help="1, N or auto")
    run.add_argument("--executor", action="append", metavar="EXECUTOR",
                     help="also run each scenario on this executor (dask://local, "
                          "dask://HOST:PORT), beside the local one")
    run.add_argument("--scenario", nargs="+", action="extend", metavar="NAME",
                     help="scenario names, e.g. bench_events-copy small-copy-lz4 "
                          "bench_events-copy-p_auto bench_events-copy-transform")
    run.add_argument("--profile", action="store_true",
                     help="one more iteration per scenario under py-spy, as a flamegraph SVG")
    run.set_defaults(fn=cmd_run)

    sub.add_parser("matrix", parents=[common], help="the standard scenario set"
                   ).set_defaults(fn=cmd_matrix)

    cmp_ = sub.add_parser("compare", parents=[common],
                          help="compare two git refs (exit code 3: REF2 slower beyond noise)")
    cmp_.add_argument("ref1")
    cmp_.add_argument("ref2")
    cmp_.add_argument("--scenario", nargs="+", action="extend", metavar="NAME",
                      help="default: bench_events-copy bench_events-passthrough")
    cmp_.set_defaults(fn=cmd_compare)

    rep = sub.add_parser("report", help="Markdown table and PNG chart of the history")
    rep.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    rep.add_argument("--out", type=Path, default=RESULTS_DIR)
    rep.add_argument("--last", type=int, metavar="N", help="only the last N invocations")
    rep.add_argument("--sha", nargs="+", metavar="SHA", help="only these commits (prefixes)")
    rep.set_defaults(fn=cmd_report)

    peer = sub.add_parser("peers", parents=[common], help="us against other tools")
    peer.add_argument("--parallelism", default="auto",
                      help="our resources.parallelism (default: auto)")
    peer.add_argument("--only", nargs="+", metavar="SHORT",
                      help="run only these entries, by short name (e.g. passthrough/replace "
                           "apitap); default: all")
    peer.set_defaults(fn=cmd_peers)
    ins = sub.add_parser("inserts", parents=[common],
                         help="load_method insert vs COPY vs psycopg executemany")
    ins.add_argument("--batch-rows", type=int, action="append",
                     help="also run insert with this insert_batch_rows (repeatable)")
    ins.set_defaults(fn=cmd_inserts)

    sub.add_parser("resume", parents=[common], help="resumable full refresh: cost and saving"
                   ).set_defaults(fn=cmd_resume)
    http.add_parser(sub, common)
    read.add_parser(sub, common)
    cdc.add_parser(sub, common)
    cdc_follow.add_parser(sub, common)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    byte_compile(TOOL_ROOT)
    try:
        return args.fn(args)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1


if __name__ == "__main__":
    sys.exit(main())
