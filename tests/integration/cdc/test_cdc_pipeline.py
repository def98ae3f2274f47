"""``sync_mode: cdc`` pipelines end to end against real logical replication: the bootstrap
pinned to the slot's snapshot, drains into a replica (upsert) and a change log (append),
deletes, key updates, unchanged TOAST values, truncates, long transactions, soft deletes,
refusals, ``state show``/``state reset``, and crashes at every commit boundary.

Source and destination are schemas of the logical server; each test has its own, its own
pipeline name (so its own slot and publication) and cleans up.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import psycopg
import pytest

import rapidbyte_fast
from rapidbyte_fast.errors import RapidbyteError


@pytest.fixture
def cdc(logical_dsn, logical_conn, tmp_path):
    """A fresh source and destination schema and pipeline name; slots dropped after."""
    tag = uuid.uuid4().hex[:10]
    src, dst, pipeline = f"cdcs_{tag}", f"cdcd_{tag}", f"p_{tag}"
    logical_conn.execute(f'CREATE SCHEMA "{src}"')
    env = Env(logical_dsn, logical_conn, src, dst, pipeline, tmp_path)
    yield env
    logical_conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                         "WHERE slot_name LIKE %s AND NOT active", (f"rbf_p_{tag}%",))
    logical_conn.execute(f'DROP PUBLICATION IF EXISTS "rbf_p_{tag}"')
    logical_conn.execute(f'DROP SCHEMA IF EXISTS "{src}" CASCADE')
    logical_conn.execute(f'DROP SCHEMA IF EXISTS "{dst}" CASCADE')


class Env:
    """One test's schemas, pipeline and helpers."""

    def __init__(self, dsn, conn, src, dst, pipeline, tmp_path) -> None:
        self.dsn, self.conn, self.src, self.dst = dsn, conn, src, dst
        self.pipeline, self.tmp = pipeline, tmp_path

    @property
    def slot(self) -> str:
        return f"rbf_{self.pipeline}"

    def sql(self, text: str, *args) -> None:
        self.conn.execute(text.format(s=f'"{self.src}"', d=f'"{self.dst}"'), *args)

    def config(self, table: str = "t", mode: str = "upsert", **dest) -> dict:
        return {
            "pipeline": self.pipeline,
            "source": {"use": "postgres", "config": {"url": self.dsn, "schema": self.src},
                       "streams": [{"name": table, "sync_mode": "cdc"}]},
            "destination": {"use": "postgres", "config": {"url": self.dsn, "schema": self.dst},
                            "write_mode": mode, **({"primary_key": ["id"]}
                                                   if mode == "upsert" else {}), **dest},
            "state": {"backend": "sqlite", "connection": str(self.tmp / "state.db")},
        }

    def run(self, table: str = "t", mode: str = "upsert", **dest):
        return rapidbyte_fast.run(self.config(table, mode, **dest))

    def rows(self, schema: str, table: str = "t", cols: str = "*") -> list[tuple]:
        return self.conn.execute(f'SELECT {cols} FROM "{schema}"."{table}" ORDER BY 1'
                                 ).fetchall()

    def same(self, table: str = "t") -> None:
        """The destination equals the source, row for row (all columns as text)."""
        cols = [r[0] for r in self.conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum", (f'"{self.src}"."{table}"',))]
        expr = ", ".join(f'"{c}"::text' for c in cols)
        assert self.rows(self.dst, table, expr) == self.rows(self.src, table, expr)

    def position(self) -> str:
        return self.conn.execute(f'SELECT cursor_value FROM "{self.dst}".rbf_state '
                                 "WHERE pipeline = %s", (self.pipeline,)).fetchone()[0]

    def confirmed(self) -> str:
        return self.conn.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                                 "WHERE slot_name = %s", (self.slot,)).fetchone()[0]

    def slot_at_position(self) -> bool:
        """The slot has passed the saved position (a drain that found nothing of ours
        moves it on to the server's flush position, so that it retains no WAL)."""
        return self.conn.execute(
            "SELECT %s::pg_lsn <= confirmed_flush_lsn FROM pg_replication_slots "
            "WHERE slot_name = %s", (self.position(), self.slot)).fetchone()[0]


