"""``python -m bench http``: the HTTP source against dlt's rest_api on the same local API.

A threaded JSON API (its own process, so that its memory and CPU are not counted as the
tools') serves N records of 9 fields (two ints, two strings, a float, a bool, an ISO 8601
timestamp string, a list and an object), ``--page-size`` per page, page-number pagination
with ``total_pages`` in every body. Pages are rendered once at start-up so the server's
json.dumps is not timed against the client under test (both tools get the same server).

Each tool runs as a separate process timed from start to exit and loads into its own
schema of the bench Postgres; rows are counted afterwards (the project's modules are
byte-compiled first: ``runner.byte_compile``). Each entry also shows the API server's CPU
while it ran (the server must not be the bound) and, for rapidbyte-fast, its run time after
start-up (``duration_secs``). Entries: ``http.client+json``
(fetch and parse only: the floor of any Python client), ``rapidbyte-fast`` (the pipeline
``source: use: http`` → Postgres; if this build cannot run that pipeline yet, the HTTP →
Arrow read alone, labelled so) and ``dlt rest_api`` when dlt is installed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg

from .database import server
from .runner import TOOL_ROOT

DEFAULT_ROWS = 200_000
DEFAULT_PAGE = 1000
_RESULT = "@@RESULT@@"


# -- the API -----------------------------------------------------------------------------------

def record(i: int) -> dict:
    """Record ``i`` (a pure function of i)."""
    return {
        "id": i,
        "user_id": (i * 7919) % 100_003,
        "name": f"user {i}",
        "email": f"user{i}@example.com",
        "score": round((i % 1000) * 0.731, 3),
        "active": i % 3 != 0,
        "created_at": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:"
                      f"{(i * 7) % 60:02d}Z",
        "tags": [f"t{i % 5}", f"g{i % 7}"],
        "attributes": {"plan": ["free", "pro", "team"][i % 3], "seats": i % 50},
    }


def render_pages(rows: int, page_size: int) -> list[bytes]:
    total = max(1, -(-rows // page_size))
    return [json.dumps({"data": [record(i) for i in range(p * page_size + 1,
                                                          min(rows, (p + 1) * page_size) + 1)],
                        "page": p + 1, "total_pages": total}).encode()
            for p in range(total)]


def serve(rows: int, page_size: int) -> None:
    """Serve the pages until stdin closes; prints ``PORT n`` when ready."""
    pages = render_pages(rows, page_size)
    empty = json.dumps({"data": [], "total_pages": len(pages)}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            n = int(query.get("page", ["1"])[0])
            body = pages[n - 1] if 1 <= n <= len(pages) else empty
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print(f"PORT {httpd.server_address[1]}", flush=True)
    sys.stdin.read()
    httpd.shutdown()


# -- the entries -------------------------------------------------------------------------------

_BASELINE = """
import http.client, json, os, resource, time
host, port = "127.0.0.1", int(os.environ["RBF_PORT"])
conn = http.client.HTTPConnection(host, port)
rows, page, total = 0, 1, 1
while page <= total:
    conn.request("GET", f"/records?page={page}")
    doc = json.loads(conn.getresponse().read())
    rows += len(doc["data"])
    total = doc["total_pages"]
    page += 1
