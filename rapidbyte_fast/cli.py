"""Command line: run, check, discover, info and embedded server management.

User errors print one line (``error: ...``) and exit 1 (2 for config errors), never a
traceback; ``-v`` adds debug logging.
"""
from __future__ import annotations

import atexit
import gc
import json
import logging
import sys
import time
from typing import Callable

import click

from . import __version__
from .errors import ConfigError, RapidbyteError
from .starter import DESTINATIONS, QUICKSTART_ROWS, SOURCES

_log = logging.getLogger("rapidbyte_fast")

# At exit the interpreter's last full collections walk every object the libraries made
# (~60k): 0.25-0.3 s of CPU and 0.3-0.5 s of wall per `run` (python -m bench http, 200k
# records, loaded 2-core machine; 0.03-0.05 s with this). Registered first, it runs after
# every other exit handler; the OS reclaims what it leaves.
atexit.register(gc.freeze)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from .redact import redact

        out = {"ts": round(record.created, 3), "level": record.levelname.lower(),
               "msg": redact(record.getMessage())}
        out.update(getattr(record, "fields", {}))
        return json.dumps(out)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from .redact import redact

        return redact(super().format(record))


def _setup_logging(verbose: int, quiet: bool, fmt: str) -> None:
    level = logging.DEBUG if verbose else (logging.WARNING if quiet else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _RedactingFormatter(
        "%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("rapidbyte_fast")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _fail(exc: BaseException) -> None:
    from .redact import redact

    if isinstance(exc, ConfigError):
        for line in exc.problems:
            click.echo(f"config error: {redact(line)}", err=True)
        sys.exit(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        click.echo("stopped: the work in flight was rolled back; committed ranges, "
                   "checkpoints and streams are kept", err=True)
        sys.exit(128 + getattr(exc, "signum", 2))
    if isinstance(exc, RapidbyteError):
        click.echo(f"error: {redact(' '.join(str(exc).split()))}", err=True)
        sys.exit(exc.exit_code)
    raise exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rapidbyte-fast")
def main() -> None:
    """rapidbyte-fast: move tables between databases as Arrow record batches."""


def _load(path: str):
    from .config import load_config

    return load_config(path)


class _Progress:
    """Rich progress bar on a TTY, periodic plain log lines otherwise."""

    def __init__(self, enabled: bool, fmt: str) -> None:
        self.rows = self.bytes = 0
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.bar = None
        self.fmt = fmt
        self.enabled = enabled
        if enabled and sys.stderr.isatty() and fmt == "text":
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                TimeElapsedColumn(), transient=True)
            self.task = self.bar.add_task("starting", total=None)
            self.bar.start()

    def __call__(self, rows: int, nbytes: int) -> None:
        self.rows += rows
        self.bytes += nbytes
        now = time.perf_counter()
        el = max(now - self.t0, 1e-9)
        text = (f"{self.rows:,} rows, {self.rows / el:,.0f} rows/s, "
                f"{self.bytes / el / 1e6:,.1f} MB/s")
        if self.bar is not None:
            self.bar.update(self.task, description=text)
        elif self.enabled and now - self.last >= 5.0:
            self.last = now
            _log.info("progress: %s", text, extra={"fields": {
                "rows": self.rows, "rows_per_s": round(self.rows / el), "bytes": self.bytes}})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@main.command()
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the @@BENCH_JSON@@ line.")
@click.option("-v", "--verbose", count=True, help="Debug logging.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Format of log lines on stderr.")
@click.option("--dry-run", is_flag=True,
              help="Plan every stream against the live source and destination, print the "
                   "plans and write nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: the plans as JSON.")
@click.option("--schedule", metavar="CRON", default=None,
              help="Run on a cron schedule (local time) until SIGTERM, one run at a time; "
                   "SIGTERM stops after the run in flight.")
@click.option("--executor", metavar="EXECUTOR", default=None,
              help="Where the streams run, over resources.executor: local, dask://local (a "
                   "LocalCluster sized to this machine) or dask://HOST:PORT (a scheduler).")
@click.option("--follow", is_flag=True,
              help="Keep applying the changes of the cdc streams (every stream must be cdc) "
                   "until SIGTERM/SIGINT: the first lands the window in flight and exits 0, "
                   "a second rolls it back.")
def run(pipeline: str, quiet: bool, verbose: int, log_format: str, dry_run: bool,
        as_json: bool, schedule: str | None, executor: str | None, follow: bool) -> None:
    """Run the pipeline described by PIPELINE (a YAML file)."""
    _setup_logging(verbose, quiet, log_format)
    if follow and schedule is not None:
        raise click.UsageError("--follow runs until stopped: it cannot run on --schedule")
    if dry_run:
        _dry_run(pipeline, as_json)
        return
    from .engine import run_pipeline

    if schedule is not None:
        _run_on_schedule(pipeline, schedule, quiet, executor)
        return

    import threading

    until = threading.Event() if follow else None
    _stop_on_signals(until)
    progress = _Progress(not quiet and not follow, log_format)
    try:
        cfg = _load(pipeline)
        if executor is not None:
            from .executors.choice import parse_executor

            parse_executor(executor)
        result = run_pipeline(cfg, progress, executor, until)
    except BaseException as exc:
        progress.close()
        _fail(exc)
        return
    progress.close()
    if log_format == "json":
        click.echo(json.dumps(result.to_dict()))
    elif not quiet:
        click.echo(result.summary())
    click.echo(result.bench_line())


def _run_on_schedule(pipeline: str, expression: str, quiet: bool,
                     executor: str | None) -> None:
    from .engine import run_pipeline
    from .schedule import check_schedule, run_on_schedule

    try:
        check_schedule(expression)
        _load(pipeline)
        if executor is not None:
            from .executors.choice import parse_executor

            parse_executor(executor)
    except BaseException as exc:
        _fail(exc)
        return

    def once():
        result = run_pipeline(_load(pipeline), None, executor)
        if not quiet:
            click.echo(result.summary())
        click.echo(result.bench_line())
        return result

    sys.exit(1 if run_on_schedule(expression, once) else 0)


def _stop_on_signals(follow=None) -> None:
    """The first SIGTERM or SIGINT stops the run gracefully (StopRequested in the main
    thread: the work in flight rolls back, the rest stays committed); a second one ends
    the process at once. With ``follow`` (a ``run --follow`` Event), the first one sets it
    instead (the window in flight lands, the run ends with its summary) and the next ones
    act as above."""
    import os
    import signal

    from .errors import StopRequested

    def handler(signum: int, frame) -> None:
        if follow is not None and not follow.is_set():
            follow.set()
            _log.warning("signal %d: stopping after the window in flight is applied (a "
                         "second signal stops at once, rolling it back)", signum)
            return
        if getattr(handler, "fired", False):
            os._exit(128 + signum)
        handler.fired = True  # type: ignore[attr-defined]
        _log.warning("stopping on signal %d (a second one stops at once)", signum)
        raise StopRequested(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def _dry_run(pipeline: str, as_json: bool) -> None:
    from .plan import make_plans

    try:
        plans = [p.describe() for p in make_plans(_load(pipeline))]
    except BaseException as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(plans, indent=1, default=str))
        return
    for p in plans:
        r, w = p["reads"], p["write"]
        click.echo(f"stream {p['stream']} ({p['source']['name']}, ~{p['source']['est_rows']:,} "
                   f"rows, {len(p['columns'])} columns) → {w['target']}")
        click.echo(f"  path: {p['path']} ({p['path_reason']})")
        click.echo(f"  reads: {r['workers']} worker(s) over {r['ranges']} of "
                   f"{r['total_ranges']} range(s), partitioning {r['partitioning']}, "
                   f"snapshot {r['snapshot']}")
        click.echo(f"  write: {w['write_mode']} as {w['strategy']} via {w['load_method']}"
                   f"{', staging ' + w['staging'] if w['staging'] else ''}, commit "
                   f"{w['commit']}{', resumable' if w['resumable'] else ''}")
        if p["cursor"]:
            click.echo(f"  cursor: {p['cursor']['field']} after {p['cursor']['after']}")
    click.echo(f"dry run: {len(plans)} stream(s) planned, nothing written")


@main.command()
@click.argument("pipeline", type=click.Path(dir_okay=False))
def check(pipeline: str) -> None:
    """Validate PIPELINE, connect to source and destination, list each stream's columns."""
    _setup_logging(0, True, "text")
    from .checks import check_pipeline

    try:
        for line in check_pipeline(_load(pipeline)):
            click.echo(line)
    except BaseException as exc:
        _fail(exc)


@main.command()
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def discover(pipeline: str, as_json: bool) -> None:
    """List the streams (tables) of PIPELINE's source and their columns."""
    _setup_logging(0, True, "text")
    from .checks import discover_source

    try:
        tables = discover_source(_load(pipeline))
    except BaseException as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(tables, indent=2))
        return
    for t in tables:
        click.echo(f"{t['stream']}  ({len(t['columns'])} columns"
                   f"{', primary key ' + ','.join(t['primary_key']) if t['primary_key'] else ''})")
        for c in t["columns"]:
            click.echo(f"    {c['name']:<32} {c['pg_type']:<32} {c['arrow_type']}")


@main.command()
def info() -> None:
    """Version, active kernel implementation and dependency versions."""
    from . import _impl, embedded

    click.echo(f"rapidbyte-fast {__version__}")
    impl = _impl.IMPL + ("" if _impl.IMPL == "c" else f" ({_impl.FALLBACK_REASON})")
    click.echo(f"implementation: {impl}")
    click.echo(f"python: {sys.version.split()[0]}")
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("pyarrow", "psycopg", "numpy", "pydantic", "zstandard", "lz4", "pgserver"):
        try:
            click.echo(f"{dist}: {version(dist)}")
        except PackageNotFoundError:
            click.echo(f"{dist}: not installed")
    try:
        import psycopg

        click.echo(f"libpq: {psycopg.pq.version()} ({psycopg.pq.__impl__})")
    except Exception:  # informational only
        pass
    click.echo(f"embedded servers: {embedded.root_dir()}")


@main.group("state")
def state_group() -> None:
    """Incremental cursors, unfinished loads and run history of a pipeline."""


def _state_targets(path: str):
    from .pgconn import resolve_conninfo

    cfg = _load(path)
    return cfg, resolve_conninfo(cfg.destination.config), cfg.destination.config.schema_name


#: ``state show`` warns when a cdc slot makes the source keep this much WAL (a stopped
#: pipeline's slot fills the source's disk)
SLOT_RETAINED_WARN_BYTES = 1 << 30


def _cdc_slots(cfg, stream: str | None = None):
    """(source connector, [(stream, slot)]) of the pipeline's cdc streams (or one)."""
    from . import registry

    cdc = [s.name for s in cfg.source.streams if getattr(s, "sync_mode", "") == "cdc"]
    if not cdc:
        return None, []
    src = registry.source(cfg.source.use)(cfg.source.config)
    return src, [(s, src.slot_of(cfg.pipeline, s, len(cdc) > 1)) for s in cdc
                 if stream is None or s == stream]


@state_group.command("show")
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("--limit", default=10, show_default=True, help="Run history entries to show.")
def state_show(pipeline: str, limit: int) -> None:
    """Cursors and unfinished loads (stored in the destination) and recent runs of
    PIPELINE."""
    from datetime import datetime, timezone

    from .pgconn import connect
    from .state import cursors, progress
    from .state.history import RunHistory

    try:
        cfg, conninfo, schema = _state_targets(pipeline)
        with connect(conninfo, "destination") as conn:
            rows = cursors.show(conn, schema, cfg.pipeline)
            loads = progress.show(conn, schema, cfg.pipeline)
        runs = RunHistory(cfg.state.backend, cfg.state.resolved_connection()).recent(
            cfg.pipeline, limit)
        src, slots = _cdc_slots(cfg)
        try:
            slots = [(stream, slot, src.slot_status(slot)) for stream, slot in slots]
        finally:
            if src is not None:
                src.close()
    except BaseException as exc:
        _fail(exc)
        return
    click.echo(f"pipeline {cfg.pipeline}")
    for stream, slot, st in slots:
        if st is None:
            click.echo(f"  {stream}: slot {slot} does not exist (the next run bootstraps "
                       "when the stream has no position)")
            continue
        click.echo(f"  {stream}: slot {slot}, wal_status {st.wal_status}, lag "
                   f"{st.lag_bytes or 0:,} bytes, retains {st.retained_bytes or 0:,} bytes of WAL"
                   + (" — WARNING: run the pipeline, or reset the stream, before the source's "
                      "disk fills" if (st.retained_bytes or 0) >= SLOT_RETAINED_WARN_BYTES
                      else ""))
    click.echo("cursors:" if rows else "cursors: none")
    for stream, value, tie, updated in rows:
        click.echo(f"  {stream}: {value}" + (f" (tie {tie})" if tie is not None else "")
                   + f"  updated {updated:%Y-%m-%d %H:%M:%S%z}")
    if loads:
        click.echo("unfinished loads (the next run resumes them):")
    for stream, mode, done, ranges, rows_done, updated in loads:
        click.echo(f"  {stream}: {mode}, {done} of {ranges} key ranges committed "
                   f"({rows_done:,} rows)  updated {updated:%Y-%m-%d %H:%M:%S%z}")
    click.echo("runs:" if runs else "runs: none")
    for r in runs:
        when = datetime.fromtimestamp(r["started_at"], timezone.utc)
        secs = f"{r['finished_at'] - r['started_at']:.2f}s" if r["finished_at"] else "-"
        line = (f"  {when:%Y-%m-%d %H:%M:%S}Z {r['run_id'][:8]} {r['stream']}: {r['status']}, "
                f"{r['records'] or 0:,} rows, {secs}")
        click.echo(line + (f" — {r['error']}" if r["error"] else ""))


@state_group.command("reset")
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("--stream", default=None, help="Only this stream.")
def state_reset(pipeline: str, stream: str | None) -> None:
    """Forget the cursors and unfinished loads of PIPELINE: the next incremental run reads
    from the start, an interrupted full refresh starts over, and a cdc stream's slot is
    dropped (its next run bootstraps again)."""
    from .pgconn import connect
    from .state import cursors, progress

    try:
        cfg, conninfo, schema = _state_targets(pipeline)
        with connect(conninfo, "destination") as conn, conn.transaction():
            n = cursors.reset(conn, schema, cfg.pipeline, stream)
            loads = progress.reset(conn, schema, cfg.pipeline, stream)
        src, slots = _cdc_slots(cfg, stream)
        try:
            dropped = [slot for _, slot in slots if src.drop_slot(slot)]
        finally:
            if src is not None:
                src.close()
    except BaseException as exc:
        _fail(exc)
        return
    for slot in dropped:
        click.echo(f"dropped replication slot {slot}")
    click.echo(f"reset {n} cursor(s) and {loads} unfinished load(s) of pipeline "
               f"{cfg.pipeline}" + (f" stream {stream}" if stream else ""))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """Every source, destination and transform `use:` can name, with its origin: built-in,
    an installed package (entry point), or a WASM plugin."""
    from .plugins.discovery import list_plugins, plugin_dirs
    from .registry import entries

    found = entries()
    wasm = list_plugins()
    if as_json:
        click.echo(json.dumps({"entries": [e.__dict__ for e in found], "plugins": wasm},
                              default=str, indent=1))
        return
    for kind in ("sources", "destinations", "transforms"):
        click.echo(f"{kind}:")
        for e in (e for e in found if e.kind == kind):
            click.echo(f"  {e.name:<24} {e.origin}")
    click.echo("plugin dirs: " + ", ".join(str(d) for d in plugin_dirs()))
    for p in wasm:
        if "error" in p:
            click.echo(f"  {p['path']}: unusable ({p['error']})")
            continue
        click.echo(f"  {p['name']} {p['version']} [{p['kind']}] {p['path']}"
                   + (" (shadowed)" if p.get("shadowed") else ""))
        if p.get("description"):
            click.echo(f"      {p['description']}")
        if p.get("config_schema"):
            click.echo(f"      config: {json.dumps(p['config_schema'])}")


@main.group("dlq")
def dlq_group() -> None:
    """Rows rejected by validation or refused by the destination (on_data_error: dlq)."""


@dlq_group.command("list")
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def dlq_list(pipeline: str, limit: int, as_json: bool) -> None:
    """The newest dead letters of PIPELINE, stored in its destination schema."""
    from .state.dlq import list_dead_letters

    try:
        cfg, conninfo, schema = _state_targets(pipeline)
        rows = list_dead_letters(conninfo, schema, cfg.pipeline, limit)
    except BaseException as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=1))
        return
    click.echo(f"{len(rows)} dead letter(s) of pipeline {cfg.pipeline}" + (":" if rows else ""))
    for r in rows:
        click.echo(f"  #{r['id']} {r['stream']} [{r['category']}] "
                   f"{'; '.join(r['errors'])}: {json.dumps(r['record'])}")


