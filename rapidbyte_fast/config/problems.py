"""Config problems: structured until the last moment so that paths can be prefixed and
values hidden, then rendered as one line each, ``"<key.path>: <message> (got <value>)"``.

Also the one "did you mean" helper, for every message that names an unknown word.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from ..redact import redact

NO_VALUE = object()
#: the pydantic error type that carries ``Problem`` items
PROBLEMS = "rb_problems"
#: keys whose values are secrets: never echoed in a problem, masked in dumps
SECRET_KEY = re.compile(r"pass(word|wd)|secret|token|api_?key|credential", re.IGNORECASE)

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One problem. ``soft`` ones (unknown keys, cross-field rules) leave the data usable
    for further checks; ``needs`` names the fields a rule read."""

    loc: Loc
    message: str
    got: object = NO_VALUE
    soft: bool = False
    needs: frozenset[str] = frozenset()

    def under(self, prefix: Loc) -> Problem:
        return replace(self, loc=prefix + self.loc)


def rule(needs: str, loc: Loc, message: str, got: object = NO_VALUE) -> Problem:
    """A cross-field problem; ``needs`` lists (space-separated) the fields the rule read."""
    return Problem(loc, message, got, soft=True, needs=frozenset(needs.split()))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the choice nearest ``word``, or ``""``."""
    near = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def unknown_key(key: object, known: list[str]) -> Problem:
    return Problem((str(key),), f"unknown key{did_you_mean(str(key), known)}", soft=True)


def path_of(loc: Loc) -> str:
    """``("transforms", 1, "config")`` → ``transforms[1].config``."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "<config>"


def _related(a: Loc, b: Loc) -> bool:
    return a[: len(b)] == b or b[: len(a)] == a


def _show(value: object) -> str:
    # Redact before cutting: a cut between password and '@' would hide it from redact().
    text = redact(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


def render(problem: Problem, hidden: frozenset[Loc] = frozenset()) -> str:
    """The problem's line; the value is left out under a secret key or a ``hidden`` path."""
    line = f"{path_of(problem.loc)}: {problem.message}"
    secret = any(isinstance(p, str) and SECRET_KEY.search(p) for p in problem.loc)
    if problem.got is not NO_VALUE and not secret and not any(
        _related(problem.loc, h) for h in hidden
    ):
        line += f" (got {_show(problem.got)})"
    return redact(" ".join(line.split()))


def problems_error(problems: list[Problem]) -> PydanticCustomError:
    """The pydantic error that carries ``problems`` up to the enclosing model."""
    summary = "; ".join(render(p) for p in problems)
    return PydanticCustomError(PROBLEMS, "{summary}", {"summary": summary, "problems": problems})


def fail(message: str, got: object = NO_VALUE) -> NoReturn:
    """Raise, from a validator, ``message`` at the place being validated, worded exactly
    (a ``ValueError`` would always show the value)."""
    raise problems_error([Problem((), message, got)])


_PLAIN = {
    "missing": "is required",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "string_too_short": "must not be empty",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "extra_forbidden": "unknown key",
}
_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


def _translate(loc: Loc, err: Mapping[str, Any]) -> Problem:
    kind, ctx = err["type"], err.get("ctx") or {}
    got = NO_VALUE if kind == "missing" else err.get("input", NO_VALUE)
    if kind in _PLAIN:
        message = _PLAIN[kind]
    elif kind == "literal_error":
        message = "must be one of " + ", ".join(re.findall(r"'([^']*)'", ctx["expected"]))
    elif kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        message = f"must be {_BOUNDS[kind]} {bound}"
    elif kind == "too_short":
        min_length = ctx.get("min_length", 1)
        message = "must not be empty" if min_length == 1 else f"needs at least {min_length} items"
    elif kind in ("value_error", "assertion_error"):
        message = str(ctx.get("error", err["msg"]))
    else:
        message = err["msg"][:1].lower() + err["msg"][1:]
    return Problem(loc, message, got)


def flatten(exc: ValidationError) -> list[Problem]:
    """pydantic's errors as problems, those carried by nested models included."""
    problems: list[Problem] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "too_short" and len(err["input"]) >= err["ctx"]["min_length"]:
            continue  # pydantic counts only items that validated; theirs are reported
        if err["type"] == PROBLEMS:
            problems += [p.under(loc) for p in err["ctx"]["problems"]]
        else:
            problems.append(_translate(loc, err))
    return problems


@dataclass(frozen=True)
class LoadContext:
    """Paths whose values came from the environment (never echoed) or from a missing
    variable (their problems are the missing variable's)."""

    from_env: frozenset[Loc] = frozenset()
    missing: frozenset[Loc] = frozenset()

    def lines(self, problems: list[Problem]) -> list[str]:
        """The rendered problems, duplicates and those of missing variables left out."""
        return list(dict.fromkeys(
            render(p, self.from_env)
            for p in problems
            if not any(p.loc[: len(m)] == m for m in self.missing)
        ))
