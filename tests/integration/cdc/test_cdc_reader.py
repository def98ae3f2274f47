"""The change reader against real logical replication (pgoutput, PostgreSQL 16).

Each test makes its own schema, publication and slot, runs a scripted workload on the
source, and checks the exact change rows (ops, values, keys, metadata) of the windows.
"""
from __future__ import annotations

import uuid

import psycopg
import pyarrow as pa
import pytest

from rapidbyte_fast.errors import DataError, SourceError
from rapidbyte_fast.sources.cdc.reader import ChangeReader

DATA = ("_rb_op", "_rb_seq")


@pytest.fixture
def cdc(logical_dsn, logical_conn):
    """(schema, make_reader, dsn): readers on tables of a fresh schema, all cleaned up."""
    schema = f"cdc_{uuid.uuid4().hex[:10]}"
    logical_conn.execute(f'CREATE SCHEMA "{schema}"')
    made: list[ChangeReader] = []

    def make(tables: list[str], create: bool = True, **kw) -> ChangeReader:
        name = f"rb_{uuid.uuid4().hex[:12]}"
        reader = ChangeReader(logical_dsn, name, name, [f"{schema}.{t}" for t in tables], **kw)
        made.append(reader)
        reader.open()
        if create:
            reader.create_slot()
            reader.release_snapshot()
        return reader

    yield schema, make, logical_dsn
    for reader in made:
        reader.close()
        logical_conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM "
                             "pg_replication_slots WHERE slot_name = %s", (reader.slot,))
        logical_conn.execute(f'DROP PUBLICATION IF EXISTS "{reader.publication}"')
    logical_conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def rows(window, table: str, cols: tuple[str, ...]) -> list[tuple]:
    """The window's changes of ``table`` as tuples of ``cols``, in stream order."""
    out = []
    for t in window.tables:
        if t.table == table:
            for b in t.batches:
                d = b.to_pydict()
                out.extend(zip(*(d[c] for c in cols)))
    return out


def test_interleaved_transactions_in_commit_order(cdc, logical_conn):
    schema, make, dsn = cdc
    logical_conn.execute(f'CREATE TABLE "{schema}".t (id int PRIMARY KEY, v text, n int)')
    reader = make(["t"])
    t = f'"{schema}".t'
    with logical_conn.transaction():
        logical_conn.execute(f"INSERT INTO {t} VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)")
    with logical_conn.transaction():
        logical_conn.execute(f"UPDATE {t} SET v = 'B' WHERE id = 2")
        logical_conn.execute(f"DELETE FROM {t} WHERE id = 3")
        logical_conn.execute(f"INSERT INTO {t} VALUES (4, NULL, 4)")
    with psycopg.connect(dsn) as a, psycopg.connect(dsn) as b:
        a.execute(f"INSERT INTO {t} VALUES (10, 'A', 10)")     # A starts first ...
        b.execute(f"INSERT INTO {t} VALUES (20, 'Z', 20)")
        b.commit()                                             # ... but B commits first
        a.execute(f"UPDATE {t} SET n = 11 WHERE id = 1")
        a.commit()
    w = reader.read_window()
    assert (w.transactions, w.changes) == (4, 9)
    assert rows(w, "t", ("_rb_op", "id", "v", "n", "_rb_seq")) == [
        ("I", 1, "a", 1, 0), ("I", 2, "b", 2, 1), ("I", 3, "c", 3, 2),
        ("U", 2, "B", 2, 0), ("D", 3, None, None, 1), ("I", 4, None, 4, 2),
        ("I", 20, "Z", 20, 0),
        ("I", 10, "A", 10, 0), ("U", 1, "a", 11, 1),
    ]
    lsns = [r[0] for r in rows(w, "t", ("_rb_lsn",))]
    assert lsns == sorted(lsns) and len(set(lsns)) == 4
    assert w.end_lsn > w.last_commit_lsn == lsns[-1]
    ts = rows(w, "t", ("_rb_commit_ts",))
    assert all(r[0] is not None and r[0].tzinfo is not None for r in ts)
    # the window knows its last commit time without decoding its batches again
    assert w.last_commit_time == pytest.approx(ts[-1][0].timestamp(), abs=1e-6)
    table = w.tables[0]
    assert table.key == ("id",) and not table.schema_changed
    assert table.arrow_schema.field("n").metadata == {b"pg_type": b"integer"}
    assert table.arrow_schema.names == ["id", "v", "n", "_rb_op", "_rb_lsn", "_rb_seq",
                                        "_rb_commit_ts", "_rb_unchanged", "_rb_old_id"]


