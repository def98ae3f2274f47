"""Resumable full refresh (key ranges committed with a progress mark), what ``state``
shows and forgets of an unfinished load, and replace refusing to drop dependent views."""
from __future__ import annotations

import json
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import rapidbyte_fast
from rapidbyte_fast import faults
from rapidbyte_fast.errors import DestinationError
from rapidbyte_fast.pgtypes import describe_table
from rapidbyte_fast.sources.postgres.ranges import key_cuts, key_range_sql

from .test_cli_e2e import _cli, _err, _text_rows
from .test_faults import _config, _insert

ROWS = 6000


def _bench(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.split("@@BENCH_JSON@@", 1)[1])


def _write(tmp_path, cfg: dict) -> str:
    path = tmp_path / "p.yaml"
    path.write_text(json.dumps(cfg))
    return str(path)


@pytest.fixture
def source(pg_conn, pg_schema):
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".ev (id int PRIMARY KEY, n int, v text, '
                    "ts timestamptz, amount numeric(12,2))")
    _insert(pg_conn, pg_schema, 1, ROWS)
    return pg_schema


def test_sharded_replace_resumes_after_a_crash(pg_dsn, pg_conn, source, pg_schema2, tmp_path,
                                               monkeypatch):
    cfg = _config(pg_dsn, source, pg_schema2, "replace")
    cfg["resources"]["parallelism"] = 2
    path = _write(tmp_path, cfg)
    monkeypatch.setenv("RAPIDBYTE_FAULTS", "dest.range_committed#2=kill")
    assert _cli(pg_dsn, "run", "-q", path).returncode == -9
    monkeypatch.delenv("RAPIDBYTE_FAULTS")
    shown = _cli(pg_dsn, "state", "show", path)
    assert "unfinished loads (the next run resumes them):" in shown.stdout
    # the kill follows the second commit; the other worker may have committed one more
    # (then one range is left: one worker resumes it)
    done = 3 if "  ev: replace, 3 of 4 key ranges committed (4,500 rows)" in shown.stdout else 2
    assert (f"  ev: replace, {done} of 4 key ranges committed ({done * 1500:,} rows)"
            in shown.stdout)
    bench = _bench(_cli(pg_dsn, "run", "-q", path))
    assert (bench["parallelism"], bench["resumed_ranges"], bench["resumed_rows"],
            bench["records_written"]) == (min(2, 4 - done), done, done * 1500,
                                          ROWS - done * 1500)
    assert _text_rows(pg_conn, pg_schema2, "ev") == _text_rows(pg_conn, source, "ev")
    assert "unfinished" not in _cli(pg_dsn, "state", "show", path).stdout


@pytest.mark.parametrize("key_sql", ["id uuid PRIMARY KEY",
                                     "id uuid, n int, PRIMARY KEY (n, id)"])
def test_non_integer_primary_key_resumes(pg_dsn, pg_conn, pg_schema, pg_schema2, tmp_path,
                                         monkeypatch, key_sql):
    s = f'"{pg_schema}"'
    cols = "n int, " if "n int," not in key_sql else ""
    pg_conn.execute(f"CREATE TABLE {s}.ev ({key_sql}, {cols}v text)")
    pg_conn.execute(f"INSERT INTO {s}.ev (id, n, v) SELECT md5(i::text)::uuid, i % 10, "
                    "repeat('x', i % 30) FROM generate_series(1, 6000) i")
    pg_conn.execute(f"ANALYZE {s}.ev")
    path = _write(tmp_path, _config(pg_dsn, pg_schema, pg_schema2, "replace"))
    monkeypatch.setenv("RAPIDBYTE_FAULTS", "dest.range_committed#2=kill")
    assert _cli(pg_dsn, "run", "-q", path).returncode == -9
    monkeypatch.delenv("RAPIDBYTE_FAULTS")
    bench = _bench(_cli(pg_dsn, "run", "-q", path))
    assert bench["resumed_ranges"] == 2
    assert bench["resumed_rows"] + bench["records_written"] == 6000
    assert sorted(_text_rows(pg_conn, pg_schema2, "ev")) == sorted(
        _text_rows(pg_conn, pg_schema, "ev"))


