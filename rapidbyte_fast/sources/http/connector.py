"""The ``http`` source connector: REST/JSON APIs as streams (``use: http``).

``describe`` reads the stream's first pages (``infer_pages``, no incremental parameter: the
whole history shows the types best) and returns the inferred schema, with what the reader
needs in ``StreamInfo.extra`` (the stream's config and the key paths of the columns), so
the planner, the destination table and every batch agree on one schema. ``check`` shows
it. An API has no catalog: ``discover`` lists nothing (each configured stream can be
described).
"""
from __future__ import annotations

from typing import ClassVar

import pyarrow as pa

from ...config.base import validate_section
from ...connector import Capabilities, CursorPlan, StreamInfo
from .auth import Masker
from .config import HttpSourceConfig, HttpStream
from .reader import HttpReader, endpoint_url


class HttpConnector:
    """``source: use: http``: one stream per endpoint."""

    name: ClassVar[str] = "http"
    capabilities: ClassVar[Capabilities] = Capabilities(incremental=True)
    config_model: ClassVar[type] = HttpSourceConfig
    #: the model of each ``source.streams[]`` entry (instead of the Postgres StreamConfig)
    stream_model: ClassVar[type] = HttpStream

    def __init__(self, config: HttpSourceConfig | dict, endpoint: str | None = None) -> None:
        # (a plain mapping when the config package left it untyped)
        self.config = validate_section(HttpSourceConfig, config, ("source", "config"))
        #: the base URL, masked (everything a worker needs is in ``config``)
        self.endpoint = endpoint or Masker(self.config)(self.config.base_url)

    def describe(self, stream: HttpStream) -> StreamInfo:
        reader = HttpReader(self.config, stream, StreamInfo(stream.name, pa.schema([])),
                            schema_only=True)
        try:
            schema = reader.open()
        finally:
            reader.close()
        return StreamInfo(
            stream.name, schema, qualified_name=reader.mask(endpoint_url(self.config, stream)),
            extra={"stream": stream, "paths": reader.keys.pairs(),
                   "inferred_pages": reader.inferred_pages})

    def discover(self) -> list[StreamInfo]:
        return []

    def reader(self, info: StreamInfo, cursor: CursorPlan | None = None,
               snapshot: str | None = None, hold_snapshot: bool = False) -> HttpReader:
        return HttpReader(self.config, info.extra["stream"], info, cursor)

    def close(self) -> None:
        """Readers hold their own connections: nothing to release."""
