"""The ``validate`` transform: per-row rules checked a whole batch at a time.

Rules (``config.rules``, one per item): ``not_null: [cols]``, ``regex: {column, pattern}``
(RE2 syntax, searched anywhere in the value: anchor with ``^...$``), ``range: {column, min,
max}`` (inclusive, either bound optional; NaN is out of range), ``accepted_values: {column,
values}`` and ``unique: [cols]``. Only ``not_null`` fails NULLs: the others pass them, and a
key with a NULL part is never a duplicate (as in SQL).

``unique`` holds every distinct key this instance has seen in the run: a row fails when
an earlier row (kept or not) had its key. Memory: for a single integer column 8 bytes per
key (sorted runs, merged geometrically; a merge briefly doubles it); otherwise a Python set
of the values, about 60-100 bytes per key plus the values themselves.

A failing row lists every rule it fails. ``on_data_error``: ``fail`` raises DataError for
the first failing row, ``skip`` drops failing rows, ``dlq`` drops them and hands each to
the reject sink as JSON with its failed rules (category ``validation``).
"""
from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import ValidateConfig, ValidateRule, did_you_mean, transform_config
from ..errors import ConfigError, DataError
from ..state.dlq import records_json
from . import RejectSink

Evaluate = Callable[[pa.RecordBatch], pa.BooleanArray]


@dataclass(frozen=True)
class _Rule:
    """One rule item as configured (shape checked, columns not yet resolved)."""

    path: str
    kind: str
    #: (column, key path of the column's mention)
    columns: tuple[tuple[str, str], ...]
    params: dict[str, Any]

    @classmethod
    def of(cls, item: ValidateRule, path: str) -> _Rule:
        """``item``, the rule at ``path`` (e.g. ``transforms[1].config.rules[0]``)."""
        kind = item.kind
        value = getattr(item, kind)
        path = f"{path}.{kind}"
        if kind in ("not_null", "unique"):
            if isinstance(value, str):
                return cls(path, kind, ((value, path),), {})
            return cls(path, kind, tuple((c, f"{path}[{k}]") for k, c in enumerate(value)), {})
        params = {k: v for k, v in value.model_dump().items() if k != "column"}
        if kind == "accepted_values":
            params["values"] = list(value.values)
        return cls(path, kind, ((value.column, f"{path}.column"),), params)


@dataclass(frozen=True)
class _Check:
    """A bound rule: ``evaluate`` is true (never null) for the rows that fail it."""

    message: str
    evaluate: Evaluate


def _fails_where_false(ok: pa.Array) -> pa.BooleanArray:
    """Rows where ``ok`` is false; NULL (a NULL input) passes."""
    return pc.fill_null(pc.invert(ok), False)


def _not_null(column: str) -> Evaluate:
    return lambda batch: pc.is_null(batch.column(column))


def _regex(column: str, pattern: str) -> Evaluate:
    return lambda batch: _fails_where_false(pc.match_substring_regex(batch.column(column), pattern))


def _range(column: str, low: pa.Scalar | None, high: pa.Scalar | None) -> Evaluate:
    def evaluate(batch: pa.RecordBatch) -> pa.BooleanArray:
        values = batch.column(column)
        tests = []
        if low is not None:
            tests.append(pc.greater_equal(values, low))
        if high is not None:
            tests.append(pc.less_equal(values, high))
        return _fails_where_false(functools.reduce(pc.and_kleene, tests))
    return evaluate


def _accepted(column: str, allowed: pa.Array) -> Evaluate:
    def evaluate(batch: pa.RecordBatch) -> pa.BooleanArray:
        values = batch.column(column)
        return pc.and_(pc.invert(pc.is_in(values, value_set=allowed)), pc.is_valid(values))
    return evaluate


