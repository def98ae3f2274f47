"""A replace keeps what users built on the target: each kind of object is created on the
target, two more replaces run, and the catalog's definitions must be the same after."""
from __future__ import annotations

import json
import uuid

import psycopg
import pytest

import rapidbyte_fast
from rapidbyte_fast.errors import DestinationError

from .test_cli_e2e import _cli
from .test_faults import _config, _insert


@pytest.fixture
def role(pg_conn):
    """A fresh role (dropped with its privileges afterwards)."""
    name = f"r_{uuid.uuid4().hex[:10]}"
    pg_conn.execute(f'CREATE ROLE "{name}"')
    yield name
    pg_conn.execute(f'DROP OWNED BY "{name}"')
    pg_conn.execute(f'DROP ROLE "{name}"')


@pytest.fixture
def target(pg_dsn, pg_conn, pg_schema, pg_schema2):
    """``(replace, d)``: a source ev, replaced once into ``d``.ev; ``replace(**dest)`` runs
    another replace (``dest``: destination config keys)."""
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".ev (id int PRIMARY KEY, n int, v text, '
                    "ts timestamptz, amount numeric(12,2))")
    _insert(pg_conn, pg_schema, 1, 50)

    def replace(**dest):
        cfg = _config(pg_dsn, pg_schema, pg_schema2, "replace")
        cfg["destination"]["config"].update(dest)
        return rapidbyte_fast.run(cfg)

    replace()
    return replace, f'"{pg_schema2}"'


def _kept(pg_conn, replace, query: str, *params):
    """The query's rows after the setup, and after two more replaces (must be equal)."""
    before = pg_conn.execute(query, params).fetchall()
    replace()
    replace()
    after = pg_conn.execute(query, params).fetchall()
    assert after == before
    return before


def _oid(d):
    return f"'{d}.ev'::regclass"


def test_grants_survive(pg_conn, target, role):
    replace, d = target
    pg_conn.execute(f'GRANT SELECT ON {d}.ev TO "{role}"')
    pg_conn.execute(f'GRANT UPDATE (v), INSERT (n) ON {d}.ev TO "{role}" WITH GRANT OPTION')
    pg_conn.execute(f"REVOKE TRUNCATE ON {d}.ev FROM current_user")
    rows = _kept(pg_conn, replace, f"""
        SELECT '', x.grantor::regrole::text, x.grantee::regrole::text, x.privilege_type,
               x.is_grantable FROM pg_class c, aclexplode(c.relacl) x WHERE c.oid = {_oid(d)}
        UNION ALL
        SELECT a.attname, x.grantor::regrole::text, x.grantee::regrole::text,
               x.privilege_type, x.is_grantable FROM pg_attribute a, aclexplode(a.attacl) x
        WHERE a.attrelid = {_oid(d)} ORDER BY 1, 3, 4""")
    assert ("", "-", role, "SELECT", False) not in rows  # (grantor is a role)
    assert sum(r[2] == role for r in rows) == 3
    assert not any(r[3] == "TRUNCATE" for r in rows)
    assert pg_conn.execute(f"SELECT has_table_privilege(%s, '{d}.ev', 'SELECT')",
                           (role,)).fetchone() == (True,)


def test_owner_survives(pg_conn, target, role):
    replace, d = target
    pg_conn.execute(f'GRANT CREATE ON SCHEMA {d} TO "{role}"')
    pg_conn.execute(f'ALTER TABLE {d}.ev OWNER TO "{role}"')
    assert _kept(pg_conn, replace, f"SELECT relowner::regrole::text FROM pg_class "
                                   f"WHERE oid = {_oid(d)}") == [(role,)]


def test_secondary_indexes_survive_with_their_names(pg_conn, target):
    replace, d = target
    pg_conn.execute(f"CREATE INDEX ev_n_part ON {d}.ev (n DESC NULLS LAST) WHERE n > 3")
    pg_conn.execute(f"CREATE UNIQUE INDEX ev_lower_v ON {d}.ev (lower(v), id) INCLUDE (ts) "
                    "WITH (fillfactor = 80)")
    pg_conn.execute(f"COMMENT ON INDEX {d}.ev_n_part IS 'for the n > 3 report'")
    rows = _kept(pg_conn, replace, f"""
        SELECT c.relname, pg_get_indexdef(i.indexrelid), obj_description(c.oid, 'pg_class')
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = {_oid(d)} ORDER BY 1""")
    assert [r[0] for r in rows] == ["ev_lower_v", "ev_n_part", "ev_pkey"]


