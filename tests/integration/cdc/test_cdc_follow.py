"""``run --follow`` against real logical replication: changes made while it runs reach the
destination, the first SIGTERM lands the window in flight and exits 0, a second rolls it
back, non-cdc streams are refused, and ``cdc_window_seconds`` closes windows.

The follower runs as a CLI subprocess (signals, exit codes and output as a user sees
them); the destination is polled until it equals the source, within a deadline.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import rapidbyte_fast
from rapidbyte_fast.errors import StopRequested

from .test_cdc_pipeline import Env, _t, cdc  # noqa: F401  (cdc is a fixture)

DEADLINE_SECS = 60.0


def _follow(env: Env, cfg: dict | None = None, faults: str | None = None,
            *extra: str) -> subprocess.Popen:
    path = env.tmp / "follow.json"
    path.write_text(json.dumps(cfg or env.config()))
    e = {**os.environ}
    e.pop("RAPIDBYTE_FAULTS", None)
    if faults:
        e["RAPIDBYTE_FAULTS"] = faults
    return subprocess.Popen([sys.executable, "-m", "rapidbyte_fast", "run", str(path),
                             "--follow", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e)


def _until(what: str, check, proc: subprocess.Popen | None = None) -> None:
    end = time.monotonic() + DEADLINE_SECS
    while time.monotonic() < end:
        try:
            if check():
                return
        except Exception:   # the destination table is not there yet
            pass
        if proc is not None and proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the follower exited {proc.returncode} before {what}: {err}")
        time.sleep(0.05)
    pytest.fail(f"not within {DEADLINE_SECS}s: {what}")


def _equal(env: Env) -> bool:
    try:
        env.same()
    except AssertionError:
        return False
    return True


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> tuple[str, str]:
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=DEADLINE_SECS)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_follow_bootstraps_then_applies_changes_made_while_it_runs(cdc):
    _t(cdc, 100)
    proc = _follow(cdc)
    try:
        _until("the bootstrap", lambda: len(cdc.rows(cdc.dst)) == 100, proc)
        cdc.sql("INSERT INTO {s}.t VALUES (101, 'new', 1)")
        _until("an insert", lambda: _equal(cdc), proc)
        with cdc.conn.transaction():
            cdc.sql("UPDATE {s}.t SET v = 'u' WHERE id <= 10")
            cdc.sql("DELETE FROM {s}.t WHERE id BETWEEN 5 AND 15")
        cdc.sql("UPDATE {s}.t SET id = 500 WHERE id = 50")
        _until("updates, deletes and a key update", lambda: _equal(cdc), proc)
        assert cdc.rows(cdc.dst, cols="id, v")[:5] == [
            (1, "u"), (2, "u"), (3, "u"), (4, "u"), (16, "v16")]
    finally:
        out, err = _stop(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    # one line per applied window, with its changes, transactions and lag
    windows = [ln for ln in err.splitlines() if "applied:" in ln]
    assert len(windows) >= 2, err
    assert all(" changes, " in ln and " transactions, lag " in ln for ln in windows)
    assert "stopping after the window in flight is applied" in err
    assert "followed for " in out and "commit-to-apply lag p50 " in out, out
    bench = json.loads(out.strip().splitlines()[-1].removeprefix("@@BENCH_JSON@@"))
    assert bench["records_read"] >= 1 + 10 + 11 + 1
    cdc.same()
    assert cdc.slot_at_position()
    # a plain drain afterwards finds nothing left to apply
    assert rapidbyte_fast.run(cdc.config()).streams[0].records_read == 0


def test_first_sigterm_lands_the_window_in_flight_and_exits_0(cdc):
    _t(cdc, 50)
    cdc.run()
    with cdc.conn.transaction():
        cdc.sql("UPDATE {s}.t SET v = 'w' WHERE id <= 20")
        cdc.sql("DELETE FROM {s}.t WHERE id > 40")
    cdc.sql("INSERT INTO {s}.t VALUES (99, 'x', 9)")
    before = cdc.position()
    # SIGTERM from inside the window's apply, before its destination commit
    proc = _follow(cdc, faults="cdc.apply#1=term")
    out, err = proc.communicate(timeout=DEADLINE_SECS)
    assert proc.returncode == 0, err
    assert "fault injection: term at cdc.apply #1" in err
    assert "window 1 applied: 31 changes, 2 transactions" in err, err
    cdc.same()   # the window landed, without a drain run
    assert cdc.position() != before and cdc.position() == cdc.confirmed()
    assert "followed for " in out and "31 changes of 2 transactions in 1 windows" in out
    assert rapidbyte_fast.run(cdc.config()).streams[0].records_read == 0


def test_second_sigterm_rolls_the_window_back(cdc):
    _t(cdc, 50)
    cdc.run()
    cdc.sql("UPDATE {s}.t SET v = 'w' WHERE id <= 20")
    before, rows = cdc.position(), cdc.rows(cdc.dst)
    proc = _follow(cdc, faults="dest.batch#1=term,cdc.apply#1=term")
    _, err = proc.communicate(timeout=DEADLINE_SECS)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == (
        "stopped: the work in flight was rolled back; committed ranges, checkpoints and "
        "streams are kept")
    assert "Traceback" not in err
    assert cdc.position() == before and cdc.rows(cdc.dst) == rows
    assert rapidbyte_fast.run(cdc.config()).streams[0].records_read == 20
    cdc.same()


def test_sigterm_while_the_source_keeps_writing_then_a_drain_is_exact(cdc):
    _t(cdc, 200)
    proc = _follow(cdc)
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            with cdc.conn.transaction():
                cdc.sql(f"INSERT INTO {{s}}.t VALUES ({1000 + i}, 'w{i}', {i})")
                cdc.sql(f"UPDATE {{s}}.t SET n = n + 1 WHERE id = {1 + i % 200}")
                cdc.sql(f"DELETE FROM {{s}}.t WHERE id = {200 - i % 150}")
            time.sleep(0.01)

    try:
        _until("the bootstrap", lambda: len(cdc.rows(cdc.dst)) >= 1, proc)
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            _until("a few windows", lambda: cdc.conn.execute(
                f'SELECT max(id) FROM "{cdc.dst}".t').fetchone()[0] > 1010, proc)
        finally:
            _, err = _stop(proc)
            stop.set()
            thread.join()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert rapidbyte_fast.run(cdc.config()).streams[0].path == "cdc"
    cdc.same()


def test_non_cdc_streams_are_refused_before_anything_is_written(cdc):
    _t(cdc, 10)
    cfg = cdc.config()
    cfg["source"]["streams"] = [{"name": "t", "sync_mode": "cdc"},
                                {"name": "u", "sync_mode": "full_refresh"}]
    proc = _follow(cdc, cfg)
    _, err = proc.communicate(timeout=DEADLINE_SECS)
    assert proc.returncode == 2
    assert err.strip() == (
        "config error: source.streams[1] (u): run --follow needs sync_mode cdc, the stream "
        "has full_refresh; run it without --follow (e.g. with --schedule), in a pipeline of "
        "its own")
    assert cdc.conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s",
                            (cdc.dst,)).fetchone()[0] == 0
    assert cdc.conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                            (cdc.slot,)).fetchone()[0] == 0


def test_follow_cannot_run_on_a_schedule(cdc):
    proc = _follow(cdc, None, None, "--schedule", "@hourly")
    _, err = proc.communicate(timeout=DEADLINE_SECS)
    assert proc.returncode == 2
    assert "--follow runs until stopped: it cannot run on --schedule" in err


def test_python_api_follows_until_the_event_is_set(cdc):
    _t(cdc, 20)
    until = threading.Event()
    box: dict = {}

    def follow() -> None:
        try:
            box["result"] = rapidbyte_fast.run(cdc.config(), follow=until)
        except BaseException as exc:   # surfaced by the assertion below
            box["error"] = exc

    thread = threading.Thread(target=follow)
    thread.start()
    try:
        _until("the bootstrap", lambda: len(cdc.rows(cdc.dst)) == 20)
        cdc.sql("DELETE FROM {s}.t WHERE id <= 5")
        _until("a delete", lambda: _equal(cdc))
    finally:
        until.set()
        thread.join(DEADLINE_SECS)
    assert "error" not in box, box.get("error")
    sr = box["result"].streams[0]
    assert (sr.records_read, sr.records_written) == (20 + 5, 20 + 5)   # bootstrap, delete
    assert sr.path_reason.endswith(", then followed")
    assert any(n.startswith("followed for ") for n in sr.notes)
    assert not isinstance(box.get("error"), StopRequested)


def test_time_bound_closes_windows(cdc):
    cdc.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, v text, n int)")
    cdc.run()
    for i in range(50):   # 50 transactions of 1,000 changes
        cdc.sql(f"INSERT INTO {{s}}.t SELECT g, 'v', g FROM generate_series({i * 1000 + 1}, "
                f"{i * 1000 + 1000}) g")
    cfg = cdc.config()
    # no bound: one window holds the 50,000 changes
    cfg["source"]["config"]["cdc_window_seconds"] = 0
    sr = rapidbyte_fast.run(cfg).streams[0]
    assert (sr.records_read, sr.checkpoints) == (50_000, 1)
    cdc.same()
    cdc.sql("UPDATE {s}.t SET n = -n")   # one transaction of 50,000 changes
    for i in range(50):
        cdc.sql(f"DELETE FROM {{s}}.t WHERE id BETWEEN {i * 1000 + 1} AND {i * 1000 + 1000}")
    # a bound far below the read time of 10,000 changes: every window is the smallest,
    # closed at the first transaction boundary after 10,000 changes
    cfg["source"]["config"]["cdc_window_seconds"] = 0.001
    sr = rapidbyte_fast.run(cfg).streams[0]
    assert (sr.records_read, sr.checkpoints) == (100_000, 1 + 5)
    cdc.same()
    assert cdc.rows(cdc.dst) == []
