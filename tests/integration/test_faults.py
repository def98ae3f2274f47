"""Fault injection (``RAPIDBYTE_FAULTS``): backends killed with pg_terminate_backend at 27
points and the whole process SIGKILLed at 14, across append, replace, incremental (with and
without a tie-breaker) and upsert. After the next successful run the destination equals the source row for row, the
cursor is right, nothing is left behind, and a killed replace left the old table intact.

The points are fixed commit boundaries plus batch numbers drawn from a seeded generator, so
every run of the suite injects the same faults.
"""
from __future__ import annotations

import json
import random

import pytest

import rapidbyte_fast
from rapidbyte_fast.errors import RapidbyteError

from .test_cli_e2e import _cli, _text_rows

ROWS = 6000
MODES = ("append", "replace", "incremental", "upsert", "incremental_no_tie")
_rng = random.Random(20261123)


def _batch_points(n: int) -> list[tuple[str, str]]:
    """``n`` seeded (point, action) pairs at a batch read or written."""
    return [(f"{_rng.choice(['source.batch', 'dest.batch'])}#{_rng.randint(1, 8)}",
             _rng.choice(["terminate-source", "terminate-dest"])) for _ in range(n)]


# commit boundaries of each mode, then seeded batch points: 27 in all
TERMINATE = {
    "append": [("dest.range_commit#2", "terminate-dest"), ("dest.range_committed#1",
               "terminate-dest"), ("dest.commit#1", "terminate-dest")] + _batch_points(3),
    "replace": [("dest.range_commit#3", "terminate-dest"), ("dest.range_committed#2",
                "terminate-dest"), ("dest.commit#1", "terminate-dest"),
                ("dest.committed#1", "terminate-dest")] + _batch_points(2),
    "incremental": [("dest.checkpoint#1", "terminate-dest"), ("dest.checkpointed#1",
                    "terminate-dest"), ("dest.commit#1", "terminate-dest")] + _batch_points(3),
    "upsert": [("dest.checkpoint#2", "terminate-dest"), ("dest.checkpointed#1",
               "terminate-source"), ("dest.commit#1", "terminate-dest"),
               ("dest.committed#1", "terminate-dest")] + _batch_points(2),
    # checkpoints cut inside runs of equal cursor values: only the rows below move
    "incremental_no_tie": [("dest.checkpoint#1", "terminate-dest"),
                           ("dest.checkpointed#1", "terminate-dest")] + _batch_points(1),
}
# (mode, point): 14 crashes of the whole process
KILL = [("append", "source.batch#2"), ("append", "dest.range_committed#2"),
        ("append", "dest.commit#1"), ("replace", "dest.batch#3"),
        ("replace", "dest.range_commit#2"), ("replace", "dest.range_committed#3"),
        ("replace", "dest.commit#1"), ("replace", "dest.committed#1"),
        ("incremental", "dest.checkpointed#1"), ("incremental", "dest.batch#4"),
        ("upsert", "dest.checkpointed#1"), ("upsert", "dest.commit#1"),
        ("incremental_no_tie", "dest.checkpointed#1"), ("incremental_no_tie", "dest.batch#6")]


def _insert(conn, schema: str, lo: int, hi: int) -> None:
    # cursor values repeat (n = id / 7); text with quotes, tabs, newlines and NULLs
    conn.execute(
        f'INSERT INTO "{schema}".ev SELECT i, i / 7, CASE WHEN i %% 11 = 0 THEN NULL ELSE '
        "'v' || i || E'\\t''q''\\n' || repeat('x', i %% 40) END, "
        "'2024-01-01 00:00:00+00'::timestamptz + i * interval '1 minute', (i * 1.25)::numeric "
        "FROM generate_series(%s::int, %s::int) i", (lo, hi))
    conn.execute(f'ANALYZE "{schema}".ev')  # ranges are sized from the planner's estimate


