"""Plans: every stream is planned before any is run, plans are frozen and picklable,
``run --dry-run`` prints them and writes nothing, and the registry finds built-in,
installed (entry point) and WASM connectors."""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

import rapidbyte_fast
from rapidbyte_fast.config import load_config
from rapidbyte_fast.errors import SourceError
from rapidbyte_fast.plan import make_plans

from .test_cli_e2e import _cli, _err, _pipeline, seeded  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


def _schemas(conn) -> set[str]:
    return {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}


def test_dry_run_prints_plans_and_writes_nothing(pg_dsn, pg_conn, seeded, pg_schema2,
                                                 tmp_path):
    pg_conn.execute(f'DROP SCHEMA "{pg_schema2}"')
    path = _pipeline(tmp_path, seeded, pg_schema2, streams="- name: users\n- name: orders\n")
    before = _schemas(pg_conn)
    proc = _cli(pg_dsn, "run", "--dry-run", path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"stream users ({seeded}.users, ~") and lines[0].endswith(
        f"rows, 4 columns) → {pg_schema2}.users")
    assert "  path: passthrough (identical column types)" in lines
    assert "  write: replace as replace via copy, staging " in proc.stdout
    assert lines[-1] == "dry run: 2 stream(s) planned, nothing written"
    proc = _cli(pg_dsn, "run", "--dry-run", "--json", path)
    plans = json.loads(proc.stdout)
    assert [p["stream"] for p in plans] == ["users", "orders"]
    users = plans[0]
    assert users["columns"][1] == {"name": "name", "pg_type": "text", "arrow_type": "string"}
    assert users["reads"] == {"workers": 1, "ranges": 1, "total_ranges": 1,
                              "resumed_ranges": 0, "partitioning": "none", "snapshot": "none",
                              "predicates": [None]}
    assert users["write"]["strategy"] == "replace" and users["write"]["commit"] == "once"
    assert users["write"]["staging"].startswith(f"{pg_schema2}.users__rbf_stage_")
    assert "postgresql://" not in proc.stdout and pg_dsn not in proc.stdout
    assert _schemas(pg_conn) == before


def test_plans_are_frozen_and_picklable(pg_dsn, seeded, pg_schema2):
    cfg = load_config({
        "version": "1.0", "pipeline": "p",
        "source": {"use": "postgres", "config": {"url": pg_dsn, "schema": seeded},
                   "streams": [{"name": "orders", "sync_mode": "incremental",
                                "cursor_field": "created_at"}]},
        "destination": {"use": "postgres", "config": {"url": pg_dsn, "schema": pg_schema2},
                        "write_mode": "upsert", "primary_key": ["id"]}})
    (plan,) = make_plans(cfg)
    copy = pickle.loads(pickle.dumps(plan))
    assert copy.describe() == plan.describe()
    assert plan.write.strategy == "merge" and plan.write.staging_schema == "pg_temp"
    assert plan.cursor.field == "created_at" and plan.cursor.value is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.path = "arrow"


def test_a_missing_stream_fails_the_run_before_anything_is_written(pg_dsn, pg_conn, seeded,
                                                                   pg_schema2):
    cfg = {"version": "1.0", "pipeline": "p",
           "source": {"use": "postgres", "config": {"url": pg_dsn, "schema": seeded},
                      "streams": [{"name": "users"}, {"name": "no_such_table"}]},
           "destination": {"use": "postgres", "config": {"url": pg_dsn, "schema": pg_schema2},
                           "write_mode": "append"}}
    with pytest.raises(SourceError, match="stream no_such_table: table .* does not exist"):
        rapidbyte_fast.run(cfg)
    assert pg_conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s",
                           (pg_schema2,)).fetchone() == (0,)


