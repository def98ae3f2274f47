"""The README quickstart: generate → embedded Postgres, then embedded → embedded, and the
``embedded url|status|stop`` commands, on a private embedded data dir."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = 5000


def _cli(env, *args):
    return subprocess.run([sys.executable, "-m", "rapidbyte_fast", *args], capture_output=True,
                          text=True, env=env, timeout=300, cwd=ROOT)


@pytest.fixture
def emb_env(tmp_path):
    pytest.importorskip("pgserver")
    env = {**os.environ, "RAPIDBYTE_EMBEDDED_DIR": str(tmp_path / "embedded"), "ROWS": str(ROWS)}
    yield env
    _cli(env, "embedded", "stop")


def _checksum(url, schema):
    with psycopg.connect(url) as conn:
        return conn.execute(
            f'SELECT count(*), sum(amount), count(DISTINCT payload) FROM "{schema}".bench_events'
        ).fetchone()


def test_quickstart_then_pg_to_pg(emb_env):
    expected = (ROWS, sum((7 * i) % 10000 for i in range(1, ROWS + 1)), ROWS)
    proc = _cli(emb_env, "run", "examples/quickstart.yaml")
    assert proc.returncode == 0, proc.stderr
    assert f"{ROWS:,} rows written" in proc.stdout
    url = _cli(emb_env, "embedded", "url").stdout.strip()
    assert url.startswith("postgresql://")
    assert _checksum(url, "public") == expected

    proc = _cli(emb_env, "run", "examples/pg_to_pg.yaml")
    assert proc.returncode == 0, proc.stderr
    assert _checksum(url, "copy") == expected
    with psycopg.connect(url) as conn:
        types = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema='copy' AND table_name='bench_events' ORDER BY ordinal_position"
        ).fetchall()
    assert types == [("id", "integer"), ("event_type", "text"), ("user_id", "integer"),
                     ("amount", "integer"), ("is_active", "boolean"), ("payload", "text"),
                     ("created_at", "timestamp without time zone")]

    status = _cli(emb_env, "embedded", "status")
    assert status.returncode == 0 and "default: running" in status.stdout
    stop = _cli(emb_env, "embedded", "stop")
    assert stop.stdout.strip() == "default: stopped"
    assert "default: stopped" in _cli(emb_env, "embedded", "status").stdout


def test_bad_embedded_name(emb_env):
    proc = _cli(emb_env, "embedded", "status", "no/pe")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: embedded server name 'no/pe' is invalid: use letters, digits, '_' or '-'")
