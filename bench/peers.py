"""``python -m bench peers``: rapidbyte-fast against other ways of copying the same seeded
bench_events table Postgres → Postgres, in one run, on one server.

Every entry is a separate process timed from start to exit (interpreter start included,
as for our CLI), writes into its own schema, and is verified like a scenario (count, sum,
distinct; primary key where it should have one). Peers append into an identical table
created beforehand with a primary key (truncated before each iteration, untimed); the
psql pipe also runs into a table without one, the fastest raw number. Entry order is
reversed on every other iteration so drift favours nobody. Python peers are skipped, with
the reason, when their packages (the ``bench`` extra) are missing.
"""
from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from . import datasets
from .database import psql_path
from .runner import URL_ENV, URL_REF, Setup, run_tool
from .scenarios import Scenario

TABLE = "bench_events"

_PSYCOPG = """
import os, psycopg
url = os.environ["RAPIDBYTE_BENCH_URL"]
with psycopg.connect(url) as a, psycopg.connect(url) as b:
    with a.cursor().copy(f"COPY {os.environ['RBF_SRC']} TO STDOUT (FORMAT binary)") as cin, \\
         b.cursor().copy(f"COPY {os.environ['RBF_DST']} FROM STDIN (FORMAT binary)") as cout:
        while data := cin.read():
            cout.write(data)
"""
_DUCKDB = """
import os, duckdb
con = duckdb.connect()
con.execute(os.environ["RBF_DUCKDB_LOAD"])
url = os.environ["RAPIDBYTE_BENCH_URL"].replace("'", "''")
con.execute(f"ATTACH '{url}' AS pg (TYPE postgres)")
con.execute(f"INSERT INTO pg.{os.environ['RBF_DST']} SELECT * FROM pg.{os.environ['RBF_SRC']}")
"""
_CONNECTORX_ADBC = """
import os, connectorx as cx
import adbc_driver_postgresql.dbapi as adbc
table = cx.read_sql(os.environ["RBF_CX_URL"], f"SELECT * FROM {os.environ['RBF_SRC']}",
                    return_type="arrow")
schema, name = os.environ["RBF_DST"].split(".")
with adbc.connect(os.environ["RAPIDBYTE_BENCH_URL"]) as conn:
    with conn.cursor() as cur:
        cur.adbc_ingest(name, table, mode="append", db_schema_name=schema)
    conn.commit()
"""
_APITAP = """
import os, apitap
url = os.environ["RBF_CX_URL"]
apitap.transfer(url, url, table=os.environ["RBF_SRC"], dest_table=os.environ["RBF_DST"],
                mode="replace")
"""


@dataclass
class Entry:
    """One contender: how to run it into ``schema.bench_events`` (``run`` returns wall
    seconds)."""

    name: str
    short: str
    schema: str
    ours: bool
    precreate: bool
    primary_key: bool
    run: Callable[[Setup, str], float]
    unavailable: str | None = None
    walls: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def connectorx_url(dsn: str) -> str:
    """A URL connectorx accepts for ``dsn``: it needs a host in the authority, so a unix
    socket directory moves to the ``host`` query parameter."""
    p = conninfo_to_dict(dsn)
    host = str(p.get("host") or "localhost")
    auth = quote(str(p.get("user", "")), safe="")
    if p.get("password"):
        auth += ":" + quote(str(p["password"]), safe="")
    socket = host.startswith("/")
    netloc = (auth + "@" if auth else "") + ("localhost" if socket else host)
    if p.get("port"):
        netloc += f":{p['port']}"
    query = f"?host={quote(host, safe='')}" if socket else ""
    return f"postgresql://{netloc}/{quote(str(p.get('dbname', 'postgres')), safe='')}{query}"


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise RuntimeError(" | ".join(lines[-3:]) or f"exit code {proc.returncode}")
    return wall


def _script(code: str, **extra: str) -> Callable[[Setup, str], float]:
    def run(setup: Setup, schema: str) -> float:
        env = {**os.environ, URL_ENV: setup.dsn, "RBF_SRC": f"{setup.source_schema}.{TABLE}",
               "RBF_DST": f"{schema}.{TABLE}", **extra}
        return _timed([sys.executable, "-c", code], env)
    return run


