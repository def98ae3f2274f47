"""The one place exceptions are defined: the RapidbyteError tree, grouped by stage.

    RapidbyteError
    ├── ConfigError (ValueError)          the pipeline or the environment is wrong (exit 2)
    ├── SetupError (RuntimeError)         what must exist to run does not
    │   ├── EmbeddedError                 the embedded PostgreSQL cannot be started
    │   └── ImplementationError           the requested kernels are not importable
    ├── ConnectionLost (ConnectionError)  a database could not be reached, or dropped us
    ├── LockedError                       another run writes the same table (exit 75)
    ├── SourceError                       the source failed while reading
    ├── DataError (ValueError)            a value cannot be carried or loaded
    ├── CodecError (ValueError)           a compressed inter-stage frame is corrupt
    ├── TransformError                    a transform failed
    │   └── PluginError                   a WASM plugin failed
    └── DestinationError                  the destination failed while writing

User errors carry a one-line message naming the thing at fault and are printed without a
traceback. Every field is set by the constructor. Errors a retry may cure say so in
``retryable`` (or carry a transient SQLSTATE). ``StageStopped`` is not part of the tree: it
is the engine's internal signal that a sibling stage failed first, and is never shown.
"""
from __future__ import annotations

import copy


class RapidbyteError(Exception):
    """Base of every error this package raises on purpose."""

    retryable = False
    exit_code = 1

    def __init__(self, message: str = "", *, sqlstate: str | None = None,
                 retryable: bool | None = None) -> None:
        super().__init__(message)
        #: SQLSTATE of the database error behind this one, when there is one
        self.sqlstate = sqlstate
        if retryable is not None:
            self.retryable = retryable
        #: what the run kept despite the error, said after the message
        self.note = ""

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} {self.note}" if self.note else text

    def noted(self, note: str) -> "RapidbyteError":
        """The same error (class, fields, traceback) with ``note`` after its message."""
        # (not copy.copy: tblib, installed by dask.distributed, makes it share __dict__)
        err = type(self).__new__(type(self))
        err.args = self.args
        err.__dict__.update(self.__dict__)
        err.note = note
        return err.with_traceback(self.__traceback__)


class ConfigError(RapidbyteError, ValueError):
    """The pipeline configuration is invalid; ``problems`` holds one line per problem."""

    exit_code = 2

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class SetupError(RapidbyteError, RuntimeError):
    """Something the run needs on this machine is missing or broken."""


class EmbeddedError(SetupError):
    """The embedded PostgreSQL server could not be started or found."""


class ImplementationError(SetupError, ImportError):
    """The requested kernel implementation is not available (e.g. compiled modules missing)."""


class ConnectionLost(RapidbyteError, ConnectionError):
    """A database could not be reached or dropped the connection."""

    retryable = True


class LockedError(RapidbyteError):
    """Another run is writing the same destination table; the message names it."""

    #: EX_TEMPFAIL: try again later
    exit_code = 75


class SourceError(RapidbyteError):
    """The source failed while reading (SQL error, missing table, permission)."""


class DataError(RapidbyteError, ValueError):
    """A value cannot be carried or loaded; the message names stream, column and row, and
    ``column``/``row``/``detail`` locate it when known."""

    def __init__(self, message: str = "", *, column: str | None = None, row: int | None = None,
                 detail: str = "", sqlstate: str | None = None) -> None:
        super().__init__(message, sqlstate=sqlstate)
        self.column, self.row, self.detail = column, row, detail


class ArrayShapeError(DataError):
    """An array value has more dimensions, or another lower bound, than its column's Arrow
    list can carry; the engine restarts the stream with that column as exact text."""


class CodecError(RapidbyteError, ValueError):
    """A compressed inter-stage frame is corrupt or uses an unknown codec."""


class TransformError(RapidbyteError):
    """A transform failed (other than on a bad value, which is a DataError)."""


class PluginError(TransformError):
    """A WASM plugin failed (trap, exit, timeout, memory cap, guest error, bad ABI or output);
    the message names the plugin and the export it was running."""


class DestinationError(RapidbyteError):
    """The destination failed while writing (SQL error, permission, type clash)."""


class StopRequested(KeyboardInterrupt):
    """A first SIGTERM or SIGINT asked the run to stop: the work in flight is rolled back,
    what is committed stays, and the process exits with ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


class StageStopped(Exception):
    """Internal: a stage stopped because another stage failed first (never shown)."""