def test_summary_says_the_run_resumed(pg_dsn, pg_conn, source, pg_schema2, tmp_path,
                                      monkeypatch):
    path = _write(tmp_path, _config(pg_dsn, source, pg_schema2, "append"))
    monkeypatch.setenv("RAPIDBYTE_FAULTS", "dest.range_committed#3=kill")
    assert _cli(pg_dsn, "run", path).returncode == -9
    monkeypatch.delenv("RAPIDBYTE_FAULTS")
    proc = _cli(pg_dsn, "run", path)
    assert proc.returncode == 0, proc.stderr
    assert ("    resumed: 3 of 4 key ranges (4,500 rows) were committed by an earlier attempt"
            in proc.stdout.splitlines())
    assert "resuming an unfinished append at key range 4 of 4 (4500 rows already committed)" \
        in proc.stderr
    assert _text_rows(pg_conn, pg_schema2, "ev") == _text_rows(pg_conn, source, "ev")


def test_state_reset_forgets_an_unfinished_replace(pg_dsn, pg_conn, source, pg_schema2,
                                                   tmp_path, monkeypatch):
    path = _write(tmp_path, _config(pg_dsn, source, pg_schema2, "replace"))
    monkeypatch.setenv("RAPIDBYTE_FAULTS", "dest.range_committed#1=kill")
    assert _cli(pg_dsn, "run", "-q", path).returncode == -9
    monkeypatch.delenv("RAPIDBYTE_FAULTS")
    stages = "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename LIKE 'ev__rbf%%'"
    assert pg_conn.execute(stages, (pg_schema2,)).fetchone() == (1,)
    reset = _cli(pg_dsn, "state", "reset", path)
    assert reset.stdout.strip() == "reset 0 cursor(s) and 1 unfinished load(s) of pipeline faults"
    assert pg_conn.execute(stages, (pg_schema2,)).fetchone() == (0,)
    bench = _bench(_cli(pg_dsn, "run", "-q", path))
    assert (bench["resumed_ranges"], bench["records_written"]) == (0, ROWS)
    assert _text_rows(pg_conn, pg_schema2, "ev") == _text_rows(pg_conn, source, "ev")


def test_replace_with_other_columns_starts_over(pg_dsn, pg_conn, source, pg_schema2, tmp_path,
                                                monkeypatch):
    cfg = _config(pg_dsn, source, pg_schema2, "replace")
    path = _write(tmp_path, cfg)
    monkeypatch.setenv("RAPIDBYTE_FAULTS", "dest.range_committed#2=kill")
    assert _cli(pg_dsn, "run", "-q", path).returncode == -9
    monkeypatch.delenv("RAPIDBYTE_FAULTS")
    cfg["source"]["streams"][0]["columns"] = ["id", "v"]  # the staged rows no longer fit
    proc = _cli(pg_dsn, "run", "-q", _write(tmp_path, cfg))
    assert _bench(proc)["resumed_ranges"] == 0
    assert "starting over: an unfinished replace load (2 of 4 key ranges) cannot be resumed" \
        in proc.stderr
    assert _text_rows(pg_conn, pg_schema2, "ev") == pg_conn.execute(
        f'SELECT id::text, v FROM "{source}".ev ORDER BY 1').fetchall()
    assert pg_conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s",
                           (pg_schema2,)).fetchone() == (2,)  # ev and rbf_progress


def test_small_tables_load_in_one_piece(pg_dsn, pg_conn, source, pg_schema2):
    cfg = _config(pg_dsn, source, pg_schema2, "replace")
    cfg["resources"]["checkpoint_interval_rows"] = ROWS  # one interval holds the table
    result = rapidbyte_fast.run(cfg)
    assert (result.streams[0].ranges, result.streams[0].checkpoints) == (0, 0)


