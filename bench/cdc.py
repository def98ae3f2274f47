"""python -m bench cdc: change data capture, bootstrap and drain, verified.

Per iteration, on ``bench_events`` (N rows, seeded by our generate source) in a server
with ``wal_level = logical`` (``--dsn``, or a pgserver of the harness's own, made logical),
into a database of its own on the same server:

  bootstrap   a fresh slot, and the full load in its exported snapshot into a replica
              (write_mode upsert); verified equal to the source
  drain       after a change set of ``--scale`` × (500k updates, 100k deletes, 200k
              inserts) in 10 source transactions: one run applies it; verified equal to the
              source (count, sum of ids and amounts, md5 of every row); changes/s

Every iteration drops the destination schema and the slot first, and seeds the source
again (the change set altered it).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import psycopg

from .database import DSN_ENV, server_dir
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
    import pgserver

    from rapidbyte_fast.embedded import set_logical

    root = Path(str(server_dir()) + "-logical")
    root.mkdir(parents=True, exist_ok=True)
    print(f"starting a logical pgserver in {root}", file=sys.stderr)
    srv = pgserver.get_server(root, cleanup_mode="stop")
    try:
        set_logical(srv, root)
        yield srv.get_uri()
    finally:
        srv.cleanup()


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


def _pipeline(setup: Setup) -> dict[str, Any]:
    return {
        "version": "1.0", "pipeline": PIPELINE,
        "source": {"use": "postgres", "config": {"url": URL_REF, "schema": setup.source_schema,
                                                 "replication_slot": SLOT},
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


def _fingerprint(conn: psycopg.Connection, schema: str) -> tuple:
    return conn.execute(
        "SELECT count(*), sum(id), sum(amount), md5(string_agg(md5(t::text), '' ORDER BY id)) "
        f'FROM (SELECT id, event_type, user_id, amount, is_active, payload, created_at '
        f'FROM "{schema}".bench_events) t').fetchone()


def _verify(setup: Setup, what: str) -> None:
    with psycopg.connect(setup.dsn) as conn:
        src = _fingerprint(conn, setup.source_schema)
    with psycopg.connect(dest_dsn(setup.dsn)) as conn:
        dst = _fingerprint(conn, setup.dest_schema)
    if src != dst:
        raise RuntimeError(f"cdc/{what}: destination {dst} differs from the source {src}")


def _finished(run: ToolRun, what: str) -> dict[str, Any]:
    if run.returncode != 0 or run.result is None:
        raise RuntimeError(f"cdc/{what}: the tool failed: {run.reason()}")
    return run.result


def _reset(setup: Setup) -> None:
    with psycopg.connect(dest_dsn(setup.dsn), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{setup.dest_schema}" CASCADE')
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE slot_name = %s", (SLOT,))


def measure(setup: Setup, rows: int, iters: int, scale: float) -> dict[str, list[float]]:
    """Per iteration: bootstrap wall, drain wall, changes, changes/s, client CPU, peak RSS."""
    out: dict[str, list[float]] = {k: [] for k in (
        "bootstrap_secs", "drain_secs", "changes", "changes_per_s", "drain_cpu_secs",
        "drain_rss_mb", "bootstrap_rss_mb", "drain_read_secs", "drain_apply_secs")}
    for it in range(iters):
        ensure_seeded(setup, "bench_events", rows)
        _reset(setup)
        setup.checkpoint()
        env = {"RBF_BENCH_CDC_DST": dest_dsn(setup.dsn)}
        boot = run_tool(_pipeline(setup), setup, env)
        res = _finished(boot, "bootstrap")
        _verify(setup, "bootstrap")
        changes = change_set(setup.dsn, setup.source_schema, rows, scale)
        setup.checkpoint()
        drain = run_tool(_pipeline(setup), setup, env)
        dres = _finished(drain, "drain")
        if dres["records_read"] != changes:
            raise RuntimeError(f"cdc/drain: read {dres['records_read']:,} changes, the change "
                               f"set made {changes:,}")
        _verify(setup, "drain")
        out["bootstrap_secs"].append(boot.wall_secs)
        out["bootstrap_rss_mb"].append(res["peak_rss_mb"])
        out["drain_secs"].append(drain.wall_secs)
        out["changes"].append(changes)
        out["changes_per_s"].append(changes / drain.wall_secs)
        out["drain_cpu_secs"].append(dres["process_cpu_secs"])
        out["drain_rss_mb"].append(dres["peak_rss_mb"])
        out["drain_read_secs"].append(dres.get("source_fetch_secs", 0.0)
                                      + dres.get("source_decode_secs", 0.0))
        out["drain_apply_secs"].append(dres.get("dest_apply_secs", 0.0)
                                       + dres.get("dest_commit_secs", 0.0))
        print(f"  iter {it + 1}/{iters}: bootstrap {boot.wall_secs:.2f}s, drain "
              f"{drain.wall_secs:.2f}s ({changes / drain.wall_secs:,.0f} changes/s), "
              "verified", file=sys.stderr, flush=True)
    return out


def table(out: dict[str, list[float]], rows: int) -> str:
    lines = [f"cdc on bench_events, {rows:,} rows bootstrapped, "
             f"{int(out['changes'][0]):,} changes drained (medians of {len(out['changes'])}; "
             "walls include process start)"]
    for key in ("bootstrap_secs", "bootstrap_rss_mb", "drain_secs", "changes_per_s",
                "drain_read_secs", "drain_apply_secs", "drain_cpu_secs", "drain_rss_mb"):
        lines.append(f"  {key:<18} {statistics.median(out[key]):>12,.2f}")
    return "\n".join(lines)


def cmd(args: argparse.Namespace) -> int:
    rows = args.rows or 1_000_000
    with logical_server(args.dsn) as dsn:
        setup = Setup(dsn, prefix=f"{args.schema_prefix}_cdc")
        out = measure(setup, rows, args.iters, args.scale)
    print(table(out, rows))
    return 0


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("cdc", parents=[common], help="change capture: bootstrap and drain")
    p.add_argument("--scale", type=float, default=1.0,
                   help="change set size: SCALE × (500k updates, 100k deletes, 200k inserts)")
    p.set_defaults(fn=cmd)
