"""rapidbyte-fast: move tables between databases as Arrow record batches, at wire speed.

Python API: ``rapidbyte_fast.run("pipeline.yaml")`` returns a ``RunResult``.
"""
from __future__ import annotations

__version__ = "0.1.0"


def run(path_or_config, env=None, on_rows=None, executor=None):
    """Run a pipeline (YAML path, dict or PipelineConfig) and return its RunResult;
    ``executor`` ("local", "dask://host:8786", "dask://local") overrides the file's."""
    from .engine import run as _run

    return _run(path_or_config, env, on_rows, executor)
