"""Embedded PostgreSQL servers (pgserver: real PG 16 binaries from PyPI), one per name.

Data lives in the user data dir (``rapidbyte-fast/embedded/<name>``); a server is started on
first use and left running so later runs (and ``psql "$(rapidbyte-fast embedded url)"``)
reuse it; ``stop`` shuts it down.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import EmbeddedError
from . import paths

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: How long a started server may take to accept connections. pgserver's pg_ctl gives up
#: after 10 s, but a server that was killed replays its WAL first: the bench's server,
#: killed with the machine after 10M-row loads, took 15 s here.
READY_WAIT_SECS = 300.0


def root_dir() -> Path:
    """Folder holding every embedded server's data (RAPIDBYTE_EMBEDDED_DIR overrides)."""
    override = os.environ.get("RAPIDBYTE_EMBEDDED_DIR")
    if override:
        return Path(override).expanduser()
    return paths.data_dir() / "embedded"


def data_dir(name: str) -> Path:
    """Data directory of the embedded server ``name``."""
    if not _NAME.match(name):
        raise EmbeddedError(
            f"embedded server name {name!r} is invalid: use letters, digits, '_' or '-'"
        )
    return root_dir() / name


def _pgserver():
    try:
        import pgserver
    except ImportError as exc:
        raise EmbeddedError(
            "embedded PostgreSQL needs the 'pgserver' package: pip install 'rapidbyte-fast[embedded]'"
        ) from exc
    return pgserver


def ensure(name: str = "default", logical: bool = False) -> str:
    """Start (or find running) the embedded server ``name``; return its libpq URL.
    ``logical``: with ``wal_level = logical`` (change capture), restarting it if needed."""
    path = data_dir(name)
    path.mkdir(parents=True, exist_ok=True)
    try:
        server = handle(path)
        if logical:
            set_logical(server, path)
    except Exception as exc:  # pgserver raises plain exceptions from pg_ctl/initdb
        raise EmbeddedError(
            f"embedded server {name!r} failed to start in {path}: {exc} (see {path / 'log'})"
        ) from exc
    return server.get_uri()


def handle(path: Path, cleanup_mode: str | None = None):
    """pgserver's handle on the server of data dir ``path``, started if need be (see
    ``pgserver.get_server`` for ``cleanup_mode``); a start that outlasts pg_ctl's wait
    (crash recovery) is waited for up to ``READY_WAIT_SECS``."""
    pgserver = _pgserver()
    try:
        return pgserver.get_server(path, cleanup_mode=cleanup_mode)
    except subprocess.TimeoutExpired:
        deadline = time.monotonic() + READY_WAIT_SECS
        while (state := _server_state(path)) == "starting" and time.monotonic() < deadline:
            time.sleep(0.5)
        if state != "ready":
            raise EmbeddedError(f"it did not accept connections within "
                                f"{READY_WAIT_SECS:.0f} s") from None
    from pgserver.postgres_server import PostgresServer

    # the handle of the start that timed out is cached half-made: a new one finds it running
    PostgresServer._instances.pop(path.expanduser().resolve(), None)
    return pgserver.get_server(path, cleanup_mode=cleanup_mode)


def _server_state(path: Path) -> str:
    """``ready``, ``starting`` (still recovering), or ``down`` (no postmaster runs)."""
    info = _postmaster_info(path)
    if not (info and info.is_running()):
        return "down"
    return "ready" if info.status == "ready" else "starting"


def set_logical(server, path: Path) -> None:
    """Give a running pgserver ``server`` (data in ``path``) ``wal_level = logical`` and room
    for slots; a restart, unless it has them already."""
    import psycopg
    from pgserver._commands import pg_ctl
    from pgserver.utils import PostmasterInfo

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        if conn.execute("SHOW wal_level").fetchone()[0] == "logical":
            return
        conn.execute("ALTER SYSTEM SET wal_level = logical")
        conn.execute("ALTER SYSTEM SET max_replication_slots = 20")
        conn.execute("ALTER SYSTEM SET max_wal_senders = 20")
    # pg_ctl restart keeps the socket options of the first start (postmaster.opts)
    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=path, user=server.system_user, timeout=60)
    server._postmaster_info = PostmasterInfo.read_from_pgdata(path)  # the new postmaster


@dataclass(frozen=True)
class EmbeddedStatus:
    """What ``rapidbyte-fast embedded status`` shows."""

    name: str
    data_dir: Path
    running: bool
    pid: int | None
    url: str | None


def status(name: str = "default") -> EmbeddedStatus:
    """State of the embedded server ``name`` without starting it."""
    path = data_dir(name)
    info = _postmaster_info(path)
    running = bool(info and info.is_running())
    return EmbeddedStatus(
        name=name, data_dir=path, running=running,
        pid=info.pid if running else None,
        url=info.get_uri() if running else None,
    )


def stop(name: str = "default") -> bool:
    """Stop the embedded server ``name``; False when it was not running."""
    path = data_dir(name)
    info = _postmaster_info(path)
    if not (info and info.is_running()):
        return False
    from pgserver._commands import POSTGRES_BIN_PATH

    cmd = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(path), "-w", "stop", "-m", "fast"]
    if os.name == "posix" and os.geteuid() == 0:
        # pgserver runs the server as the unprivileged 'pgserver' user when we are root
        cmd = ["su", "pgserver", "-s", "/bin/sh", "-c", shlex.join(cmd)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EmbeddedError(f"could not stop embedded server {name!r}: {proc.stderr.strip()}")
    return True


def names() -> list[str]:
    """Names of the embedded servers that have a data directory."""
    root = root_dir()
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _postmaster_info(path: Path):
    if not path.is_dir():
        return None
    from pgserver.utils import PostmasterInfo

    return PostmasterInfo.read_from_pgdata(path)
