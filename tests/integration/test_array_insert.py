"""``load_method: insert`` as binary arrays unnested by the server, against a real PostgreSQL.

* Every kind copy_encode writes, with the nasty values of test_encode_golden, goes through
  ``INSERT ... SELECT unnest($1::...[]), ...`` (each twin encoding the arrays) and reads back
  exactly as COPY BINARY of the same batch does, under a hostile session.
* The text family's other targets (varchar(n), char(n), name, json) get their own element
  types and the target's own checks.
* Through the destination: loads match COPY, a table with an array column keeps the VALUES
  statements, upsert resolves conflicts, a value the server refuses is named by column and
  row, and ``on_data_error: dlq`` sets the refused rows aside with their SQLSTATE.
"""
from __future__ import annotations

from decimal import Decimal

import psycopg
import pyarrow as pa
import pytest

import rapidbyte_fast
from rapidbyte_fast._impl import twins
from rapidbyte_fast.column_plan import ColumnPlan, Kind, column_inputs
from rapidbyte_fast.config.connectors import PostgresDestinationConfig
from rapidbyte_fast.destinations.postgres import insert_statements as statements
from rapidbyte_fast.destinations.postgres.insert_statements import (
    ArrayInsert, insert_statements,
)
from rapidbyte_fast.errors import DataError
from rapidbyte_fast.pgtypes import TargetEncoding, quote_ident
from rapidbyte_fast.state.dlq import list_dead_letters
from tests.integration.test_encode_golden import (
    COLUMNS, ROWS, _batch, _create, _hostile_session, _load, _read_back,
)

pytestmark = pytest.mark.integration

TWINS = twins("array_params")
_PG_CFG = PostgresDestinationConfig(url="postgresql://unused")


@pytest.fixture
def unnest_calls(monkeypatch) -> list[int]:
    """Counts the unnest INSERTs the destination runs (rows per statement)."""
    calls: list[int] = []
    run = ArrayInsert.execute

    def counted(self, params):
        calls.append(len(params))
        return run(self, params)

    monkeypatch.setattr(statements.ArrayInsert, "execute", counted)
    return calls


