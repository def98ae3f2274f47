"""The PostgreSQL the benchmarks run against: ``--dsn`` or ``RAPIDBYTE_BENCH_DSN``, else a
pgserver instance of the harness's own in the user cache dir (kept between runs so seeded
tables are reused; stopped, not deleted, when the harness exits).
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import platformdirs
import psycopg

DSN_ENV = "RAPIDBYTE_BENCH_DSN"


def server_dir() -> Path:
    return Path(platformdirs.user_cache_dir("rapidbyte-fast")) / "bench-pg"


@contextmanager
def server(dsn: str | None = None) -> Iterator[str]:
    """Yield the DSN to benchmark against, starting the harness's pgserver if none is given."""
    dsn = dsn or os.environ.get(DSN_ENV)
    if dsn:
        yield dsn
        return
    from rapidbyte_fast import embedded

    root = server_dir()
    root.mkdir(parents=True, exist_ok=True)
    print(f"starting pgserver in {root}", file=sys.stderr)
    srv = embedded.handle(root, cleanup_mode="stop")
    try:
        yield srv.get_uri()
    finally:
        srv.cleanup()


def psql_path() -> Path:
    """pgserver's psql (the server binaries and psql come in one package)."""
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"


class Checkpointer:
    """Runs CHECKPOINT before each timed run so no run pays for the previous one's dirty
    pages; says once when the role may not."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.allowed = True

    def __call__(self) -> None:
        if not self.allowed:
            return
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            try:
                conn.execute("CHECKPOINT")
            except psycopg.errors.InsufficientPrivilege:
                self.allowed = False
                print("note: CHECKPOINT not permitted for this role; timings may include "
                      "checkpoints of earlier runs", file=sys.stderr)
