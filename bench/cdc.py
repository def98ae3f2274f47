"""python -m bench cdc: change data capture, bootstrap and drain, verified.

Per iteration, on ``bench_events`` (N rows, seeded by our generate source) in a server
with ``wal_level = logical`` (``--dsn``, or a pgserver of the harness's own, made logical),
into a database of its own on the same server:

  bootstrap   a fresh slot, and the full load in its exported snapshot into a replica
              (write_mode upsert); verified equal to the source
  drain       after a change set of ``--scale`` × (500k updates, 100k deletes, 200k
              inserts) in 10 source transactions: one run applies it; verified equal to the
              source (count, sum of ids and amounts, md5 of every row); changes/s

When apitap (the ``bench`` extra) is installed, its ``log_based`` mode runs on the same
data in the same iteration: both tools bootstrap (each its own slot, ours first) before the
change set, then both drain it (the order alternates per iteration), each verified the
same way; the table gives both and the ratios. Client CPU and peak RSS are each process's
own (ours from its result line, apitap's measured around ``transfer`` in its process).

Every iteration drops the destination schemas and the slots first, and seeds the source
again (the change set altered it).
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
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import psycopg

from .database import DSN_ENV, server_dir
from .peers import connectorx_url
from .runner import URL_REF, Setup, ToolRun, ensure_seeded, run_tool

PIPELINE = "bench-cdc"
SLOT = "rbf_bench_cdc"
#: the change set of issue 14 at scale 1: 500k updates, 100k deletes, 200k inserts
UPDATES, DELETES, INSERTS, TRANSACTIONS = 500_000, 100_000, 200_000, 10


@contextmanager
def logical_server(dsn: str | None) -> Iterator[str]:
    """``--dsn`` (or RAPIDBYTE_BENCH_DSN) when its wal_level is logical, else the
    harness's own logical pgserver (kept between runs, stopped after)."""
    import os

    dsn = dsn or os.environ.get(DSN_ENV)
    if dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            level = conn.execute("SHOW wal_level").fetchone()[0]
        if level != "logical":
            raise ValueError(f"--dsn has wal_level = {level}; cdc needs logical")
        yield dsn
        return
    from rapidbyte_fast import embedded

    root = Path(str(server_dir()) + "-logical")
    root.mkdir(parents=True, exist_ok=True)
    print(f"starting a logical pgserver in {root}", file=sys.stderr)
    srv = embedded.handle(root, cleanup_mode="stop")
    try:
        embedded.set_logical(srv, root)
        yield _listen_tcp(srv, root)
    finally:
        srv.cleanup()


def _listen_tcp(srv, root: Path) -> str:
    """Restart the harness's pgserver listening on 127.0.0.1 too (apitap refuses a Unix
    socket for its replication connection); its DSN over TCP."""
    import socket

    from pgserver._commands import pg_ctl
    from pgserver.utils import PostmasterInfo

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # -o replaces the options of the first start (postmaster.opts): keep the socket dir
    pg_ctl(["-w", "-m", "fast", "-o", f"-h 127.0.0.1 -p {port} -k {root}", "restart"],
           pgdata=root, user=srv.system_user, timeout=60)
    srv._postmaster_info = PostmasterInfo.read_from_pgdata(root)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


#: the destination is a database of its own: logical decoding skips other databases' WAL
#: early, whereas the destination's writes in the source's database would be decoded (and
#: dropped) by every drain: 200k changes drained in 19.4 s with the destination in the
#: source's database, most of it the server decoding the bootstrap's and the applies' WAL
DEST_DB = "rbf_bench_cdc_dst"


def dest_dsn(dsn: str) -> str:
    """The destination database's DSN (created if missing)."""
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(dsn, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (DEST_DB,)).fetchone():
            conn.execute(f'CREATE DATABASE "{DEST_DB}"')
    return make_conninfo(dsn, dbname=DEST_DB)


