"""``python -m bench read``: ``rapidbyte_fast.read()`` against connectorx and ADBC, each
reading the seeded bench_events table into one in-memory Arrow table, in one run, on one
server.

Every entry is a separate process. It reports its import time and its read time (connect,
query, decode, until the whole table is one Arrow table); the harness adds the process wall
(interpreter start to exit, minus the untimed checksum that verifies the read: row count,
sum(amount), distinct payloads). Entry order is reversed on every other iteration so drift
favours nobody; entries whose packages (the ``bench`` extra) are missing are skipped with
the reason.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

from . import datasets
from .database import server
from .peers import connectorx_url
from .runner import URL_ENV, Setup, ensure_seeded
from .scenarios import DEFAULT_ROWS

TABLE = "bench_events"

# Each script: imports, then READ (timed) leaves a pyarrow Table in `table`; the checksum
# after it is timed separately and taken out of the wall.
_PROLOGUE = "import json, os, sys, time\nt_start = time.perf_counter()\n"
_EPILOGUE = """
t_read = time.perf_counter()
import pyarrow.compute as pc
check = [table.num_rows, pc.sum(table.column("amount")).as_py() or 0,
         pc.count_distinct(table.column("payload")).as_py()]
print(json.dumps({"import": t_imported - t_start, "read": t_read - t_imported,
                  "check_secs": time.perf_counter() - t_read, "check": check}))
"""
_OURS = """
import rapidbyte_fast
rapidbyte_fast.read  # (the module is imported lazily: count it as import time)
t_imported = time.perf_counter()
p = int(os.environ["RBF_PARALLEL"])
table = rapidbyte_fast.read(os.environ["RAPIDBYTE_BENCH_URL"], os.environ["RBF_SRC"],
                            parallel=p if p > 1 else None).read_all()
"""
_CONNECTORX = """
import connectorx as cx
import pyarrow
t_imported = time.perf_counter()
p = int(os.environ["RBF_PARALLEL"])
part = {"partition_on": "id", "partition_num": p} if p > 1 else {}
table = cx.read_sql(os.environ["RBF_CX_URL"], f"SELECT * FROM {os.environ['RBF_SRC']}",
                    return_type="arrow", **part)
"""
_ADBC = """
import adbc_driver_postgresql.dbapi as adbc
import pyarrow
t_imported = time.perf_counter()
with adbc.connect(os.environ["RAPIDBYTE_BENCH_URL"]) as conn:
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {os.environ['RBF_SRC']}")
        table = cur.fetch_arrow_table()
"""


@dataclass
class Entry:
    """One contender and its measurements (seconds per iteration)."""

    name: str
    short: str
    ours: bool
    code: str
    env: dict[str, str]
    unavailable: str | None = None
    walls: list[float] = field(default_factory=list)
    reads: list[float] = field(default_factory=list)
    imports: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _missing(module: str) -> str | None:
    return None if importlib.util.find_spec(module) else f"{module} is not installed"


def entries(setup: Setup, parallel: list[int]) -> list[Entry]:
    """Ours, connectorx and ADBC; connectorx also partitioned like ours when parallel > 1."""
    cx_url = connectorx_url(setup.dsn)
    out = [Entry(f"rapidbyte_fast.read parallel={p}", f"ours p{p}", True, _OURS,
                 {"RBF_PARALLEL": str(p)}) for p in parallel]
    out += [Entry("connectorx" + (f" partition_num={p}" if p > 1 else ""), f"cx p{p}", False,
                  _CONNECTORX, {"RBF_PARALLEL": str(p), "RBF_CX_URL": cx_url},
                  _missing("connectorx")) for p in parallel]
    out.append(Entry("ADBC postgresql", "adbc", False, _ADBC, {},
                     _missing("adbc_driver_postgresql")))
    return out


def _run_one(setup: Setup, entry: Entry, want: list[int]) -> None:
    env = {**os.environ, **entry.env, URL_ENV: setup.dsn,
           "RBF_SRC": f"{setup.source_schema}.{TABLE}"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _PROLOGUE + entry.code + _EPILOGUE], env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise RuntimeError(" | ".join(lines[-3:]) or f"exit code {proc.returncode}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["check"] != want:
        raise RuntimeError(f"verification failed: read {out['check']}, expected {want}")
    entry.walls.append(wall - out["check_secs"])
    entry.reads.append(out["read"])
    entry.imports.append(out["import"])


def measure(setup: Setup, rows: int, iters: int, chosen: list[Entry]) -> None:
    """Time every available entry ``iters`` times, verifying each read."""
    c = datasets.expected(TABLE, rows)
    want = [c.count, c.total, c.distinct]
    live = [e for e in chosen if e.unavailable is None]
    for it in range(iters):
        for entry in (live if it % 2 == 0 else live[::-1]):
            if entry.errors:
                continue
            try:
                _run_one(setup, entry, want)
            except RuntimeError as exc:
                entry.errors.append(str(exc))
                print(f"  {entry.name}: FAILED: {exc}", file=sys.stderr, flush=True)
                continue
            print(f"  iter {it + 1}/{iters} {entry.name}: wall {entry.walls[-1]:.3f}s, "
                  f"read {entry.reads[-1]:.3f}s", file=sys.stderr, flush=True)


def table(chosen: list[Entry], rows: int) -> str:
    """Medians per entry, then ours / each peer for the wall and the read alone."""
    med = statistics.median
    lines = [f"{'entry':<36} {'wall':>8} {'read':>8} {'import':>8} {'rows/s (read)':>14}  runs"]
    for e in chosen:
        if e.walls:
            lines.append(f"{e.name:<36} {med(e.walls):>7.3f}s {med(e.reads):>7.3f}s "
                         f"{med(e.imports):>7.3f}s {rows / med(e.reads):>14,.0f}  {len(e.walls)}")
        else:
            why = e.unavailable or ("FAILED: " + e.errors[0] if e.errors else "no run")
            lines.append(f"{e.name:<36} {'-':>8} {'-':>8} {'-':>8} {'-':>14}  skipped: {why}")
    ours = [e for e in chosen if e.ours and e.walls]
    peers = [e for e in chosen if not e.ours and e.walls]
    if ours and peers:
        for what, attr in (("wall", "walls"), ("read", "reads")):
            title = f"{what} ratio, ours / peer (< 1 is faster)"
            lines += ["", f"{title:<36}  " + "  ".join(f"{p.short:>8}" for p in peers)]
            for o in ours:
                mine = med(getattr(o, attr))
                lines.append(f"{o.name:<36}  " + "  ".join(
                    f"{mine / med(getattr(p, attr)):>7.2f}x" for p in peers))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    rows = args.rows or DEFAULT_ROWS[TABLE]
    with server(args.dsn) as dsn:
        setup = Setup(dsn, prefix=args.schema_prefix)
        ensure_seeded(setup, TABLE, rows)
        chosen = entries(setup, args.parallel or [1])
        measure(setup, rows, args.iters, chosen)
    print(table(chosen, rows))
    return 1 if any(e.errors for e in chosen) else 0


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("read", parents=[common],
                       help="rapidbyte_fast.read() vs connectorx and ADBC, table to Arrow")
    p.add_argument("--parallel", type=int, action="append",
                   help="ours with parallel=N and connectorx with partition_num=N "
                        "(repeatable; default: 1)")
    p.set_defaults(fn=run)
