"""The relations a change stream announces, and where each table's change rows go.

A Relation message names a table and its column layout. For the publication's tables it is
resolved once per layout into a ``RelationPlan`` (from the catalog) and bound in the
decoder to a segment of the window being read: one segment per table and layout, so that a
layout change mid-window starts a segment of its own, or ends the window before the open
transaction when the table already has rows in it. Other tables are framed and skipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from ...column_plan import Kind
from . import protocol as P
from .relations import RelationPlan, resolve

#: How a Relation message ends the read of a window: before the open transaction (the
#: table's layout changed after earlier ones), or over again in text mode.
CUT, TEXT_MODE = "cut", "text mode"


@dataclass
class Segments:
    """The change rows of one window: one segment per table and column layout, in order."""

    segments: list[tuple[RelationPlan, bytearray]] = field(default_factory=list)
    current: dict[int, int] = field(default_factory=dict)   # relation OID -> its segment
    origins: set[str] = field(default_factory=set)


class Announced:
    """The relations of one slot's stream: a plan per table layout, resolved once, and
    the layout last reported per table."""

    def __init__(self, tables: list[tuple[str, str]]) -> None:
        self.tables = tables
        #: relation OID -> its plan, for the layout last announced
        self.plans: dict[int, RelationPlan] = {}
        self._reported: dict[tuple[str, str], tuple] = {}

    def announce(self, catalog: psycopg.Connection, dec, rel: P.Relation, win: Segments,
                 binary: bool, ours: set[int]) -> str | None:
        """Register a Relation message with the decoder (``ours``: the OIDs of our tables
        announced in this peek); ``CUT`` or ``TEXT_MODE`` when the read must stop."""
        n = len(rel.columns)
        if (rel.schema, rel.name) not in self.tables:   # not ours: framed and skipped
            dec.set_relation(rel.oid, f"{rel.schema}.{rel.name}",
                             tuple(c.name for c in rel.columns), bytes([Kind.TEXT]) * n,
                             bytes(n), (0,) * n, bytes(n), (), None)
            return None
        rp = self.plans.get(rel.oid)
        if rp is None or rp.relation != rel:
            rp = self.plans[rel.oid] = resolve(catalog, rel)
        if binary and any(rp.text_only):
            return TEXT_MODE
        seg = win.current.get(rel.oid)
        if seg is not None and win.segments[seg][0].relation == rel:
            rows = win.segments[seg][1]
        else:
            if seg is not None and len(win.segments[seg][1]) and dec.window_txns and dec.in_txn:
                dec.rollback()
                return CUT   # the new layout starts the next window
            rows = None
        ours.add(rel.oid)
        bind(dec, rp, win, rows)
        return None

    def layout_changed(self, rp: RelationPlan) -> bool:
        """Whether the table's columns differ from those last reported for it (and report
        these)."""
        name = (rp.relation.schema, rp.relation.name)
        previous = self._reported.get(name)
        self._reported[name] = rp.signature()
        return previous is not None and previous != rp.signature()


def bind(dec, rp: RelationPlan, win: Segments, rows: bytearray | None = None) -> None:
    """Send the relation's rows to ``rows``, else to a new segment of the window."""
    if rows is None:
        rows = bytearray()
        win.current[rp.relation.oid] = len(win.segments)
        win.segments.append((rp, rows))
    plan, n = rp.plan, len(rp.relation.columns)
    dec.set_relation(rp.relation.oid, rp.table, plan.names[:n], bytes(plan.kinds[:n]),
                     bytes(plan.elem_kinds[:n]), plan.elem_oids[:n], rp.text_only,
                     rp.key_index, rows)
