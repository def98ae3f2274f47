"""``config`` models of the built-in connectors, and the one place that picks the model of a
connector's ``config`` (``connector_config_model``).
"""
from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, SecretStr, field_validator

from ..errors import EmbeddedError
from ..pgurl import DEFAULT_CONNECT_TIMEOUT, EMBEDDED_URL, URL_FORMS, url_conninfo, url_form_ok
from ..redact import MASK, redact
from .base import ConfigModel, Name
from .problems import Problem, rule
from .sizes import Size


class PostgresConnection(ConfigModel):
    """Where a Postgres database is: exactly one of ``url``, ``host`` or ``embedded``."""

    url: str | None = None
    host: Name | None = None
    port: int = Field(5432, ge=1, le=65535)
    user: Name | None = None
    password: SecretStr | None = None
    database: Name | None = None
    embedded: str | None = None
    schema_name: Name = Field("public", alias="schema")
    connect_timeout: int = Field(DEFAULT_CONNECT_TIMEOUT, ge=0)

    @field_validator("url")
    @classmethod
    def _url_form(cls, url: str | None) -> str | None:
        if url is None or url_form_ok(url):
            return url
        raise ValueError(f"must be {URL_FORMS}")

    @field_validator("embedded")
    @classmethod
    def _embedded_name(cls, name: str | None) -> str | None:
        if name is not None:
            from .. import embedded   # (the embedded server's module: only when one is named)

            try:
                embedded.data_dir(name)
            except EmbeddedError:
                raise ValueError("must be 1-64 letters, digits, '_' or '-'") from None
        return name

    def _rules(self) -> list[Problem]:
        given = [k for k in ("url", "host", "embedded") if getattr(self, k) is not None]
        if len(given) != 1:
            found = " and ".join(given) + " are set" if given else "none is set"
            message = f"set exactly one of url, host or embedded ({found})"
            return [rule("url host embedded", (), message)]
        if self.embedded_name() is None:
            return []
        return [
            rule(f"url embedded {key}", (key,), "not used with an embedded server")
            for key in ("port", "user", "password", "database")
            if key in self.model_fields_set
        ]

    def __repr_args__(self) -> Any:
        # repr() ends up in logs and tracebacks; a URL may carry the password.
        for name, value in super().__repr_args__():
            yield name, redact(value) if name == "url" and value else value

    def embedded_name(self) -> str | None:
        """Name of the embedded server to use (``url: embedded`` means "default"), or None."""
        return "default" if self.url == EMBEDDED_URL else self.embedded

    def conninfo(self) -> str:
        """libpq conninfo for ``url`` or ``host``; ``url`` gets explicit user/password/
        database/port merged in, and ``connect_timeout`` unless the URL sets its own.

        Embedded servers have none until started: resolve ``embedded_name()`` with
        ``rapidbyte_fast.embedded.ensure``.
        """
        if self.embedded_name() is not None:
            raise ValueError("an embedded server has no conninfo before it is started")
        params: dict[str, Any] = {
            "user": self.user,
            "password": self.password.get_secret_value() if self.password else None,
            "dbname": self.database,
        }
        if self.url is None:
            # psycopg costs ~0.3 s to import; only code that connects pays it.
            from psycopg.conninfo import make_conninfo

            return make_conninfo(
                "", host=self.host, port=self.port, connect_timeout=self.connect_timeout,
                **params,
            )
        if "port" in self.model_fields_set:
            params["port"] = self.port
        if "connect_timeout" in self.model_fields_set:
            params["connect_timeout"] = self.connect_timeout
        return url_conninfo(self.url, self.describe(), params, self.connect_timeout)

    def describe(self) -> str:
        """Description for humans, password masked: ``postgresql://app:***@db:5432/shop``."""
        name = self.embedded_name()
        if name is not None:
            where = f"embedded server {name!r}"
        elif self.url is not None:
            where = redact(self.url)
        else:
            login = (self.user or "") + (f":{MASK}" if self.password else "")
            where = f"postgresql://{login}{'@' if login else ''}{self.host}:{self.port}/"
            where += self.database or ""
        return f"{where} (schema {self.schema_name})"


#: ``cdc_window_seconds``' default: off. ``python -m bench cdc --iters 1 --no-apitap`` (1M
#: rows, 800k changes in 10 transactions, alternated, load average 2.3-2.5): 2 s drained in
#: 17.8 and 16.4 s (peak RSS 174 MB: a peek per window, each decoding again the WAL after
#: the slot's restart point), no bound in 14.9 and 13.9 s (one peek, windows of
#: ``WINDOW_TARGET_BYTES``; 185 MB). The byte target already keeps a window's memory and
#: its destination transaction bounded; the time bound is for whoever wants steady windows.
DEFAULT_CDC_WINDOW_SECONDS = 0.0


class PostgresSourceConfig(PostgresConnection):
    """``source.config`` for ``use: postgres``."""

    #: change capture (``sync_mode: cdc``): the publication (created if missing) and the
    #: logical slot (default: derived from the pipeline name)
    publication: Name | None = None
    replication_slot: Name | None = None
    #: one drain window's decoded changes at most (a larger transaction is refused)
    cdc_window_bytes: Size = Field(256 << 20, ge=1 << 20)
    cdc_window_changes: int = Field(1_000_000, ge=1)
    #: a window's reading time to aim for: the next window's change count is sized from the
    #: last one's read rate (0: bounded by bytes and changes only)
    cdc_window_seconds: float = Field(DEFAULT_CDC_WINDOW_SECONDS, ge=0, le=3600)


class PostgresDestinationConfig(PostgresConnection):
    """``destination.config`` for ``use: postgres``."""

    load_method: Literal["copy", "insert"] = "copy"
    passthrough: Literal["auto", "off"] = "auto"
    copy_format: Literal["binary", "text"] = "binary"
    copy_flush_bytes: Size | None = Field(None, ge=1)
    insert_batch_rows: int = Field(5000, ge=1)
    insert_batch_bytes: Size = Field(4 << 20, ge=1)
    on_dependent_views: Literal["recreate", "fail"] = "recreate"
    indexes: Literal["source", "none"] = "source"
    #: false: a replace loads an UNLOGGED table (no WAL), which a server crash empties
    durable: bool = True

    @field_validator("passthrough", mode="before")
    @classmethod
    def _yaml11_off(cls, value: Any) -> Any:
        # YAML 1.1 parsers (the dict may come from one) read a bare `off` as False.
        return "off" if value is False else value


Dataset = Literal["bench_events", "small", "medium", "large"]
DATASETS: tuple[str, ...] = get_args(Dataset)


class GenerateConfig(ConfigModel):
    """``source.config`` for ``use: generate`` (synthetic rows, for benchmarks and demos)."""

    rows: int = Field(1_000_000, ge=0)
    dataset: Dataset | None = None
    start_id: int = 1


_BUILTINS: dict[tuple[str, str], type[ConfigModel]] = {
    ("source", "postgres"): PostgresSourceConfig,
    ("source", "generate"): GenerateConfig,
    ("destination", "postgres"): PostgresDestinationConfig,
}


def connector_config_model(kind: str, use: str) -> type[ConfigModel] | None:
    """The model of ``config`` for the ``kind`` ("source" or "destination") connector named
    by ``use``, or None when ``config`` stays a plain dict (plugins, connectors without a
    model).

    The built-in connectors' models, else the ``config_model`` of a connector installed
    through an entry point (see ``registry``).
    """
    model = _BUILTINS.get((kind, use))
    if model is not None:
        return model
    from .. import registry

    return registry.models(f"{kind}s", use)[0]