def test_reading_is_not_destructive_until_advance(cdc, logical_conn):
    schema, make, _ = cdc
    logical_conn.execute(f'CREATE TABLE "{schema}".t (id int PRIMARY KEY)')
    reader = make(["t"])
    logical_conn.execute(f'INSERT INTO "{schema}".t VALUES (1)')
    logical_conn.execute(f'INSERT INTO "{schema}".t VALUES (2)')
    before = reader.status()
    first = reader.read_window()
    first_rows = rows(first, "t", ("id",))
    again = reader.read_window()
    assert first_rows == rows(again, "t", ("id",)) == [(1,), (2,)]
    assert first.end_lsn == again.end_lsn
    # a window's rows are freed by the next read (bounded memory): its batches are gone
    with pytest.raises(AssertionError, match="before the next read_window"):
        rows(first, "t", ("id",))
    assert before.lag_bytes > 0 and before.retained_bytes >= before.lag_bytes
    assert reader.advance(first.end_lsn) == first.end_lsn
    assert reader.advance(first.end_lsn - 1) == first.end_lsn   # a restart: already there
    after = reader.status()
    assert after.confirmed_lsn == first.end_lsn and after.lag_bytes < before.lag_bytes
    assert reader.read_window() is None
    logical_conn.execute(f'INSERT INTO "{schema}".t VALUES (3)')
    assert rows(reader.read_window(), "t", ("id",)) == [(3,)]


def test_a_quiet_publication_lets_the_slot_advance(cdc, logical_conn):
    schema, make, _ = cdc
    for name in ("mine", "other"):
        logical_conn.execute(f'CREATE TABLE "{schema}".{name} (id int PRIMARY KEY)')
    reader = make(["mine"])
    for i in range(50):   # WAL that is none of the publication's business
        logical_conn.execute(f'INSERT INTO "{schema}".other VALUES (%s)', (i,))
    lag = reader.status().lag_bytes
    assert reader.read_window() is None and reader.idle_lsn is not None
    reader.advance(reader.idle_lsn)
    assert reader.status().lag_bytes < lag
    logical_conn.execute(f'INSERT INTO "{schema}".mine VALUES (1)')
    w = reader.read_window()
    assert rows(w, "mine", ("id",)) == [(1,)] and reader.idle_lsn is None


def test_primary_key_update_carries_the_old_key(cdc, logical_conn):
    schema, make, _ = cdc
    logical_conn.execute(f'CREATE TABLE "{schema}".t (a int, b text, v int, PRIMARY KEY (a, b))')
    logical_conn.execute(f"INSERT INTO \"{schema}\".t VALUES (1, 'x', 0)")
    reader = make(["t"])
    logical_conn.execute(f"UPDATE \"{schema}\".t SET a = 2 WHERE a = 1")
    logical_conn.execute(f"UPDATE \"{schema}\".t SET v = 5 WHERE a = 2")
    logical_conn.execute(f"DELETE FROM \"{schema}\".t")
    w = reader.read_window()
    assert rows(w, "t", ("_rb_op", "a", "b", "v", "_rb_old_a", "_rb_old_b")) == [
        ("U", 2, "x", 0, 1, "x"),      # key changed: the old key rides along
        ("U", 2, "x", 5, None, None),  # key unchanged: no old key
        ("D", 2, "x", None, None, None),
    ]
    assert w.tables[0].key == ("a", "b")