def test_check_unique_and_exclude_constraints_survive(pg_conn, target):
    replace, d = target
    pg_conn.execute(f"ALTER TABLE {d}.ev ADD CONSTRAINT n_positive CHECK (n >= 0), "
                    "ADD CONSTRAINT v_id_unique UNIQUE (v, id) DEFERRABLE INITIALLY DEFERRED, "
                    "ADD CONSTRAINT id_excl EXCLUDE USING btree (id WITH =)")
    pg_conn.execute(f"COMMENT ON CONSTRAINT n_positive ON {d}.ev IS 'never negative'")
    rows = _kept(pg_conn, replace, f"""
        SELECT conname, contype, pg_get_constraintdef(oid), convalidated, condeferrable,
               condeferred, obj_description(oid, 'pg_constraint'),
               (SELECT pg_get_indexdef(conindid))
        FROM pg_constraint WHERE conrelid = {_oid(d)} ORDER BY 1""")
    assert [r[0] for r in rows] == ["ev_pkey", "id_excl", "n_positive", "v_id_unique"]


def test_foreign_keys_of_the_target_survive_validated(pg_conn, target):
    replace, d = target
    pg_conn.execute(f"CREATE TABLE {d}.bucket (k int PRIMARY KEY)")
    pg_conn.execute(f"INSERT INTO {d}.bucket SELECT generate_series(0, 10)")
    pg_conn.execute(f"ALTER TABLE {d}.ev ADD CONSTRAINT ev_bucket FOREIGN KEY (n) "
                    f"REFERENCES {d}.bucket (k) ON DELETE CASCADE")
    rows = _kept(pg_conn, replace, f"SELECT conname, pg_get_constraintdef(oid), convalidated "
                                   f"FROM pg_constraint WHERE conrelid = {_oid(d)} "
                                   "AND contype = 'f'")
    assert rows == [("ev_bucket", f"FOREIGN KEY (n) REFERENCES {d[1:-1]}.bucket(k) ON DELETE "
                                  "CASCADE", True)]


def test_defaults_and_sequences_survive(pg_conn, target):
    replace, d = target
    pg_conn.execute(f"CREATE SEQUENCE {d}.ev_n_seq OWNED BY {d}.ev.n")
    pg_conn.execute(f"ALTER TABLE {d}.ev ALTER v SET DEFAULT 'none', "
                    f"ALTER n SET DEFAULT nextval('{d}.ev_n_seq')")
    pg_conn.execute(f"SELECT nextval('{d}.ev_n_seq')")
    rows = _kept(pg_conn, replace, f"""
        SELECT a.attname, pg_get_expr(ad.adbin, ad.adrelid),
               pg_get_serial_sequence('{d}.ev', a.attname)
        FROM pg_attrdef ad JOIN pg_attribute a ON a.attrelid = ad.adrelid
            AND a.attnum = ad.adnum WHERE ad.adrelid = {_oid(d)} ORDER BY 1""")
    assert [r[0] for r in rows] == ["n", "v"] and rows[0][2] == f"{d[1:-1]}.ev_n_seq"
    assert pg_conn.execute(f"SELECT nextval('{d}.ev_n_seq')").fetchone() == (2,)


def test_identity_survives_with_its_position(pg_conn, target):
    replace, d = target
    pg_conn.execute(f"ALTER TABLE {d}.ev ALTER id ADD GENERATED BY DEFAULT AS IDENTITY "
                    "(START WITH 1000 INCREMENT BY 5)")
    pg_conn.execute(f"INSERT INTO {d}.ev (n) VALUES (1)")  # id 1000
    _kept(pg_conn, replace, f"""
        SELECT a.attidentity, s.seqstart, s.seqincrement, s.seqmax
        FROM pg_attribute a JOIN pg_sequence s
            ON s.seqrelid = pg_get_serial_sequence('{d}.ev', 'id')::regclass
        WHERE a.attrelid = {_oid(d)} AND a.attname = 'id'""")
    assert pg_conn.execute(f"INSERT INTO {d}.ev (n) VALUES (1) RETURNING id").fetchone() == (
        1005,)


