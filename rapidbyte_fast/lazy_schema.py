"""A stream's columns without pyarrow: what planning and a passthrough load read of an Arrow
schema (names, nullability, field and schema metadata), with the Arrow schema itself built
only when something asks for it (``arrow``).

A passthrough run never decodes a value, so it never needs an Arrow type: carrying the
columns this way keeps pyarrow (and numpy, and pandas when installed) out of its process.
It quacks like the part of ``pyarrow.Schema`` the planner and the destination's DDL use;
the planner hands the Arrow path a real ``pyarrow.Schema`` (``arrow``). Frozen and
picklable (the Dask executor ships plans).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class LazyField:
    """One column: the ``pyarrow.Field`` attributes a passthrough load reads."""

    name: str
    nullable: bool = True
    metadata: dict[bytes, bytes] | None = None

    def with_metadata(self, metadata: dict[bytes, bytes]) -> LazyField:
        return LazyField(self.name, self.nullable, dict(metadata))


@dataclass(frozen=True, eq=False)
class LazySchema:
    """Columns in order, schema metadata, and how to build their Arrow types (``build``,
    picklable: the schema its fields' types are taken from, by name)."""

    fields: tuple[LazyField, ...]
    metadata: dict[bytes, bytes] | None
    build: Callable[[], Any]
    _arrow: list = field(default_factory=list, repr=False)   # the built schema, once

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def __iter__(self) -> Iterator[LazyField]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazySchema):
            return self.fields == other.fields and self.metadata == other.metadata
        return NotImplemented

    def field(self, i: int | str) -> LazyField:
        return self.fields[i] if isinstance(i, int) else self.fields[self.names.index(i)]

    def with_metadata(self, metadata: dict[bytes, bytes]) -> LazySchema:
        return LazySchema(self.fields, dict(metadata), self.build)

    def with_fields(self, fields: list[LazyField]) -> LazySchema:
        """The same schema metadata over ``fields`` (a selection of this schema's)."""
        return LazySchema(tuple(fields), self.metadata, self.build)

    @property
    def arrow(self) -> pa.Schema:
        """The Arrow schema (imports pyarrow)."""
        if not self._arrow:
            import pyarrow as pa

            base = self.build()
            self._arrow.append(pa.schema(
                [_field(base.field(f.name), f) for f in self.fields], metadata=self.metadata))
        return self._arrow[0]

    def __getstate__(self) -> dict:
        return {"fields": self.fields, "metadata": self.metadata, "build": self.build,
                "_arrow": []}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


def _field(base: pa.Field, f: LazyField) -> pa.Field:
    base = base.with_nullable(f.nullable)
    return base if f.metadata is None else base.with_metadata(f.metadata)


def arrow(schema: Any) -> pa.Schema:
    """``schema`` as a ``pyarrow.Schema`` (built when it is a ``LazySchema``)."""
    return schema.arrow if isinstance(schema, LazySchema) else schema


def rebuilt(schema: Any, fields: list) -> Any:
    """``schema``'s metadata over ``fields`` (taken from it, or changed copies of them):
    a ``LazySchema`` stays one."""
    if isinstance(schema, LazySchema):
        return schema.with_fields(fields)
    import pyarrow as pa

    return pa.schema(fields, metadata=schema.metadata)
