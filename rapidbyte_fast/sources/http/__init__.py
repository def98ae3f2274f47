"""The HTTP/REST source (``use: http``): JSON and NDJSON APIs, paginated, authenticated,
retried, decoded to Arrow without a Python object per value.

One module per job: ``config`` (the pipeline keys), ``templates`` (date templates in
parameters), ``auth`` (credentials, masking), ``client`` (pooled requests, retries, rate
limit), ``pagination`` (which pages, fetched in order with bounded concurrency), ``decode``
(pages → column sinks through the ``json_decode`` kernel), ``schema`` (inference, widening,
overrides, ``pg_type``), ``cursor`` (incremental), ``reader`` and ``connector``.
"""
from .config import HttpSourceConfig, HttpStream
from .connector import HttpConnector

__all__ = ["HttpConnector", "HttpSourceConfig", "HttpStream"]