def _pipeline(setup: Setup, window_secs: float | None = None) -> dict[str, Any]:
    src = {"url": URL_REF, "schema": setup.source_schema, "replication_slot": SLOT}
    if window_secs is not None:
        src["cdc_window_seconds"] = window_secs
    return {
        "version": "1.0", "pipeline": PIPELINE,
        "source": {"use": "postgres", "config": src,
                   "streams": [{"name": "bench_events", "sync_mode": "cdc"}]},
        "destination": {"use": "postgres", "write_mode": "upsert", "primary_key": ["id"],
                        "config": {"url": "${RBF_BENCH_CDC_DST}",
                                   "schema": setup.dest_schema}},
        "resources": {"parallelism": 1},
    }


def change_set(dsn: str, schema: str, rows: int, scale: float) -> int:
    """Apply the change set to the source in ``TRANSACTIONS`` transactions; the changes."""
    upd, dele, ins = (int(n * scale) for n in (UPDATES, DELETES, INSERTS))
    if upd + dele > rows:
        raise ValueError(f"--rows {rows:,} is too few for {upd:,} updates and {dele:,} "
                         "deletes of distinct rows")
    t = f'"{schema}".bench_events'
    with psycopg.connect(dsn, autocommit=True) as conn:
        for k in range(TRANSACTIONS):
            with conn.transaction():
                lo, hi = upd * k // TRANSACTIONS, upd * (k + 1) // TRANSACTIONS
                conn.execute(f"UPDATE {t} SET amount = amount + 1, event_type = 'cdc' "
                             "WHERE id > %s AND id <= %s", (lo, hi))
                lo, hi = upd + dele * k // TRANSACTIONS, upd + dele * (k + 1) // TRANSACTIONS
                conn.execute(f"DELETE FROM {t} WHERE id > %s AND id <= %s", (lo, hi))
                lo, hi = rows + ins * k // TRANSACTIONS, rows + ins * (k + 1) // TRANSACTIONS
                conn.execute(f"INSERT INTO {t} SELECT g, 'new', g %% 1000, g %% 500, true, "
                             "'p' || g, timestamp '2026-01-01' + g * interval '1 second' "
                             "FROM generate_series(%s, %s) g", (lo + 1, hi))
    return upd + dele + ins


#: apitap's log_based run in a process of its own: its CPU and peak RSS (VmHWM) as ours are
#: measured (engine.py): the transfer only, and the whole process image's peak
_APITAP = """
import json, os, time, apitap
from rapidbyte_fast.memory_budget import peak_resident_bytes
cpu0 = time.process_time()
rep = apitap.transfer(os.environ["RBF_SRC_URL"], os.environ["RBF_DST_URL"],
                      table=os.environ["RBF_SRC"], dest_table=os.environ["RBF_DST"],
                      mode="log_based")
print(json.dumps({"rows": rep.rows, "cpu": time.process_time() - cpu0,
                  "rss_mb": peak_resident_bytes() / (1 << 20)}))
"""


def _apitap_schema(setup: Setup) -> str:
    return f"{setup.prefix}_apitap"


def _apitap(setup: Setup) -> tuple[float, dict[str, Any]]:
    """One apitap log_based run (bootstrap or drain): its wall and its own numbers."""
    env = {**os.environ, "RBF_SRC_URL": connectorx_url(setup.dsn),
           "RBF_DST_URL": connectorx_url(dest_dsn(setup.dsn)),
           "RBF_SRC": f"{setup.source_schema}.bench_events",
           "RBF_DST": f"{_apitap_schema(setup)}.bench_events"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _APITAP], env=env, capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise RuntimeError("cdc/apitap: " + (" | ".join(lines[-3:])
                                             or f"exit code {proc.returncode}"))
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def _fingerprint(conn: psycopg.Connection, schema: str) -> tuple:
    return conn.execute(
        "SELECT count(*), sum(id), sum(amount), md5(string_agg(md5(t::text), '' ORDER BY id)) "
        f'FROM (SELECT id, event_type, user_id, amount, is_active, payload, created_at '
        f'FROM "{schema}".bench_events) t').fetchone()


