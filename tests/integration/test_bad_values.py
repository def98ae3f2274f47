"""Bad values fail cleanly: a DataError names stream, column, row and a preview of the value,
and a failed replace leaves the old table as it was.

Values refused by our kernels (NUL in text from a non-Postgres source) and values refused by
the server (out of range for an existing column, invalid JSON for jsonb, too many digits for
numeric(p,s), a domain's CHECK) on both load methods; server errors go through
``load_errors`` as the destination reports them.
"""
from __future__ import annotations

from decimal import Decimal

import psycopg
import pyarrow as pa
import pytest

from rapidbyte_fast import load_errors
from rapidbyte_fast._impl import copy_encode, insert_sql
from rapidbyte_fast.column_plan import COPY_BINARY_HEADER, COPY_BINARY_TRAILER, column_inputs
from rapidbyte_fast.errors import DataError, RapidbyteError
from rapidbyte_fast.pgtypes import conform, target_encoding

pytestmark = pytest.mark.integration
WHERE = "stream s → x.t: "


def _batch(ids: list[int], notes: list[str | None]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"id": pa.array(ids, pa.int32()),
                                       "note": pa.array(notes, pa.utf8())})


@pytest.mark.parametrize("load_method", ["copy", "insert"])
def test_nul_in_text_fails_and_replace_keeps_the_old_table(load_arrow, pg_conn, pg_schema,
                                                           load_method):
    load_arrow(pg_schema, "events", [_batch([1, 2], ["a", "b"])], load_method)
    before = pg_conn.execute(f'SELECT * FROM "{pg_schema}".events ORDER BY id').fetchall()
    bad = [_batch([3, 4], ["ok", None]), _batch([5, 6, 7], ["fine", "x\x00y" * 20, "z"])]
    with pytest.raises(DataError) as info:
        load_arrow(pg_schema, "events", bad, load_method)
    message = str(info.value)
    assert message.startswith(f"stream events → {pg_schema}.events: column 'note', row ")
    preview = repr("x\x00y" * 13 + "x...")
    assert message.endswith("text contains a NUL byte, which PostgreSQL text cannot hold "
                            f"(value: {preview})")
    assert pg_conn.execute(f'SELECT * FROM "{pg_schema}".events ORDER BY id').fetchall() == before
    tables = pg_conn.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND "
                             "relnamespace = %s::regnamespace", (f'"{pg_schema}"',)).fetchall()
    assert tables == [("events",)]


@pytest.mark.parametrize("load_method", ["copy", "insert"])
def test_server_refusal_fails_and_replace_keeps_the_old_table(load_arrow, pg_conn, pg_schema,
                                                              load_method):
    schema = pa.schema([pa.field("id", pa.int32()),
                        pa.field("doc", pa.utf8(), metadata={b"pg_type": b"jsonb"})])
    good = pa.RecordBatch.from_pydict({"id": [1], "doc": ['{"a": 1}']}, schema=schema)
    load_arrow(pg_schema, "events", [good], load_method)
    bad = pa.RecordBatch.from_pydict({"id": [2, 3], "doc": ["[]", "{nope"]}, schema=schema)
    with pytest.raises(RapidbyteError, match="invalid input syntax for type json"):
        load_arrow(pg_schema, "events", [bad], load_method)
    assert pg_conn.execute(f'SELECT id, doc::text FROM "{pg_schema}".events').fetchall() == [
        (1, '{"a": 1}')]


# --- server errors, as load_errors reports them --------------------------------------------

# column, existing type, Arrow field, the rows, expected error (after "row N: ")
SERVER_CASES = [
    ("n", "integer", pa.field("n", pa.int64()), [1, 9_999_999_999],
     'value "9999999999" is out of range for type integer'),
    ("j", "jsonb", pa.field("j", pa.utf8(), metadata={b"pg_type": b"jsonb"}),
     ["{}", '{"a": tru}'], "invalid input syntax for type json"),
    ("d", "numeric(5,2)", pa.field("d", pa.decimal128(10, 2)),
     [Decimal("1.00"), Decimal("12345.67")], "numeric field overflow"),
    ("p", "{s}.posint", pa.field("p", pa.int32()), [5, -1],
     'value for domain {s}.posint violates check constraint "posint_check"'),
]


def _existing(conn, schema: str, column: str, sql_type: str) -> str:
    conn.execute(f'CREATE DOMAIN "{schema}".posint AS integer CHECK (VALUE > 0)')
    table = f'"{schema}".t'
    conn.execute(f'CREATE TABLE {table} ("{column}" {sql_type.replace("{s}", schema)})')
    return table


def _inputs(field: pa.Field, values: list, target_base: str):
    batch = pa.RecordBatch.from_arrays([pa.array(values, field.type)],
                                       schema=pa.schema([field]))
    wp = target_encoding(batch.schema, {field.name: target_base})
    return wp, column_inputs(conform(batch, wp), wp.plan)


