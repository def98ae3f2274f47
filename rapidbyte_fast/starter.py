"""Starter pipelines for a first run without the repository: ``rapidbyte-fast init`` writes a
commented pipeline YAML (every key with its default and what it does, secrets as ``${VAR}``)
and ``rapidbyte-fast quickstart`` runs the README's quickstart pipeline from memory.
"""
from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path
from typing import Any

from .errors import RapidbyteError

SOURCES = ("postgres", "generate", "http")
DESTINATIONS = ("postgres",)
#: rows the quickstart generates (the README's 1M bench_events rows)
QUICKSTART_ROWS = 1_000_000

_HEADER = """\
# {name}: a rapidbyte-fast pipeline written by `rapidbyte-fast init`. Every key shows its
# default; delete the ones you do not change. ${{VAR}} is read from the environment when the
# pipeline loads (${{VAR:-fallback}} has a fallback): keep passwords and tokens there.
# Validate it, connect to both ends and list each stream's columns:
#   rapidbyte-fast check {path}
# Run it (a summary, then one @@BENCH_JSON@@ line):
#   rapidbyte-fast run {path}
version: "1.0"                       # pipeline format; "1.0" is the only one
pipeline: {name}{pad}# names its run history, cursors and state: [A-Za-z0-9_.-]
"""

_STREAM_KEYS = """\
      sync_mode: full_refresh        # full_refresh | incremental (reads cursor > last value)
                                     #   | cdc (postgres: logical replication, see README)
      cursor_field: null             # incremental: column compared with its own type
      tie_breaker_field: null        # incremental: unique column ordering equal cursors (id)
      columns: null                  # list of columns to read (projection); null: all
      partition_key: null            # integer column to cut shards/ranges on; null: the pk
"""

_SOURCES = {
    "postgres": """\
source:
  use: postgres                      # postgres | generate | http, or a .wasm plugin
  config:
    url: ${SRC_URL}                  # postgresql://user:password@host:5432/db, a key=value
                                     #   DSN, or "embedded" (the local embedded server)
    # instead of url, either the parts: host: db.example.com, port: 5432, user: app,
    #   password: ${SRC_PASSWORD}, database: shop
    # or embedded: NAME              # an embedded server by name (started on demand)
    schema: public                   # schema of the stream tables
    connect_timeout: 10              # seconds
    publication: null                # cdc: publication (created); null: rbf_<pipeline>
    replication_slot: null           # cdc: logical slot; null: rbf_<pipeline>
    cdc_window_bytes: 256mb          # cdc: decoded changes a window holds in memory at most
    cdc_window_changes: 1000000      # cdc: changes per window (whole transactions)
    cdc_window_seconds: 0            # cdc: reading time a window aims for; 0: no bound
  streams:
    - name: orders                   # a table, or schema.table
""" + _STREAM_KEYS,
    "generate": """\
source:
  use: generate                      # postgres | generate | http, or a .wasm plugin
  config:
    rows: 1000000                    # rows generated per stream (deterministic values)
    dataset: null                    # bench_events | small | medium | large; null: stream name
    start_id: 1                      # id of the first row
  streams:
    - name: bench_events             # a dataset name (unless config.dataset is set)
""",
    "http": """\
source:
  use: http                          # postgres | generate | http, or a .wasm plugin
  config:
    base_url: https://api.example.com/v1   # stream paths are relative to it
    headers: {}                      # sent with every request, e.g. {Accept: application/json}
    params: {}                       # query parameters of every request
    timeout: 30                      # seconds to connect, and between bytes of a response
    auth:                            # null: none; or {type: basic, username, password},
      type: bearer                   #   {type: api_key, name, value, in: header|query}
      token: ${API_TOKEN}            # "Authorization: Bearer <token>", from the environment
    retry:                           # 429, 5xx, timeouts: backoff with jitter
      max_attempts: 5                # tries per request
      min_delay_secs: 0.5            # first backoff
      max_delay_secs: 30             # backoff cap (a Retry-After header wins)
    rate_limit: null                 # e.g. {requests_per_second: 10}; null: unlimited
    concurrency: 4                   # requests in flight (pages when the total is known)
  streams:
    - name: users                    # the destination table
      path: /users                   # appended to base_url
      method: GET                    # GET | POST
      params: {}                     # this stream's query parameters
      body: null                     # JSON body of a POST
      data_path: data                # dotted path to the record list; "": the whole response
      format: json                   # json | ndjson (one record per line)
      pagination:                    # none | limit_offset | page_number | page_only | cursor
        type: page_number            #   | link_header | next_url
        page_param: page             # ?page=1, ?page=2, ... until an empty page
        start: 1                     # first page number
        total_pages_path: null       # where the page count is: pages are then fetched at once
        page_size_param: null        # e.g. per_page, with page_size
        page_size: null
        max_pages: null              # stop after this many pages; null: the API's end
      schema: {}                     # Postgres types by field, e.g. {amount: numeric(12,2)}
      flatten: false                 # nested objects as parent__child columns (else jsonb)
      infer_pages: 8                 # the column types are inferred from the first pages
      sync_mode: full_refresh        # full_refresh | incremental (set with incremental)
      incremental: null              # {cursor_field: updated_at, param: since,
                                     #   initial_value: null, format: auto}: only newer rows
""",

}

