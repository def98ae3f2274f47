"""Applies captured changes (``sync_mode: cdc``) to one stream's target in destination
transactions that also save the end position of the last window they hold in ``rbf_state``.

Windows are staged (``stage``) one after the other: their change rows (data columns, then
``_rb_op`` I/U/D/T, ``_rb_lsn``, ``_rb_seq``, ``_rb_commit_ts``, ``_rb_unchanged``, then
``_rb_old_<key>``: see ``sources/cdc``) are COPYed into a temporary table per column
layout, and ``commit`` applies them set-based:

- a TRUNCATE empties the target and drops the changes before it;
- unchanged TOAST values (not sent by the server) are filled from the row's previous
  version: an earlier change of the window, else the target's row;
- *replica* (write_mode upsert): the last change per key wins; a delete deletes (soft:
  marks ``_rb_deleted_at``), an update that changes the key deletes the old key. With hard
  deletes, every key the window touches is deleted and the survivors inserted (cheaper
  than an upsert), unless a trigger, a foreign key or a column the source does not send
  could tell the difference: then the rest is one ``INSERT ... ON CONFLICT DO UPDATE``;
- *change log* (write_mode append): every change is appended with ``_rb_op`` (insert,
  update, delete, truncate), ``_rb_lsn`` and ``_rb_committed_at``.

The transaction also saves the window's end position, so a crash before its commit
applies nothing and a crash after it is not applied twice (the source skips what the
position covers).
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg

from ... import faults
from ...connector import ChangePlan
from ...deferred import deferred
from ...errors import DestinationError
from ...pgconn import connect
from ...pgtypes import describe_table, field_pg_type, qualified, quote_ident, target_encoding
from ...result import merge_timings
from ...state import cursors
from .ddl import column_list, create_table_sql
from .evolution import TargetColumn, evolve
from .loader import Loader, dest_error
from .spec import WriteSpec

# a bootstrap's commit uses bootstrap_sql only: pyarrow waits for a drain's first window
pa = deferred("pyarrow")

#: The change log's columns after the data columns, and the soft-delete columns.
LOG_COLUMNS = (("_rb_op", "text"), ("_rb_lsn", "bigint"),
               ("_rb_committed_at", "timestamp with time zone"))
SOFT_COLUMNS = (("_rb_op", "text"), ("_rb_deleted_at", "timestamp with time zone"))
_OP_NAMES = ("CASE s._rb_op WHEN 'I' THEN 'insert' WHEN 'U' THEN 'update' "
             "WHEN 'D' THEN 'delete' ELSE 'truncate' END")
_STAGE = "rbf_changes"
_META = ("_rb_op", "_rb_lsn", "_rb_seq", "_rb_commit_ts", "_rb_unchanged")
_OLD = "_rb_old_"


def extra_columns(changes: ChangePlan) -> tuple[tuple[str, str], ...]:
    """The columns a cdc target has beyond the source's."""
    if changes.shape == "log":
        return LOG_COLUMNS
    return SOFT_COLUMNS if changes.deletes == "soft" else ()


def bootstrap_sql(rel: str, changes: ChangePlan, lsn: int,
                  have: set[str]) -> list[str]:
    """After a bootstrap load into ``rel`` (whose columns are ``have``): add the cdc
    columns. New ones get the bootstrap rows' values as a constant default, dropped at once
    (a catalog-only change on PG >= 11); existing ones get them by an UPDATE of the rows
    just loaded (NULL there)."""
    values = {"_rb_op": "'insert'", "_rb_lsn": str(lsn)}
    out, fill = [], []
    for name, pg_type in extra_columns(changes):
        col, value = quote_ident(name), values.get(name)
        if name in have:
            if value is not None:
                fill.append(f"{col} = {value}")
            continue
        out.append(f"ALTER TABLE {rel} ADD COLUMN {col} {pg_type}"
                   + (f" DEFAULT {value}" if value else ""))
        if value:
            out.append(f"ALTER TABLE {rel} ALTER COLUMN {col} DROP DEFAULT")
    if fill:
        out.append(f"UPDATE {rel} SET {', '.join(fill)} WHERE {quote_ident('_rb_op')} IS NULL")
    return out