def _statement(conn, table: str, plan: ColumnPlan, types: list[pa.DataType]) -> ArrayInsert:
    """The unnest INSERT into ``table`` (its column types as format_type prints them)."""
    names = ", ".join(quote_ident(n) for n in plan.names)
    pg_types = [t for (t,) in conn.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
        "%s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (table,))]
    statement = insert_statements(conn, table, names, TargetEncoding(plan, tuple(types), True),
                                  pg_types, _PG_CFG)
    assert isinstance(statement, ArrayInsert)
    return statement


@pytest.mark.parametrize("impl", ["python", "c"])
def test_every_kind_reads_back_as_copy_wrote_it(pg_conn, pg_schema, pg_schema2,
                                                impl: str) -> None:
    if impl not in TWINS:
        pytest.skip(f"{impl} twin not built")
    batch, plan, expected = _batch()
    cols = column_inputs(batch, plan)
    by_copy, by_unnest = _create(pg_conn, pg_schema), _create(pg_conn, pg_schema2)
    _hostile_session(pg_conn)
    _load(pg_conn, "binary", "python", by_copy, plan, cols)
    statement = _statement(pg_conn, by_unnest, plan, batch.schema.types)
    for lo in range(0, ROWS, 4):  # several statements, the last one short
        params = [bytearray() for _ in plan.names]
        TWINS[impl].encode_arrays(plan, cols, statement.oids, lo, min(ROWS, lo + 4), params)
        statement.execute(params)
    got = _read_back(pg_conn, by_unnest)
    assert got == _read_back(pg_conn, by_copy)
    assert got == expected
    assert pg_conn.execute(f"SELECT array_agg(rid ORDER BY rid) FROM {by_unnest}").fetchone(
    )[0] == list(range(ROWS))


def test_text_family_targets_get_their_own_element_types(pg_conn, pg_schema) -> None:
    table = f'"{pg_schema}".t'
    pg_conn.execute(f"CREATE TABLE {table} (v varchar(5), c char(3), nm name, j json)")
    values = [["ab", "é😀", "", None], ["x", "", "ab", None], ["n", "é", "", None],
              [' {"b": 1,  "a": 2} ', "[]", '"s"', None]]
    batch = pa.RecordBatch.from_arrays([pa.array(v) for v in values],
                                       names=["v", "c", "nm", "j"])
    plan = ColumnPlan(("v", "c", "nm", "j"), (Kind.TEXT,) * 4, (0,) * 4, (0,) * 4)
    statement = _statement(pg_conn, table, plan, batch.schema.types)
    assert statement.oids == (1043, 1042, 19, 114)
    end, params, size = statement.encode(column_inputs(batch, plan), 0, 4, 10.0)
    assert (end, size) == (4, sum(map(len, params)))
    statement.execute(params)
    got = pg_conn.execute(f"SELECT v, c::text, c = 'ab ', nm::text, j::text FROM {table}"
                          ).fetchall()
    assert got == [("ab", "x", False, "n", ' {"b": 1,  "a": 2} '),
                   ("é😀", "", False, "é", "[]"), ("", "ab", True, "", '"s"'),
                   (None, None, None, None, None)]
    long = pa.RecordBatch.from_arrays([pa.array(["123456"]), pa.array(["x"]),
                                       pa.array(["n"]), pa.array(["{}"])],
                                      names=["v", "c", "nm", "j"])
    with pytest.raises(psycopg.errors.StringDataRightTruncation,
                       match=r"value too long for type character varying\(5\)"):
        statement.execute(statement.encode(column_inputs(long, plan), 0, 1, 10.0)[1])


#: format_type's names of the golden columns' types (what a Postgres source carries)
_FORMAT_TYPE = {"time": "time without time zone", "timestamp": "timestamp without time zone",
                "timestamptz": "timestamp with time zone"}


def _every_kind_batch(rows: int) -> pa.RecordBatch:
    """The golden batch repeated to ``rows`` rows, each field typed by its SQL type."""
    batch, _plan, _ = _batch()
    fields = [pa.field("rid", pa.int32())] + [
        pa.field(name, arrow_type, metadata={b"pg_type": _FORMAT_TYPE.get(sql, sql).encode()})
        for name, sql, _kind, arrow_type, _cells in COLUMNS]
    columns = [pa.concat_arrays([batch.column(k)] * (rows // ROWS + 1)).slice(0, rows)
               for k in range(batch.num_columns)]
    columns[0] = pa.array(range(rows), pa.int32())
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


def test_destination_loads_every_kind_as_copy_does(load_arrow, pg_conn, pg_schema,
                                                   unnest_calls) -> None:
    batches = [_every_kind_batch(9000).slice(0, 7000), _every_kind_batch(9000).slice(7000)]
    load_arrow(pg_schema, "by_copy", batches, "copy")
    assert unnest_calls == []
    load_arrow(pg_schema, "by_insert", batches, "insert")
    assert len(unnest_calls) == 3  # 7000 rows in 5000 + 2000, then 2000
    select = ", ".join(f'"{n}"::text' for n in batches[0].schema.names)
    copied, inserted = (pg_conn.execute(f'SELECT {select} FROM "{pg_schema}".{t} ORDER BY rid'
                                        ).fetchall() for t in ("by_copy", "by_insert"))
    assert len(inserted) == 9000 and inserted == copied


def test_array_column_keeps_values_statements(load_arrow, pg_conn, pg_schema,
                                              unnest_calls) -> None:
    batch = pa.RecordBatch.from_pydict({"id": pa.array([1, 2], pa.int32()),
                                        "tags": pa.array([["a", None], []],
                                                         pa.list_(pa.utf8()))})
    load_arrow(pg_schema, "t", [batch], "insert")
    assert unnest_calls == []
    assert pg_conn.execute(f'SELECT id, tags FROM "{pg_schema}".t ORDER BY id').fetchall() == [
        (1, ["a", None]), (2, [])]


def _pipeline(dsn: str, src: str, dst: str, write_mode: str, **extra) -> dict:
    return {"version": "1.0", "pipeline": "unnest",
            "source": {"use": "postgres", "config": {"url": dsn, "schema": src},
                       "streams": [{"name": "t"}]},
            "destination": {"use": "postgres",
                            "config": {"url": dsn, "schema": dst, "load_method": "insert",
                                       "insert_batch_rows": 300},
                            "write_mode": write_mode,
                            "schema_evolution": {"type_change": "coerce"}, **extra},
            "resources": {"max_retries": 0}}


def test_upsert_resolves_conflicts(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                   unnest_calls) -> None:
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".t (id int PRIMARY KEY, v text, '
                    "n numeric(8,2))")
    pg_conn.execute(f'INSERT INTO "{pg_schema}".t SELECT i, $$new $$ || i, i / 4.0 '
                    "FROM generate_series(1, 1000) i")
    pg_conn.execute(f'CREATE TABLE "{pg_schema2}".t (id int PRIMARY KEY, v text, '
                    "n numeric(8,2))")
    pg_conn.execute(f'INSERT INTO "{pg_schema2}".t SELECT i, $$old $$ || i, -1 '
                    "FROM generate_series(900, 1100) i")
    result = rapidbyte_fast.run(_pipeline(pg_dsn, pg_schema, pg_schema2, "upsert",
                                          primary_key=["id"]))
    assert result.streams[0].records_written == 1000
    assert len(unnest_calls) >= 4  # 1000 rows at 300 a statement
    got = pg_conn.execute(f'SELECT id, v, n FROM "{pg_schema2}".t ORDER BY id').fetchall()
    assert got == ([(i, f"new {i}", Decimal(i) / 4) for i in range(1, 1001)]
                   + [(i, f"old {i}", Decimal(-1)) for i in range(1001, 1101)])


def _refusing_tables(pg_conn, src: str, dst: str) -> None:
    pg_conn.execute(f'CREATE TABLE "{src}".t (id int PRIMARY KEY, code varchar(10), '
                    "n bigint, x numeric(10,2))")
    pg_conn.execute(
        f'INSERT INTO "{src}".t SELECT i, CASE i WHEN 250 THEN $$toolong$$ ELSE $$c$$ || i % 10 '
        "END, CASE i WHEN 600 THEN -13 ELSE i END, CASE i WHEN 777 THEN 12345.67 ELSE 1.5 END "
        "FROM generate_series(1, 1000) i")
    pg_conn.execute(f'CREATE TABLE "{dst}".t (id int PRIMARY KEY, code varchar(4), '
                    "n bigint CHECK (n <> -13), x numeric(5,2))")
    pg_conn.execute(f"INSERT INTO \"{dst}\".t VALUES (999, 'old', 0, 0)")


def test_refused_value_names_column_and_row(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                            unnest_calls, server_version) -> None:
    _refusing_tables(pg_conn, pg_schema, pg_schema2)
    with pytest.raises(DataError) as info:
        rapidbyte_fast.run(_pipeline(pg_dsn, pg_schema, pg_schema2, "append"))
    assert unnest_calls
    # naming the value needs pg_input_error_info (PostgreSQL 16); before, the statement's rows
    where = ("column 'code', row 249" if server_version >= 160000 else "rows 0..299")
    assert str(info.value).startswith(
        f"stream t → {pg_schema2}.t: {where}: value too long for type character varying(4)")
    assert pg_conn.execute(f'SELECT count(*) FROM "{pg_schema2}".t').fetchone() == (1,)


def test_refused_rows_go_to_the_dead_letters(pg_dsn, pg_conn, pg_schema, pg_schema2,
                                             unnest_calls) -> None:
    _refusing_tables(pg_conn, pg_schema, pg_schema2)
    result = rapidbyte_fast.run(_pipeline(pg_dsn, pg_schema, pg_schema2, "append",
                                          on_data_error="dlq"))
    assert unnest_calls
    assert result.streams[0].records_written == 996
    kept = pg_conn.execute(f'SELECT array_agg(id ORDER BY id) FROM "{pg_schema2}".t'
                           ).fetchone()[0]
    assert kept == [i for i in range(1, 1001) if i not in (250, 600, 777)]
    dead = {r["record"]["id"]: r["errors"][0][:5]
            for r in list_dead_letters(pg_dsn, pg_schema2, "unnest")}
    assert dead == {250: "22001", 600: "23514", 777: "22003", 999: "23505"}


def test_text_only_target_keeps_values_statements(load_arrow, pg_conn, pg_schema,
                                                  unnest_calls) -> None:
    schema = pa.schema([pa.field("id", pa.int32()),
                        pa.field("ip", pa.utf8(), metadata={b"pg_type": b"inet"})])
    batch = pa.RecordBatch.from_pydict({"id": [1, 2], "ip": ["10.0.0.1/8", None]},
                                       schema=schema)
    load_arrow(pg_schema, "t", [batch], "insert")
    assert unnest_calls == []
    assert pg_conn.execute(f'SELECT id, ip::text FROM "{pg_schema}".t ORDER BY id').fetchall(
    ) == [(1, "10.0.0.1/8"), (2, None)]