def test_triggers_survive_with_their_state(pg_conn, target):
    replace, d = target
    pg_conn.execute(f"CREATE FUNCTION {d}.stamp() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$BEGIN NEW.v := 'stamped'; RETURN NEW; END$$")
    pg_conn.execute(f"CREATE TRIGGER ev_stamp BEFORE UPDATE OF n ON {d}.ev FOR EACH ROW "
                    f"WHEN (NEW.n > 0) EXECUTE FUNCTION {d}.stamp()")
    pg_conn.execute(f"CREATE TRIGGER ev_off BEFORE INSERT ON {d}.ev FOR EACH ROW "
                    f"EXECUTE FUNCTION {d}.stamp()")
    pg_conn.execute(f"ALTER TABLE {d}.ev DISABLE TRIGGER ev_off")
    rows = _kept(pg_conn, replace, f"SELECT tgname, pg_get_triggerdef(oid), tgenabled "
                                   f"FROM pg_trigger WHERE tgrelid = {_oid(d)} "
                                   "AND NOT tgisinternal ORDER BY 1")
    assert [(r[0], r[2]) for r in rows] == [("ev_off", "D"), ("ev_stamp", "O")]
    pg_conn.execute(f"UPDATE {d}.ev SET n = 5 WHERE id = 1")
    assert pg_conn.execute(f"SELECT v FROM {d}.ev WHERE id = 1").fetchone() == ("stamped",)


def test_row_level_security_survives(pg_conn, target, role):
    replace, d = target
    pg_conn.execute(f"ALTER TABLE {d}.ev ENABLE ROW LEVEL SECURITY")
    pg_conn.execute(f"ALTER TABLE {d}.ev FORCE ROW LEVEL SECURITY")
    pg_conn.execute(f'CREATE POLICY small ON {d}.ev FOR SELECT TO "{role}", PUBLIC '
                    "USING (n < 3)")
    pg_conn.execute(f"CREATE POLICY no_neg ON {d}.ev AS RESTRICTIVE FOR UPDATE "
                    "USING (true) WITH CHECK (n >= 0)")
    rows = _kept(pg_conn, replace, f"""
        SELECT p.policyname, p.permissive, p.roles::text, p.cmd, p.qual, p.with_check,
               c.relrowsecurity, c.relforcerowsecurity
        FROM pg_policies p JOIN pg_class c ON c.oid = {_oid(d)}
        WHERE p.schemaname = %s AND p.tablename = 'ev' ORDER BY 1""", d.strip('"'))
    assert [r[0] for r in rows] == ["no_neg", "small"] and rows[0][6:] == (True, True)


def test_comments_survive(pg_conn, target):
    replace, d = target
    pg_conn.execute(f"COMMENT ON TABLE {d}.ev IS 'events, one row per ''thing'''")
    pg_conn.execute(f"COMMENT ON COLUMN {d}.ev.amount IS 'in cents'")
    rows = _kept(pg_conn, replace, f"""
        SELECT obj_description({_oid(d)}, 'pg_class'), a.attname,
               col_description(a.attrelid, a.attnum)
        FROM pg_attribute a WHERE a.attrelid = {_oid(d)} AND a.attnum > 0 ORDER BY a.attnum""")
    assert rows[0][0] == "events, one row per 'thing'" and rows[4][1:] == ("amount", "in cents")


def test_storage_parameters_and_replica_identity_survive(pg_conn, target):
    replace, d = target
    pg_conn.execute(f"ALTER TABLE {d}.ev SET (fillfactor = 70, autovacuum_enabled = false)")
    pg_conn.execute(f"CREATE UNIQUE INDEX ev_ident ON {d}.ev (id)")
    pg_conn.execute(f"ALTER TABLE {d}.ev REPLICA IDENTITY USING INDEX ev_ident")
    rows = _kept(pg_conn, replace, f"""
        SELECT c.reloptions, c.relreplident,
               (SELECT i.indexrelid::regclass::text FROM pg_index i
                WHERE i.indrelid = c.oid AND i.indisreplident)
        FROM pg_class c WHERE c.oid = {_oid(d)}""")
    assert rows == [(["fillfactor=70", "autovacuum_enabled=false"], "i", f"{d[1:-1]}.ev_ident")]
    pg_conn.execute(f"ALTER TABLE {d}.ev REPLICA IDENTITY FULL")
    assert _kept(pg_conn, replace, f"SELECT relreplident FROM pg_class "
                                   f"WHERE oid = {_oid(d)}") == [("f",)]