def test_unchanged_toast_value_is_marked_not_null(cdc, logical_conn):
    schema, make, _ = cdc
    t = f'"{schema}".t'
    logical_conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, n int, big text, note text)")
    logical_conn.execute(f"ALTER TABLE {t} ALTER big SET STORAGE EXTERNAL")
    big = "".join(uuid.uuid4().hex for _ in range(1000))   # 32 kB, stored out of line
    logical_conn.execute(f"INSERT INTO {t} VALUES (1, 0, %s, NULL)", (big,))
    reader = make(["t"])
    logical_conn.execute(f"UPDATE {t} SET n = 1 WHERE id = 1")
    logical_conn.execute(f"UPDATE {t} SET big = 'small', n = 2 WHERE id = 1")
    w = reader.read_window()
    assert rows(w, "t", ("_rb_op", "n", "big", "note", "_rb_unchanged")) == [
        ("U", 1, None, None, b"\x04"),   # bit 2 (big): not sent, keep the old value
        ("U", 2, "small", None, None),   # note is a real NULL
    ]


def test_truncate_is_a_change_of_every_truncated_table(cdc, logical_conn):
    schema, make, _ = cdc
    for name in ("a", "b"):
        logical_conn.execute(f'CREATE TABLE "{schema}".{name} (id int PRIMARY KEY)')
    reader = make(["a", "b"])
    logical_conn.execute(f'INSERT INTO "{schema}".a VALUES (1)')
    logical_conn.execute(f'TRUNCATE "{schema}".a, "{schema}".b')
    logical_conn.execute(f'INSERT INTO "{schema}".a VALUES (2)')
    w = reader.read_window()
    assert rows(w, "a", ("_rb_op", "id")) == [("I", 1), ("T", None), ("I", 2)]
    assert rows(w, "b", ("_rb_op", "id")) == [("T", None)]
    trunc_lsn = rows(w, "b", ("_rb_lsn",))[0][0]
    assert [r[0] for r in rows(w, "a", ("_rb_lsn",))][1] == trunc_lsn


def test_windows_hold_whole_transactions_within_the_budget(cdc, logical_conn):
    schema, make, _ = cdc
    t = f'"{schema}".t'
    logical_conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, pad text)")
    reader = make(["t"], max_window_changes=1000, max_window_bytes=600_000,
                  max_batch_rows=700)
    with logical_conn.transaction():     # one long transaction: 5000 changes, ~150 kB
        logical_conn.execute(f"INSERT INTO {t} SELECT g, repeat('p', 10) FROM "
                             "generate_series(1, 5000) g")
    for i in range(30):                  # then small transactions, 100 rows each
        logical_conn.execute(f"INSERT INTO {t} SELECT g, 'q' FROM "
                             "generate_series(%s::int, %s::int) g",
                             (10_000 + 100 * i, 10_099 + 100 * i))
    seen, windows = [], []
    while (w := reader.read_window()) is not None:
        windows.append((w.transactions, w.changes, w.bytes))
        batches = w.tables[0].batches
        assert all(b.num_rows <= 700 for b in batches)
        seen.extend(r[0] for r in rows(w, "t", ("id",)))
        reader.advance(w.end_lsn)
    assert windows[0][:2] == (1, 5000)   # the long transaction alone, beyond the count
    assert all(b <= 600_000 for _, _, b in windows)
    assert all(c >= 1000 or i == len(windows) - 1 for i, (_, c, _) in enumerate(windows[1:], 1))
    assert sum(n for n, _, _ in windows) == 31
    assert seen == list(range(1, 5001)) + list(range(10_000, 13_000))


def _small_transactions(cdc, logical_conn, n: int) -> ChangeReader:
    """A reader of table t, then ``n`` transactions of 100 inserts (ids 1, 2, ...)."""
    schema, make, _ = cdc
    t = f'"{schema}".t'
    logical_conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, pad text)")
    reader = make(["t"])
    for i in range(n):
        logical_conn.execute(f"INSERT INTO {t} SELECT g, 'q' FROM "
                             "generate_series(%s::int, %s::int) g",
                             (100 * i + 1, 100 * i + 100))
    return reader


