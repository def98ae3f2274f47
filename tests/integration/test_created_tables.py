"""A table the load creates carries its source's NOT NULL, CHECKs, defaults (sequence
defaults as identities), comments and secondary indexes (built after the load); never its
foreign keys, which the log names."""
from __future__ import annotations

import pytest

import rapidbyte_fast


def _cfg(dsn, src, dst, mode, **dest_config):
    dest = {"use": "postgres", "write_mode": mode,
            "config": {"url": dsn, "schema": dst, **dest_config}}
    if mode == "upsert":
        dest["primary_key"] = ["id"]
    return {"version": "1.0", "pipeline": "created",
            "source": {"use": "postgres", "config": {"url": dsn, "schema": src},
                       "streams": [{"name": "ev"}]},
            "destination": dest}


@pytest.fixture
def source(pg_conn, pg_schema):
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.other (k int PRIMARY KEY)")
    pg_conn.execute(f"INSERT INTO {s}.other SELECT generate_series(0, 9)")
    pg_conn.execute(f"CREATE FUNCTION {s}.seven() RETURNS int IMMUTABLE LANGUAGE sql "
                    "AS 'SELECT 7'")
    pg_conn.execute(f"""CREATE TABLE {s}.ev (
        id serial PRIMARY KEY,
        n int NOT NULL DEFAULT 3 CONSTRAINT n_positive CHECK (n >= 0),
        v text DEFAULT 'none'::text,
        ts timestamptz NOT NULL DEFAULT now(),
        k int CONSTRAINT ev_other REFERENCES {s}.other (k),
        w int DEFAULT {s}.seven(),
        CONSTRAINT v_short CHECK (length(v) < 100 AND n < 1000),
        CONSTRAINT w_custom CHECK ({s}.seven() = 7))""")
    pg_conn.execute(f"COMMENT ON TABLE {s}.ev IS 'events'")
    pg_conn.execute(f"COMMENT ON COLUMN {s}.ev.n IS 'how many'")
    pg_conn.execute(f"CREATE INDEX ev_n_part ON {s}.ev (n DESC) WHERE n > 1")
    pg_conn.execute(f"CREATE UNIQUE INDEX ev_v_lower ON {s}.ev (lower(v))")
    pg_conn.execute(f"CREATE INDEX ev_w_custom ON {s}.ev (({s}.seven() + w))")
    pg_conn.execute(f"INSERT INTO {s}.ev (n, v, k) SELECT i % 5, 'v' || i, i % 10 "
                    "FROM generate_series(1, 40) i")
    return pg_schema


def _catalog(conn, schema):
    rel = f"'\"{schema}\".ev'::regclass"
    cols = conn.execute(f"""
        SELECT a.attname, a.attnotnull, a.attidentity, pg_get_expr(d.adbin, d.adrelid),
               col_description(a.attrelid, a.attnum)
        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid
            AND d.adnum = a.attnum
        WHERE a.attrelid = {rel} AND a.attnum > 0 ORDER BY a.attnum""").fetchall()
    cons = conn.execute(f"SELECT conname, contype, pg_get_constraintdef(oid) FROM "
                        f"pg_constraint WHERE conrelid = {rel} ORDER BY 1").fetchall()
    idx = conn.execute(f"SELECT replace(pg_get_indexdef(indexrelid), %s, 'S') FROM pg_index "
                       f"WHERE indrelid = {rel} ORDER BY indexrelid::regclass::text", (schema,)).fetchall()
    comment = conn.execute(f"SELECT obj_description({rel}, 'pg_class')").fetchone()[0]
    return cols, cons, [r[0] for r in idx], comment


@pytest.mark.parametrize("mode", ["append", "replace", "upsert"])
def test_created_table_carries_the_sources_column_constraints(pg_dsn, pg_conn, source,
                                                              pg_schema2, mode, caplog):
    result = rapidbyte_fast.run(_cfg(pg_dsn, source, pg_schema2, mode))
    cols, cons, idx, comment = _catalog(pg_conn, pg_schema2)
    # the summary says what was left out, as the log does
    assert ("    note: foreign keys of the source are not created (the tables they reference "
            "may be absent): ev_other") in result.summary().splitlines()
    assert cols == [("id", True, "d", None, None),
                    ("n", True, "", "3", "how many"),
                    ("v", False, "", "'none'::text", None),
                    ("ts", True, "", "now()", None),
                    ("k", False, "", None, None),
                    ("w", False, "", None, None)]
    keyed = mode != "append"  # (an append target is a log: no key unless configured)
    assert cons == [("ev_pkey", "p", "PRIMARY KEY (id)")] * keyed + [
        ("n_positive", "c", "CHECK ((n >= 0))"),
        ("v_short", "c", "CHECK (((length(v) < 100) AND (n < 1000)))")]
    unique = "UNIQUE " if mode == "replace" else ""
    assert idx == ["CREATE INDEX ev_n_part ON S.ev USING btree (n DESC) WHERE (n > 1)"] + [
        "CREATE UNIQUE INDEX ev_pkey ON S.ev USING btree (id)"] * keyed + [
        f"CREATE {unique}INDEX ev_v_lower ON S.ev USING btree (lower(v))"]
    assert comment == "events"
    log = caplog.text
    assert "foreign keys of the source are not created (the tables they reference may be " \
           "absent): ev_other" in log
    assert f"check w_custom is not created: it needs function {source}.seven()" in log
    assert f"index ev_w_custom is not created: it needs function {source}.seven()" in log
    assert f"default of column w is not created: it needs function {source}.seven()" in log
    # the identity goes on after the loaded ids
    assert pg_conn.execute(f'INSERT INTO "{pg_schema2}".ev (n, ts) VALUES (1, now()) '
                           "RETURNING id").fetchone() == (41,)


def test_indexes_none_creates_no_secondary_index(pg_dsn, pg_conn, source, pg_schema2):
    rapidbyte_fast.run(_cfg(pg_dsn, source, pg_schema2, "replace", indexes="none"))
    assert _catalog(pg_conn, pg_schema2)[2] == [
        "CREATE UNIQUE INDEX ev_pkey ON S.ev USING btree (id)"]


def test_a_computed_column_loses_the_sources_facts(pg_dsn, pg_conn, source, pg_schema2):
    cfg = _cfg(pg_dsn, source, pg_schema2, "append")
    cfg["transforms"] = [{"use": "sql", "config": {
        "query": "SELECT id, n + 1 AS n, v, ts, k, w FROM ev"}}]
    rapidbyte_fast.run(cfg)
    cols, cons, idx, comment = _catalog(pg_conn, pg_schema2)
    # n is computed: its default, comment, CHECKs and index are not the source's any more
    assert [c[:2] + c[3:] for c in cols] == [
        ("id", True, None, None), ("n", True, None, None), ("v", False, "'none'::text", None),
        ("ts", True, "now()", None), ("k", False, None, None), ("w", False, None, None)]
    assert (cons, comment) == ([], "events")
    assert idx == ["CREATE INDEX ev_v_lower ON S.ev USING btree (lower(v))"]