def _t(env: Env, rows: int = 100) -> None:
    env.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, v text, n int)")
    env.sql("INSERT INTO {s}.t SELECT i, 'v' || i, i FROM generate_series(1, %s) i", (rows,))


def test_bootstrap_then_drain_interleaved_transactions(cdc):
    _t(cdc)
    r = cdc.run()
    assert r.streams[0].records_written == 100
    cdc.same()
    # the position is the slot's consistent point, saved with the rows
    assert cdc.position() == cdc.confirmed()
    cdc.sql("INSERT INTO {s}.t VALUES (101, 'new', 1)")
    with cdc.conn.transaction():
        cdc.sql("UPDATE {s}.t SET v = 'u1' WHERE id <= 10")
        cdc.sql("DELETE FROM {s}.t WHERE id BETWEEN 5 AND 15")
        cdc.sql("INSERT INTO {s}.t VALUES (5, 'back', 5)")
    cdc.sql("UPDATE {s}.t SET n = -1 WHERE id = 5")
    cdc.sql("DELETE FROM {s}.t WHERE id = 101")
    r = cdc.run()
    assert r.streams[0].path == "cdc" and r.streams[0].records_read == 1 + 10 + 11 + 1 + 1 + 1
    cdc.same()
    assert cdc.rows(cdc.dst, cols="id, v, n")[:6] == [
        (1, "u1", 1), (2, "u1", 2), (3, "u1", 3), (4, "u1", 4), (5, "back", -1), (16, "v16", 16)]
    assert cdc.slot_at_position()
    again = cdc.run()  # nothing new
    assert again.streams[0].records_read == 0
    cdc.same()


def test_primary_key_update_deletes_the_old_key(cdc):
    _t(cdc, 5)
    cdc.run()
    with cdc.conn.transaction():
        cdc.sql("UPDATE {s}.t SET id = 50 WHERE id = 1")
        cdc.sql("UPDATE {s}.t SET id = 1 WHERE id = 2")   # takes the freed key
        cdc.sql("UPDATE {s}.t SET id = id + 100 WHERE id = 3")
    cdc.sql("UPDATE {s}.t SET id = 103 WHERE id = 103")   # no-op key "change"
    cdc.run()
    assert cdc.rows(cdc.dst, cols="id, v") == [(1, "v2"), (4, "v4"), (5, "v5"), (50, "v1"),
                                               (103, "v3")]
    cdc.same()


def _replica_after_changes(cdc) -> None:
    """Updates, a delete, a key update and an insert of one window, applied and checked."""
    with cdc.conn.transaction():
        cdc.sql("UPDATE {s}.t SET v = 'u' || id WHERE id <= 3")
        cdc.sql("DELETE FROM {s}.t WHERE id = 4")
        cdc.sql("UPDATE {s}.t SET id = 40 WHERE id = 5")
        cdc.sql("INSERT INTO {s}.t VALUES (6, 'new', 6)")
    cdc.run()


def test_replica_applies_by_delete_and_insert_keeping_a_table_referenced_by_a_foreign_key(cdc):
    # the apply deletes and re-inserts the changed keys, unless another table's foreign
    # key would see the delete: its rows must survive an update of the row they reference
    _t(cdc, 5)
    cdc.run()
    cdc.sql("CREATE TABLE {d}.child (id int PRIMARY KEY, "
            "parent int REFERENCES {d}.t ON DELETE CASCADE)")
    cdc.sql("INSERT INTO {d}.child VALUES (1, 1), (2, 2)")
    _replica_after_changes(cdc)
    cdc.same()
    assert cdc.rows(cdc.dst, "child") == [(1, 1), (2, 2)]


def test_replica_keeps_a_column_the_source_does_not_send(cdc):
    # a destination-only column keeps its value through updates (an upsert, not a delete
    # and insert); a plain replica gets the same rows by either path
    _t(cdc, 5)
    cdc.run()
    cdc.sql("ALTER TABLE {d}.t ADD COLUMN note text")
    cdc.sql("UPDATE {d}.t SET note = 'kept'")
    _replica_after_changes(cdc)
    assert cdc.rows(cdc.dst, cols="id, v, n, note") == [
        (1, "u1", 1, "kept"), (2, "u2", 2, "kept"), (3, "u3", 3, "kept"), (6, "new", 6, None),
        (40, "v5", 5, None)]