class ChangeApply:
    """One cdc stream's applies: ``open``, ``apply`` per window, ``close``."""

    def __init__(self, endpoint: str, spec: WriteSpec, pg_cfg, evolution,
                 changes: ChangePlan) -> None:
        self.endpoint, self.spec, self.pg, self.evolution = endpoint, spec, pg_cfg, evolution
        self.changes = changes
        self.target = qualified(spec.schema, spec.table)
        self.conn: psycopg.Connection | None = None
        self.rows_written = self.bytes_written = 0
        self.timings = {"dest_connect_secs": 0.0, "dest_apply_secs": 0.0,
                        "dest_commit_secs": 0.0}
        self.loaders: list[Loader] = []
        #: the segment being staged in the open transaction, and how many were
        self._open: _Staged | None = None
        self._segments = 0

    def all_timings(self) -> dict[str, float]:
        """Destination timings with the staging loaders' summed in."""
        return merge_timings(self.timings, *(ld.timings for ld in self.loaders))

    def open(self) -> None:
        t0 = time.perf_counter()
        self.conn = connect(self.endpoint, f"destination for stream {self.spec.stream}")
        self.conn.autocommit = False
        self.timings["dest_connect_secs"] += time.perf_counter() - t0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def stage(self, segments: list[tuple[pa.Schema, Iterable[pa.RecordBatch]]]) -> None:
        """Stage a window's segments (in order) in the open destination transaction. A
        segment with the layout of the one staged last continues it: the windows of one
        peek are applied together, one pass over the target for all of them, while only
        one window's rows are held in memory."""
        t0 = time.perf_counter()
        with self._transaction() as conn:
            for schema, batches in segments:
                if self._open is not None and not self._open.schema.equals(
                        schema, check_metadata=True):
                    self._apply_open(conn)
                if self._open is None:
                    self._open = self._begin_segment(conn, schema)
                self._write(self._open, batches)
        self.timings["dest_apply_secs"] += time.perf_counter() - t0

    def commit(self, position: str) -> None:
        """Apply what is staged, save ``position`` and commit the transaction."""
        spec = self.spec
        t0 = time.perf_counter()
        with self._transaction() as conn:
            if self._open is not None:
                self._apply_open(conn)
            cursors.ensure_table(conn, spec.schema)
            cursors.save(conn, spec.schema, spec.pipeline, spec.stream,
                         cursors.Cursor(position))
            self.timings["dest_apply_secs"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            faults.hit("cdc.apply")
            conn.commit()
            self.timings["dest_commit_secs"] += time.perf_counter() - t0
            self._segments = 0
        faults.hit("cdc.applied")

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection]:
        """The destination connection; an error rolls back everything staged."""
        conn = self.conn
        assert conn is not None
        try:
            yield conn
        except psycopg.Error as exc:
            self._forget()
            conn.rollback()
            raise dest_error(self.spec.prefix, exc) from None
        except BaseException:
            self._forget()
            if not conn.closed:
                conn.rollback()
            raise

    def _forget(self) -> None:
        self._open, self._segments = None, 0

    # ------------------------------------------------------------------ one segment

    def _begin_segment(self, conn: psycopg.Connection, schema: pa.Schema) -> _Staged:
        """A staging table (and its COPY) for changes of one column layout."""
        key = self.changes.key
        data = [n for n in schema.names if not n.startswith("_rb_")]
        keep, cols = self._evolve(conn, schema, data)
        olds = [_OLD + k for k in key]
        names = keep + list(_META) + olds
        stage_types = [cols[n].pg_type for n in keep] + [
            field_pg_type(schema.field(n)) for n in _META] + [cols[k].pg_type for k in key]
        name = f"{_STAGE}_{self._segments}"
        self._segments += 1
        stage = qualified("pg_temp", name)
        conn.execute(f"DROP TABLE IF EXISTS {stage}")
        conn.execute(create_table_sql(stage, name, list(zip(names, stage_types))))
        # binary COPY only where the target's base types take our binary form
        base = {n: "text" if cols[t].typtype == "e" else cols[t].base_type
                for n, t in zip(keep + olds, keep + list(key))}
        loader = Loader(conn, self.spec.prefix, self.pg, stage, column_list(names),
                        target_encoding(pa.schema([schema.field(n) for n in names]), base),
                        False, pg_types=stage_types)
        self.loaders.append(loader)
        return _Staged(schema, stage, names, keep, data, loader)

    def _write(self, staged: _Staged, batches: Iterable[pa.RecordBatch]) -> None:
        for b in batches:
            staged.seen.add(b, self.changes.key)
            staged.loader.write(b.select(staged.names))
            faults.hit("dest.batch")

    def _apply_open(self, conn: psycopg.Connection) -> None:
        """Apply the segment being staged to the target; the statements for truncates,
        unchanged TOAST values and key changes run only when it holds any (each scans the
        stage)."""
        staged, self._open = self._open, None
        assert staged is not None
        stage, keep, seen = staged.stage, staged.keep, staged.seen
        staged.loader.finish()
        self.rows_written += staged.loader.rows_written
        self.bytes_written += staged.loader.bytes_written
        if seen.truncates:
            self._truncate(conn, stage)
        if seen.unchanged:
            self._fill_unchanged(conn, stage, keep, staged.data)
        if self.changes.shape == "log":
            cols = keep + [n for n, _ in LOG_COLUMNS]
            conn.execute(
                f"INSERT INTO {self.target} ({column_list(cols)}) SELECT "
                f"{', '.join('s.' + quote_ident(n) for n in keep)}, {_OP_NAMES}, s._rb_lsn, "
                f"s._rb_commit_ts FROM {stage} s ORDER BY s._rb_lsn, s._rb_seq")
        else:
            self._replica(conn, stage, keep, seen.key_changes)
        conn.execute(f"DROP TABLE {stage}")

    def _evolve(self, conn: psycopg.Connection, schema: pa.Schema,
                data: list[str]) -> tuple[list[str], dict]:
        """The data columns to apply (after ``schema_evolution``) and the target's
        columns by name."""
        spec = self.spec
        table = describe_table(conn, spec.schema, spec.table)
        have = {c.name: TargetColumn(c.pg_type, c.not_null) for c in table.columns
                if not c.name.startswith("_rb_")}
        fields = [(n, field_pg_type(schema.field(n)), True) for n in data]
        plan = evolve(self.target, have, table.primary_key, fields, self.evolution)
        if plan.problems:
            raise DestinationError(f"{spec.prefix}schema changed: " + "; ".join(plan.problems))
        missing = [k for k in self.changes.key if k not in plan.keep]
        if missing:
            raise DestinationError(f"{spec.prefix}key column {missing[0]} cannot be applied")
        for text in plan.statements:
            conn.execute(text)
        cols = {c.name: c for c in describe_table(conn, spec.schema, spec.table).columns}
        return list(plan.keep), cols

    def _truncate(self, conn: psycopg.Connection, stage: str) -> None:
        """A TRUNCATE in the window: empty the target, forget the changes before it."""
        row = conn.execute(f"SELECT _rb_lsn, _rb_seq, _rb_commit_ts FROM {stage} "
                           "WHERE _rb_op = 'T' ORDER BY _rb_lsn DESC, _rb_seq DESC LIMIT 1"
                           ).fetchone()
        if row is None:
            return
        lsn, seq, ts = row
        if self.changes.shape == "log":
            conn.execute(f"DELETE FROM {stage} WHERE _rb_op = 'T' AND (_rb_lsn, _rb_seq) < "
                         "(%s, %s)", (lsn, seq))
            return
        if self.changes.deletes == "soft":
            conn.execute(f"UPDATE {self.target} SET _rb_deleted_at = %s, _rb_op = 'delete' "
                         "WHERE _rb_deleted_at IS NULL", (ts,))
        else:
            conn.execute(f"TRUNCATE {self.target}")
        conn.execute(f"DELETE FROM {stage} WHERE (_rb_lsn, _rb_seq) <= (%s, %s)", (lsn, seq))

    def _fill_unchanged(self, conn: psycopg.Connection, stage: str, keep: list[str],
                        data: list[str]) -> None:
        """Give every unchanged TOAST value (``_rb_unchanged`` bit set, NULL here) its
        previous version's value: the latest earlier insert or update of the same key in
        this window (resolved first), else the target's row (before this window)."""
        key, q = self.changes.key, quote_ident
        conn.execute(f"CREATE INDEX ON {stage} ({column_list(key)}, _rb_lsn, _rb_seq)")
        # the bits index the relation's columns (data), of which keep may be a subset
        sets = ", ".join(
            f"{q(n)} = CASE WHEN get_bit(r._rb_unchanged, {data.index(n)}) = 1 "
            f"THEN v.{q(n)} ELSE r.{q(n)} END" for n in keep)
        # rows without an earlier version in the window: from the target
        conn.execute(
            f"UPDATE {stage} r SET {sets}, _rb_unchanged = NULL FROM {self._current()} v "
            "WHERE r._rb_unchanged IS NOT NULL AND "
            + " AND ".join(f"v.{q(k)} = {lk}" for k, lk in zip(key, _lookup(key, "r")))
            + f" AND NOT EXISTS ({_previous(stage, key, 'r')})")
        # the others, from their previous version once it is resolved (one hop per round)
        while conn.execute(
                f"UPDATE {stage} r SET {sets}, _rb_unchanged = NULL FROM {stage} r2 "
                f"CROSS JOIN LATERAL ({_previous(stage, key, 'r2')}) v "
                "WHERE r.ctid = r2.ctid AND r._rb_unchanged IS NOT NULL "
                "AND v._rb_unchanged IS NULL").rowcount:
            pass
        left = conn.execute(f"SELECT {', '.join(q(k) + '::text' for k in key)} "
                            f"FROM {stage} WHERE _rb_unchanged IS NOT NULL LIMIT 1"
                            ).fetchone()
        if left is not None:
            raise DestinationError(
                f"{self.spec.prefix}an update of key ({', '.join(map(str, left))}) left a "
                "large value unchanged, but the destination has no earlier version of the "
                "row to take it from (was the table changed outside this pipeline?); "
                "state reset --stream and run again for a new bootstrap")

    def _current(self) -> str:
        """The target's current rows, one per key (the log's latest)."""
        if self.changes.shape != "log":
            return self.target
        keys = column_list(self.changes.key)
        return (f"(SELECT DISTINCT ON ({keys}) * FROM {self.target} "
                f"WHERE _rb_op IN ('insert', 'update') "
                f"ORDER BY {keys}, _rb_lsn DESC, ctid DESC)")

    def _replica(self, conn: psycopg.Connection, stage: str, keep: list[str],
                 key_changes: bool) -> None:
        """Last change per key wins: delete the deleted keys, upsert the rest."""
        q = quote_ident
        key = self.changes.key
        keys = column_list(key)
        rest = [n for n in keep if n not in key]
        soft = self.changes.deletes == "soft"
        events = (f"SELECT {column_list(keep)}, _rb_op, _rb_lsn, _rb_seq, _rb_commit_ts "
                  f"FROM {stage} WHERE _rb_op <> 'T'")
        if key_changes:   # the old keys as deletes (another pass over the stage)
            old_key = ", ".join(f"s.{q(_OLD + k)} AS {q(k)}" for k in key)
            nulls = "".join(f", NULL::{self._type(conn, n)} AS {q(n)}" for n in rest)
            changed = " OR ".join(f"s.{q(_OLD + k)} IS DISTINCT FROM s.{q(k)}" for k in key)
            events += (
                f" UNION ALL SELECT {old_key}{nulls}, 'D', s._rb_lsn, s._rb_seq, "
                f"s._rb_commit_ts FROM {stage} s WHERE s._rb_op = 'U' "
                f"AND s.{q(_OLD + key[0])} IS NOT NULL AND ({changed})")
        last = (f"SELECT DISTINCT ON ({keys}) * FROM ({events}) e "
                f"ORDER BY {keys}, _rb_lsn DESC, _rb_seq DESC")
        if not soft and self._replaceable(conn, keep):
            # delete every key the window touches (hash joins with the staged changes,
            # duplicates harmless), then insert the survivors: no ON CONFLICT. The bench
            # change set (500k updates, 100k deletes, 200k inserts into 1M rows), server
            # CPU / wall at load average 6-7: ON CONFLICT DO UPDATE in one statement
            # 9.3 s / 22.8 s, this 7.6 s / 15.1 s; deleting by key IN (...) took 12 s of
            # CPU (an index probe per change), MERGE 7.8 s / 17.8 s.
            on_new = " AND ".join(f"t.{q(k)} = s.{q(k)}" for k in key)
            on_old = " AND ".join(f"t.{q(k)} = s.{q(_OLD + k)}" for k in key)
            conn.execute(f"DELETE FROM {self.target} t USING {stage} s "
                         f"WHERE s._rb_op <> 'T' AND {on_new}")
            if key_changes:
                conn.execute(f"DELETE FROM {self.target} t USING {stage} s "
                             f"WHERE s._rb_op = 'U' AND {on_old}")
            conn.execute(f"INSERT INTO {self.target} ({column_list(keep)}) SELECT "
                         f"{', '.join(f'l.{q(n)}' for n in keep)} FROM ({last}) l "
                         "WHERE l._rb_op <> 'D'")
            return
        on_key = " AND ".join(f"t.{q(k)} = l.{q(k)}" for k in key)
        if soft:
            gone = (f"UPDATE {self.target} t SET _rb_deleted_at = l._rb_commit_ts, "
                    f"_rb_op = 'delete' FROM last l WHERE l._rb_op = 'D' AND {on_key}")
            cols = keep + ["_rb_op", "_rb_deleted_at"]
            values = (", ".join(f"l.{q(n)}" for n in keep)
                      + ", CASE l._rb_op WHEN 'I' THEN 'insert' ELSE 'update' END, NULL")
            rest = rest + ["_rb_op", "_rb_deleted_at"]
        else:
            gone = f"DELETE FROM {self.target} t USING last l WHERE l._rb_op = 'D' AND {on_key}"
            cols = keep
            values = ", ".join(f"l.{q(n)}" for n in keep)
        action = ("DO UPDATE SET " + ", ".join(f"{q(n)} = EXCLUDED.{q(n)}" for n in rest)
                  if rest else "DO NOTHING")
        # one statement: the deletes and the upserts touch disjoint keys
        conn.execute(
            f"WITH last AS MATERIALIZED ({last}), gone AS ({gone}) "
            f"INSERT INTO {self.target} ({column_list(cols)}) SELECT {values} FROM last l "
            f"WHERE l._rb_op <> 'D' ON CONFLICT ({keys}) {action}")

    def _replaceable(self, conn: psycopg.Connection, keep: list[str]) -> bool:
        """True when deleting and inserting a row leaves what an upsert would: the applied
        columns are all the target's (a column the source no longer sends keeps its value
        only through an UPDATE), and no user trigger or foreign key of another table sees
        the delete."""
        return not conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = %(t)s::regclass "
            "AND attnum > 0 AND NOT attisdropped AND attgenerated = '' "
            "AND NOT (attname = ANY(%(keep)s))) "
            "OR EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = %(t)s::regclass "
            "AND NOT tgisinternal) "
            "OR EXISTS (SELECT 1 FROM pg_constraint WHERE confrelid = %(t)s::regclass)",
            {"t": self.target, "keep": keep}).fetchone()[0]

    def _type(self, conn: psycopg.Connection, column: str) -> str:
        return conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
            "%s::regclass AND attname = %s", (self.target, column)).fetchone()[0]


