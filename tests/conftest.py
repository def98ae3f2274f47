"""Test fixtures: a real PostgreSQL (RAPIDBYTE_TEST_DSN, else an embedded pgserver) and
per-test schemas that are dropped afterwards."""
from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_data_dir(tmp_path_factory):
    """Run history and other user-data files of the tests go to a temp dir."""
    os.environ.setdefault("RAPIDBYTE_DATA_DIR", str(tmp_path_factory.mktemp("rbf-data")))


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """DSN of the server every integration test talks to."""
    dsn = os.environ.get("RAPIDBYTE_TEST_DSN")
    if dsn:
        yield dsn
        return
    pgserver = pytest.importorskip("pgserver")
    root = Path(tempfile.mkdtemp(prefix="rbf-test-pg-"))
    srv = pgserver.get_server(root, cleanup_mode="delete")
    yield srv.get_uri()
    srv.cleanup()


@pytest.fixture
def pg_conn(pg_dsn: str):
    """An autocommit connection for setting up and checking tables."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def pg_schema(pg_conn) -> str:
    """A fresh schema for this test, dropped (with everything in it) afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_conn.execute(f'CREATE SCHEMA "{name}"')
    yield name
    pg_conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg_schema2(pg_conn) -> str:
    """A second fresh schema (a destination beside ``pg_schema``)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_conn.execute(f'CREATE SCHEMA "{name}"')
    yield name
    pg_conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def load_arrow(pg_dsn):
    """``load(schema, stream, batches, load_method)``: Arrow batches loaded by the Postgres
    destination as a one-piece ``replace`` would load them (planned, opened, written,
    committed, or aborted on error)."""
    from rapidbyte_fast.config import load_config
    from rapidbyte_fast.connector import RangePlan
    from rapidbyte_fast.destinations.postgres import PostgresDestinationConnector

    def load(schema: str, stream: str, batches, load_method: str = "copy") -> None:
        cfg = load_config({
            "version": "1.0", "pipeline": "arrow",
            "source": {"use": "generate", "config": {"rows": 1}, "streams": [{"name": "small"}]},
            "destination": {"use": "postgres",
                            "config": {"url": pg_dsn, "schema": schema,
                                       "load_method": load_method},
                            "write_mode": "replace"}})
        dest = PostgresDestinationConnector(cfg.destination, pg_dsn)
        arrow_schema = batches[0].schema
        state = dest.inspect("arrow", stream, arrow_schema)
        spec = dest.plan_write("arrow", stream, arrow_schema, state, RangePlan(), False, None,
                               (0, 0, 0.0))
        load = dest.open_load(spec)
        try:
            load.open(arrow_schema)
            writer = load.writer()
            for b in batches:
                writer.write(b)
            load.commit(writer.finish())
        except BaseException:
            load.abort()
            raise
        finally:
            load.close()

    return load


@pytest.fixture
def server_version(pg_conn) -> int:
    """The test server's ``server_version_num`` (e.g. 160004)."""
    return int(pg_conn.execute("SHOW server_version_num").fetchone()[0])