def test_one_peek_yields_windows_of_the_target_size_and_moves_the_slot_after(
        cdc, logical_conn, monkeypatch):
    from rapidbyte_fast.sources.cdc import reader as reader_mod

    monkeypatch.setattr(reader_mod, "WINDOW_TARGET_BYTES", 20_000)
    reader = _small_transactions(cdc, logical_conn, 12)   # ~6 kB each
    start = reader.status().confirmed_lsn
    seen, windows = [], []
    while (w := reader.read_window()) is not None:
        windows.append((w.transactions, w.bytes, w.end_lsn))
        seen.extend(r[0] for r in rows(w, "t", ("id",)))
        assert reader.advance(w.end_lsn) == w.end_lsn
        if len(windows) == 1:
            # the peek holds the slot: it moves once the peek has ended
            assert reader.status().confirmed_lsn == start
    assert seen == list(range(1, 1201))
    assert len(windows) >= 3 and sum(n for n, _, _ in windows) == 12
    # each window ends at a commit past the target, within about one target of input more
    assert all(b >= 20_000 for _, b, _ in windows[:-1])
    assert all(b < 2 * 20_000 for _, b, _ in windows), windows
    assert reader.status().confirmed_lsn >= windows[-1][2]


def test_a_peek_that_returns_fewer_rows_than_it_asked_for_is_caught_up(cdc, logical_conn):
    reader = _small_transactions(cdc, logical_conn, 3)   # 102 messages each, +1 relation
    reader.max_window_changes = 150   # the server stops after the transaction reaching it
    first = reader.read_window()
    assert first.transactions == 2 and reader.caught_up is None
    reader.advance(first.end_lsn)
    last = reader.read_window()
    assert last.transactions == 1 and rows(last, "t", ("id",))[0] == (201,)
    # the peek ended short of its limit: it read everything committed before it started
    assert reader.caught_up is not None and reader.caught_up >= last.end_lsn
    reader.advance(last.end_lsn)
    assert reader.read_window() is None and reader.caught_up is None


def test_closing_mid_peek_moves_the_slot_to_the_last_applied_window(
        cdc, logical_conn, monkeypatch):
    from rapidbyte_fast.sources.cdc import reader as reader_mod

    monkeypatch.setattr(reader_mod, "WINDOW_TARGET_BYTES", 5_000)
    make = cdc[1]
    reader = _small_transactions(cdc, logical_conn, 4)
    first = reader.read_window()
    n = len(rows(first, "t", ("id",)))
    assert rows(first, "t", ("id",)) == [(i,) for i in range(1, n + 1)] and n in (100, 200)
    reader.advance(first.end_lsn)
    second = reader.read_window()   # read, never applied
    assert rows(second, "t", ("id",))[0] == (n + 1,)
    reader.close()
    again = make(["t"], create=False)
    again.slot = reader.slot
    again.publication = reader.publication
    assert again.status().confirmed_lsn == first.end_lsn
    assert rows(again.read_window(), "t", ("id",))[0] == (n + 1,)


def test_a_transaction_beyond_the_memory_budget_is_refused(cdc, logical_conn):
    schema, make, _ = cdc
    t = f'"{schema}".t'
    logical_conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, pad text)")
    reader = make(["t"], max_window_bytes=50_000, budget_setting="resources.cdc_window_bytes")
    logical_conn.execute(f"INSERT INTO {t} SELECT g, repeat('p', 100) FROM "
                         "generate_series(1, 2000) g")
    with pytest.raises(SourceError) as e:
        reader.read_window()
    msg = str(e.value)
    assert f"holds more than 50000 bytes of changes (table {schema}.t passed the limit)" in msg
    assert "raise resources.cdc_window_bytes" in msg
    # the reader is still usable and the slot did not move
    with pytest.raises(SourceError):
        reader.read_window()


def test_new_column_starts_a_new_layout(cdc, logical_conn):
    schema, make, _ = cdc
    t = f'"{schema}".t'
    logical_conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY)")
    reader = make(["t"])
    logical_conn.execute(f"INSERT INTO {t} VALUES (1)")
    logical_conn.execute(f"ALTER TABLE {t} ADD COLUMN c numeric(8,2)")
    logical_conn.execute(f"INSERT INTO {t} VALUES (2, 2.5)")
    w1 = reader.read_window()            # ends before the first change of the new layout
    assert [tc.arrow_schema.names[:2] for tc in w1.tables] == [["id", "_rb_op"]]
    assert rows(w1, "t", ("id",)) == [(1,)]
    reader.advance(w1.end_lsn)
    w2 = reader.read_window()
    (tc,) = w2.tables
    assert tc.schema_changed and tc.arrow_schema.field("c").metadata == {
        b"pg_type": b"numeric(8,2)"}
    assert tc.arrow_schema.field("c").type == pa.decimal128(8, 2)
    assert rows(w2, "t", ("id", "c")) == [(2, pytest.approx(2.5))]