class _SeenKeys:
    """Distinct keys seen so far (see the module docstring for the memory cost)."""

    def __init__(self, integer: bool) -> None:
        self.integer = integer
        self.runs: list[np.ndarray] = []  # sorted, disjoint; sizes shrink geometrically
        self.values: set[Any] = set()

    def duplicates(self, keys: list[pa.Array]) -> np.ndarray:
        """Which rows have a key seen before (in an earlier batch or earlier in this one);
        records the new keys."""
        rows = len(keys[0])
        valid = functools.reduce(pc.and_, [pc.is_valid(k) for k in keys]).to_numpy(
            zero_copy_only=False)
        first = np.zeros(rows, dtype=bool)
        seen = np.zeros(rows, dtype=bool)
        if self.integer:
            at = np.flatnonzero(valid)
            values = pc.fill_null(keys[0], 0).cast(pa.int64()).to_numpy()[at]
            order = np.argsort(values, kind="stable")  # equal keys: earliest row first
            ordered = values[order]
            starts = np.empty(len(ordered), dtype=bool)
            starts[:1] = True
            np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
            first[at[order[starts]]] = True
            seen[at] = self._in_runs(values)
            self._add_run(ordered[starts & ~seen[at][order]])
        else:
            python = (keys[0].to_pylist() if len(keys) == 1
                      else list(zip(*(k.to_pylist() for k in keys))))
            # Built back to front, so each key ends up mapped to its earliest row.
            first[list(dict(zip(reversed(python), range(rows - 1, -1, -1))).values())] = True
            seen[:] = np.fromiter(map(self.values.__contains__, python), dtype=bool, count=rows)
            self.values.update(itertools.compress(python, first & ~seen & valid))
        return valid & (seen | ~first)

    def _in_runs(self, values: np.ndarray) -> np.ndarray:
        found = np.zeros(len(values), dtype=bool)
        for run in self.runs:
            at = np.minimum(np.searchsorted(run, values), len(run) - 1)
            found |= run[at] == values
        return found

    def _add_run(self, run: np.ndarray) -> None:
        if not len(run):
            return
        self.runs.append(run)
        # Keep O(log n) runs: merge while the newest is at least half its neighbour.
        while len(self.runs) > 1 and 2 * len(self.runs[-1]) >= len(self.runs[-2]):
            newest = self.runs.pop()
            merged = np.concatenate([self.runs.pop(), newest])
            merged.sort(kind="stable")  # two sorted runs: timsort merges them in O(n)
            self.runs.append(merged)


def _unique(columns: list[str], integer: bool) -> Evaluate:
    seen = _SeenKeys(integer)
    return lambda batch: pa.array(seen.duplicates([batch.column(c) for c in columns]),
                                  type=pa.bool_())


_TEXT = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
_ORDERED = (pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal,
            pa.types.is_temporal)
_NESTED = (pa.types.is_nested, pa.types.is_dictionary)


def _is(t: pa.DataType, tests: tuple) -> bool:
    return any(test(t) for test in tests)


def _bound(value: Any, t: pa.DataType) -> pa.Scalar:
    """A range bound as a scalar comparable with a column of type ``t``."""
    scalar = pa.scalar(value).cast(t) if isinstance(value, str) else pa.scalar(value)
    pc.greater_equal(pa.array([], t), scalar)  # raises if the types cannot be compared
    return scalar


def _bind(rule: _Rule, schema: pa.Schema, stream: str, problems: list[str]) -> list[_Check]:
    """The checks of ``rule`` on ``schema``; problems found are appended."""
    count = len(problems)
    for column, path in rule.columns:
        if column not in schema.names:
            problems.append(f"{path}: stream {stream} has no column {column!r}"
                            f"{did_you_mean(column, schema.names)}")
    if len(problems) > count:
        return []
    names = [c for c, _ in rule.columns]
    t = schema.field(names[0]).type
    col = names[0]
    if rule.kind == "not_null":
        return [_Check(f"not_null: {c} is null", _not_null(c)) for c in names]
    if rule.kind == "unique":
        nested = [c for c in names if _is(schema.field(c).type, _NESTED)]
        if nested:
            problems.append(f"{rule.path}: cannot check uniqueness of {', '.join(nested)} "
                            f"({schema.field(nested[0]).type})")
            return []
        integer = len(names) == 1 and pa.types.is_integer(t) and t != pa.uint64()
        label = names[0] if len(names) == 1 else f"({', '.join(names)})"
        return [_Check(f"unique: {label} is a duplicate", _unique(names, integer))]
    if rule.kind == "regex":
        if not _is(t, _TEXT):
            problems.append(f"{rule.path}.column: regex needs a text column; {col} is {t}")
            return []
        pattern = rule.params["pattern"]
        return [_Check(f"regex: {col} does not match {pattern}", _regex(col, pattern))]
    if rule.kind == "range":
        if not _is(t, _ORDERED):
            problems.append(f"{rule.path}.column: range needs a numeric, date or time column; "
                            f"{col} is {t}")
            return []
        bounds: dict[str, pa.Scalar | None] = {}
        for key in ("min", "max"):
            value = rule.params[key]
            try:
                bounds[key] = None if value is None else _bound(value, t)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                problems.append(f"{rule.path}.{key}: {value!r} cannot be compared with "
                                f"{col} ({t})")
        if len(problems) > count:
            return []
        low, high = bounds["min"], bounds["max"]
        if low is not None and high is not None and pc.greater(low, high).as_py():
            problems.append(f"{rule.path}: min {rule.params['min']} is greater than "
                            f"max {rule.params['max']}")
            return []
        if low is not None and high is not None:
            what = f"not between {rule.params['min']} and {rule.params['max']}"
        elif low is not None:
            what = f"not >= {rule.params['min']}"
        else:
            what = f"not <= {rule.params['max']}"
        return [_Check(f"range: {col} is {what}", _range(col, low, high))]
    values = rule.params["values"]
    try:
        allowed = pa.array(values).cast(t.value_type if pa.types.is_dictionary(t) else t)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        problems.append(f"{rule.path}.values: {values!r} do not fit {col} ({t})")
        return []
    shown = ", ".join(map(str, values))
    return [_Check(f"accepted_values: {col} is not one of [{shown}]", _accepted(col, allowed))]