_DESTINATIONS = {
    "postgres": """\
transforms: []                       # in order, each in its own stage thread, e.g.
#  - use: sql                        # DataFusion SQL; the table is `input` (or the stream)
#    config: {query: "SELECT * FROM input WHERE amount > 0"}
#  - use: validate                   # not_null, regex, range, accepted_values, unique
#    config: {rules: [{not_null: [id]}]}
#  - use: transform-filter           # a WASM plugin (`rapidbyte-fast plugins` lists them)
#    config: {column: amount, op: ">", value: 0}
#    limits: {max_memory: 256mb, timeout_seconds: 30}
destination:
  use: postgres                      # postgres, or a .wasm plugin
  config:
    url: ${DST_URL}                  # postgresql://user:password@host:5432/db, a key=value
                                     #   DSN, or "embedded" (the local embedded server)
    # instead of url, either the parts: host: db.example.com, port: 5432, user: app,
    #   password: ${DST_PASSWORD}, database: warehouse
    # or embedded: NAME              # an embedded server by name (started on demand)
    schema: @schema@ # created when missing (default: public)
    connect_timeout: 10              # seconds
    load_method: copy                # copy (COPY FROM STDIN) | insert (multi-row INSERT)
    passthrough: auto                # auto: raw COPY bytes when column types match | off
    copy_format: binary              # binary | text
    copy_flush_bytes: null           # null: adaptive (1mb; 4mb >= 8kb rows; 16mb >= 64kb)
    insert_batch_rows: 5000          # load_method insert: rows per INSERT statement
    insert_batch_bytes: 4mb          # load_method insert: bytes per INSERT statement
    on_dependent_views: recreate     # replace: recreate dependent views, foreign keys | fail
    indexes: source                  # a created table gets the source's indexes | none
    durable: true                    # false: replace loads an UNLOGGED table (no WAL;
                                     #   a server crash empties it)
  write_mode: append                 # append | replace (staging table + swap) | upsert
  primary_key: []                    # key of a created table (upsert needs it); []: the
                                     #   source's key, none for append (a log)
  on_data_error: fail                # fail | skip | dlq: rows refused by validation or by
                                     #   the destination (rbf_dead_letters)
  allow_empty_replace: false         # true: an empty source may empty the table on replace
  deletes: hard                      # cdc replica: hard | soft (_rb_deleted_at, _rb_op)
  schema_evolution:                  # when the source columns drift from an existing table
    new_column: add                  # add | ignore | fail
    removed_column: ignore           # ignore (stays NULL) | fail
    type_change: fail                # fail | coerce (cast by Postgres) | null
    nullability_change: allow        # allow (drops NOT NULL, never on key columns) | fail
""",
}

#: the destination schema each source's starter writes to: a database source's not "public",
#: so a copy within one server (SRC_URL = DST_URL) never writes onto its own tables
_DESTINATION_SCHEMA = {"postgres": "raw", "generate": "public", "http": "public"}