def test_new_column_inside_a_transaction_splits_the_table(cdc, logical_conn):
    schema, make, _ = cdc
    t = f'"{schema}".t'
    logical_conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY)")
    reader = make(["t"])
    with logical_conn.transaction():
        logical_conn.execute(f"INSERT INTO {t} VALUES (1)")
        logical_conn.execute(f"ALTER TABLE {t} ADD COLUMN c text")
        logical_conn.execute(f"INSERT INTO {t} VALUES (2, 'two')")
    w = reader.read_window()
    assert [(tc.arrow_schema.names[:2], tc.schema_changed, tc.rows) for tc in w.tables] == [
        (["id", "_rb_op"], False, 1), (["id", "c"], True, 1)]


TYPES = """
    id int PRIMARY KEY, b bool, i2 int2, i8 int8, f4 real, f8 float8, n numeric(12,3),
    nt numeric, t text, bt bytea, d date, tm time, ts timestamp, tz timestamptz,
    iv interval, u uuid, j jsonb, js json, ia int4[], ta text[], na numeric(6,2)[],
    mood "{schema}".mood
"""
VALUES = [
    "(1, true, -32768, 9223372036854775807, 'NaN', '-Infinity', -123456789.125, 'NaN', "
    "E'tab\\there \\\\ \"q\" é', '\\x00ff10', '0044-03-15 BC', '24:00:00', "
    "'9999-12-31 23:59:59.999999', '1999-12-31 23:59:59.5+05:30', "
    "'-1 year -2 mons +3 days -04:05:06.000007', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', "
    "'{\"k\": [1, \"x\"]}', '{\"a\" :  1}', '{1,NULL,-3}', "
    "'{\"a,b\",\"say \\\"hi\\\"\",NULL,\"NULL\",\"\", é}', '{1.50,NULL}', 'happy')",
    "(2, false, 0, -9223372036854775808, '-0', '2.2250738585072014e-308', 0, "
    "'123456789012345678901234567890.000000000000000001', '', '\\x', 'infinity', '00:00:00', "
    "'-infinity', 'infinity', '00:00:00', '00000000-0000-0000-0000-000000000000', 'null', "
    "'[]', '{}', '{}', '{}', 'sad')",
    "(3, NULL, NULL, NULL, '1.17549435e-38', '1e308', NULL, '-0.000', NULL, NULL, "
    "'5874897-12-31', '23:59:59.999999', '4714-11-24 00:00:00 BC', "
    "'0001-01-01 00:00:00+00 BC', '178000000 years', NULL, NULL, NULL, '[0:1]={7,8}', "
    "NULL, NULL, NULL)",
]


@pytest.fixture
def typed(cdc, logical_conn):
    """(table, binary-mode reader, text-mode reader) on a table of every kind of type."""
    schema, make, _ = cdc
    logical_conn.execute(f"CREATE TYPE \"{schema}\".mood AS ENUM ('sad', 'happy')")
    logical_conn.execute(f'CREATE TABLE "{schema}".t ({TYPES.format(schema=schema)})')
    return f'"{schema}".t', make(["t"], binary=True), make(["t"], binary=False)