def test_replica_by_delete_and_insert(cdc):
    _t(cdc, 5)
    cdc.run()
    _replica_after_changes(cdc)
    assert cdc.rows(cdc.dst, cols="id, v, n") == [
        (1, "u1", 1), (2, "u2", 2), (3, "u3", 3), (6, "new", 6), (40, "v5", 5)]
    cdc.same()


def test_unchanged_toast_values_keep_the_destination_value(cdc):
    cdc.sql("CREATE TABLE {s}.t (id int PRIMARY KEY, big text, n int)")
    cdc.sql("ALTER TABLE {s}.t ALTER COLUMN big SET STORAGE EXTERNAL")
    big = "x" * 100_000
    cdc.sql("INSERT INTO {s}.t VALUES (1, %s, 1), (2, %s, 2)", (big, big + "2"))
    cdc.run()
    cdc.sql("UPDATE {s}.t SET n = 10 WHERE id = 1")             # from the target's row
    with cdc.conn.transaction():
        cdc.sql("INSERT INTO {s}.t VALUES (3, %s, 3)", (big + "3",))
        cdc.sql("UPDATE {s}.t SET n = 30 WHERE id = 3")         # from the window
        cdc.sql("UPDATE {s}.t SET n = 31 WHERE id = 3")         # two hops
        cdc.sql("UPDATE {s}.t SET id = 20, n = 20 WHERE id = 2")  # key change: old key's
    r = cdc.run()
    assert r.streams[0].records_read == 5
    got = cdc.rows(cdc.dst, cols="id, length(big), right(big, 1), n")
    assert got == [(1, 100_000, "x", 10), (3, 100_001, "3", 31), (20, 100_001, "2", 20)]
    cdc.same()


def test_truncate_propagates(cdc):
    _t(cdc, 20)
    cdc.run()
    with cdc.conn.transaction():
        cdc.sql("INSERT INTO {s}.t VALUES (21, 'a', 1)")
        cdc.sql("TRUNCATE {s}.t")
        cdc.sql("INSERT INTO {s}.t VALUES (7, 'after', 7)")
    cdc.sql("INSERT INTO {s}.t VALUES (8, 'later', 8)")
    cdc.run()
    assert cdc.rows(cdc.dst, cols="id, v") == [(7, "after"), (8, "later")]
    cdc.same()


def test_long_transaction_and_small_windows(cdc):
    _t(cdc, 0)
    cdc.run()
    with cdc.conn.transaction():
        cdc.sql("INSERT INTO {s}.t SELECT i, 'l' || i, i FROM generate_series(1, 20000) i")
        cdc.sql("UPDATE {s}.t SET n = -n WHERE id % 3 = 0")
        cdc.sql("DELETE FROM {s}.t WHERE id % 7 = 0")
    for i in range(5):
        cdc.sql("UPDATE {s}.t SET v = %s WHERE id %% 5 = %s", (f"w{i}", i))
    cfg = cdc.config()
    cfg["source"]["config"]["cdc_window_changes"] = 1000   # the big one is one window still
    r = rapidbyte_fast.run(cfg)
    assert r.streams[0].records_read == 20000 + 6666 + 2857 + (20000 - 2857)
    assert r.streams[0].checkpoints >= 5
    cdc.same()


def test_a_drain_stops_at_the_window_that_caught_up(cdc, monkeypatch):
    from rapidbyte_fast.sources.cdc.reader import ChangeReader

    _t(cdc, 0)
    cdc.run()
    for i in range(3):
        cdc.sql("INSERT INTO {s}.t SELECT i, 'x', i "
                "FROM generate_series(%s::int, %s::int) i", (100 * i + 1, 100 * i + 100))
    cdc.sql("CREATE TABLE {s}.other (id int)")
    cdc.sql("INSERT INTO {s}.other VALUES (1)")   # WAL after ours, none of ours
    reads = []
    real = ChangeReader.read_window
    monkeypatch.setattr(ChangeReader, "read_window",
                        lambda self, **kw: reads.append(real(self, **kw)) or reads[-1])
    r = cdc.run()
    # one peek read all three transactions and saw the end of the WAL: no second peek
    assert r.streams[0].records_read == 300 and len(reads) == 1
    cdc.same()
    # the slot moved past the saved position, over the WAL that is none of ours
    assert cdc.slot_at_position() and cdc.confirmed() != cdc.position()
    cdc.sql("UPDATE {s}.t SET v = 'y' WHERE id = 7")
    reads.clear()
    assert cdc.run().streams[0].records_read == 1 and len(reads) == 1
    cdc.same()


