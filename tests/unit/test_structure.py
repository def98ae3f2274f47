"""The shape rules of the package: short functions and classes (the kernel twins excepted),
only the Postgres connectors know they are Postgres, exceptions only in errors.py, and the
error tree's builtin mixins."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from rapidbyte_fast import errors

PACKAGE = Path(__file__).resolve().parents[2] / "rapidbyte_fast"
SOURCES = [p for p in sorted(PACKAGE.rglob("*.py")) if "_py" not in p.parts]


def _defs(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node, node.end_lineno - node.lineno + 1


def test_no_function_over_80_lines_and_no_class_over_300():
    long = [f"{p.relative_to(PACKAGE)}:{n.name} ({size} lines)" for p in SOURCES
            for n, size in _defs(p)
            if size > (300 if isinstance(n, ast.ClassDef) else 80)]
    assert long == []


def test_only_the_postgres_connectors_test_for_postgres():
    connectors = {PACKAGE / "sources" / "postgres", PACKAGE / "destinations" / "postgres"}
    # (a state backend, or a URL scheme, named "postgres" is not the connector)
    test = re.compile(r"""(==|!=|\bin)\s*\(?\s*["']postgres["']""")
    found = [f"{p.relative_to(PACKAGE)}:{i}" for p in SOURCES
             if not any(c in p.parents for c in connectors)
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if test.search(line) and not re.search(r"backend|scheme", line)]
    assert found == []


def test_exceptions_are_defined_only_in_errors():
    found = [f"{p.relative_to(PACKAGE)}:{n.name}" for p in SOURCES if p.name != "errors.py"
             for n, _ in _defs(p) if isinstance(n, ast.ClassDef)
             and any(getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception"))
                     for b in n.bases)]
    assert found == []


@pytest.mark.parametrize("cls, builtin", [
    (errors.ConfigError, ValueError), (errors.DataError, ValueError),
    (errors.ConnectionLost, ConnectionError), (errors.CodecError, ValueError),
    (errors.EmbeddedError, RuntimeError), (errors.ImplementationError, ImportError),
])
def test_error_tree_has_builtin_mixins(cls, builtin):
    assert issubclass(cls, errors.RapidbyteError) and issubclass(cls, builtin)


def test_internal_stop_signal_is_not_a_user_error():
    assert not issubclass(errors.StageStopped, errors.RapidbyteError)


def test_a_note_leaves_the_original_alone_whatever_copies_exceptions(monkeypatch):
    # tblib's pickling support (installed by dask.distributed) reduces an exception to its
    # own __dict__, so copy.copy would share it
    import copyreg

    monkeypatch.setitem(copyreg.dispatch_table, errors.DataError,
                        lambda e: (errors.DataError, (), e.__dict__))
    err = errors.DataError("bad", column="c")
    noted = err.noted("(kept 2 ranges)")
    assert (str(noted), str(err)) == ("bad (kept 2 ranges)", "bad")
    assert noted.column == "c" and type(noted) is errors.DataError


def test_fields_are_set_by_constructors_and_notes_keep_them():
    err = errors.DataError("bad", column="c", row=3, detail=": x", sqlstate="22P02")
    assert (err.column, err.row, err.detail, err.sqlstate) == ("c", 3, ": x", "22P02")
    noted = err.noted("(kept 2 ranges)")
    assert str(noted) == "bad (kept 2 ranges)" and str(err) == "bad"
    assert type(noted) is errors.DataError and noted.sqlstate == "22P02"
    assert errors.ConnectionLost("x").retryable
    assert not errors.ConnectionLost("x", retryable=False).retryable