@main.group("embedded")
def embedded_group() -> None:
    """Manage embedded PostgreSQL servers (pgserver)."""


def _embedded(fn: Callable[[str], None]) -> Callable[[str], None]:
    def wrapper(name: str) -> None:
        try:
            fn(name)
        except BaseException as exc:
            _fail(exc)
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@embedded_group.command("url")
@click.argument("name", default="default")
@click.option("--logical", is_flag=True,
              help="With wal_level = logical (a cdc source), restarting it if needed.")
def embedded_url(name: str, logical: bool) -> None:
    """Start NAME if needed and print its libpq URL (for psql)."""
    from . import embedded

    try:
        click.echo(embedded.ensure(name, logical=logical))
    except BaseException as exc:
        _fail(exc)


@embedded_group.command("status")
@click.argument("name", default="default")
@_embedded
def embedded_status(name: str) -> None:
    """Show whether NAME is running, its data directory and URL."""
    from . import embedded

    st = embedded.status(name)
    click.echo(f"{st.name}: {'running' if st.running else 'stopped'}"
               f"{f' (pid {st.pid})' if st.pid else ''}")
    click.echo(f"  data: {st.data_dir}")
    if st.url:
        click.echo(f"  url:  {st.url}")


@embedded_group.command("stop")
@click.argument("name", default="default")
@_embedded
def embedded_stop(name: str) -> None:
    """Stop NAME."""
    from . import embedded

    click.echo(f"{name}: {'stopped' if embedded.stop(name) else 'was not running'}")