_TAIL = """\
state:
  backend: sqlite                    # run history: sqlite | postgres
  connection: null                   # sqlite file (null: <data dir>/state.db) or postgres URL
resources:
  parallelism: auto                  # shards per full refresh: auto (>= 4 cores) | N
  parallel_streams: auto             # streams at once: auto (one per core, <= 4) | N
  max_memory: 256mb                  # rows in flight; batches and queues are sized to it
  max_inflight_batches: 16           # bounded queues between stages (the budget may lower)
  max_batch_bytes: 64mb              # sizes accept kb/mb/gb
  max_batch_rows: 100000             # a batch ends at max_batch_rows or max_batch_bytes
  compression: none                  # none | lz4 | zstd, between stages
  compression_level: 0               # 0: the codec's default (lz4 1, zstd 3)
  checkpoint_interval_bytes: 256mb   # commit (and resume from) every this much; 0: off
  checkpoint_interval_rows: 0        # also by rows; 0: off
  checkpoint_interval_seconds: 0     # also by time; 0: off
  max_retries: 3                     # transient errors, exponential backoff with jitter
  executor: local                    # local (threads) | dask (pip install "rapidbyte-fast[dask]")
  dask: {scheduler: local}           # local (a LocalCluster here) | tcp://host:8786
  max_connections: {source: null, destination: null}   # per database at once; null: no cap
"""


def pipeline_name(path: str) -> str:
    """A valid pipeline name from a file name (``my orders.yaml`` -> ``my_orders``)."""
    stem = Path(path).stem if path != "-" else ""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_") or "my_pipeline"


def pipeline_yaml(source: str, destination: str, path: str) -> str:
    """The commented starter pipeline for ``source`` → ``destination``, to be saved at
    ``path`` (its file name names the pipeline)."""
    if source not in SOURCES or destination not in DESTINATIONS:
        raise ValueError(f"no starter pipeline for {source!r} -> {destination!r}")
    name = pipeline_name(path)
    pad = " " * max(1, 27 - len(name))  # comments start in column 37
    shown = path if path != "-" else "pipeline.yaml"
    header = _HEADER.format(name=name, pad=pad, path=shown)
    schema = _DESTINATION_SCHEMA[source]
    sink = _DESTINATIONS[destination].replace("@schema@", f"{schema:<24}")
    return header + _SOURCES[source] + sink + _TAIL


def write_pipeline(path: str, source: str, destination: str, force: bool = False) -> Path:
    """Write the starter pipeline to ``path``; never overwrites a file unless ``force``."""
    text = pipeline_yaml(source, destination, path)
    target = Path(path).expanduser()
    try:
        with open(target, "w" if force else "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise RapidbyteError(f"{path} already exists (use --force to overwrite it)") from None
    except OSError as exc:
        raise RapidbyteError(f"cannot write {path}: {exc.strerror}") from None
    return target


def quickstart_pipeline(rows: int = QUICKSTART_ROWS) -> dict[str, Any]:
    """The README's quickstart (examples/quickstart.yaml): ``rows`` generated bench_events
    rows replace ``public.bench_events`` in the default embedded server."""
    return {
        "version": "1.0",
        "pipeline": "quickstart",
        "source": {"use": "generate", "config": {"rows": rows},
                   "streams": [{"name": "bench_events"}]},
        "destination": {"use": "postgres",
                        "config": {"url": "embedded", "schema": "public", "load_method": "copy"},
                        "write_mode": "replace"},
    }


def psql_hint(sql: str) -> str:
    """The shell command that runs ``sql`` with psql on the default embedded server; with
    pgserver's own psql when none is on PATH (as on a fresh machine)."""
    psql = "psql"
    if shutil.which(psql) is None:
        from pgserver._commands import POSTGRES_BIN_PATH

        psql = shlex.quote(str(POSTGRES_BIN_PATH / "psql"))
    return f'{psql} "$(rapidbyte-fast embedded url)" -c {shlex.quote(sql)}'
