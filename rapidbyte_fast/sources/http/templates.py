"""Date templates in query parameters (ApiTap style): ``{{ today }}``, ``{{ yesterday }}``,
``{{ now }}``, ``{{ days_ago(7) }}``, ``{{ hours_ago(6) }}``.

Dates render as ``YYYY-MM-DD`` and instants as ISO 8601 UTC (``2024-05-01T12:00:00Z``),
all from one clock reading per run, so every page of a run asks for the same window.
"""
from __future__ import annotations

import datetime as dt
import re

_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_CALL = re.compile(r"(days_ago|hours_ago)\(\s*(\d+)\s*\)")
_NAMES = ("today", "yesterday", "now", "days_ago(N)", "hours_ago(N)")


def _value(expr: str, now: dt.datetime) -> str | None:
    if expr == "today":
        return now.date().isoformat()
    if expr == "yesterday":
        return (now.date() - dt.timedelta(days=1)).isoformat()
    if expr == "now":
        return now.strftime("%Y-%m-%dT%H:%M:%SZ")
    call = _CALL.fullmatch(expr)
    if call is None:
        return None
    n = int(call.group(2))
    if call.group(1) == "days_ago":
        return (now.date() - dt.timedelta(days=n)).isoformat()
    return (now - dt.timedelta(hours=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_template(text: str) -> str:
    """``text`` unchanged; ValueError naming the first unknown ``{{ ... }}``."""
    epoch = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
    for match in _TEMPLATE.finditer(text):
        if _value(match.group(1), epoch) is None:
            raise ValueError(f"unknown template {match.group(0)!r} (use {', '.join(_NAMES)})")
    return text


def render(text: str, now: dt.datetime) -> str:
    """``text`` with every template replaced, as of ``now`` (UTC)."""
    return _TEMPLATE.sub(lambda m: _value(m.group(1), now) or m.group(0), text)
