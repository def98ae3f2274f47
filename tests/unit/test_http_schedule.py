"""The cron schedule runner: fire times, one run at a time, outcomes logged, SIGTERM ends it
after the run in flight. (Named test_http_* as part of the HTTP source's delivery.)"""
from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from rapidbyte_fast.errors import ConfigError, DataError
from rapidbyte_fast.schedule import check_schedule, next_fire, run_on_schedule


def test_next_fire():
    t = dt.datetime(2024, 5, 1, 10, 3, 20, tzinfo=dt.timezone.utc)
    assert next_fire("*/5 * * * *", t) == dt.datetime(2024, 5, 1, 10, 5, tzinfo=dt.timezone.utc)
    assert next_fire("@daily", t) == dt.datetime(2024, 5, 2, tzinfo=dt.timezone.utc)


def test_bad_expression_is_a_config_error():
    with pytest.raises(ConfigError, match=r"--schedule: '\*/5 \* \*' is not a cron expression"):
        check_schedule("*/5 * *")


class _Clock:
    """A clock that jumps to the next fire time when the runner waits for it."""

    def __init__(self) -> None:
        self.t = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.t


def test_runs_one_at_a_time_logs_outcomes_and_goes_on_after_a_failure(caplog):
    clock, stop, calls = _Clock(), threading.Event(), []

    def job():
        calls.append(clock.t)
        clock.t += dt.timedelta(minutes=12)     # outlasts two fire times: they are skipped
        if len(calls) == 2:
            raise DataError("stream s: bad password=hunter2 in row 3")
        if len(calls) == 3:
            stop.set()
        return None

    real_wait = stop.wait

    def wait(secs):
        clock.t += dt.timedelta(seconds=secs)   # time passes instantly
        return real_wait(0)
    stop.wait = wait
    caplog.set_level(logging.INFO, "rapidbyte_fast.schedule")
    failures = run_on_schedule("*/5 * * * *", job, stop=stop, now=clock)
    assert failures == 1
    assert [c.strftime("%H:%M") for c in calls] == ["00:05", "00:20", "00:35"]
    lines = [r.getMessage() for r in caplog.records]
    assert "schedule: run 1 started" in lines
    assert any(m.startswith("schedule: run 2 failed after") and m.endswith(
        "stream s: bad password=*** in row 3") for m in lines)
    assert any(m.startswith("schedule: run 3 succeeded in") for m in lines)
    assert lines[-1] == "schedule: stopped after 3 run(s), 1 failed"


def test_sigterm_stops_after_the_run_in_flight(tmp_path):
    """A real process: SIGTERM during a run lets that run finish, then the schedule ends."""
    marker = tmp_path / "runs.txt"
    script = textwrap.dedent(f"""
        import logging, sys, time
        from rapidbyte_fast.schedule import run_on_schedule
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        def job():
            with open({str(marker)!r}, "a") as f:
                f.write("start\\n")
            print("RUNNING", flush=True)
            time.sleep(1.5)
            with open({str(marker)!r}, "a") as f:
                f.write("end\\n")
        sys.exit(run_on_schedule("* * * * * *", job))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in proc.stdout:
            if line.strip() == "RUNNING":
                break
        proc.send_signal(signal.SIGTERM)
        out = proc.stdout.read()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    assert marker.read_text() == "start\nend\n"
    assert "stopped after 1 run(s), 0 failed" in out
