"""``rapidbyte_fast.read()`` and ``read_to_parquet()`` against a real server: the same
values and types as the pipeline's source reader, the same rows in one piece or in parallel
ranges, projection and filters, consumption by polars/duckdb/pandas, a Parquet round trip,
one-line errors, connections released on early close, and memory bounded by the batch size
rather than the table's."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
import uuid
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rapidbyte_fast
from rapidbyte_fast.config import PostgresSourceConfig, StreamConfig
from rapidbyte_fast.errors import (
    ConfigError,
    ConnectionLost,
    DataError,
    RapidbyteError,
    SourceError,
)
from rapidbyte_fast.lazy_schema import arrow
from rapidbyte_fast.sources.postgres import PostgresSourceConnector

pytestmark = pytest.mark.integration

TYPED = """
CREATE TABLE {t} (
    id integer PRIMARY KEY, c_int2 smallint, c_int8 bigint, c_f4 real, c_f8 double precision,
    c_num numeric(12,3), c_bool boolean, c_text text, c_vc varchar(20), c_bytea bytea,
    c_date date, c_ts timestamp, c_tstz timestamptz, c_time time, c_iv interval,
    c_uuid uuid, c_jsonb jsonb, c_ints integer[], c_inet inet);
INSERT INTO {t} VALUES
 (1, -32768, 9223372036854775807, 1.5, '-Infinity', -999999999.999, true,
  E'tab\\t nl\\n quote'' back\\\\ é 漢字', 'vc', '\\x00ff', '2024-02-29',
  '2024-01-01 00:00:00.123456', '1970-01-01 00:00:00+00', '23:59:59.999999',
  '1 year 2 days 00:00:01.5', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{"a": [1, null]}}',
  '{{1,NULL,3}}', '10.0.0.1/8'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL),
 (3, 0, -1, '-0', 'Infinity', 0.5, false, '', '', '', '1970-01-01',
  '1969-12-31 23:59:59.999999', '2000-01-01 00:00:00.000001+00', '00:00', '-1 days',
  '00000000-0000-0000-0000-000000000000', '"x"', '{{}}', '::1')
"""


def _tname(schema: str, name: str) -> str:
    return f'"{schema}"."{name}"'


@pytest.fixture
def typed(pg_conn, pg_schema) -> str:
    pg_conn.execute(TYPED.format(t=_tname(pg_schema, "typed")))
    return f"{pg_schema}.typed"


@pytest.fixture
def numbers(pg_conn, pg_schema) -> str:
    """30,000 rows with an integer primary key (cut into key ranges)."""
    pg_conn.execute(
        f"CREATE TABLE {_tname(pg_schema, 'numbers')} (id bigint PRIMARY KEY, name text, "
        "v double precision)")
    pg_conn.execute(
        f"INSERT INTO {_tname(pg_schema, 'numbers')} SELECT i, chr(97 + i % 26) || i, i / 7.0 "
        "FROM generate_series(1, 30000) i")
    pg_conn.execute(f"ANALYZE {_tname(pg_schema, 'numbers')}")
    return f"{pg_schema}.numbers"


def _pipeline_read(dsn: str, table: str, columns=None) -> pa.Table:
    """What a pipeline's Postgres source reads of ``table``: its connector, one reader."""
    src = PostgresSourceConnector(PostgresSourceConfig(url=dsn))
    try:
        info = src.describe(StreamConfig(name=table, columns=columns))
        reader = src.reader(info)
        try:
            schema = arrow(reader.open())   # (the source describes lazily)
            return pa.Table.from_batches(list(reader.batches(64 << 20, 100_000)), schema)
        finally:
            reader.close()
    finally:
        src.close()


def _rows(t: pa.Table, key: str = "id") -> list[dict]:
    return sorted(t.to_pylist(), key=lambda r: r[key])


