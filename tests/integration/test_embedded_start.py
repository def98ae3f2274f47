"""Starting an embedded server that takes longer than pgserver's pg_ctl wait (10 s), as a
server replaying its WAL after a crash does: the start is waited for, not reported as a
failure."""
from __future__ import annotations

import subprocess

import psycopg
import pytest

from rapidbyte_fast import embedded
from rapidbyte_fast.errors import EmbeddedError

pgserver = pytest.importorskip("pgserver")


@pytest.fixture
def private_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RAPIDBYTE_EMBEDDED_DIR", str(tmp_path / "embedded"))
    yield tmp_path / "embedded"
    embedded.stop("slow")


def test_a_start_that_outlasts_pg_ctl_is_waited_for(private_dir, monkeypatch):
    real, calls = pgserver.get_server, []

    def pg_ctl_gives_up(path, cleanup_mode=None):
        calls.append(path)
        if len(calls) == 1:   # the server starts, but pg_ctl stopped waiting for it
            real(path, cleanup_mode=cleanup_mode)
            raise subprocess.TimeoutExpired(["pg_ctl", "start"], 10)
        return real(path, cleanup_mode=cleanup_mode)

    monkeypatch.setattr(pgserver, "get_server", pg_ctl_gives_up)
    url = embedded.ensure("slow")
    assert len(calls) == 2
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_server_that_never_comes_up_is_one_line(private_dir, monkeypatch):
    def pg_ctl_gives_up(path, cleanup_mode=None):
        raise subprocess.TimeoutExpired(["pg_ctl", "start"], 10)

    monkeypatch.setattr(pgserver, "get_server", pg_ctl_gives_up)
    monkeypatch.setattr(embedded, "READY_WAIT_SECS", 1.0)
    with pytest.raises(EmbeddedError) as err:
        embedded.ensure("slow")
    path = private_dir / "slow"
    assert str(err.value) == (
        f"embedded server 'slow' failed to start in {path}: it did not accept connections "
        f"within 1 s (see {path / 'log'})")