def test_publication_membership_survives(pg_conn, target, server_version):
    replace, d = target
    pub = f"pub_{uuid.uuid4().hex[:10]}"
    if server_version < 150000:  # no column lists or row filters before PostgreSQL 15
        pg_conn.execute(f"CREATE PUBLICATION {pub} FOR TABLE {d}.ev")
    else:
        pg_conn.execute(f"CREATE PUBLICATION {pub} FOR TABLE {d}.ev (id, n) WHERE (n > 0)")
    try:
        if server_version < 150000:
            rows = _kept(pg_conn, replace, "SELECT count(*) FROM pg_publication_tables "
                                           "WHERE pubname = %s", pub)
            assert rows == [(1,)]
            return
        rows = _kept(pg_conn, replace, "SELECT attnames::text, rowfilter FROM "
                                       "pg_publication_tables WHERE pubname = %s", pub)
        assert rows == [("{id,n}", "(n > 0)")]
    finally:
        pg_conn.execute(f"DROP PUBLICATION {pub}")


def test_dependent_views_are_recreated_with_grants_and_comments(pg_conn, target, role):
    replace, d = target
    pg_conn.execute(f"CREATE VIEW {d}.busy WITH (security_barrier) AS "
                    f"SELECT id, n AS bucket FROM {d}.ev WHERE n > 2")
    pg_conn.execute(f"CREATE VIEW {d}.busy_ids AS SELECT id FROM {d}.busy "
                    "WITH CASCADED CHECK OPTION")
    pg_conn.execute(f'GRANT SELECT ON {d}.busy TO "{role}"')
    pg_conn.execute(f"COMMENT ON VIEW {d}.busy IS 'busy events'")
    pg_conn.execute(f"COMMENT ON COLUMN {d}.busy.bucket IS 'the n'")
    rows = _kept(pg_conn, replace, """
        SELECT c.relname, pg_get_viewdef(c.oid), c.reloptions, c.relacl::text,
               obj_description(c.oid, 'pg_class'), col_description(c.oid, 2)
        FROM pg_class c WHERE c.relnamespace = %s::regnamespace AND c.relkind = 'v'
        ORDER BY 1""", d)
    assert [(r[0], r[2]) for r in rows] == [("busy", ["security_barrier=true"]),
                                            ("busy_ids", ["check_option=cascaded"])]
    assert pg_conn.execute(f"SELECT count(*) FROM {d}.busy_ids").fetchone() == (30,)


def test_on_dependent_views_fail_refuses_as_before(pg_conn, target):
    replace, d = target
    pg_conn.execute(f"CREATE VIEW {d}.ev_view AS SELECT v FROM {d}.ev")
    with pytest.raises(DestinationError, match=f"views {d[1:-1]}.ev_view depend on it"):
        replace(on_dependent_views="fail")


def test_materialized_views_are_refused(pg_conn, target):
    replace, d = target
    pg_conn.execute(f"CREATE MATERIALIZED VIEW {d}.mv AS SELECT id FROM {d}.ev")
    with pytest.raises(DestinationError, match="materialized views .*mv depend on it"):
        replace()


def test_foreign_keys_of_other_tables_are_recreated_and_validated(pg_conn, pg_schema, target):
    replace, d = target
    pg_conn.execute(f"CREATE TABLE {d}.child (ev_id int CONSTRAINT child_ev REFERENCES "
                    f"{d}.ev (id) ON UPDATE CASCADE)")
    pg_conn.execute(f"INSERT INTO {d}.child VALUES (3), (50)")
    query = ("SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
             f"WHERE conrelid = '{d}.child'::regclass")
    assert _kept(pg_conn, replace, query) == [
        ("child_ev", f"FOREIGN KEY (ev_id) REFERENCES {d[1:-1]}.ev(id) ON UPDATE CASCADE", True)]
    # the source lost a referenced row: the swap fails, and the old table stays
    pg_conn.execute(f'DELETE FROM "{pg_schema}".ev WHERE id = 50')
    with pytest.raises(DestinationError, match="cannot recreate foreign key child_ev on "
                                               ".*child.*: .*violates foreign key"):
        replace()
    assert pg_conn.execute(f"SELECT count(*) FROM {d}.ev").fetchone() == (50,)
    assert pg_conn.execute(query).fetchall()[0][2] is True


def test_objects_on_a_removed_column_are_left_out_with_a_note(pg_conn, pg_schema, target,
                                                               caplog):
    replace, d = target
    pg_conn.execute(f"CREATE INDEX ev_amount ON {d}.ev (amount)")
    pg_conn.execute(f"CREATE INDEX ev_n ON {d}.ev (n)")
    pg_conn.execute(f'ALTER TABLE "{pg_schema}".ev DROP COLUMN amount')
    replace()
    assert pg_conn.execute(f"SELECT indexrelid::regclass::text FROM pg_index "
                           f"WHERE indrelid = {_oid(d)} ORDER BY 1").fetchall() == [
        (f"{d[1:-1]}.ev_n",), (f"{d[1:-1]}.ev_pkey",)]
    assert "index ev_amount is not recreated: the new table has no column amount" in caplog.text


