"""Connections to PostgreSQL: one way to open them, with the session settings our SQL
relies on pinned, a name in ``pg_stat_activity``, and a one-line redacted error."""
from __future__ import annotations

import select

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

from . import faults
from .errors import ConnectionLost
from .redact import redact

#: Session settings every statement and literal of ours relies on, sent in the startup
#: packet (no extra round trip) after the user's own ``options``, so a role or database
#: default can't change them: with ``standard_conforming_strings = off`` a text ending in a
#: backslash would let the next INSERT literal be parsed as SQL.
SESSION_OPTIONS = ("-c standard_conforming_strings=on -c DateStyle=ISO,MDY "
                   "-c IntervalStyle=postgres -c TimeZone=UTC -c extra_float_digits=3")

#: TCP keepalives (and a cap on unacknowledged sends), unless the conninfo sets its own: a
#: peer that vanished without closing the connection fails the read or write within about
#: 2 minutes instead of hanging the run (ignored on Unix sockets).
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10",
              "keepalives_count": "6", "tcp_user_timeout": "120000"}

_PERMANENT_CONNECT_ERRORS = ("password authentication failed", "no pg_hba.conf entry",
                             "does not exist", "permission denied",
                             "invalid connection option", "invalid URI")


def connect(conninfo: str, what: str) -> psycopg.Connection:
    """An autocommit connection, or ConnectionLost with a redacted one-line reason."""
    # named in pg_stat_activity (unless the user named the session in the URL)
    extra = ({} if "application_name" in conninfo
             else {"application_name": faults.app_name(what)})
    try:
        given = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        given = {}  # psycopg.connect below reports the malformed conninfo
    user_options = given.get("options") or ""
    extra.update({k: v for k, v in KEEPALIVES.items() if k not in given})
    try:
        # text is carried as UTF-8 bytes as sent, so the session encoding must be UTF8
        return psycopg.connect(conninfo, autocommit=True, client_encoding="UTF8",
                               options=f"{user_options} {SESSION_OPTIONS}".strip(), **extra)
    except (psycopg.OperationalError, psycopg.ProgrammingError) as exc:
        msg = " ".join(str(exc).split())
        # a refused login, a missing database or a setting libpq refuses (ProgrammingError,
        # e.g. connect_timeout=abc) does not get better by retrying
        permanent = isinstance(exc, psycopg.ProgrammingError) or any(
            m in msg for m in _PERMANENT_CONNECT_ERRORS)
        raise ConnectionLost(f"{what}: cannot connect: {redact(msg)}",
                             retryable=not permanent) from None


def resolve_conninfo(pg_cfg) -> str:
    """libpq conninfo of a postgres connection config, starting the embedded server when
    the config names one."""
    name = pg_cfg.embedded_name()
    if name is not None:
        from . import embedded   # (starts a server: only for a config that names one)

        return embedded.ensure(name)
    return pg_cfg.conninfo()


def wait_result(pgconn: pq.PGconn) -> pq.PGresult | None:
    """The next result, waiting for the server in ``select`` (which releases the GIL: libpq's
    own blocking wait in PQgetResult holds it, stalling every other thread for as long as
    the server works, e.g. the whole sort of an ordered incremental read)."""
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            return pgconn.get_result()
        select.select([pgconn.socket], [], [])