def _psql_pipe(setup: Setup, schema: str) -> float:
    psql = str(psql_path())
    base = [psql, setup.dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"]
    t0 = time.perf_counter()
    out = subprocess.Popen(
        base + [f"COPY {setup.source_schema}.{TABLE} TO STDOUT (FORMAT binary)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    into = subprocess.Popen(base + [f"COPY {schema}.{TABLE} FROM STDIN (FORMAT binary)"],
                            stdin=out.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    out.stdout.close()  # so the reader sees EOF / the writer SIGPIPE if either side dies
    _, into_err = into.communicate()
    out_err = out.stderr.read()
    out.wait()
    wall = time.perf_counter() - t0
    out.stderr.close()
    if out.returncode or into.returncode:
        raise RuntimeError((out_err + into_err).decode(errors="replace").strip()
                           or f"exit codes {out.returncode}, {into.returncode}")
    return wall


def _ours(mode: str, write_mode: str, parallelism: str) -> Callable[[Setup, str], float]:
    def run(setup: Setup, schema: str) -> float:
        pipeline = Scenario(TABLE, mode, parallelism=parallelism).pipeline(
            URL_REF, setup.source_schema, schema)
        pipeline["destination"]["write_mode"] = write_mode
        tool = run_tool(pipeline, setup)
        if tool.returncode != 0:
            raise RuntimeError(tool.reason())
        path = (tool.result or {}).get("path")
        if mode == "passthrough" and path != "passthrough":
            print(f"note: rapidbyte-fast {mode} took the {path} path", file=sys.stderr)
        return tool.wall_secs
    return run


def _duckdb_load() -> tuple[str | None, str | None]:
    """The statement that loads duckdb's postgres extension offline, or why none does."""
    if importlib.util.find_spec("duckdb") is None:
        return None, "duckdb is not installed"
    import duckdb

    candidates = ["LOAD postgres"]
    ext = importlib.util.find_spec("duckdb_extension_postgres_scanner")
    if ext is not None and ext.origin:
        shipped = Path(ext.origin).parent.glob("extensions/*/postgres_scanner.duckdb_extension")
        candidates += [f"LOAD '{p}'" for p in sorted(shipped)]
    reason = "no postgres extension"
    for stmt in candidates:
        try:
            duckdb.connect().execute(stmt)
            return stmt, None
        except duckdb.Error as exc:
            reason = str(exc).splitlines()[0]
    return None, (f"duckdb cannot load its postgres extension offline ({reason}); "
                  "pip install duckdb-extension-postgres-scanner")


def entries(setup: Setup, parallelism: str) -> list[Entry]:
    """Ours first, then the peers, each marked unavailable with the reason when it is."""
    duck_load, duck_reason = _duckdb_load()
    missing_cx = [m for m in ("connectorx", "adbc_driver_postgresql")
                  if importlib.util.find_spec(m) is None]
    no_apitap = None if importlib.util.find_spec("apitap") else "apitap is not installed"
    psql = psql_path()
    no_psql = None if psql.exists() else f"psql not found at {psql}"

    def schema(key: str) -> str:
        return f"{setup.prefix}_peer_{key}"

    mine = [Entry(f"rapidbyte-fast {mode}, {write}", f"{mode}/{write}",
                  schema(f"rbf_{mode}_{write}"), ours=True, precreate=write == "append",
                  primary_key=True, run=_ours(mode, write, parallelism))
            for write in ("append", "replace") for mode in ("copy", "passthrough")]
    return mine + [
        # replace into a keyed table, as ours: its staging table is swapped in with the key
        # (apitap needs a URL with a host)
        Entry("apitap 0.63 replace", "apitap", schema("apitap"), ours=False, precreate=True,
              primary_key=True, run=_script(_APITAP, RBF_CX_URL=connectorx_url(setup.dsn)),
              unavailable=no_apitap),
        Entry("psql | psql binary COPY", "psql", schema("psql_pk"), ours=False,
              precreate=True, primary_key=True, run=_psql_pipe, unavailable=no_psql),
        Entry("psql | psql binary COPY, no pk", "psql nopk", schema("psql_nopk"), ours=False,
              precreate=True, primary_key=False, run=_psql_pipe, unavailable=no_psql),
        Entry("psycopg copy.read → copy.write", "psycopg", schema("psycopg"), ours=False,
              precreate=True, primary_key=True, run=_script(_PSYCOPG)),
        Entry("duckdb postgres extension", "duckdb", schema("duckdb"), ours=False,
              precreate=True, primary_key=True,
              run=_script(_DUCKDB, RBF_DUCKDB_LOAD=duck_load or ""), unavailable=duck_reason),
        Entry("connectorx → ADBC", "cx+adbc", schema("cx_adbc"), ours=False,
              precreate=True, primary_key=True,
              run=_script(_CONNECTORX_ADBC, RBF_CX_URL=connectorx_url(setup.dsn)),
              unavailable=f"{', '.join(missing_cx)} not installed" if missing_cx else None),
    ]


def select(chosen: list[Entry], only: list[str] | None) -> list[Entry]:
    """The entries whose short names are in ``only`` (all when None); an unknown name is an
    error listing the known ones."""
    if not only:
        return chosen
    known = [e.short for e in chosen]
    unknown = [name for name in only if name not in known]
    if unknown:
        raise SystemExit(f"peers --only: unknown {', '.join(unknown)} (known: "
                         f"{', '.join(known)})")
    return [e for e in chosen if e.short in only]


def _prepare(setup: Setup, entry: Entry) -> None:
    """Fresh schema; the pre-created target is an exact copy of the source's definition."""
    like = "INCLUDING ALL" if entry.primary_key else "INCLUDING DEFAULTS"
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(entry.schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(entry.schema)))
        if entry.precreate:
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} " + like + ")").format(
                sql.Identifier(entry.schema, TABLE), sql.Identifier(setup.source_schema, TABLE)))