def test_not_null_columns_survive(pg_conn, target):
    replace, d = target
    pg_conn.execute(f"ALTER TABLE {d}.ev ALTER COLUMN n SET NOT NULL, "
                    "ALTER COLUMN ts SET NOT NULL")
    assert _kept(pg_conn, replace, "SELECT attname, attnotnull FROM pg_attribute WHERE "
                 f"attrelid = {_oid(d)} AND attnum > 0 ORDER BY attnum") == [
        ("id", True), ("n", True), ("v", False), ("ts", True), ("amount", False)]


def test_a_null_under_a_kept_not_null_names_the_column_and_leaves_the_old_table(pg_conn,
                                                                                target):
    replace, d = target
    pg_conn.execute(f"DELETE FROM {d}.ev WHERE v IS NULL")
    pg_conn.execute(f"ALTER TABLE {d}.ev ALTER COLUMN n SET NOT NULL, "
                    "ALTER COLUMN v SET NOT NULL")
    with pytest.raises(DestinationError, match=r"cannot recreate NOT NULL of id, n, v on the new "
                                               r'table: column "v" .*contains null values'):
        replace()
    assert pg_conn.execute(f"SELECT count(*), count(v) FROM {d}.ev").fetchone() == (46, 46)


def test_a_failed_recreation_leaves_the_old_table(pg_conn, pg_schema, target):
    replace, d = target
    pg_conn.execute(f"ALTER TABLE {d}.ev ADD CONSTRAINT n_small CHECK (n < 8)")
    pg_conn.execute(f'INSERT INTO "{pg_schema}".ev VALUES (99, 99)')
    with pytest.raises(DestinationError, match=r"cannot recreate constraint n_small on the "
                                               r"new table: .*violated by some row"):
        replace()
    assert pg_conn.execute(f"SELECT count(*), max(id) FROM {d}.ev").fetchone() == (50, 50)
    with pytest.raises(psycopg.errors.CheckViolation):
        pg_conn.execute(f"INSERT INTO {d}.ev (id, n) VALUES (100, 100)")


def test_a_resumed_replace_recreates_the_objects_at_its_final_swap(pg_dsn, pg_conn, pg_schema,
                                                                    pg_schema2, tmp_path, role,
                                                                    monkeypatch):
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".ev (id int PRIMARY KEY, n int, v text, '
                    "ts timestamptz, amount numeric(12,2))")
    _insert(pg_conn, pg_schema, 1, 6000)
    cfg = _config(pg_dsn, pg_schema, pg_schema2, "replace")
    cfg["resources"]["parallelism"] = 2
    path = tmp_path / "p.yaml"
    path.write_text(json.dumps(cfg))
    assert _cli(pg_dsn, "run", "-q", str(path)).returncode == 0
    d = f'"{pg_schema2}"'
    pg_conn.execute(f"CREATE INDEX ev_n ON {d}.ev (n)")
    pg_conn.execute(f'GRANT SELECT ON {d}.ev TO "{role}"')
    pg_conn.execute(f"CREATE VIEW {d}.big AS SELECT id FROM {d}.ev WHERE n > 700")
    query = (f"SELECT (SELECT pg_get_indexdef('{d}.ev_n'::regclass)), "
             f"(SELECT relacl::text FROM pg_class WHERE oid = '{d}.ev'::regclass), "
             f"pg_get_viewdef('{d}.big'::regclass)")
    before = pg_conn.execute(query).fetchone()
    monkeypatch.setenv("RAPIDBYTE_FAULTS", "dest.range_committed#2=kill")
    assert _cli(pg_dsn, "run", "-q", str(path)).returncode == -9
    monkeypatch.delenv("RAPIDBYTE_FAULTS")
    assert pg_conn.execute(query).fetchone() == before  # the old table, untouched
    proc = _cli(pg_dsn, "run", "-q", str(path))
    assert proc.returncode == 0, proc.stderr
    # (the other worker may commit one more range before the kill)
    assert json.loads(proc.stdout.split("@@BENCH_JSON@@", 1)[1])["resumed_ranges"] >= 2
    assert pg_conn.execute(query).fetchone() == before
    assert pg_conn.execute(f"SELECT count(*) FROM {d}.big").fetchone() == (1094,)