def test_returns_a_record_batch_reader_with_the_pipelines_values_and_types(pg_dsn, typed):
    reader = rapidbyte_fast.read(pg_dsn, typed)
    assert isinstance(reader, pa.RecordBatchReader)
    assert hasattr(reader, "__arrow_c_stream__")
    got = reader.read_all()
    want = _pipeline_read(pg_dsn, typed)
    assert got.schema.equals(want.schema, check_metadata=True)
    assert _rows(got) == _rows(want)
    types = {f.name: str(f.type) for f in got.schema}
    assert types == {
        "id": "int32", "c_int2": "int16", "c_int8": "int64", "c_f4": "float", "c_f8": "double",
        "c_num": "decimal128(12, 3)", "c_bool": "bool", "c_text": "string", "c_vc": "string",
        "c_bytea": "binary", "c_date": "date32[day]", "c_ts": "timestamp[us]",
        "c_tstz": "timestamp[us, tz=UTC]", "c_time": "time64[us]",
        "c_iv": "month_day_nano_interval", "c_uuid": "fixed_size_binary[16]",
        "c_jsonb": "string", "c_ints": "list<item: int32>", "c_inet": "string"}
    assert got.schema.field("c_vc").metadata[b"pg_type"] == b"character varying(20)"
    r1, r2, r3 = _rows(got)
    assert r1["c_int2"] == -32768 and r1["c_int8"] == 9223372036854775807
    assert r1["c_f8"] == float("-inf") and r1["c_num"] == Decimal("-999999999.999")
    assert r1["c_text"] == "tab\t nl\n quote' back\\ é 漢字"
    assert r1["c_bytea"] == b"\x00\xff" and r1["c_date"] == dt.date(2024, 2, 29)
    assert r1["c_ts"] == dt.datetime(2024, 1, 1, 0, 0, 0, 123456)
    assert r1["c_uuid"] == uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").bytes
    assert r1["c_ints"] == [1, None, 3] and r1["c_inet"] == "10.0.0.1/8"
    assert r1["c_jsonb"] == '{"a": [1, null]}'
    assert all(v is None for k, v in r2.items() if k != "id")
    assert r3["c_ints"] == [] and r3["c_text"] == "" and str(r3["c_f4"]) == "-0.0"
    assert r3["c_tstz"] == dt.datetime(2000, 1, 1, 0, 0, 0, 1, tzinfo=dt.timezone.utc)


def test_parallel_reads_the_same_rows_in_several_ranges(pg_dsn, numbers):
    one = list(rapidbyte_fast.read(pg_dsn, numbers))
    three = list(rapidbyte_fast.read(pg_dsn, numbers, parallel=3))
    # one batch per key range: the table was really read in three pieces
    assert [b.num_rows for b in one] == [30000]
    assert len(three) == 3 and sum(b.num_rows for b in three) == 30000
    a, b = pa.Table.from_batches(one), pa.Table.from_batches(three)
    assert _rows(a) == _rows(b)
    assert [r["id"] for r in _rows(b)] == list(range(1, 30001))


def test_parallel_without_a_key_reads_block_ranges(pg_conn, pg_dsn, pg_schema):
    t = _tname(pg_schema, "heap")
    pg_conn.execute(f"CREATE TABLE {t} AS SELECT i AS n, repeat('x', 200) AS pad "
                    "FROM generate_series(1, 20000) i")
    got = rapidbyte_fast.read(pg_dsn, f"{pg_schema}.heap", parallel=2, batch_rows=1000)
    ns = sorted(n for batch in got for n in batch.column("n").to_pylist())
    assert ns == list(range(1, 20001))


def test_columns_and_where(pg_dsn, numbers):
    got = rapidbyte_fast.read(pg_dsn, numbers, columns=["name", "id"],
                              where="id % 1000 = 0 AND v > 1000").read_all()
    assert got.schema.names == ["name", "id"]
    assert got.to_pylist() == [{"name": chr(97 + i % 26) + str(i), "id": i}
                               for i in range(8000, 30001, 1000)]
    # the filter and the ranges combine; the table's alias t qualifies names
    par = rapidbyte_fast.read(pg_dsn, numbers, columns=["id"], where="t.id <= 10",
                              parallel=3).read_all()
    assert sorted(par.column("id").to_pylist()) == list(range(1, 11))


def test_batches_respect_batch_rows(pg_dsn, numbers):
    sizes = [b.num_rows for b in rapidbyte_fast.read(pg_dsn, numbers, batch_rows=7000)]
    assert sizes == [7000, 7000, 7000, 7000, 2000]


def test_quoted_identifiers(pg_conn, pg_dsn, pg_schema):
    pg_conn.execute(f'CREATE TABLE {_tname(pg_schema, "Odd Table")} ("Select" int, "a""b" text)')
    pg_conn.execute(f'INSERT INTO {_tname(pg_schema, "Odd Table")} VALUES (1, \'q\')')
    got = rapidbyte_fast.read(pg_dsn, f'{pg_schema}."Odd Table"',
                              columns=['a"b', "Select"]).read_all()
    assert got.to_pylist() == [{'a"b': "q", "Select": 1}]