def _truncate(setup: Setup, entry: Entry) -> None:
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(entry.schema, TABLE)))


def drop_schemas(setup: Setup, chosen: list[Entry]) -> None:
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        for entry in chosen:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(entry.schema)))


def run_peers(setup: Setup, rows: int, iters: int, chosen: list[Entry]) -> None:
    """Time every available entry ``iters`` times, verifying each run; failures are kept
    per entry (the others go on)."""
    want = datasets.expected(TABLE, rows)
    live = [e for e in chosen if e.unavailable is None]
    for entry in live:
        _prepare(setup, entry)
    for it in range(iters):
        for entry in (live if it % 2 == 0 else live[::-1]):
            if entry.errors:
                continue
            if entry.precreate:
                _truncate(setup, entry)
            setup.checkpoint()
            try:
                wall = entry.run(setup, entry.schema)
                datasets.verify(setup.dsn, TABLE, entry.schema, TABLE, want, entry.primary_key)
            except RuntimeError as exc:
                entry.errors.append(str(exc))
                print(f"  {entry.name}: FAILED: {exc}", file=sys.stderr, flush=True)
                continue
            entry.walls.append(wall)
            print(f"  iter {it + 1}/{iters} {entry.name}: {wall:.3f}s", file=sys.stderr,
                  flush=True)


def table(chosen: list[Entry], rows: int) -> str:
    """Median wall per entry, then the ratio of each of ours to each peer (same run)."""
    done = [e for e in chosen if e.walls]
    lines = [f"{'entry':<40} {'median wall':>12} {'rows/s':>12}  runs"]
    for e in chosen:
        if e.walls:
            med = statistics.median(e.walls)
            lines.append(f"{e.name:<40} {med:>11.3f}s {rows / med:>12,.0f}  {len(e.walls)}")
        else:
            why = e.unavailable or ("FAILED: " + e.errors[0] if e.errors else "no run")
            lines.append(f"{e.name:<40} {'-':>12} {'-':>12}  skipped: {why}")
    ours = [e for e in done if e.ours]
    peers = [e for e in done if not e.ours]
    if ours and peers:
        title = "wall ratio, ours / peer (< 1 is faster)"
        width = max(len(title), *(len(e.name) for e in ours))
        lines += ["", f"{title:<{width}}  " + "  ".join(f"{p.short:>10}" for p in peers)]
        for o in ours:
            mo = statistics.median(o.walls)
            lines.append(f"{o.name:<{width}}  " + "  ".join(
                f"{mo / statistics.median(p.walls):>9.2f}x" for p in peers))
    return "\n".join(lines)
