"""The one place exceptions are defined: the RapidbyteError tree.

User errors (bad config, bad data) carry a one-line message that names the thing at fault and
are printed without a traceback. Errors that a retry may cure carry ``retryable = True``.
"""
from __future__ import annotations


class RapidbyteError(Exception):
    """Base of every error this package raises on purpose."""

    retryable = False
    exit_code = 1
    #: SQLSTATE of the database error behind this one, when there is one
    sqlstate: str | None = None

    def with_sqlstate(self, sqlstate: str | None) -> "RapidbyteError":
        """Attach the SQLSTATE of the underlying database error (for retry decisions)."""
        self.sqlstate = sqlstate
        return self


class ConfigError(RapidbyteError):
    """The pipeline configuration is invalid; ``problems`` holds one line per problem."""

    exit_code = 2

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class DataError(RapidbyteError):
    """A value cannot be carried or loaded; the message names stream, column and row."""


class CodecError(RapidbyteError):
    """A compressed inter-stage frame is corrupt or uses an unknown codec."""


class ConnectionFailed(RapidbyteError):
    """A database could not be reached or dropped the connection."""

    retryable = True


class SourceError(RapidbyteError):
    """The source failed while reading (SQL error, missing table, permission)."""


class DestinationError(RapidbyteError):
    """The destination failed while writing (SQL error, permission, type clash)."""


class EmbeddedError(RapidbyteError):
    """The embedded PostgreSQL server could not be started or found."""


class ImplementationError(RapidbyteError):
    """The requested kernel implementation is not available (e.g. compiled modules missing)."""


class PipelineAborted(RapidbyteError):
    """A stage stopped because another stage failed first (never shown to users)."""


class PluginError(RapidbyteError):
    """A WASM plugin failed (trap, exit, timeout, memory cap, guest error, bad ABI or output);
    the message names the plugin and the export it was running."""
