"""python -m bench cdc-follow: the commit-to-visible lag of ``run --follow``.

In a server with ``wal_level = logical`` (``--dsn``, or the harness's own logical pgserver,
as ``bench cdc``), a follower (``rapidbyte-fast run PIPELINE --follow``, a subprocess)
replicates a small table into a database of its own on the same server. Once it has
bootstrapped, ``--changes`` single-row transactions (an insert, an update or a delete in
turn) are committed at the source ``--interval`` seconds apart; a watcher polls the
destination every ``POLL_SECS`` and records when each change became visible there. The
lag of a change is that instant minus the instant its source commit returned. Then the
follower gets SIGTERM and must exit 0; the destination is checked equal to the source.

Printed: lag p50, p95 and max, the follower's summary and the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from .cdc import dest_dsn, logical_server

PIPELINE = "bench-cdc-follow"
SLOT = "rbf_bench_cdc_follow"
SCHEMA = "bench_follow"
#: the watcher's poll of the destination: the lag it reports is late by up to this much
#: (plus one query, ~1 ms here)
POLL_SECS = 0.005
START_ROWS = 1000
BOOTSTRAP_SECS = 120.0


def _reset(src: str, dst: str) -> None:
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE slot_name = %s", (SLOT,))
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(f"CREATE TABLE {SCHEMA}.t (id int PRIMARY KEY, v text, n int)")
        conn.execute(f"INSERT INTO {SCHEMA}.t SELECT g, 'v' || g, g "
                     f"FROM generate_series(1, {START_ROWS}) g")
    with psycopg.connect(dst, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def _state(dst: str) -> dict[int, tuple]:
    with psycopg.connect(dst, autocommit=True) as conn:
        return {r[0]: r[1:] for r in conn.execute(f"SELECT id, v, n FROM {SCHEMA}.t")}


class _Watcher(threading.Thread):
    """Polls the destination; ``seen[i]`` is when change ``i``'s effect was first there.
    ``expect[i]`` is (id, n): an insert is there when its id is, an update when the row's
    n is, a delete (n None: of a row the bootstrap copied) when its id is gone."""

    def __init__(self, dst: str, expect: dict[int, tuple[int, int | None, str]]) -> None:
        super().__init__(daemon=True)
        self.dst, self.expect = dst, expect
        self.seen: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dst, autocommit=True) as conn:
            while not self.stop.is_set():
                pending = [(i, e) for i, e in list(self.expect.items()) if i not in self.seen]
                if pending:
                    rows = dict(conn.execute(f"SELECT id, n FROM {SCHEMA}.t WHERE id = ANY(%s)",
                                             ([e[0] for _, e in pending],)).fetchall())
                    now = time.time()
                    for i, (key, n, kind) in pending:
                        if ((kind == "insert" and key in rows) or (kind == "delete" and key
                                                                   not in rows)
                                or (kind == "update" and rows.get(key) == n)):
                            self.seen[i] = now
                time.sleep(POLL_SECS)


def measure(dsn: str, changes: int, interval: float) -> dict:
    dst = dest_dsn(dsn)
    _reset(dsn, dst)
    cfg = {"version": "1.0", "pipeline": PIPELINE,
           "source": {"use": "postgres", "config": {"url": dsn, "schema": SCHEMA,
                                                    "replication_slot": SLOT},
                      "streams": [{"name": "t", "sync_mode": "cdc"}]},
           "destination": {"use": "postgres", "write_mode": "upsert", "primary_key": ["id"],
                           "config": {"url": dst, "schema": SCHEMA}}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "follow.json"
        cfg["state"] = {"backend": "sqlite", "connection": str(Path(tmp) / "state.db")}
        path.write_text(json.dumps(cfg))
        proc = subprocess.Popen([sys.executable, "-m", "rapidbyte_fast", "run", str(path),
                                 "--follow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            return _drive(dsn, dst, proc, changes, interval)
        finally:
            if proc.poll() is None:
                proc.kill()


def _drive(src: str, dst: str, proc: subprocess.Popen, changes: int,
           interval: float) -> dict:
    end = time.monotonic() + BOOTSTRAP_SECS
    while True:
        try:
            if len(_state(dst)) == START_ROWS:
                break
        except psycopg.Error:
            pass
        if proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError(f"the follower did not bootstrap: {proc.communicate()[1]}")
        time.sleep(0.05)
    expect: dict[int, tuple[int, int | None, str]] = {}
    committed: dict[int, float] = {}
    watcher = _Watcher(dst, expect)
    watcher.start()
    with psycopg.connect(src, autocommit=True) as conn:
        for i in range(changes):
            new, old = START_ROWS + 1 + i // 3, 1 + i // 3
            kind = ("insert", "update", "delete")[i % 3]
            sql, key, n = {
                "insert": (f"INSERT INTO {SCHEMA}.t VALUES ({new}, 'c', {i})", new, i),
                "update": (f"UPDATE {SCHEMA}.t SET n = -{i} WHERE id = {new}", new, -i),
                "delete": (f"DELETE FROM {SCHEMA}.t WHERE id = {old}", old, None)}[kind]
            t_next = time.monotonic() + interval
            conn.execute(sql)
            committed[i] = time.time()
            expect[i] = (key, n, kind)
            time.sleep(max(0.0, t_next - time.monotonic()))
    end = time.monotonic() + 30
    while len(watcher.seen) < changes and time.monotonic() < end:
        time.sleep(0.05)
    watcher.stop.set()
    watcher.join()
    lags = sorted(watcher.seen[i] - committed[i] for i in watcher.seen)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    same = _state(dst) == _state(src)
    return {"lags": lags, "missing": changes - len(watcher.seen), "exit": proc.returncode,
            "same": same, "summary": [ln for ln in out.splitlines() if "followed for" in ln],
            "windows": sum("applied:" in ln for ln in err.splitlines()),
            "stderr_tail": err.strip().splitlines()[-3:], "load": os.getloadavg()}


def cmd(args: argparse.Namespace) -> int:
    with logical_server(args.dsn) as dsn:
        out = measure(dsn, args.changes, args.interval)
    lags = out["lags"]
    if lags:
        p95 = lags[min(len(lags) - 1, int(len(lags) * 0.95))]
        print(f"cdc follow lag over {len(lags)} single-row changes {args.interval}s apart: "
              f"p50 {statistics.median(lags):.3f}s, p95 {p95:.3f}s, max {lags[-1]:.3f}s "
              f"(watcher poll {POLL_SECS}s)")
    print(f"windows applied {out['windows']}, not seen {out['missing']}, follower exit "
          f"{out['exit']}, destination equals source: {out['same']}")
    for line in out["summary"]:
        print(line.strip())
    print("load average " + " ".join(f"{x:.2f}" for x in out["load"]))
    if out["exit"] != 0 or not out["same"] or out["missing"]:
        print("\n".join(out["stderr_tail"]), file=sys.stderr)
        return 1
    return 0


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("cdc-follow", parents=[common],
                       help="run --follow: commit-to-visible lag of single-row changes")
    p.add_argument("--changes", type=int, default=100, help="single-row transactions")
    p.add_argument("--interval", type=float, default=0.25,
                   help="seconds between two source commits")
    p.set_defaults(fn=cmd)
