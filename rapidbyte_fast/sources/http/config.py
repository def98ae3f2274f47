"""``source.config`` and ``source.streams[]`` of ``use: http``, as frozen pydantic models.

``HttpSourceConfig`` is the connector's ``config_model`` (base URL, auth, retries, rate
limit, concurrency); ``HttpStream`` is its ``stream_model`` (one endpoint: path, pagination,
record path, schema overrides, incremental). ``HttpStream`` also answers the questions the
engine asks every stream (``sync_mode``, ``cursor_field``, ``tie_breaker_field``,
``columns``, ``partition_key``), so it stands wherever a Postgres stream does.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, SecretStr, field_validator, model_validator

from ...config.base import ConfigModel as _Model
from ...config.base import Name
from ...config.problems import Problem, rule
from ...errors import DataError
from ...pgtypes import check_type_sql
from .templates import check_template

Scalar = Union[bool, int, float, str]


# -- auth ----------------------------------------------------------------------------------

class BearerAuth(_Model):
    """``Authorization: Bearer <token>``."""

    type: Literal["bearer"]
    token: SecretStr


class BasicAuth(_Model):
    """HTTP basic authentication."""

    type: Literal["basic"]
    username: str
    password: SecretStr


class ApiKeyAuth(_Model):
    """A key sent as a header or a query parameter named ``name``."""

    type: Literal["api_key"]
    name: Name
    value: SecretStr
    in_: Literal["header", "query"] = Field("header", alias="in")


Auth = Annotated[Union[BearerAuth, BasicAuth, ApiKeyAuth], Field(discriminator="type")]


class RetryConfig(_Model):
    """Retries of 429, 5xx, timeouts and connection errors: exponential backoff with full
    jitter between ``min_delay_secs`` and ``max_delay_secs`` (Retry-After wins)."""

    max_attempts: int = Field(5, ge=1, le=100)
    min_delay_secs: float = Field(0.5, ge=0)
    max_delay_secs: float = Field(30.0, ge=0)

    def _rules(self) -> list[Problem]:
        if self.max_delay_secs < self.min_delay_secs:
            return [rule("min_delay_secs max_delay_secs", ("max_delay_secs",),
                         "must be >= min_delay_secs")]
        return []


class RateLimit(_Model):
    """At most ``requests_per_second`` requests per second, over all of a reader's threads."""

    requests_per_second: float = Field(gt=0)


# -- pagination ----------------------------------------------------------------------------

class _Paging(_Model):
    #: stop after this many pages (None: until the API says the end)
    max_pages: Optional[int] = Field(None, ge=1)


class NoPagination(_Paging):
    """One request."""

    type: Literal["none"]


class LimitOffset(_Paging):
    """``?limit=L&offset=O``; concurrent once ``total_path`` gives the record count."""

    type: Literal["limit_offset"]
    limit_param: Name = "limit"
    offset_param: Name = "offset"
    limit: int = Field(100, ge=1)
    start: int = Field(0, ge=0)
    total_path: Optional[Name] = None


class PageNumber(_Paging):
    """``?page=N``; concurrent once ``total_pages_path`` gives the page count. ``page_only``
    (ApiTap) is this without totals."""

    type: Literal["page_number", "page_only"]
    page_param: Name = "page"
    start: int = Field(1, ge=0)
    total_pages_path: Optional[Name] = None
    page_size_param: Optional[Name] = None
    page_size: Optional[int] = Field(None, ge=1)

    def _rules(self) -> list[Problem]:
        problems = []
        if (self.page_size_param is None) != (self.page_size is None):
            problems.append(rule("page_size_param page_size", ("page_size",),
                                 "page_size_param and page_size go together"))
        if self.type == "page_only" and self.total_pages_path is not None:
            problems.append(rule("type total_pages_path", ("total_pages_path",),
                                 "page_only has no total (use type: page_number)"))
        return problems


class CursorPaging(_Model):
    """``?cursor=<token>``, the token read from each response at ``cursor_path``."""

    type: Literal["cursor"]
    cursor_param: Name
    cursor_path: Name
    max_pages: Optional[int] = Field(None, ge=1)


class LinkHeader(_Paging):
    """The next page is the ``Link: <url>; rel="next"`` response header (RFC 8288)."""

    type: Literal["link_header"]


class NextUrl(_Paging):
    """The next page's URL (absolute, or relative to the page) is in the body."""

    type: Literal["next_url"]
    next_url_path: Name