#: A window target below one of ``_big_transactions``: a window per transaction.
_SMALL_WINDOWS = 300_000


def _big_transactions(env: Env) -> None:
    """Three transactions of 0.5-1 MB of change rows each, the last after a new column (a
    layout change inside the peek)."""
    for i in range(2):
        env.sql("INSERT INTO {s}.t SELECT g, repeat('x', 80) || g, g "
                "FROM generate_series(%s::int, %s::int) g", (5_000 * i + 1, 5_000 * i + 5_000))
    env.sql("ALTER TABLE {s}.t ADD COLUMN w int")
    with env.conn.transaction():
        env.sql("UPDATE {s}.t SET w = id, v = v || 'u' WHERE id % 2 = 0")
        env.sql("DELETE FROM {s}.t WHERE id % 5 = 0")


def test_windows_of_one_peek_land_in_one_transaction(cdc, monkeypatch):
    from rapidbyte_fast.sources.cdc import reader as reader_mod
    from rapidbyte_fast.sources.cdc.reader import ChangeReader

    _t(cdc, 0)
    cdc.run()
    _big_transactions(cdc)
    cfg = cdc.config()
    monkeypatch.setattr(reader_mod, "WINDOW_TARGET_BYTES", _SMALL_WINDOWS)
    reads = []
    real = ChangeReader.read_window
    monkeypatch.setattr(ChangeReader, "read_window",
                        lambda self, **kw: reads.append(real(self, **kw)) or reads[-1])
    sr = rapidbyte_fast.run(cfg).streams[0]
    windows = [w for w in reads if w is not None]
    assert len(windows) == 3 and len({w.end_lsn for w in windows}) == 3
    # one peek, one destination transaction: one pass of the apply over the target
    assert (sr.records_read, sr.checkpoints) == (10_000 + 5_000 + 2_000, 1)
    cdc.same()
    assert cdc.slot_at_position()


@pytest.mark.parametrize("fault", ["dest.batch#2=kill", "cdc.apply#1=terminate-dest"])
def test_a_crash_inside_a_peek_of_several_windows_lands_none_of_them(cdc, fault):
    _t(cdc, 0)
    cdc.run()
    _big_transactions(cdc)
    (cdc.tmp / "pipeline.json").write_text(json.dumps(cdc.config()))
    run = [sys.executable, "-c",
           "from rapidbyte_fast.sources.cdc import reader; "
           f"reader.WINDOW_TARGET_BYTES = {_SMALL_WINDOWS}; from rapidbyte_fast.cli import main; "
           "main()", "run", "-q", str(cdc.tmp / "pipeline.json")]
    e = {**os.environ, "RAPIDBYTE_FAULTS": fault}
    crashed = subprocess.run(run, capture_output=True, text=True, env=e, timeout=300)
    point, action = fault.split("=")
    assert f"fault injection: {action} at {point.replace('#', ' #')}" in crashed.stderr
    # the first window was staged, not applied: the destination is as the bootstrap left it
    assert cdc.rows(cdc.dst) == []
    e.pop("RAPIDBYTE_FAULTS")
    ok = subprocess.run(run, capture_output=True, text=True, env=e, timeout=300)
    assert ok.returncode == 0, ok.stderr
    cdc.same()
    assert cdc.slot_at_position()