def _verify(setup: Setup, what: str, schema: str | None = None) -> None:
    with psycopg.connect(setup.dsn) as conn:
        src = _fingerprint(conn, setup.source_schema)
    with psycopg.connect(dest_dsn(setup.dsn)) as conn:
        dst = _fingerprint(conn, schema or setup.dest_schema)
    if src != dst:
        raise RuntimeError(f"cdc/{what}: destination {dst} differs from the source {src}")


def _finished(run: ToolRun, what: str) -> dict[str, Any]:
    if run.returncode != 0 or run.result is None:
        raise RuntimeError(f"cdc/{what}: the tool failed: {run.reason()}")
    return run.result


def _reset(setup: Setup, apitap: bool) -> None:
    with psycopg.connect(dest_dsn(setup.dsn), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{setup.dest_schema}" CASCADE')
        if apitap:
            conn.execute(f'DROP SCHEMA IF EXISTS "{_apitap_schema(setup)}" CASCADE')
            conn.execute(f'CREATE SCHEMA "{_apitap_schema(setup)}"')
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE slot_name = %s", (SLOT,))
        if apitap:
            # apitap's slot and publication for this table: apitap_<...>, <slot>_pub
            for (slot,) in conn.execute(
                    "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s "
                    "AND NOT active", ("apitap\\_%",)).fetchall():
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                conn.execute(f'DROP PUBLICATION IF EXISTS "{slot}_pub"')


KEYS = ("bootstrap_secs", "bootstrap_rss_mb", "drain_secs", "changes_per_s",
        "drain_read_secs", "drain_apply_secs", "drain_cpu_secs", "drain_rss_mb")
#: apitap's numbers, and the ratio ours / apitap's for each (> 1 is better for changes/s)
PEER_KEYS = ("bootstrap_secs", "bootstrap_rss_mb", "drain_secs", "changes_per_s",
             "drain_cpu_secs", "drain_rss_mb")


def measure(setup: Setup, rows: int, iters: int, scale: float, apitap: bool,
            window_secs: float | None = None) -> dict[str, list[float]]:
    """Per iteration: bootstrap wall, drain wall, changes, changes/s, client CPU, peak RSS
    (ours, and apitap's under ``apitap_<key>`` when ``apitap``); ``window_secs``: the
    source's ``cdc_window_seconds`` (None: its default)."""
    out: dict[str, list[float]] = {k: [] for k in ("changes", "load", *KEYS)}
    out.update({f"apitap_{k}": [] for k in PEER_KEYS} if apitap else {})
    for it in range(iters):
        ensure_seeded(setup, "bench_events", rows)
        _reset(setup, apitap)
        setup.checkpoint()
        env = {"RBF_BENCH_CDC_DST": dest_dsn(setup.dsn)}
        out["load"].append(os.getloadavg()[0])
        boot = run_tool(_pipeline(setup, window_secs), setup, env)
        res = _finished(boot, "bootstrap")
        _verify(setup, "bootstrap")
        if apitap:
            setup.checkpoint()
            wall, peer = _apitap(setup)
            _verify(setup, "apitap bootstrap", _apitap_schema(setup))
            out["apitap_bootstrap_secs"].append(wall)
            out["apitap_bootstrap_rss_mb"].append(peer["rss_mb"])
        changes = change_set(setup.dsn, setup.source_schema, rows, scale)
        setup.checkpoint()

        def ours() -> None:
            drain = run_tool(_pipeline(setup, window_secs), setup, env)
            dres = _finished(drain, "drain")
            if dres["records_read"] != changes:
                raise RuntimeError(f"cdc/drain: read {dres['records_read']:,} changes, the "
                                   f"change set made {changes:,}")
            _verify(setup, "drain")
            out["drain_secs"].append(drain.wall_secs)
            out["changes_per_s"].append(changes / drain.wall_secs)
            out["drain_cpu_secs"].append(dres["process_cpu_secs"])
            out["drain_rss_mb"].append(dres["peak_rss_mb"])
            out["drain_read_secs"].append(dres.get("source_fetch_secs", 0.0)
                                          + dres.get("source_decode_secs", 0.0))
            out["drain_apply_secs"].append(dres.get("dest_apply_secs", 0.0)
                                           + dres.get("dest_commit_secs", 0.0))

        def theirs() -> None:
            wall, peer = _apitap(setup)
            _verify(setup, "apitap drain", _apitap_schema(setup))
            out["apitap_drain_secs"].append(wall)
            out["apitap_changes_per_s"].append(changes / wall)
            out["apitap_drain_cpu_secs"].append(peer["cpu"])
            out["apitap_drain_rss_mb"].append(peer["rss_mb"])

        # alternate who drains first, so drift (and a warm cache) favours nobody
        order = [ours, theirs] if apitap else [ours]
        for i, fn in enumerate(order[::-1] if it % 2 else order):
            if i:
                setup.checkpoint()
            fn()
        out["bootstrap_secs"].append(boot.wall_secs)
        out["bootstrap_rss_mb"].append(res["peak_rss_mb"])
        out["changes"].append(changes)
        peer_txt = (f"; apitap bootstrap {out['apitap_bootstrap_secs'][-1]:.2f}s, drain "
                    f"{out['apitap_drain_secs'][-1]:.2f}s" if apitap else "")
        print(f"  iter {it + 1}/{iters} (load {out['load'][-1]:.2f}): bootstrap "
              f"{boot.wall_secs:.2f}s, drain {out['drain_secs'][-1]:.2f}s "
              f"({out['changes_per_s'][-1]:,.0f} changes/s){peer_txt}, verified",
              file=sys.stderr, flush=True)
    return out


def table(out: dict[str, list[float]], rows: int) -> str:
    med = {k: statistics.median(v) for k, v in out.items() if v}
    peer = "apitap_drain_secs" in med
    lines = [f"cdc on bench_events, {rows:,} rows bootstrapped, {int(med['changes']):,} "
             f"changes drained (medians of {len(out['changes'])}; walls include process "
             f"start; 1-min load average {med['load']:.2f})"]
    lines.append(f"  {'':<18} {'rapidbyte-fast':>14}"
                 + (f" {'apitap 0.63':>12} {'ours/apitap':>12}" if peer else ""))
    for key in KEYS:
        line = f"  {key:<18} {med[key]:>14,.2f}"
        if peer and f"apitap_{key}" in med:
            theirs = med[f"apitap_{key}"]
            line += f" {theirs:>12,.2f} {med[key] / theirs if theirs else 0.0:>11.2f}x"
        lines.append(line)
    return "\n".join(lines)


def cmd(args: argparse.Namespace) -> int:
    rows = args.rows or 1_000_000
    with logical_server(args.dsn) as dsn:
        setup = Setup(dsn, prefix=f"{args.schema_prefix}_cdc")
        apitap = not args.no_apitap and importlib.util.find_spec("apitap") is not None
        if not apitap:
            print("apitap: not run (" + ("--no-apitap" if args.no_apitap else
                  "not installed; pip install apitap==0.63.0") + ")", file=sys.stderr)
        out = measure(setup, rows, args.iters, args.scale, apitap, args.window_secs)
    print(table(out, rows))
    return 0


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("cdc", parents=[common], help="change capture: bootstrap and drain")
    p.add_argument("--scale", type=float, default=1.0,
                   help="change set size: SCALE × (500k updates, 100k deletes, 200k inserts)")
    p.add_argument("--window-secs", type=float, default=None,
                   help="the source's cdc_window_seconds (default: the tool's default)")
    p.add_argument("--no-apitap", action="store_true",
                   help="skip apitap's log_based run even when it is installed")
    p.set_defaults(fn=cmd)
