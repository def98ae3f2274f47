"""rapidbyte-fast: move tables between databases as Arrow record batches, at wire speed.

Python API: ``rapidbyte_fast.run("pipeline.yaml")`` returns a ``RunResult``;
``rapidbyte_fast.read(url, table, ...)`` returns a ``pyarrow.RecordBatchReader`` and
``rapidbyte_fast.read_to_parquet(url, table, path, ...)`` streams a table to Parquet.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def run(path_or_config, env=None, on_rows=None, executor=None, follow=None):
    """Run a pipeline (YAML path, dict or PipelineConfig) and return its RunResult;
    ``executor`` ("local", "dask://host:8786", "dask://local") overrides the file's;
    ``follow`` (a ``threading.Event``, as ``run --follow``) keeps its cdc streams applying
    changes until the event is set, then lands the window in flight and returns."""
    from .engine import run as _run

    return _run(path_or_config, env, on_rows, executor, follow)


def __getattr__(name: str) -> Any:
    # read() needs pyarrow; imported on first use so that a passthrough run never loads it
    if name in ("read", "read_to_parquet"):
        from . import arrow_read

        return getattr(arrow_read, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