def test_plugins_lists_every_connector_with_its_origin(pg_dsn):
    proc = _cli(pg_dsn, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    found = {(e["kind"], e["name"]): e["origin"] for e in json.loads(proc.stdout)["entries"]}
    assert found[("sources", "postgres")] == "built-in"
    assert found[("sources", "generate")] == "built-in"
    assert found[("destinations", "postgres")] == "built-in"
    assert found[("transforms", "validate")] == "built-in"
    assert any(origin.startswith("wasm ") for origin in found.values())


TINY = '''
"""A third-party source: N rows of (id, word)."""
import pyarrow as pa
from pydantic import BaseModel

from rapidbyte_fast.connector import Capabilities, StreamInfo


class TinyConfig(BaseModel):
    rows: int


class TinyReader:
    def __init__(self, rows):
        self.rows, self.timings, self.bytes_read = rows, {"source_tiny_secs": 0.0}, 0

    def open(self):
        return SCHEMA

    def batches(self, max_bytes, max_rows, key_range=None):
        for lo in range(0, self.rows, max_rows):
            ids = list(range(lo, min(lo + max_rows, self.rows)))
            batch = pa.record_batch([pa.array(ids, pa.int64()),
                                     pa.array([f"w{i}" for i in ids])], schema=SCHEMA)
            self.bytes_read += batch.nbytes
            yield batch

    def cancel(self):
        pass

    def close(self):
        pass


SCHEMA = pa.schema([pa.field("id", pa.int64(), False), pa.field("word", pa.utf8())])


class TinySource:
    name = "tiny"
    capabilities = Capabilities()
    config_model = TinyConfig

    def __init__(self, config, endpoint=None):
        self.config, self.endpoint = config, endpoint or ""

    def describe(self, stream):
        return StreamInfo(stream.name, SCHEMA, ("id",), self.config.rows)

    def discover(self):
        return [StreamInfo("words", SCHEMA, ("id",))]

    def reader(self, info, cursor=None, snapshot=None, hold_snapshot=False):
        return TinyReader(self.config.rows)

    def close(self):
        pass
'''


def _tiny_wheel(folder: Path) -> Path:
    """A wheel of the package ``rbf-tiny`` declaring the source ``tiny`` as an entry point
    (built by hand: a wheel is a zip with its metadata)."""
    info = "rbf_tiny-1.0.dist-info"
    files = {
        "rbf_tiny/__init__.py": TINY,
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: rbf-tiny\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
        f"{info}/entry_points.txt": "[rapidbyte_fast.sources]\ntiny = rbf_tiny:TinySource\n",
    }
    path = folder / "rbf_tiny-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for name, text in files.items():
            whl.writestr(name, text)
        whl.writestr(f"{info}/RECORD", "".join(f"{n},,\n" for n in [*files, f"{info}/RECORD"]))
    return path


def test_third_party_source_installed_in_a_venv_runs_end_to_end(pg_dsn, pg_conn, pg_schema,
                                                               tmp_path):
    wheel = _tiny_wheel(tmp_path)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the new venv sees this environment's packages (rapidbyte_fast and its dependencies)
    ours = [p for p in sys.path if p.endswith("site-packages")][0]
    Path(site, "_outer.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                          str(wheel)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(textwrap.dedent(f'''
        version: "1.0"
        pipeline: tiny
        source: {{use: tiny, config: {{rows: 2500}}, streams: [{{name: words}}]}}
        destination:
          use: postgres
          config: {{url: "{pg_dsn}", schema: {pg_schema}}}
          write_mode: replace
        '''))
    listed = subprocess.run([str(python), "-m", "rapidbyte_fast", "plugins"],
                            capture_output=True, text=True)
    assert "  tiny                     entry point rbf-tiny" in listed.stdout, listed.stderr
    proc = subprocess.run([str(python), "-m", "rapidbyte_fast", "run", "-q", str(pipeline)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert pg_conn.execute(f'SELECT count(*), sum(id), max(word) FROM "{pg_schema}".words'
                           ).fetchone() == (2500, sum(range(2500)), "w999")
    bad = tmp_path / "bad.yaml"
    bad.write_text(pipeline.read_text().replace("rows: 2500", "rows: many"))
    proc = subprocess.run([str(python), "-m", "rapidbyte_fast", "run", "-q", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert _err(proc).startswith("config error: source.config.rows: ")


def test_two_runs_writing_one_table_refuse_each_other(pg_dsn, pg_conn, seeded, pg_schema2,
                                                      tmp_path):
    from rapidbyte_fast.destinations.postgres import PostgresDestinationConnector

    path = _pipeline(tmp_path, seeded, pg_schema2, streams="- name: users\n")
    cfg = load_config(path, {"TEST_DSN": pg_dsn})
    holder = PostgresDestinationConnector(cfg.destination, pg_dsn).lock(
        "nightly", "0123456789abcdef", ["users"])
    try:
        proc = _cli(pg_dsn, "run", "-q", path)
    finally:
        holder.close()
    assert proc.returncode == 75
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith(f"error: {pg_schema2}.users is being written by another run "
                          "(pipeline nightly, run 0123456789ab, host ")
    assert f", pid {os.getpid()}, started 20" in err and err.endswith("this run wrote nothing")
    assert pg_conn.execute("SELECT to_regclass(%s)", (f'"{pg_schema2}".users',)
                           ).fetchone() == (None,)
    assert _cli(pg_dsn, "run", "-q", path).returncode == 0  # released with its session


def test_missing_privileges_fail_before_anything_is_written(pg_dsn, pg_conn, seeded,
                                                            pg_schema2):
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from rapidbyte_fast.errors import DestinationError

    role = f"r_{pg_schema2}"
    pg_conn.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        params = {**conninfo_to_dict(pg_dsn), "user": role}
        params.pop("password", None)
        dsn = make_conninfo(**params)
        cfg = {"version": "1.0", "pipeline": "p",
               "source": {"use": "postgres", "config": {"url": dsn, "schema": seeded},
                          "streams": [{"name": "users"}, {"name": "orders"}]},
               "destination": {"use": "postgres", "config": {"url": dsn, "schema": pg_schema2},
                               "write_mode": "append"}}
        pg_conn.execute(f'GRANT USAGE ON SCHEMA "{seeded}" TO "{role}"')
        pg_conn.execute(f'GRANT SELECT ON "{seeded}".users TO "{role}"')
        pg_conn.execute(f'GRANT SELECT (id, status) ON "{seeded}".orders TO "{role}"')
        for grant, problem in [
                ("USAGE", f"may not use schema {pg_schema2} (GRANT USAGE ON SCHEMA)"),
                ("CREATE", f"may not create tables in schema {pg_schema2} (GRANT CREATE ON "
                           "SCHEMA)")]:
            with pytest.raises(DestinationError) as err:
                rapidbyte_fast.run(cfg)
            assert str(err.value) == (f"stream users → {pg_schema2}.users: the destination "
                                      f"role {problem}; nothing was written")
            pg_conn.execute(f'GRANT {grant} ON SCHEMA "{pg_schema2}" TO "{role}"')
        with pytest.raises(SourceError, match=(
                rf"^stream orders: the source role may not read {seeded}.orders \(no SELECT "
                r"on user_id, amount, created_at, notes\)$")):
            rapidbyte_fast.run(cfg)
        assert pg_conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s",
                               (pg_schema2,)).fetchone() == (0,)
        pg_conn.execute(f'GRANT SELECT ON "{seeded}".orders TO "{role}"')
        assert rapidbyte_fast.run(cfg).records_written == 6
    finally:
        pg_conn.execute(f'DROP OWNED BY "{role}"')
        pg_conn.execute(f'DROP ROLE "{role}"')