def test_change_log_shape(cdc):
    _t(cdc, 3)
    cdc.run(mode="append")
    consistent = cdc.position()
    cdc.sql("UPDATE {s}.t SET v = 'u' WHERE id = 2")
    cdc.sql("DELETE FROM {s}.t WHERE id = 3")
    cdc.sql("INSERT INTO {s}.t VALUES (4, 'n', 4)")
    cdc.run(mode="append")
    rows = cdc.conn.execute(f'SELECT id, v, _rb_op, _rb_lsn, _rb_committed_at IS NULL FROM '
                            f'"{cdc.dst}".t ORDER BY _rb_lsn, id').fetchall()
    hi, lo = consistent.split("/")
    lsn = (int(hi, 16) << 32) | int(lo, 16)
    assert rows[:3] == [(1, "v1", "insert", lsn, True), (2, "v2", "insert", lsn, True),
                        (3, "v3", "insert", lsn, True)]
    tail = rows[3:]
    assert [(r[0], r[1], r[2], r[4]) for r in tail] == [
        (2, "u", "update", False), (3, None, "delete", False), (4, "n", "insert", False)]
    assert all(r[3] > lsn for r in tail)


def test_soft_deletes(cdc):
    _t(cdc, 3)
    cdc.run(deletes="soft")
    cdc.sql("DELETE FROM {s}.t WHERE id = 2")
    cdc.sql("UPDATE {s}.t SET v = 'u' WHERE id = 3")
    cdc.run(deletes="soft")
    got = cdc.rows(cdc.dst, cols="id, v, _rb_op, _rb_deleted_at IS NOT NULL")
    assert got == [(1, "v1", "insert", False), (2, "v2", "delete", True),
                   (3, "u", "update", False)]
    cdc.sql("INSERT INTO {s}.t VALUES (2, 'again', 2)")
    cdc.run(deletes="soft")
    assert cdc.rows(cdc.dst, cols="id, v, _rb_op, _rb_deleted_at")[1] == (2, "again", "insert",
                                                                          None)


@pytest.mark.parametrize("ddl,fix", [
    ("CREATE TABLE {s}.t (id int, v text)", "has no primary key"),
    ("CREATE TABLE {s}.t (id int PRIMARY KEY, v text); ALTER TABLE {s}.t REPLICA IDENTITY "
     "NOTHING", "REPLICA IDENTITY NOTHING"),
])
def test_table_without_a_key_is_refused(cdc, ddl, fix):
    for stmt in ddl.split("; "):
        cdc.sql(stmt)
    with pytest.raises(RapidbyteError) as err:
        cdc.run(mode="append")
    msg = str(err.value)
    assert "\n" not in msg and fix in msg and f"{cdc.src}" in msg and "REPLICA IDENTITY USING " \
        "INDEX" in msg
    # nothing was created
    assert cdc.conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                            (cdc.slot,)).fetchone()[0] == 0


def test_rebootstrap_of_a_replica_replaces_the_older_copy(cdc):
    _t(cdc, 5)
    cdc.run()
    cdc.sql("DELETE FROM {s}.t WHERE id = 1")
    reset = _cli(cdc, "state", "reset", "--stream", "t")
    assert reset.returncode == 0, reset.stderr
    assert "dropped replication slot" in reset.stdout
    assert cdc.conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                            (cdc.slot,)).fetchone()[0] == 0
    cdc.run()
    cdc.same()


def test_lost_slot_is_refused_with_the_fix(cdc):
    _t(cdc, 5)
    cdc.run()
    cdc.sql("SELECT pg_drop_replication_slot(%s)", (cdc.slot,))
    with pytest.raises(RapidbyteError) as err:
        cdc.run()
    msg = str(err.value)
    assert f"replication slot {cdc.slot} does not exist" in msg
    assert "state reset <pipeline> --stream t" in msg and "\n" not in msg


def test_state_show_reports_the_slot(cdc):
    _t(cdc, 5)
    cdc.run()
    cdc.sql("UPDATE {s}.t SET v = 'x'")
    out = _cli(cdc, "state", "show")
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if f"slot {cdc.slot}" in ln)
    assert "lag" in line and "retains" in line and "wal_status reserved" in line


def _cli(env: Env, *args: str, faults: str | None = None):
    path = env.tmp / "pipeline.json"
    path.write_text(json.dumps(env.config()))
    cmd = [sys.executable, "-m", "rapidbyte_fast", *args[:2], str(path), *args[2:]]
    if args[0] == "run":
        cmd = [sys.executable, "-m", "rapidbyte_fast", "run", "-q", str(path)]
    e = {**os.environ}
    e.pop("RAPIDBYTE_FAULTS", None)
    if faults:
        e["RAPIDBYTE_FAULTS"] = faults
    return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=300)