def test_pandas_takes_the_reader(pg_dsn, numbers):
    pytest.importorskip("pandas")
    pandas = rapidbyte_fast.read(pg_dsn, numbers, columns=["id", "v"]).read_pandas()
    assert len(pandas) == 30000 and int(pandas["id"].sum()) == 30000 * 30001 // 2


def test_polars_takes_the_reader(pg_dsn, numbers):
    pl = pytest.importorskip("polars")
    df = pl.from_arrow(rapidbyte_fast.read(pg_dsn, numbers, parallel=2))
    assert df.height == 30000 and df["id"].sum() == 30000 * 30001 // 2


def test_duckdb_takes_the_reader(pg_dsn, numbers):
    duckdb = pytest.importorskip("duckdb")
    reader = rapidbyte_fast.read(pg_dsn, numbers, where="id <= 100")
    # duckdb finds the reader by its variable name
    got = duckdb.sql("SELECT count(*), sum(id) FROM reader").fetchall()
    assert got == [(100, 5050)] and reader is not None


def test_to_parquet_round_trip(pg_dsn, typed, numbers, tmp_path):
    path = tmp_path / "typed.parquet"
    with pytest.raises(DataError, match=r"Parquet cannot store column c_iv \(interval\)"):
        rapidbyte_fast.read_to_parquet(pg_dsn, typed, path)
    cols = [f.name for f in rapidbyte_fast.read(pg_dsn, typed).schema if f.name != "c_iv"]
    assert rapidbyte_fast.read_to_parquet(pg_dsn, typed, path, columns=cols) == 3
    back = pq.read_table(path)
    want = rapidbyte_fast.read(pg_dsn, typed, columns=cols).read_all()
    assert back.schema.equals(want.schema, check_metadata=False)
    assert back.schema.field("c_num").metadata[b"pg_type"] == b"numeric(12,3)"
    assert _rows(back) == _rows(want)
    big = tmp_path / "numbers.parquet"
    assert rapidbyte_fast.read_to_parquet(pg_dsn, numbers, big, parallel=3,
                                          batch_rows=5000) == 30000
    meta = pq.ParquetFile(big).metadata
    assert meta.num_rows == 30000 and meta.num_row_groups == 6
    assert sorted(pq.read_table(big).column("id").to_pylist()) == list(range(1, 30001))
    assert sorted(os.listdir(tmp_path)) == ["numbers.parquet", "typed.parquet"]


@pytest.mark.parametrize("parallel", [None, 3])
def test_a_failing_read_leaves_no_parquet_file(pg_dsn, numbers, tmp_path, parallel):
    path = tmp_path / "out.parquet"
    with pytest.raises(SourceError, match="division by zero"):
        # fails mid-stream (in a worker thread when parallel), after batches were written
        rapidbyte_fast.read_to_parquet(pg_dsn, numbers, path, where="1 / (25000 - id) >= 0",
                                       parallel=parallel, batch_rows=1000)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs, error, text", [
    ({"table": "no_such_table"}, SourceError, "table public.no_such_table does not exist"),
    ({"columns": ["id", "nope"]}, ConfigError, "columns nope not in table"),
    ({"columns": "id"}, ConfigError, "columns must be a list of names"),
    ({"columns": ["id", "id"]}, ConfigError, "columns id given more than once"),
    ({"columns": []}, ConfigError, "columns must not be empty"),
    ({"columns": ["id", None]}, ConfigError, "columns must be non-empty strings (got None)"),
    ({"columns": [""]}, ConfigError, "columns must be non-empty strings (got '')"),
    ({"where": "nope > 1"}, ConfigError, 'column "nope" does not exist'),
    ({"where": "id > 1; DROP TABLE x"}, ConfigError, "where 'id > 1; DROP TABLE x' fails"),
    ({"parallel": 0}, ConfigError, "parallel must be a positive integer"),
    ({"batch_rows": 0}, ConfigError, "batch_rows and batch_bytes must be at least 1"),
    ({"url": "http://example.com/db"}, ConfigError, "postgresql:// URL"),
    ({"url": "postgresql://u:secret@[db"}, ConfigError,
     "read.url postgresql://u:***@[db: not a valid libpq URL"),
])
def test_user_errors_are_one_line(pg_dsn, numbers, kwargs, error, text):
    args = {"url": pg_dsn, "table": numbers, **kwargs}
    with pytest.raises(error) as exc:
        rapidbyte_fast.read(**args)
    msg = str(exc.value)
    assert text in msg and "\n" not in msg
    if "url" not in kwargs:
        assert args["table"] in msg