def test_text_and_binary_modes_give_identical_batches(typed, logical_conn):
    t, binary, text = typed
    for v in VALUES[:2]:
        logical_conn.execute(f"INSERT INTO {t} VALUES {v}")
    logical_conn.execute(f"UPDATE {t} SET i2 = 7 WHERE id = 1")
    logical_conn.execute(f"DELETE FROM {t} WHERE id = 2")
    wb, wt = binary.read_window(), text.read_window()
    assert binary.binary and not text.binary
    (tb,), (tt,) = wb.tables, wt.tables
    assert tb.arrow_schema == tt.arrow_schema
    assert tb.arrow_schema.field("mood").type == pa.utf8()
    got_b = pa.Table.from_batches(tb.batches)
    assert got_b.num_rows == 4
    # bit for bit (Arrow's equals() says NaN != NaN)
    assert [b.serialize().to_pybytes() for b in tb.batches] == [
        b.serialize().to_pybytes() for b in tt.batches]
    assert got_b["ta"][0].as_py() == ["a,b", 'say "hi"', None, "NULL", "", "é"]
    assert got_b["t"][0].as_py() == 'tab\there \\ "q" é'


def table_name(qualified_name: str) -> str:
    return qualified_name.replace('"', "").split(".")[1]


def test_out_of_range_values_fail_alike_in_both_modes(typed, logical_conn):
    t, binary, text = typed
    logical_conn.execute(f"INSERT INTO {t} VALUES {VALUES[2]}")
    errors = []
    for reader in (binary, text):
        # values are decoded (and refused) as the window's batches are read
        w = reader.read_window()
        with pytest.raises(DataError) as e:
            rows(w, table_name(t), ("id",))
        errors.append(str(e.value))
    assert errors[0] == errors[1]
    # the array's framing is checked before any value: its lower bound is named first
    table = t.replace('"', "")
    assert errors[0].startswith(f"changes of table {table}: column 'ia', row 0: array with "
                                "lower bound 0")


def test_text_only_column_switches_to_text_mode(cdc, logical_conn):
    schema, make, _ = cdc
    t = f'"{schema}".t'
    logical_conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY)")
    reader = make(["t"])
    assert reader.binary
    logical_conn.execute(f"ALTER TABLE {t} ADD COLUMN addr inet")
    logical_conn.execute(f"INSERT INTO {t} VALUES (1, '10.1.2.3/8')")
    w = reader.read_window()
    assert not reader.binary
    assert rows(w, "t", ("id", "addr")) == [(1, "10.1.2.3/8")]
    assert w.tables[0].arrow_schema.field("addr").metadata == {b"pg_type": b"inet"}


def test_origin_and_type_messages(cdc, logical_conn):
    schema, make, dsn = cdc
    logical_conn.execute(f"CREATE TYPE \"{schema}\".mood AS ENUM ('sad', 'happy')")
    logical_conn.execute(f'CREATE TABLE "{schema}".t (id int PRIMARY KEY, m "{schema}".mood)')
    reader = make(["t"])
    origin = f"node_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_replication_origin_create(%s)", (origin,))
        try:
            conn.execute("SELECT pg_replication_origin_session_setup(%s)", (origin,))
            conn.execute(f"INSERT INTO \"{schema}\".t VALUES (1, 'happy')")
            conn.execute("SELECT pg_replication_origin_session_reset()")
        finally:
            conn.execute("SELECT pg_replication_origin_drop(%s)", (origin,))
    w = reader.read_window()
    assert w.origins == {origin}
    assert rows(w, "t", ("id", "m")) == [(1, "happy")]


def test_snapshot_pins_the_bootstrap_load(cdc, logical_conn):
    schema, make, dsn = cdc
    t = f'"{schema}".t'
    logical_conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY)")
    logical_conn.execute(f"INSERT INTO {t} VALUES (1)")
    reader = make(["t"], create=False)
    assert not reader.slot_exists()
    created = reader.create_slot()
    logical_conn.execute(f"INSERT INTO {t} VALUES (2)")
    with psycopg.connect(dsn) as load:
        load.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        load.execute(f"SET TRANSACTION SNAPSHOT '{created.snapshot}'")
        assert load.execute(f"SELECT id FROM {t}").fetchall() == [(1,)]
    reader.release_snapshot()
    w = reader.read_window()
    assert rows(w, "t", ("id",)) == [(2,)]
    assert w.last_commit_lsn > created.consistent_lsn
    assert reader.slot_exists()


