"""The ``http`` source connector: REST/JSON APIs as streams (``use: http``).

``describe`` reads the stream's first pages (``infer_pages``, no incremental parameter: the
whole history shows the types best) and returns the inferred schema, with the key paths
the reader needs in ``StreamInfo.extra``; ``reader`` reads with that schema fixed, so the
planner, the destination table and every batch agree. ``check`` shows that schema.
"""
from __future__ import annotations

from typing import ClassVar

import pyarrow as pa

from ...connector import Capabilities, CursorPlan, StreamInfo
from .config import HttpSourceConfig, HttpStream
from .reader import HttpReader, endpoint_url


class HttpConnector:
    """REST/JSON APIs: one stream per endpoint."""

    name: ClassVar[str] = "http"
    capabilities: ClassVar[Capabilities] = Capabilities(incremental=True)
    config_model: ClassVar[type] = HttpSourceConfig
    #: the model of each ``source.streams[]`` entry (instead of the Postgres StreamConfig)
    stream_model: ClassVar[type] = HttpStream

    def describe(self, config: HttpSourceConfig, stream: HttpStream) -> StreamInfo:
        empty = StreamInfo(stream.name, pa.schema([]))
        reader = HttpReader(config, stream, empty, schema_only=True)
        try:
            schema = reader.open()
        finally:
            reader.close()
        return StreamInfo(
            stream.name, schema, qualified_name=reader.mask(endpoint_url(config, stream)),
            extra={"paths": reader.keys.pairs(), "inferred_pages": reader.inferred_pages})

    def discover(self, config: HttpSourceConfig) -> list[StreamInfo]:
        """An API has no catalog: the streams are the ones the pipeline names (describe
        each of them)."""
        return []

    def reader(self, config: HttpSourceConfig, stream: HttpStream, info: StreamInfo,
               cursor: CursorPlan | None = None, snapshot: str | None = None) -> HttpReader:
        return HttpReader(config, stream, info, cursor)