def _workload(env: Env, i: int) -> None:
    """Changes of every kind, in several transactions."""
    with env.conn.transaction():
        env.sql(f"INSERT INTO {{s}}.t SELECT g, 'i{i}', g FROM generate_series({1000 + i * 100}, "
                f"{1049 + i * 100}) g")
        env.sql(f"UPDATE {{s}}.t SET v = 'u{i}' WHERE id % 7 = {i % 7}")
    env.sql(f"DELETE FROM {{s}}.t WHERE id % 11 = {i % 11}")
    env.sql(f"UPDATE {{s}}.t SET id = id + 5000 WHERE id = {20 + i}")


# every commit boundary of a bootstrap and a drain, killed and with backends terminated
CRASHES = [
    ("bootstrap", "cdc.slot_created#1=kill"), ("bootstrap", "dest.commit#1=kill"),
    ("bootstrap", "dest.committed#1=kill"), ("bootstrap", "dest.commit#1=terminate-dest"),
    ("drain", "cdc.apply#1=kill"), ("drain", "cdc.applied#1=kill"),
    ("drain", "cdc.applied#2=kill"), ("drain", "cdc.advanced#1=kill"),
    ("drain", "cdc.apply#2=terminate-dest"), ("drain", "cdc.applied#1=terminate-dest"),
    ("drain", "dest.batch#1=kill"), ("drain", "dest.batch#3=terminate-dest"),
    ("drain", "cdc.applied#2=terminate-source"), ("drain", "cdc.advanced#2=terminate-source"),
    ("bootstrap", "source.batch#1=terminate-source"), ("bootstrap", "dest.batch#1=kill"),
]


@pytest.mark.parametrize("phase,fault", CRASHES)
def test_crash_then_next_run_is_exact(cdc, phase, fault):
    _t(cdc, 500)
    if phase == "drain":
        assert _cli(cdc, "run").returncode == 0
        for i in range(3):
            _workload(cdc, i)
    cfg = cdc.config()
    cfg["source"]["config"]["cdc_window_changes"] = 100   # several windows
    (cdc.tmp / "pipeline.json").write_text(json.dumps(cfg))
    e = {**os.environ, "RAPIDBYTE_FAULTS": fault}
    crashed = subprocess.run([sys.executable, "-m", "rapidbyte_fast", "run", "-q",
                              str(cdc.tmp / "pipeline.json")], capture_output=True, text=True,
                             env=e, timeout=300)
    point, action = fault.split("=")
    assert f"fault injection: {action} at {point.replace('#', ' #')}" in crashed.stderr
    if action == "kill":
        assert crashed.returncode == -9, crashed.stderr
    _workload(cdc, 5)
    e.pop("RAPIDBYTE_FAULTS")
    for _ in range(2):
        ok = subprocess.run([sys.executable, "-m", "rapidbyte_fast", "run", "-q",
                             str(cdc.tmp / "pipeline.json")], capture_output=True, text=True,
                            env=e, timeout=300)
        assert ok.returncode == 0, ok.stderr
        cdc.same()
    assert cdc.slot_at_position()


def test_plans_say_bootstrap_then_drain(cdc):
    from rapidbyte_fast.config import load_config
    from rapidbyte_fast.plan import make_plans

    _t(cdc, 3)
    plan = make_plans(load_config(cdc.config()))[0].describe()
    assert plan["changes"] == {"publication": f"rbf_{cdc.pipeline}", "slot": cdc.slot,
                               "shape": "replica", "deletes": "hard", "phase": "bootstrap",
                               "after": None}
    assert plan["write"]["checkpoint_every"] == [0, 0, 0.0]   # one commit, with the position
    cdc.run()
    plan = make_plans(load_config(cdc.config()))[0].describe()
    assert plan["changes"]["phase"] == "drain" and plan["changes"]["after"] == cdc.position()