def _config(dsn: str, src: str, dst: str, mode: str, passthrough: str = "auto") -> dict:
    stream: dict = {"name": "ev"}
    write_mode = mode
    if mode.startswith("incremental"):
        stream.update(sync_mode="incremental", cursor_field="n")
        if mode == "incremental":
            stream["tie_breaker_field"] = "id"
        write_mode = "append"
    dest: dict = {"use": "postgres", "write_mode": write_mode,
                  "config": {"url": dsn, "schema": dst, "passthrough": passthrough}}
    if mode == "upsert":
        dest["primary_key"] = ["id"]
    return {"version": "1.0", "pipeline": "faults",
            "source": {"use": "postgres", "config": {"url": dsn, "schema": src},
                       "streams": [stream]},
            "destination": dest,
            "resources": {"max_batch_rows": 400, "checkpoint_interval_rows": 1500,
                          "checkpoint_interval_bytes": 0, "max_retries": 4}}


def _before(conn, dsn: str, src: str, dst: str, mode: str) -> list:
    """Source and destination as the faulty run finds them; returns the destination rows."""
    s = f'"{src}"'
    conn.execute(f"CREATE TABLE {s}.ev (id int PRIMARY KEY, n int, v text, ts timestamptz, "
                 "amount numeric(12,2))")
    if mode == "append":
        _insert(conn, src, 1, ROWS)
        return []
    _insert(conn, src, 1, ROWS // 2)
    rapidbyte_fast.run(_config(dsn, src, dst, mode))  # the destination's earlier state
    _insert(conn, src, ROWS // 2 + 1, ROWS)
    if mode in ("replace", "upsert"):
        conn.execute(f"UPDATE {s}.ev SET v = 'updated ' || id, n = n + 1000 WHERE id % 5 = 0")
        conn.execute(f"DELETE FROM {s}.ev WHERE id % 13 = 0 AND id > 100")
    return _text_rows(conn, dst, "ev")


def _expected(conn, src: str, mode: str, before: list) -> list:
    rows = _text_rows(conn, src, "ev")
    if mode == "upsert":  # upsert keeps rows deleted at the source
        have = {r[0] for r in rows}
        rows = rows + [r for r in before if r[0] not in have]
    if mode == "incremental_no_tie":  # as `check` warns: later rows sharing the last cursor
        last = str(ROWS // 2 // 7)    # value of the first run are not read
        rows = [r for r in rows if not (r[1] == last and int(r[0]) > ROWS // 2)]
    return sorted(rows)


def _check_after(conn, src: str, dst: str, mode: str, before: list) -> None:
    assert sorted(_text_rows(conn, dst, "ev")) == _expected(conn, src, mode, before)
    tables = {r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (dst,))}
    assert tables <= {"ev", "rbf_state", "rbf_progress"}, tables  # no staging left
    if "rbf_progress" in tables:
        assert conn.execute(f'SELECT count(*) FROM "{dst}".rbf_progress').fetchone() == (0,)
    if mode.startswith("incremental"):
        last = conn.execute(f'SELECT n, max(id) FROM "{src}".ev GROUP BY n '
                            "ORDER BY n DESC LIMIT 1").fetchone()
        tie = str(last[1]) if mode == "incremental" else None
        assert conn.execute(f'SELECT cursor_value, tie_value FROM "{dst}".rbf_state').fetchall(
            ) == [(str(last[0]), tie)]


@pytest.mark.parametrize("mode,point,action", [
    (m, p, a) for m in MODES for p, a in TERMINATE[m]])
def test_terminated_backend_is_retried_without_loss_or_duplicates(
        pg_dsn, pg_conn, pg_schema, pg_schema2, monkeypatch, caplog, mode, point, action):
    before = _before(pg_conn, pg_dsn, pg_schema, pg_schema2, mode)
    monkeypatch.setenv("RAPIDBYTE_FAULTS", f"{point}={action}")
    # passthrough sends a small table as one chunk per COPY (a range's, or the whole
    # stream's): batches and row-count checkpoints need the Arrow path
    passthrough = "auto" if "range" in point or point.startswith("dest.commit") else "off"
    result = rapidbyte_fast.run(_config(pg_dsn, pg_schema, pg_schema2, mode, passthrough))
    fired = f"fault injection: {action} at {point.replace('#', ' #')}"
    assert fired in caplog.text
    if action == "terminate-dest" and not point.endswith("ed#1") and "batch" not in point:
        assert result.retry_count >= 1  # the commit itself was cut off
    _check_after(pg_conn, pg_schema, pg_schema2, mode, before)


@pytest.mark.parametrize("mode,point", KILL)
def test_killed_process_then_next_run_is_exact(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                               tmp_path, monkeypatch, mode, point):
    before = _before(pg_conn, pg_dsn, pg_schema, pg_schema2, mode)
    path = tmp_path / "faults.json"  # YAML is a superset of JSON
    passthrough = "auto" if mode in ("append", "replace") else "off"
    path.write_text(json.dumps(_config(pg_dsn, pg_schema, pg_schema2, mode, passthrough)))
    monkeypatch.setenv("RAPIDBYTE_FAULTS", f"{point}=kill")
    crashed = _cli(pg_dsn, "run", "-q", str(path))
    assert crashed.returncode == -9, crashed.stderr
    if mode == "replace" and point != "dest.committed#1":
        assert _text_rows(pg_conn, pg_schema2, "ev") == before  # old table intact
    monkeypatch.delenv("RAPIDBYTE_FAULTS")
    proc = _cli(pg_dsn, "run", "-q", str(path))
    assert proc.returncode == 0, proc.stderr
    bench = json.loads(proc.stdout.split("@@BENCH_JSON@@", 1)[1])
    if "range_committed" in point:  # went on from the committed ranges
        assert bench["resumed_ranges"] >= 1 and bench["resumed_rows"] >= 1
        assert bench["records_written"] + bench["resumed_rows"] == ROWS - (
            0 if mode == "append" else ROWS // 13 - 7)
    _check_after(pg_conn, pg_schema, pg_schema2, mode, before)


def test_bad_fault_spec_is_a_clear_error(monkeypatch, pg_dsn, pg_schema, pg_schema2):
    monkeypatch.setenv("RAPIDBYTE_FAULTS", "dest.nowhere#2=kill")
    with pytest.raises(RapidbyteError, match=r"RAPIDBYTE_FAULTS: bad item 'dest.nowhere#2=kill'"):
        rapidbyte_fast.run(_config(pg_dsn, pg_schema, pg_schema2, "append"))


# (mode, point): a first SIGTERM at each, then a clean run
STOP = [("append", "source.batch#2"), ("append", "dest.range_committed#1"),
        ("replace", "dest.batch#3"), ("replace", "dest.range_commit#2"),
        ("replace", "dest.commit#1"), ("upsert", "dest.checkpoint#1"),
        ("incremental", "dest.checkpointed#1"), ("incremental", "dest.commit#1")]


@pytest.mark.parametrize("mode,point", STOP)
def test_sigterm_stops_gracefully_then_next_run_is_exact(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                                         tmp_path, monkeypatch, mode, point):
    before = _before(pg_conn, pg_dsn, pg_schema, pg_schema2, mode)
    path = tmp_path / "stop.json"
    passthrough = "auto" if mode in ("append", "replace") and "batch" not in point else "off"
    path.write_text(json.dumps(_config(pg_dsn, pg_schema, pg_schema2, mode, passthrough)))
    monkeypatch.setenv("RAPIDBYTE_FAULTS", f"{point}=term")
    stopped = _cli(pg_dsn, "run", "-q", str(path))
    assert stopped.returncode == 143, stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == (
        "stopped: the work in flight was rolled back; committed ranges, checkpoints and "
        "streams are kept")
    assert "Traceback" not in stopped.stderr
    if mode == "replace":
        assert _text_rows(pg_conn, pg_schema2, "ev") == before  # old table intact
    monkeypatch.delenv("RAPIDBYTE_FAULTS")
    proc = _cli(pg_dsn, "run", "-q", str(path))
    assert proc.returncode == 0, proc.stderr
    _check_after(pg_conn, pg_schema, pg_schema2, mode, before)