@pytest.mark.parametrize("dependent", ["view", "foreign key"])
def test_replace_with_on_dependent_views_fail_refuses_dependents(pg_dsn, pg_conn, source, pg_schema2, tmp_path,
                                            dependent):
    d = f'"{pg_schema2}"'
    pg_conn.execute(f"CREATE TABLE {d}.ev (id int PRIMARY KEY, v text)")
    pg_conn.execute(f"INSERT INTO {d}.ev VALUES (1, 'old')")
    if dependent == "view":
        pg_conn.execute(f"CREATE VIEW {d}.ev_view AS SELECT v FROM {d}.ev")
        what = f"views {pg_schema2}.ev_view depend on it"
    else:
        pg_conn.execute(f"CREATE TABLE {d}.child (ev_id int CONSTRAINT child_ev REFERENCES "
                        f"{d}.ev (id))")
        what = f"foreign keys child_ev on {pg_schema2}.child reference it"
    cfg = _config(pg_dsn, source, pg_schema2, "replace")
    cfg["destination"]["config"]["on_dependent_views"] = "fail"
    proc = _cli(pg_dsn, "run", "-q", _write(tmp_path, cfg))
    assert proc.returncode == 1
    assert _err(proc) == (
        f"error: stream ev → {pg_schema2}.ev: replace cannot swap in a new {pg_schema2}.ev: "
        f"{what} (drop and recreate them around the load, or use write_mode append or "
        "upsert)")
    assert _text_rows(pg_conn, pg_schema2, "ev") == [("1", "old")]


def test_view_created_during_the_load_is_reported(pg_dsn, pg_conn, source, pg_schema2,
                                                  monkeypatch):
    d = f'"{pg_schema2}"'
    pg_conn.execute(f"CREATE TABLE {d}.ev (id int PRIMARY KEY, v text)")

    def create_view(point: str) -> None:  # a view appears after the up-front check
        if point == "dest.range_committed":
            pg_conn.execute(f"CREATE OR REPLACE VIEW {d}.late AS SELECT id FROM {d}.ev")

    monkeypatch.setattr(faults, "hit", create_view)
    cfg = _config(pg_dsn, source, pg_schema2, "replace")
    cfg["destination"]["config"]["on_dependent_views"] = "fail"
    with pytest.raises(DestinationError, match=f"views {pg_schema2}.late depend on it"):
        rapidbyte_fast.run(cfg)
    assert pg_conn.execute(f"SELECT count(*) FROM {d}.ev").fetchone() == (0,)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lo=st.integers(-2**40, 2**40), span=st.integers(1, 10**6), pieces=st.integers(1, 9),
       probes=st.lists(st.one_of(st.none(), st.integers(-2**62, 2**62)), max_size=20))
def test_every_integer_key_falls_in_exactly_one_range(pg_conn, lo, span, pieces, probes):
    # cuts from a table holding lo and lo + span - 1; probes anywhere, NULL included
    pg_conn.execute("CREATE TEMP TABLE IF NOT EXISTS kr (k bigint)")
    pg_conn.execute("TRUNCATE kr")
    pg_conn.execute("INSERT INTO kr VALUES (%s), (%s)", (lo, lo + span - 1))
    table = describe_table(pg_conn, "pg_temp", "kr")
    p = key_cuts(pg_conn, table, ("k",), pieces)
    assert p.has_null and p.count <= min(pieces, span) and p.key_types == ("bigint",)
    _exactly_one(pg_conn, p, "(SELECT %s::bigint AS k) t",
                 [(v,) for v in probes + [lo, lo + span - 1] + [int(c[0]) for c in p.cuts]])


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(st.tuples(st.integers(-5, 5), st.text(max_size=4)), min_size=1,
                     max_size=300, unique=True),
       pieces=st.integers(2, 9),
       probes=st.lists(st.tuples(st.integers(-9, 9), st.text(max_size=5)), max_size=10))
