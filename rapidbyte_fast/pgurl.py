"""Postgres connection URLs: the forms accepted, and the libpq conninfo of one with settings
merged in. Shared by the connection config models and ``rapidbyte_fast.read()``, which
takes a URL without building a config model (whose import costs a fresh process about
0.25 s: see arrow_read)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

#: the URL that names the default embedded server
EMBEDDED_URL = "embedded"
#: what a URL may be, as an error says it
URL_FORMS = "a postgresql:// URL, a key=value DSN or 'embedded'"
#: seconds to wait for a connection, unless the URL or the config sets its own
DEFAULT_CONNECT_TIMEOUT = 10


def url_form_ok(url: str) -> bool:
    """Whether ``url`` is a ``postgres(ql)://`` URL, ``key=value`` conninfo or ``embedded``
    (libpq itself judges the rest when it is parsed)."""
    scheme, sep, _ = url.partition("://")
    return url == EMBEDDED_URL or bool(sep and scheme in ("postgres", "postgresql")) or (
        not sep and "=" in url)


def url_conninfo(url: str, where: str, params: Mapping[str, Any] | None = None,
                 connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> str:
    """``url`` (not ``embedded``) with ``params`` merged in (None values left out), and
    ``connect_timeout`` unless the URL sets its own (a ``connect_timeout`` in ``params``
    wins over the URL's); with nothing to merge the URL comes back exactly as written.
    ConfigError naming ``where`` when libpq cannot parse it (its message quotes the text,
    which may hold the password)."""
    # psycopg costs ~0.3 s to import; only code that connects pays it.
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    merged = {k: v for k, v in (params or {}).items() if v is not None}
    try:
        if "connect_timeout" not in merged and "connect_timeout" not in conninfo_to_dict(url):
            merged["connect_timeout"] = connect_timeout
        return make_conninfo(url, **merged)
    except ProgrammingError:
        raise ConfigError(f"{where}: not a valid libpq URL or DSN") from None