# an int8 into an existing integer column is always sent as text (int8's binary form differs)
COPY_CASES = [(c, fmt) for c in SERVER_CASES for fmt in ("text", "binary")
              if not (c[0] == "n" and fmt == "binary")]


@pytest.mark.parametrize("case, fmt", COPY_CASES, ids=[f"{c[0]}-{f}" for c, f in COPY_CASES])
def test_copy_errors_name_column_row_and_value(pg_dsn, pg_schema, case, fmt):
    column, sql_type, field, values, reason = case
    reason = reason.replace("{s}", pg_schema)
    with psycopg.connect(pg_dsn) as conn:
        table = _existing(conn, pg_schema, column, sql_type)
        target = "int4" if column in ("n", "p") else sql_type.split("(")[0]
        wp, cols = _inputs(field, values, target)
        assert wp.binary_ok == (column != "n")
        out = bytearray()
        encode = copy_encode.encode_binary if fmt == "binary" else copy_encode.encode_text
        encode(wp.plan, cols, 0, len(values), out)
        data = COPY_BINARY_HEADER + out + COPY_BINARY_TRAILER if fmt == "binary" else out
        with pytest.raises(psycopg.Error) as info:
            with conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT {fmt})") as copy:
                copy.write(bytes(data))
    err = load_errors.copy_error(info.value, WHERE, row_base=100)
    assert isinstance(err, DataError)
    message = str(err)
    assert message.startswith(f"{WHERE}column '{column}', row 101: {reason}"), message
    if fmt == "text":
        assert message.endswith(f" (value: {str(values[1])!r})")
    assert err.sqlstate[:2] in ("22", "23")


@pytest.mark.parametrize("case", SERVER_CASES, ids=[c[0] for c in SERVER_CASES])
def test_insert_errors_name_column_row_and_value(pg_dsn, pg_schema, server_version, case):
    if server_version < 160000:
        pytest.skip("naming the refused value needs pg_input_error_info (PostgreSQL 16); "
                    "before it the error names the rows of the statement")
    column, sql_type, field, values, reason = case
    with psycopg.connect(pg_dsn) as conn:
        table = _existing(conn, pg_schema, column, sql_type)
        conn.commit()
        wp, cols = _inputs(field, values, "")
        out = bytearray()
        insert_sql.build_insert(wp.plan, cols, 0, len(values), out,
                                f'INSERT INTO {table} ("{column}") VALUES '.encode(), b"", 100,
                                1 << 20)
        with pytest.raises(psycopg.Error) as info:
            conn.execute(bytes(out))
        pg_type = sql_type.replace("{s}", f'"{pg_schema}"')
        err = load_errors.insert_error(conn, info.value, WHERE, wp.plan, cols, 0, len(values),
                                       [pg_type], row_base=10)
    assert isinstance(err, DataError)
    assert str(err).startswith(f"{WHERE}column '{column}', row 11: "), str(err)
    assert str(err).endswith(f" (value: {str(values[1])!r})")


def test_not_data_errors_are_left_to_the_caller(pg_dsn, pg_schema):
    with psycopg.connect(pg_dsn) as conn:
        with pytest.raises(psycopg.Error) as info:
            conn.execute(f'INSERT INTO "{pg_schema}".missing VALUES (1)')
    assert load_errors.copy_error(info.value, WHERE) is None


def test_not_null_violation_names_the_column(pg_dsn, pg_schema):
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(f'CREATE TABLE "{pg_schema}".t (a int NOT NULL, b text)')
        with pytest.raises(psycopg.Error) as info:
            conn.execute(f"""INSERT INTO "{pg_schema}".t VALUES (1, 'x'), (NULL, 'y')""")
        wp, cols = _inputs(pa.field("a", pa.int32()), [1, None], "int4")
        err = load_errors.insert_error(conn, info.value, WHERE, wp.plan, cols, 0, 2, ["integer"])
    assert str(err) == (f'{WHERE}column \'a\', rows 0..1: null value in column "a" of relation '
                        '"t" violates not-null constraint (Failing row contains (null, y).)')


def test_kernel_rows_become_stream_rows():
    wp, cols = _inputs(pa.field("t", pa.utf8()), ["a", "b\x00"], "text")
    with pytest.raises(DataError) as info:
        copy_encode.encode_text(wp.plan, cols, 0, 2, bytearray())
    assert str(load_errors.in_stream(info.value, WHERE, 5000)) == (
        f"{WHERE}column 't', row 5001: text contains a NUL byte, which PostgreSQL text cannot "
        "hold (value: 'b\\x00')")
    assert str(load_errors.in_stream(DataError("COPY row 3: expected 2 fields, got 1"),
                                     WHERE, 10)) == f"{WHERE}COPY row 3: expected 2 fields, got 1"