def test_every_composite_key_falls_in_exactly_one_range(pg_conn, keys, pieces, probes):
    # a primary key of any orderable types is cut at sampled points (row comparison)
    pg_conn.execute("CREATE TEMP TABLE IF NOT EXISTS kc (a int, b text, PRIMARY KEY (a, b))")
    pg_conn.execute("TRUNCATE kc")
    keys = [(a, b.replace("\x00", "")) for a, b in keys]
    with pg_conn.cursor() as cur:
        cur.executemany("INSERT INTO kc VALUES (%s, %s) ON CONFLICT DO NOTHING", keys)
    table = describe_table(pg_conn, "pg_temp", "kc")
    p = key_cuts(pg_conn, table, ("a", "b"), pieces)
    assert not p.has_null and p.count <= pieces and p.key_types == ("integer", "text")
    # every stored row is read by exactly one range, and so is any key added later
    assert sum(pg_conn.execute(f"SELECT count(*) FROM kc WHERE {_where(p, i)}").fetchone()[0]
               for i in range(p.count)) == pg_conn.execute("SELECT count(*) FROM kc").fetchone()[0]
    probes = [(a, b.replace("\x00", "")) for a, b in probes]
    _exactly_one(pg_conn, p, "(SELECT %s::int AS a, %s::text AS b) t",
                 probes + [(int(c[0]), c[1]) for c in p.cuts])


def _where(p, i: int) -> str:
    return key_range_sql(p.key, p.key_types, p.cuts, i, p.has_null)


def _exactly_one(conn, p, probe_sql: str, probes: list[tuple]) -> None:
    # WHERE takes NULL as false
    counts = " + ".join(f"coalesce(({_where(p, i)})::int, 0)" for i in range(p.count)
                        ).replace("%", "%%")  # cut points are literals, the probe a parameter
    for probe in probes:
        got = conn.execute(f"SELECT {counts} FROM {probe_sql}", probe).fetchone()[0]
        assert got == 1, (probe, p.cuts)


def test_failed_append_says_what_is_committed_and_next_run_finishes(
        pg_dsn, pg_conn, source, pg_schema2, tmp_path):
    d = f'"{pg_schema2}"'
    pg_conn.execute(f"CREATE TABLE {d}.ev (id int PRIMARY KEY, n int, v text, ts timestamptz, "
                    "amount numeric(12,2), CONSTRAINT small CHECK (id <= 4000))")
    path = _write(tmp_path, _config(pg_dsn, source, pg_schema2, "append"))
    proc = _cli(pg_dsn, "run", "-q", path)
    assert proc.returncode == 1
    assert _err(proc).endswith(
        "(2 of 4 key ranges are committed: the next run goes on from there)"), _err(proc)
    assert pg_conn.execute(f"SELECT count(*) FROM {d}.ev").fetchone() == (3000,)
    pg_conn.execute(f"ALTER TABLE {d}.ev DROP CONSTRAINT small")
    bench = _bench(_cli(pg_dsn, "run", "-q", path))
    assert (bench["resumed_ranges"], bench["records_written"]) == (2, 3000)
    assert _text_rows(pg_conn, pg_schema2, "ev") == _text_rows(pg_conn, source, "ev")


def test_cuts_of_a_never_analyzed_table_are_computed_by_the_server(pg_conn, pg_schema):
    """Never analyzed, a table's row estimate is unknown: the cut points must still come
    from a sample, with only the cuts fetched (not every key into Python)."""
    s = f'"{pg_schema}"'
    pg_conn.execute(f"CREATE TABLE {s}.big (id uuid PRIMARY KEY, v int) "
                    "WITH (autovacuum_enabled = false)")
    pg_conn.execute(f"INSERT INTO {s}.big SELECT gen_random_uuid(), i "
                    "FROM generate_series(1, 2000000) i")
    assert pg_conn.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
                           (f"{s}.big",)).fetchone()[0] <= 0
    table = describe_table(pg_conn, pg_schema, "big")
    tracemalloc.start()
    try:
        p = key_cuts(pg_conn, table, ("id",), 8)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 << 20, f"{peak:,} bytes"  # all 2M keys as Python text would be ~250 MB
    assert p.count == 8 and p.key_types == ("uuid",)
    sizes = [pg_conn.execute(f"SELECT count(*) FROM {s}.big WHERE {_where(p, i)}").fetchone()[0]
             for i in range(p.count)]
    assert sum(sizes) == 2_000_000 and min(sizes) > 2_000_000 / 8 * 0.8, sizes