@main.command()
@click.argument("path", default="pipeline.yaml",
                type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--source", type=click.Choice(SOURCES), default="postgres", show_default=True,
              help="Where rows come from.")
@click.option("--destination", type=click.Choice(DESTINATIONS), default="postgres",
              show_default=True, help="Where rows go.")
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
def init(path: str, source: str, destination: str, force: bool) -> None:
    """Write a starter pipeline to PATH ('-' prints it): every key with its default and a
    comment, secrets as ${VAR}."""
    from . import starter

    if path == "-":
        click.echo(starter.pipeline_yaml(source, destination, path), nl=False)
        return
    try:
        starter.write_pipeline(path, source, destination, force)
    except BaseException as exc:
        _fail(exc)
        return
    click.echo(f"wrote {path} ({source} → {destination}, pipeline "
               f"{starter.pipeline_name(path)}); edit it, then:")
    click.echo(f"  rapidbyte-fast check {path}")
    click.echo(f"  rapidbyte-fast run {path}")


@main.command()
@click.option("--rows", type=click.IntRange(min=0), default=QUICKSTART_ROWS,
              show_default=True, help="bench_events rows to generate.")
def quickstart(rows: int) -> None:
    """Load generated bench_events rows into the embedded PostgreSQL (public.bench_events,
    replaced) with no pipeline file, then print the psql command to look at them."""
    _setup_logging(0, False, "text")
    from .config import load_config
    from .engine import run_pipeline
    from .starter import psql_hint, quickstart_pipeline

    progress = _Progress(True, "text")
    try:
        result = run_pipeline(load_config(quickstart_pipeline(rows)), progress)
    except BaseException as exc:
        progress.close()
        _fail(exc)
        return
    progress.close()
    click.echo(result.summary())
    click.echo(result.bench_line())
    click.echo("look at the table with psql:")
    click.echo("  " + psql_hint("SELECT event_type, count(*), sum(amount) FROM bench_events "
                                "GROUP BY 1 ORDER BY 1"))


if __name__ == "__main__":
    main()