class _Seen:
    """Whether a window's batches hold a truncate, an unchanged TOAST value, an old key."""

    def __init__(self) -> None:
        self.truncates = self.unchanged = self.key_changes = False

    def add(self, batch: pa.RecordBatch, key: tuple[str, ...]) -> None:
        n = batch.num_rows
        self.unchanged = self.unchanged or batch.column("_rb_unchanged").null_count < n
        self.key_changes = (self.key_changes
                            or batch.column(_OLD + key[0]).null_count < n)
        self.truncates = self.truncates or any_truncate(batch.column("_rb_op"))


def any_truncate(ops: pa.Array) -> bool:
    """Whether an ``_rb_op`` column holds a truncate (``T``). Its values are one character
    each, so this is a byte search of the column's data; pyarrow.compute is not used: its
    first call costs ~37 MB of resident memory (92 -> 130 MB), which was a fifth of a
    drain's peak (python -m bench cdc)."""
    if not len(ops):
        return False
    _, offsets, data = ops.buffers()
    last = ops.offset + len(ops)
    # Arrow's int32 offsets, in the host's byte order
    ends = memoryview(offsets)[:4 * (last + 1)].cast("B").cast("i")
    lo, hi = ends[ops.offset], ends[last]
    return data is not None and memoryview(data)[lo:hi].tobytes().find(b"T") >= 0


def _lookup(key: tuple[str, ...], alias: str) -> list[str]:
    """The key a change continues: an update that changed the key continues the old one."""
    return [f"coalesce({alias}.{quote_ident(_OLD + k)}, {alias}.{quote_ident(k)})"
            for k in key]


def _previous(stage: str, key: tuple[str, ...], alias: str) -> str:
    """The staged insert or update that the change ``alias`` continues (the latest before
    it of the key it continues)."""
    return (f"SELECT p.* FROM {stage} p WHERE "
            + " AND ".join(f"p.{quote_ident(k)} = {lk}"
                           for k, lk in zip(key, _lookup(key, alias)))
            + f" AND p._rb_op IN ('I', 'U') AND (p._rb_lsn, p._rb_seq) < "
            f"({alias}._rb_lsn, {alias}._rb_seq) ORDER BY p._rb_lsn DESC, p._rb_seq DESC "
            "LIMIT 1")


@dataclass
class _Staged:
    """A segment being staged: its table, the columns it takes, its COPY, what it holds."""

    schema: pa.Schema
    stage: str
    names: list[str]
    keep: list[str]
    data: list[str]
    loader: Loader
    seen: _Seen = field(default_factory=_Seen)