def test_unreachable_server_is_a_connection_error():
    with pytest.raises(ConnectionLost, match="cannot connect") as exc:
        rapidbyte_fast.read("postgresql://nobody:secret@127.0.0.1:1/db", "t")
    assert "secret" not in str(exc.value)
    assert isinstance(exc.value, RapidbyteError)


def test_a_bad_connection_setting_is_one_line_and_not_retried(pg_dsn):
    with pytest.raises(ConnectionLost) as exc:
        rapidbyte_fast.read("postgresql://nobody:secret@127.0.0.1:1/db?connect_timeout=abc",
                            "t")
    assert str(exc.value).endswith("cannot connect: bad value for connect_timeout: 'abc'")
    assert "secret" not in str(exc.value) and not exc.value.retryable


def _our_backends(pg_conn, settle: bool = False) -> int:
    """Server backends of this process's connections; ``settle`` waits (up to 5 s) for
    backends of just-closed connections, which exit after the client has gone."""
    deadline = time.monotonic() + (5 if settle else 0)
    while True:
        n = pg_conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
            (f"rapidbyte-fast[{os.getpid()}]%",)).fetchone()[0]
        if n == 0 or time.monotonic() >= deadline:
            return n
        time.sleep(0.05)


@pytest.mark.parametrize("parallel", [None, 3])
def test_dropping_the_reader_early_releases_the_connections(pg_conn, pg_dsn, numbers,
                                                            parallel):
    reader = rapidbyte_fast.read(pg_dsn, numbers, parallel=parallel, batch_rows=500)
    assert _our_backends(pg_conn, settle=True) == 0  # nothing held until batches are asked for
    first = reader.read_next_batch()
    assert first.num_rows == 500
    assert _our_backends(pg_conn) >= 1
    del reader  # (pyarrow's close() keeps the batch iterator: dropping the reader ends it)
    assert _our_backends(pg_conn, settle=True) == 0


_PEAK_RSS = textwrap.dedent("""
    import resource, sys
    import rapidbyte_fast, pyarrow
    from rapidbyte_fast import arrow_read
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows = 0
    for batch in rapidbyte_fast.read(sys.argv[1], sys.argv[2], parallel=int(sys.argv[3]),
                                     batch_rows=2000):
        rows += batch.num_rows
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(rows, (peak - base) * 1024)
""")


@pytest.mark.parametrize("parallel", [1, 2])
def test_memory_is_bounded_by_batches_not_the_table(pg_conn, pg_dsn, pg_schema, parallel):
    rows, width = 100_000, 2000  # ~200 MB of text once decoded; batches of ~4 MB
    pg_conn.execute(f"CREATE TABLE {_tname(pg_schema, 'wide')} (id int PRIMARY KEY, pad text)")
    pg_conn.execute(f"INSERT INTO {_tname(pg_schema, 'wide')} SELECT i, "
                    f"repeat(chr(97 + i % 26), {width}) FROM generate_series(1, {rows}) i")
    pg_conn.execute(f"ANALYZE {_tname(pg_schema, 'wide')}")
    out = subprocess.run([sys.executable, "-c", _PEAK_RSS, pg_dsn, f"{pg_schema}.wide",
                          str(parallel)], capture_output=True, text=True, check=True)
    got_rows, growth = map(int, out.stdout.split())
    assert got_rows == rows
    # the whole table is 200 MB; a few batches (and libpq's buffers) are a fraction of it
    assert growth < 60 << 20, f"peak RSS grew by {growth >> 20} MB"


def test_bench_read_runs_and_verifies(pg_conn, pg_dsn):
    prefix = f"tb_{uuid.uuid4().hex[:10]}"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bench", "read", "--rows", "2000", "--iters", "1",
             "--schema-prefix", prefix, "--dsn", pg_dsn], cwd=root, capture_output=True,
            text=True, timeout=600, env={**os.environ, "PYTHONPATH": root}, check=False)
    finally:
        pg_conn.execute(f'DROP SCHEMA IF EXISTS "{prefix}_src" CASCADE')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    ours = next(ln for ln in lines if ln.startswith("rapidbyte_fast.read parallel=1"))
    assert ours.split()[-1] == "1"  # one verified run
    for peer in ("connectorx ", "ADBC postgresql "):
        row = next(ln for ln in lines if ln.startswith(peer))
        assert row.split()[-1] == "1" or "skipped: " in row