print("@@RESULT@@" + json.dumps({"rows": rows,
      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_READ_ONLY = """
import json, os, resource
from rapidbyte_fast.sources.http import HttpConnector, HttpSourceConfig, HttpStream
cfg = HttpSourceConfig.model_validate(json.loads(os.environ["RBF_CONFIG"]))
stream = HttpStream.model_validate(json.loads(os.environ["RBF_STREAM"]))
conn = HttpConnector(cfg)
info = conn.describe(stream)
reader = conn.reader(info)
reader.open()
rows = sum(b.num_rows for b in reader.batches(64 << 20, 100_000))
reader.close()
print("@@RESULT@@" + json.dumps({"rows": rows,
      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_DLT = """
import json, os, resource
import dlt
from dlt.sources.rest_api import rest_api_source
source = rest_api_source({
    "client": {"base_url": os.environ["RBF_URL"]},
    "resources": [{"name": "records", "write_disposition": "replace", "endpoint": {
        "path": "records", "data_selector": "data",
        "paginator": {"type": "page_number", "base_page": 1, "page_param": "page",
                      "total_path": "total_pages"}}}],
})
from urllib.parse import quote
from psycopg.conninfo import conninfo_to_dict
dsn = conninfo_to_dict(os.environ["RBF_DSN"])
# dlt wants a host name; a socket directory (pgserver's) goes in the query, as libpq allows
host = dsn.get("host", "localhost")
credentials = (f"postgresql://{quote(dsn.get('user', ''))}:{quote(dsn.get('password') or '')}"
               f"@localhost:{dsn.get('port') or 5432}/{dsn.get('dbname', 'postgres')}"
               + (f"?host={quote(host)}" if host.startswith("/") else ""))
pipeline = dlt.pipeline(pipeline_name="bench_http", pipelines_dir=os.environ["RBF_TMP"],
                        destination=dlt.destinations.postgres(credentials=credentials),
                        dataset_name=os.environ["RBF_SCHEMA"])
pipeline.run(source)
print("@@RESULT@@" + json.dumps({"rows": None,
      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


@dataclass
class Outcome:
    name: str
    wall_secs: float = 0.0
    cpu_secs: float = 0.0
    rss_mb: float = 0.0
    rows: int = 0
    note: str = ""
    #: the API server's CPU seconds while the entry ran
    api_cpu_secs: float = 0.0
    #: the tool's own run time after start-up (rapidbyte-fast's duration_secs)
    run_secs: float = 0.0


def _timed(name: str, argv: list[str], env: dict[str, str]) -> tuple[Outcome, str]:
    before = os.times()
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True,
                          cwd=TOOL_ROOT)
    wall = time.perf_counter() - t0
    after = os.times()
    out = Outcome(name, wall, (after.children_user - before.children_user)
                  + (after.children_system - before.children_system))
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        out.note = f"FAILED (exit {proc.returncode}): {tail[:200]}"
    return out, proc.stdout


def _result(out: Outcome, stdout: str) -> None:
    for line in stdout.splitlines():
        if line.startswith(_RESULT):
            data = json.loads(line[len(_RESULT):])
            out.rss_mb = data["rss_mb"]
            out.rows = data["rows"] or 0
        elif line.startswith("@@BENCH_JSON@@"):
            data = json.loads(line[len("@@BENCH_JSON@@"):])
            out.rss_mb = data.get("peak_rss_mb", 0.0)
            out.rows = data.get("records_written", 0)
            out.run_secs = data.get("duration_secs", 0.0)


def _count(dsn: str, schema: str, table: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass(%s)", (f'"{schema}"."{table}"',)).fetchone()
        if row[0] is None:
            return 0
        return conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0]


def _drop(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _ours(url: str, dsn: str, schema: str, concurrency: int, tmp: Path) -> Outcome:
    source = {"base_url": url, "concurrency": concurrency}
    stream = {"name": "records", "path": "/records", "data_path": "data",
              "pagination": {"type": "page_number", "total_pages_path": "total_pages"}}
    pipeline = {"version": "1.0", "pipeline": "bench_http",
                "source": {"use": "http", "config": source, "streams": [stream]},
                "destination": {"use": "postgres", "config": {"url": dsn, "schema": schema},
                                "write_mode": "replace"},
                "state": {"backend": "sqlite", "connection": str(tmp / "state.db")}}
    path = tmp / "pipeline.json"
    path.write_text(json.dumps(pipeline))   # JSON is YAML
    out, stdout = _timed("rapidbyte-fast", [sys.executable, "-m", "rapidbyte_fast", "run", "-q",
                                            str(path)], {})
    if not out.note:
        _result(out, stdout)
        out.rows = _count(dsn, schema, "records")
        return out
    # this build cannot run `use: http` pipelines yet: time the read alone
    read, stdout = _timed("rapidbyte-fast (HTTP → Arrow only)",
                          [sys.executable, "-c", _READ_ONLY],
                          {"RBF_CONFIG": json.dumps(source), "RBF_STREAM": json.dumps(stream)})
    _result(read, stdout)
    read.note = read.note or f"pipeline run failed: {out.note}"
    return read


def _dlt(url: str, dsn: str, schema: str, tmp: Path) -> Outcome:
    try:
        import dlt  # noqa: F401
    except ImportError:
        return Outcome("dlt rest_api", note="skipped: dlt is not installed "
                                            "(pip install 'dlt[postgres]')")
    out, stdout = _timed("dlt rest_api", [sys.executable, "-c", _DLT],
                         {"RBF_URL": url, "RBF_DSN": dsn, "RBF_SCHEMA": schema,
                          "RBF_TMP": str(tmp / "dlt")})
    _result(out, stdout)
    out.rows = _count(dsn, schema, "records")
    return out


def table(outcomes: list[Outcome], rows: int, loads: tuple[str, str] = ("", "")) -> str:
    lines = [(f"HTTP source, {rows:,} records of 9 fields"
              + (f" (load average {loads[0]} before, {loads[1]} after)" if loads[0] else "")),
             (f"{'entry':<36} {'wall s':>8} {'rows/s':>10} {'cpu s':>7} {'rss MB':>7} "
              f"{'api cpu':>7} {'run s':>6} {'run rows/s':>10}  rows")]
    for o in outcomes:
        rate = f"{o.rows / o.wall_secs:,.0f}" if o.wall_secs and o.rows else "-"
        run_s = f"{o.run_secs:.2f}" if o.run_secs else "-"
        run_rate = f"{o.rows / o.run_secs:,.0f}" if o.run_secs and o.rows else "-"
        lines.append(f"{o.name:<36} {o.wall_secs:>8.2f} {rate:>10} {o.cpu_secs:>7.2f} "
                     f"{o.rss_mb:>7.0f} {o.api_cpu_secs:>7.2f} {run_s:>6} {run_rate:>10}  "
                     f"{o.rows:,}" + (f"  {o.note}" if o.note else ""))
    ours = next((o for o in outcomes if o.name == "rapidbyte-fast" and not o.note), None)
    dlt = next((o for o in outcomes if o.name == "dlt rest_api" and not o.note), None)
    if ours and dlt:
        lines.append(f"dlt wall / ours: {dlt.wall_secs / ours.wall_secs:.1f}x")
    lines.append("run s: the process's own run time after start-up (imports, config); "
                 "api cpu: the API server's CPU seconds during the entry")
    return "\n".join(lines)


def _load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of a running process, 0.0 where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _with_api_cpu(pid: int, entry: Callable[[], Outcome]) -> Outcome:
    before = _cpu_of(pid)
    out = entry()
    out.api_cpu_secs = _cpu_of(pid) - before
    return out


def run(args: argparse.Namespace) -> int:
    rows = args.rows or DEFAULT_ROWS
    api = subprocess.Popen([sys.executable, "-m", "bench.http", "serve", str(rows),
                            str(args.page_size)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True, cwd=TOOL_ROOT)
    outcomes: list[Outcome] = []
    load_before = _load_average()
    try:
        port = int(api.stdout.readline().split()[1])
        url = f"http://127.0.0.1:{port}"

        def baseline() -> Outcome:
            out, stdout = _timed("http.client + json (fetch only)",
                                 [sys.executable, "-c", _BASELINE], {"RBF_PORT": str(port)})
            _result(out, stdout)
            return out

        outcomes.append(_with_api_cpu(api.pid, baseline))
        with server(args.dsn) as dsn, tempfile.TemporaryDirectory() as tmp:
            ours_schema, dlt_schema = f"{args.schema_prefix}_http", f"{args.schema_prefix}_dlt"
            try:
                outcomes.append(_with_api_cpu(api.pid, lambda: _ours(
                    url, dsn, ours_schema, args.concurrency, Path(tmp))))
                if not args.skip_dlt:
                    outcomes.append(_with_api_cpu(api.pid, lambda: _dlt(
                        url, dsn, dlt_schema, Path(tmp))))
            finally:
                _drop(dsn, ours_schema)
                _drop(dsn, dlt_schema)
    finally:
        api.stdin.close()
        api.wait(timeout=30)
    print(table(outcomes, rows, (load_before, _load_average())))
    return 1 if any(o.note.startswith("FAILED") for o in outcomes) else 0


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("http", parents=[common], help="HTTP source vs dlt rest_api")
    p.add_argument("--page-size", type=int, default=DEFAULT_PAGE)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--skip-dlt", action="store_true")
    p.set_defaults(fn=run)


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    serve(int(sys.argv[2]), int(sys.argv[3]))
