"""Which executor runs a pipeline's plans: ``resources.executor`` (with ``resources.dask``),
or ``run --executor local|dask://host:8786|dask://local``, which wins over the file.

An executor runs one plan at a time (``run``) and is closed after the run (``close``);
the engine does the rest (planning, the run lock, retries, run history).
"""
from __future__ import annotations

import threading
from typing import Any, Protocol

from ..errors import ConfigError
from ..plan import TaskPlan
from ..result import StreamResult
from .pipe import OnRows

_FORMS = "local, dask://local or dask://HOST:PORT"


class Executor(Protocol):
    """Runs plans; ``name`` goes into the run summary."""

    name: str

    def run(self, plan: TaskPlan, on_rows: OnRows | None, run_id: str,
            cancel: threading.Event | None = None, budget: Any = None) -> StreamResult:
        """Copy one stream as planned (``cancel`` set: stop, rolled back) within ``budget``
        (a memory_budget.Budget for this process's share; a cluster's workers resolve
        their own)."""

    def close(self) -> None:
        """Release what the executor holds (a cluster it started, its client)."""


class LocalExecutor:
    """Threads of this process (executors/local.py)."""

    name = "local"

    def run(self, plan: TaskPlan, on_rows: OnRows | None, run_id: str,
            cancel: threading.Event | None = None, budget: Any = None) -> StreamResult:
        from .local import run_task

        return run_task(plan, on_rows, run_id, cancel, budget)

    def close(self) -> None:
        """Nothing to release."""


def parse_executor(text: str) -> tuple[str, str]:
    """``--executor`` as (kind, scheduler): ``local`` → ("local", ""), ``dask://local`` →
    ("dask", "local"), ``dask://host:8786`` → ("dask", "tcp://host:8786"), and
    ``dask://tls://host:8786`` keeps its protocol."""
    if text == "local":
        return "local", ""
    rest = text.removeprefix("dask://")
    if rest == text or not rest:
        raise ConfigError(f"--executor: {text!r} is not one of {_FORMS}")
    if rest == "local" or "://" in rest:
        return "dask", rest
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--executor: {text!r} has no port (e.g. dask://scheduler:8786)")
    return "dask", f"tcp://{rest}"


def open_executor(resources: Any, override: str | None = None,
                  uses: tuple[str, ...] = ()) -> Executor:
    """The executor ``resources`` (or ``override``, an ``--executor`` value) asks for;
    ConfigError in one line when it is Dask and dask is not installed. A cluster starts
    in the background, loading the connectors ``uses`` (source, destination)."""
    kind, scheduler = (parse_executor(override) if override is not None
                       else (resources.executor, resources.dask.scheduler))
    if kind == "local":
        return LocalExecutor()
    from .dask_cluster import DaskExecutor

    return DaskExecutor(scheduler, resources, uses)