Pagination = Annotated[
    Union[NoPagination, LimitOffset, PageNumber, CursorPaging, LinkHeader, NextUrl],
    Field(discriminator="type"),
]

#: ``incremental.format``: how the committed cursor is sent as the query parameter.
CURSOR_FORMATS = ("auto", "raw", "iso8601", "unix", "unix_ms", "date")


class Incremental(_Model):
    """Read only records past the committed cursor: its value goes out as query parameter
    ``param`` (``initial_value`` on the first run) and records at or below it are dropped."""

    cursor_field: Name
    param: Name
    initial_value: Optional[str] = None
    format: str = "auto"

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value in CURSOR_FORMATS or "%" in value:
            return value
        raise ValueError(f"must be one of {', '.join(CURSOR_FORMATS)} or a strftime pattern")

    @field_validator("initial_value")
    @classmethod
    def _template(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else check_template(value)


def _check_params(params: dict[str, Scalar]) -> dict[str, Scalar]:
    for value in params.values():
        if isinstance(value, str):
            check_template(value)
    return params


# -- the stream and the source ---------------------------------------------------------------

class HttpStream(_Model):
    """One endpoint of ``use: http`` (an entry of ``source.streams``)."""

    name: Name
    path: str = ""
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, Scalar] = Field(default_factory=dict)
    #: JSON body of a POST
    body: Optional[dict[str, Any]] = None
    #: dotted path to the record list ('' : the response is the list)
    data_path: str = ""
    format: Literal["json", "ndjson"] = "json"
    pagination: Pagination = NoPagination(type="none")
    #: Postgres types by field name, e.g. {amount: "numeric(12,2)"} (fields not seen are added)
    schema_: dict[str, str] = Field(default_factory=dict, alias="schema")
    #: nested objects become columns ``parent__child`` instead of one jsonb column
    flatten: bool = False
    #: the schema is inferred from this many first pages; later pages must fit it
    infer_pages: int = Field(8, ge=1, le=1000)
    incremental: Optional[Incremental] = None
    sync_mode: Literal["full_refresh", "incremental"] = "full_refresh"

    @model_validator(mode="before")
    @classmethod
    def _mode_from_incremental(cls, data: Any) -> Any:
        if isinstance(data, dict) and "sync_mode" not in data and data.get("incremental"):
            return {**data, "sync_mode": "incremental"}
        return data

    @field_validator("params")
    @classmethod
    def _templates(cls, params: dict[str, Scalar]) -> dict[str, Scalar]:
        return _check_params(params)

    @field_validator("schema_")
    @classmethod
    def _types(cls, types: dict[str, str]) -> dict[str, str]:
        for field, pg_type in types.items():
            try:
                check_type_sql(pg_type, f"field {field}")
            except DataError as exc:
                raise ValueError(str(exc)) from None
        return types

    def _rules(self) -> list[Problem]:
        problems = []
        if self.sync_mode == "incremental" and self.incremental is None:
            problems.append(rule("sync_mode incremental", ("incremental",),
                                 "required when sync_mode is incremental "
                                 "({cursor_field, param})"))
        if self.sync_mode == "full_refresh" and self.incremental is not None:
            problems.append(rule("sync_mode incremental", ("sync_mode",),
                                 "is full_refresh but incremental is set"))
        if self.format == "ndjson" and self.data_path:
            problems.append(rule("format data_path", ("data_path",),
                                 "is for format json (ndjson lines are the records)"))
        return problems

    # what the engine asks of every stream
    @property
    def cursor_field(self) -> Optional[str]:
        return self.incremental.cursor_field if self.incremental else None

    @property
    def tie_breaker_field(self) -> None:
        return None

    @property
    def columns(self) -> None:
        return None

    @property
    def partition_key(self) -> None:
        return None


class HttpSourceConfig(_Model):
    """``source.config`` of ``use: http``."""

    base_url: Name
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Scalar] = Field(default_factory=dict)
    #: seconds to connect, and between bytes of a response
    timeout: float = Field(30.0, gt=0)
    auth: Optional[Auth] = None
    retry: RetryConfig = RetryConfig()
    rate_limit: Optional[RateLimit] = None
    #: requests in flight at once (pages of a paginator that knows its total)
    concurrency: int = Field(4, ge=1, le=64)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url

    @field_validator("params")
    @classmethod
    def _templates(cls, params: dict[str, Scalar]) -> dict[str, Scalar]:
        return _check_params(params)
