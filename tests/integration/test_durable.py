"""``durable: false``: a replace loads an UNLOGGED table (no WAL), which becomes the target;
the default keeps every table logged."""
from __future__ import annotations

import pytest

import rapidbyte_fast

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("passthrough", ["auto", "off"])
def test_durable_false_loads_an_unlogged_table(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                               passthrough):
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".t (id int PRIMARY KEY, v text)')
    pg_conn.execute(f'INSERT INTO "{pg_schema}".t SELECT g, md5(g::text) '
                    "FROM generate_series(1, 5000) g")

    def run(durable: bool) -> str:
        rapidbyte_fast.run({
            "pipeline": "d",
            "source": {"use": "postgres", "config": {"url": pg_dsn, "schema": pg_schema},
                       "streams": ["t"]},
            "destination": {"use": "postgres", "write_mode": "replace", "config": {
                "url": pg_dsn, "schema": pg_schema2, "durable": durable,
                "passthrough": passthrough}}})
        assert pg_conn.execute(f'SELECT count(*), sum(id) FROM "{pg_schema2}".t'
                               ).fetchone() == (5000, 12502500)
        return pg_conn.execute("SELECT relpersistence FROM pg_class WHERE oid = %s::regclass",
                               (f'"{pg_schema2}".t',)).fetchone()[0]

    assert run(False) == "u"   # created
    assert run(False) == "u"   # replaced
    assert run(True) == "p"
