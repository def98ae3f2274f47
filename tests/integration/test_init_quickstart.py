"""The README's "From zero" path, from a directory with no repository files: `quickstart`
into a private embedded server (and the psql command it prints), then `init` starters that
`check` and `run` as written (rows edited down), run history in the data dir, `state
show|reset`."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

ROWS = 5000
BENCH_PREFIX = "@@BENCH_JSON@@"


@pytest.fixture
def zero(tmp_path):
    """An empty working directory, a private data dir and embedded server root, and the
    interpreter's bin dir on PATH (where `rapidbyte-fast` is installed)."""
    pytest.importorskip("pgserver")
    work = tmp_path / "work"
    work.mkdir()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "RAPIDBYTE_DATA_DIR": str(tmp_path / "data"),
           "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    for var in ("SRC_URL", "DST_URL", "ROWS", "RAPIDBYTE_EMBEDDED_DIR"):
        env.pop(var, None)
    yield work, env
    _cli(work, env, "embedded", "stop")


def _cli(work, env, *args, **extra_env):
    return subprocess.run([sys.executable, "-m", "rapidbyte_fast", *args], capture_output=True,
                          text=True, env={**env, **extra_env}, timeout=300, cwd=work)


def _url(work, env) -> str:
    proc = _cli(work, env, "embedded", "url")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _bench(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith(BENCH_PREFIX)]
    assert len(lines) == 1, stdout
    return json.loads(lines[0][len(BENCH_PREFIX):])


def test_quickstart_prints_a_working_psql_command(zero):
    work, env = zero
    proc = _cli(work, env, "quickstart", "--rows", str(ROWS))
    assert proc.returncode == 0, proc.stderr
    # the embedded server's data is in the data dir
    assert (Path(env["RAPIDBYTE_DATA_DIR"]) / "embedded" / "default" / "PG_VERSION").is_file()
    out = proc.stdout.splitlines()
    assert re.fullmatch(rf"pipeline quickstart: {ROWS:,} rows written \({ROWS:,} read\) in "
                        r"[\d.]+s — [\d,]+ rows/s, [\d,.]+ MB/s \[path=arrow, impl=(c|python)\]",
                        out[0]), out[0]
    bench = _bench(proc.stdout)
    assert (bench["pipeline"], bench["records_written"], bench["path"]) == ("quickstart", ROWS,
                                                                           "arrow")
    assert out[-2] == "look at the table with psql:"
    command = out[-1].strip()
    assert command.endswith('"$(rapidbyte-fast embedded url)" -c \'SELECT event_type, count(*), '
                            "sum(amount) FROM bench_events GROUP BY 1 ORDER BY 1'")
    shown = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env,
                           cwd=work, timeout=120)
    assert shown.returncode == 0, shown.stderr
    sums = {}
    for i in range(1, ROWS + 1):
        kind = ["click", "purchase", "view", "signup", "logout"][i % 5]
        count, total = sums.get(kind, (0, 0))
        sums[kind] = (count + 1, total + 7 * i % 10000)
    for kind, (count, total) in sums.items():
        assert re.search(rf"^ {kind}\s+\|\s+{count}\s+\|\s+{total}$", shown.stdout, re.M), \
            shown.stdout
    assert "(5 rows)" in shown.stdout
    # a second quickstart replaces the table: still ROWS rows
    again = _cli(work, env, "quickstart", "--rows", "100")
    assert again.returncode == 0, again.stderr
    url = _url(work, env)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM public.bench_events").fetchone() == (100,)


