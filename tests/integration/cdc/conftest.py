"""A PostgreSQL with ``wal_level = logical`` for the change-capture tests.

The shared embedded server runs with the default ``wal_level = replica``; logical decoding
needs a restart, so these tests get a second embedded instance of their own (set up once
per session). With ``RAPIDBYTE_TEST_DSN`` the given server is used when its wal_level is
logical, else the tests are skipped with the reason.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest


@pytest.fixture(scope="session")
def logical_dsn() -> str:
    """DSN of a server whose wal_level is logical."""
    dsn = os.environ.get("RAPIDBYTE_TEST_DSN")
    if dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            level = conn.execute("SHOW wal_level").fetchone()[0]
        if level != "logical":
            pytest.skip(f"RAPIDBYTE_TEST_DSN has wal_level={level}; change capture needs "
                        "wal_level=logical (ALTER SYSTEM SET wal_level = logical; restart)")
        yield dsn
        return
    pgserver = pytest.importorskip("pgserver")
    from rapidbyte_fast.embedded import set_logical

    root = Path(tempfile.mkdtemp(prefix="rbf-test-pg-logical-"))
    srv = pgserver.get_server(root, cleanup_mode="delete")
    set_logical(srv, root)
    yield srv.get_uri()
    srv.cleanup()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def logical_conn(logical_dsn: str):
    """An autocommit connection to the logical server."""
    with psycopg.connect(logical_dsn, autocommit=True) as conn:
        yield conn