class ValidateTransform:
    """``use: validate``; ``index`` is its place in ``transforms`` (for error paths)."""

    name = "validate"

    def __init__(self, config: ValidateConfig | Mapping[str, Any], on_data_error: str,
                 reject: RejectSink | None, index: int | None = None) -> None:
        if on_data_error not in ("fail", "skip", "dlq"):
            raise ValueError(f"on_data_error must be fail, skip or dlq, not {on_data_error!r}")
        if on_data_error == "dlq" and reject is None:
            raise ValueError("on_data_error 'dlq' needs a reject sink")
        self.on_data_error, self.reject, self.index = on_data_error, reject, index
        where = f"transforms[{index}].config" if index is not None else "config"
        rules = transform_config(ValidateConfig, config, index).rules
        self._rules = [_Rule.of(item, f"{where}.rules[{j}]") for j, item in enumerate(rules)]
        self._checks: list[_Check] = []
        self._stream = ""
        self._row = 0
        self.stats: dict[str, float] = {"seconds": 0.0, "rows_in": 0.0, "rows_out": 0.0,
                                        "skipped": 0.0, "dead_lettered": 0.0}

    def open(self, stream: str, schema: pa.Schema) -> pa.Schema:
        problems: list[str] = []
        checks = [c for rule in self._rules for c in _bind(rule, schema, stream, problems)]
        if problems:
            raise ConfigError(problems)
        self._checks, self._stream, self._row = checks, stream, 0
        return schema

    def apply(self, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        t0 = time.perf_counter()
        fails = [check.evaluate(batch) for check in self._checks]
        failing = functools.reduce(pc.or_, fails)  # rules are never empty
        count = pc.sum(failing).as_py() or 0
        out = [batch]
        if count:
            if self.on_data_error == "fail":
                self._raise_first(failing, fails)
            out = [batch.filter(pc.invert(failing))]
            if self.on_data_error == "dlq":
                self._dead_letter(batch, failing, fails)
                self.stats["dead_lettered"] += count
            else:
                self.stats["skipped"] += count
        self._row += batch.num_rows
        self.stats["rows_in"] += batch.num_rows
        self.stats["rows_out"] += batch.num_rows - count
        self.stats["seconds"] += time.perf_counter() - t0
        return [b for b in out if b.num_rows]

    def _raise_first(self, failing: pa.BooleanArray, fails: list[pa.BooleanArray]) -> None:
        row = pc.index(failing, True).as_py()
        reasons = "; ".join(c.message for c, f in zip(self._checks, fails) if f[row].as_py())
        where = f" (transforms[{self.index}])" if self.index is not None else ""
        raise DataError(f"stream {self._stream}, row {self._row + row}: "
                        f"validation failed: {reasons}{where}")

    def _dead_letter(self, batch: pa.RecordBatch, failing: pa.BooleanArray,
                     fails: list[pa.BooleanArray]) -> None:
        assert self.reject is not None
        rows = pc.indices_nonzero(failing)
        flags = [f.take(rows).to_pylist() for f in fails]
        for record, row_flags in zip(records_json(batch, rows), zip(*flags)):
            reasons = [c.message for c, failed in zip(self._checks, row_flags) if failed]
            self.reject(self._stream, record, reasons, "validation")

    def finish(self) -> list[pa.RecordBatch]:
        return []

    def close(self) -> None:
        self._checks = []