@pytest.mark.parametrize("change,error", [
    ({"destination": {"write_mode": "replace"}},
     "source.streams[0].sync_mode: cdc writes a replica (write_mode upsert) or a change log "
     "(write_mode append), not replace"),
    ({"destination": {"primary_key": ["v"]}},
     "destination.primary_key: stream t is captured by its key (id); set primary_key to it"),
    ({"transforms": [{"use": "sql", "config": {"query": "SELECT * FROM t"}}]},
     "source.streams[0].sync_mode: cdc streams take no transforms in this version"),
    ({"destination": {"on_data_error": "skip"}},
     "source.streams[0].sync_mode: a cdc replica or log cannot leave rows out: "
     "on_data_error must be fail"),
])
def test_configurations_cdc_cannot_run_are_refused(cdc, change, error):
    _t(cdc, 3)
    cfg = cdc.config()
    for section, values in change.items():
        if isinstance(values, dict):
            cfg[section].update(values)
        else:
            cfg[section] = values
    with pytest.raises(RapidbyteError) as err:
        rapidbyte_fast.run(cfg)
    assert str(err.value) == error


def test_embedded_server_with_logical_wal(monkeypatch):
    import shutil
    import tempfile

    from rapidbyte_fast import embedded

    # (not under pytest's 0700 tmp_path: the server runs as the 'pgserver' user under root)
    root = tempfile.mkdtemp(prefix="rbf-test-emb-logical-")
    monkeypatch.setenv("RAPIDBYTE_EMBEDDED_DIR", root)
    url = embedded.ensure("logical", logical=True)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SHOW wal_level").fetchone()[0] == "logical"
        assert embedded.ensure("logical", logical=True)   # already logical: no restart
    finally:
        embedded.stop("logical")
        shutil.rmtree(root, ignore_errors=True)


def test_new_column_goes_through_schema_evolution(cdc):
    _t(cdc, 2)
    cdc.run()
    cdc.sql("UPDATE {s}.t SET v = 'before' WHERE id = 1")
    cdc.sql("ALTER TABLE {s}.t ADD COLUMN extra numeric(10,2)")
    cdc.sql("INSERT INTO {s}.t VALUES (3, 'c', 3, 1.25)")
    cdc.sql("UPDATE {s}.t SET extra = 2.5 WHERE id = 2")
    cdc.run()
    cdc.same()
    assert cdc.conn.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass "
        "AND attname = 'extra'", (f'"{cdc.dst}".t',)).fetchone()[0] == "numeric(10,2)"
    cdc.sql("ALTER TABLE {s}.t ADD COLUMN refused int")
    cdc.sql("INSERT INTO {s}.t VALUES (4, 'd', 4, 1, 1)")
    with pytest.raises(RapidbyteError, match=r"new column refused \(integer\) "
                       r"\[schema_evolution.new_column: fail\]"):
        cdc.run(schema_evolution={"new_column": "fail"})
    cdc.run()
    cdc.same()


def test_a_transaction_larger_than_the_window_is_refused(cdc):
    _t(cdc, 0)
    cdc.run()
    cdc.sql("INSERT INTO {s}.t SELECT i, repeat('x', 1000), i FROM generate_series(1, 3000) i")
    cfg = cdc.config()
    cfg["source"]["config"]["cdc_window_bytes"] = "1mb"
    with pytest.raises(RapidbyteError) as err:
        rapidbyte_fast.run(cfg)
    msg = str(err.value)
    assert "holds more than 1048576 bytes of changes" in msg and f"{cdc.src}.t" in msg
    assert "raise source.config.cdc_window_bytes" in msg
    assert cdc.rows(cdc.dst) == []
    cdc.run()   # the default window takes it
    cdc.same()


def test_a_source_without_logical_wal_is_refused(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                                 tmp_path):
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".t (id int PRIMARY KEY)')
    cfg = Env(pg_dsn, pg_conn, pg_schema, pg_schema2, "p_nolog", tmp_path).config()
    with pytest.raises(RapidbyteError) as err:
        rapidbyte_fast.run(cfg)
    assert str(err.value) == (
        "stream t: change capture needs wal_level = logical, the source has replica (ALTER "
        "SYSTEM SET wal_level = logical; then restart the server)")