def test_init_starters_check_and_run(zero):
    work, env = zero
    url = _url(work, env)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.orders (id bigint PRIMARY KEY, "
                     "amount numeric(10,2) NOT NULL, note text)")
        conn.execute("INSERT INTO public.orders SELECT g, g / 4.0, 'n' || g "
                     "FROM generate_series(1, 300) g")

    made = _cli(work, env, "init")
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[0] == ("wrote pipeline.yaml (postgres → postgres, pipeline "
                                           "pipeline); edit it, then:")
    missing = _cli(work, env, "check", "pipeline.yaml")
    assert missing.returncode == 2
    assert missing.stderr == ("config error: missing environment variables: SRC_URL (used at "
                              "source.config.url), DST_URL (used at destination.config.url)\n")
    both = {"SRC_URL": "embedded", "DST_URL": "embedded"}
    check = _cli(work, env, "check", "pipeline.yaml", **both)
    assert check.returncode == 0, check.stderr
    lines = check.stdout.splitlines()
    assert lines[:6] == [
        "config: ok (pipeline pipeline, 1 stream(s))",
        "source: connected (embedded server 'default' (schema public))",
        "  stream orders: 3 columns, primary key id",
        "    id: bigint → int64",
        "    amount: numeric(10,2) → decimal128(10, 2)",
        "    note: text → string",
    ]
    assert re.fullmatch(r"destination: connected \(embedded server 'default' \(schema raw\), "
                        r"PostgreSQL [\d.]+\), schema raw, write_mode append, load_method copy",
                        lines[6]), lines[6]
    run = _cli(work, env, "run", "pipeline.yaml", **both)
    assert run.returncode == 0, run.stderr
    assert _bench(run.stdout)["records_written"] == 300
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*), sum(amount) FROM raw.orders").fetchone() == (
            300, conn.execute("SELECT sum(amount) FROM public.orders").fetchone()[0])

    # run history lives in the data dir; state show lists it, state reset forgets cursors
    assert (Path(env["RAPIDBYTE_DATA_DIR"]) / "state.db").is_file()
    show = _cli(work, env, "state", "show", "pipeline.yaml", **both)
    assert show.returncode == 0, show.stderr
    assert show.stdout.splitlines()[:3] == ["pipeline pipeline", "cursors: none", "runs:"]
    assert re.search(r" orders: succeeded, 300 rows, ", show.stdout), show.stdout
    reset = _cli(work, env, "state", "reset", "pipeline.yaml", **both)
    assert reset.stdout == "reset 0 cursor(s) and 0 unfinished load(s) of pipeline pipeline\n"

    made = _cli(work, env, "init", "--source", "generate", "events.yaml")
    assert made.returncode == 0, made.stderr
    check = _cli(work, env, "check", "events.yaml", DST_URL="embedded")
    assert check.returncode == 0, check.stderr
    lines = check.stdout.splitlines()
    assert lines[:10] == [
        "config: ok (pipeline events, 1 stream(s))",
        "source: generate",
        "  stream bench_events: 7 columns, primary key id",
        "    id: integer → int32",
        "    event_type: text → string",
        "    user_id: integer → int32",
        "    amount: integer → int32",
        "    is_active: boolean → bool",
        "    payload: text → string",
        "    created_at: timestamp without time zone → timestamp[us]",
    ]
    assert re.fullmatch(r"destination: connected \(embedded server 'default' \(schema public\), "
                        r"PostgreSQL [\d.]+\), schema public, write_mode append, "
                        r"load_method copy", lines[10]), lines[10]
    assert len(lines) == 11
    refused = _cli(work, env, "check", "events.yaml",
                   DST_URL="postgresql://nobody@127.0.0.1:1/none?connect_timeout=3")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: ") and refused.stderr.count("\n") == 1, \
        refused.stderr

    path = work / "events.yaml"
    path.write_text(path.read_text().replace("rows: 1000000 ", f"rows: {ROWS} "))
    quiet = _cli(work, env, "run", "-q", "events.yaml", DST_URL="embedded")
    assert quiet.returncode == 0, quiet.stderr
    assert len(quiet.stdout.splitlines()) == 1
    assert _bench(quiet.stdout)["records_written"] == ROWS
    as_json = _cli(work, env, "run", "--log-format", "json", "events.yaml", DST_URL="embedded")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout.splitlines()[0])["records_written"] == ROWS
    with psycopg.connect(url) as conn:  # append is a log: both runs' rows
        assert conn.execute("SELECT count(*), count(DISTINCT id) FROM public.bench_events"
                            ).fetchone() == (2 * ROWS, ROWS)