@pytest.mark.parametrize("ddl,identity,fix", [
    ("(id int, v text)", "", "has no primary key (REPLICA IDENTITY DEFAULT)"),
    ("(id int, v text)", "FULL", "has no primary key (REPLICA IDENTITY FULL)"),
    ("(id int PRIMARY KEY, v text)", "NOTHING", "has REPLICA IDENTITY NOTHING"),
])
def test_tables_without_a_usable_key_are_refused(cdc, logical_conn, ddl, identity, fix):
    schema, make, _ = cdc
    logical_conn.execute(f'CREATE TABLE "{schema}".t {ddl}')
    if identity:
        logical_conn.execute(f'ALTER TABLE "{schema}".t REPLICA IDENTITY {identity}')
    with pytest.raises(SourceError) as e:
        make(["t"])
    assert str(e.value) == (
        f'table "{schema}"."t" {fix}' + (": its changes cannot be applied by key" if
                                          identity != "NOTHING" else
                                          ": its updates and deletes carry no key")
        + f'; add a primary key, or ALTER TABLE "{schema}"."t" REPLICA IDENTITY USING INDEX '
          "<a unique index on NOT NULL columns>")


def test_replica_identity_index_is_the_key(cdc, logical_conn):
    schema, make, _ = cdc
    t = f'"{schema}".t'
    logical_conn.execute(f"CREATE TABLE {t} (code text NOT NULL, v int)")
    logical_conn.execute(f"CREATE UNIQUE INDEX t_code ON {t} (code)")
    logical_conn.execute(f"ALTER TABLE {t} REPLICA IDENTITY USING INDEX t_code")
    reader = make(["t"])
    logical_conn.execute(f"INSERT INTO {t} VALUES ('a', 1)")
    logical_conn.execute(f"UPDATE {t} SET code = 'b' WHERE code = 'a'")
    w = reader.read_window()
    assert w.tables[0].key == ("code",)
    assert rows(w, "t", ("_rb_op", "code", "_rb_old_code")) == [("I", "a", None),
                                                                ("U", "b", "a")]


def test_lost_slot_is_refused_with_the_fix(cdc, logical_conn):
    schema, make, _ = cdc
    t = f'"{schema}".t'
    logical_conn.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, pad text)")
    reader = make(["t"])
    logical_conn.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
    logical_conn.execute("SELECT pg_reload_conf()")
    try:
        for _ in range(4):   # move past the slot's reserved WAL, then let a checkpoint drop it
            logical_conn.execute(f"INSERT INTO {t} SELECT g, md5(g::text) FROM "
                                 "generate_series(1, 2000) g ON CONFLICT DO NOTHING")
            logical_conn.execute("SELECT pg_switch_wal()")
        logical_conn.execute("CHECKPOINT")
        assert reader.status().wal_status == "lost"
    finally:
        logical_conn.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
        logical_conn.execute("SELECT pg_reload_conf()")
    with pytest.raises(SourceError) as e:
        reader.read_window()
    assert str(e.value) == (
        f"replication slot {reader.slot} was invalidated (the server removed WAL it still "
        "needed, see max_slot_wal_keep_size): changes are lost; drop it (SELECT "
        f"pg_drop_replication_slot('{reader.slot}')) and run the stream's bootstrap again for "
        "a new full load")


def test_publication_gains_missing_tables(cdc, logical_conn):
    schema, make, _ = cdc
    for name in ("a", "b"):
        logical_conn.execute(f'CREATE TABLE "{schema}".{name} (id int PRIMARY KEY)')
    first = make(["a"])
    second = ChangeReader(first.conninfo, first.publication, first.slot,
                          [f"{schema}.a", f"{schema}.b"])
    second.open()
    try:
        tables = logical_conn.execute(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = %s ORDER BY 1",
            (first.publication,)).fetchall()
        assert tables == [("a",), ("b",)]
        logical_conn.execute(f'INSERT INTO "{schema}".b VALUES (5)')
        logical_conn.execute(f'INSERT INTO "{schema}".a VALUES (6)')
        both = second.read_window()
        assert rows(both, "b", ("id",)) == [(5,)] and rows(both, "a", ("id",)) == [(6,)]
        only_a = first.read_window()   # same slot: b's changes are framed and skipped
        assert [t.table for t in only_a.tables] == ["a"] and only_a.changes == 1
    finally:
        second.close()
