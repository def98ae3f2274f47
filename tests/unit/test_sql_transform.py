"""The sql transform on small Arrow batches: exact rows and schemas of single and chained
queries, field metadata carried only through plain column references, and the exact one-line
errors for bad SQL (at open) and failing batches (at apply)."""
from __future__ import annotations

import hashlib
import re

import pyarrow as pa
import pytest

from rapidbyte_fast.errors import ConfigError, DataError
from rapidbyte_fast.transforms.sql import SqlTransform, validate_sql


def pg(name: str, t: pa.DataType, pg_type: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, t, nullable, {"pg_type": pg_type})


USERS = pa.schema(
    [pg("id", pa.int32(), "integer", False), pg("name", pa.utf8(), "varchar(20)"),
     pg("age", pa.int32(), "integer")],
    metadata={"primary_key": "id"},
)


def users(ids: list[int], names: list[str | None], ages: list[int | None]) -> pa.RecordBatch:
    return pa.record_batch([pa.array(ids, pa.int32()), pa.array(names, pa.utf8()),
                            pa.array(ages, pa.int32())], schema=USERS)


BATCH = users([1, 2, 3, 4], ["ann", "bob", None, "dörte"], [34, 12, 50, None])


def run(query: str, *batches: pa.RecordBatch, stream: str = "public.users",
        schema: pa.Schema = USERS) -> tuple[pa.Schema, list[pa.RecordBatch], SqlTransform]:
    t = SqlTransform({"query": query}, index=0)
    out_schema = t.open(stream, schema)
    out = [o for b in batches for o in t.apply(b)]
    assert t.finish() == []
    t.close()
    return out_schema, out, t


def same(*schemas: pa.Schema) -> bool:
    """Equal including field and schema metadata (``==`` ignores metadata)."""
    return all(s.equals(schemas[0], check_metadata=True) for s in schemas[1:])


def rows(batches: list[pa.RecordBatch]) -> list[dict]:
    return [r for b in batches for r in b.to_pylist()]


# ---- results ---------------------------------------------------------------------------

def test_upper_case_keeps_rows_order_and_key_metadata():
    schema, out, t = run("SELECT id, upper(name) AS name, age FROM users", BATCH)
    assert same(schema, pa.schema(
        [pg("id", pa.int32(), "integer", False), pa.field("name", pa.utf8()),
         pg("age", pa.int32(), "integer")], metadata={"primary_key": "id"}))
    assert len(out) == 1 and same(out[0].schema, schema)
    assert [f.metadata for f in out[0].schema] == [{b"pg_type": b"integer"}, None,
                                                   {b"pg_type": b"integer"}]
    assert rows(out) == [
        {"id": 1, "name": "ANN", "age": 34}, {"id": 2, "name": "BOB", "age": 12},
        {"id": 3, "name": None, "age": 50}, {"id": 4, "name": "DÖRTE", "age": None},
    ]
    assert {k: v for k, v in t.stats.items() if k != "seconds"} == {"rows_in": 4, "rows_out": 4}
    assert t.stats["seconds"] > 0


def test_chained_upper_then_filter_on_age():
    first = SqlTransform({"query": "SELECT id, upper(name) AS name, age FROM users"}, index=0)
    second = SqlTransform({"query": "SELECT * FROM users WHERE age >= 18"}, index=1)
    middle = first.open("public.users", USERS)
    schema = second.open("public.users", middle)
    second_batch = users([5, 6], ["eve", "fay"], [18, 17])
    out = [o for b in (BATCH, second_batch) for mid in first.apply(b) for o in second.apply(mid)]
    assert same(schema, middle, *(b.schema for b in out), pa.schema(
        [pg("id", pa.int32(), "integer", False), pa.field("name", pa.utf8()),
         pg("age", pa.int32(), "integer")], metadata={"primary_key": "id"}))
    assert len(out) == 2
    assert rows(out) == [{"id": 1, "name": "ANN", "age": 34},
                         {"id": 3, "name": None, "age": 50},
                         {"id": 5, "name": "EVE", "age": 18}]
    assert (first.stats["rows_in"], first.stats["rows_out"]) == (6, 6)
    assert (second.stats["rows_in"], second.stats["rows_out"]) == (6, 3)


def test_input_alias_and_schema_qualified_name_read_the_same_batch():
    for query in ("SELECT id FROM input WHERE age > 20",
                  "SELECT id FROM public.users WHERE age > 20",
                  "SELECT i.id FROM users i WHERE i.age > 20"):
        assert rows(run(query, BATCH)[1]) == [{"id": 1}, {"id": 3}]


def test_mixed_case_stream_is_a_quoted_table_name():
    assert rows(run('SELECT id FROM "Users" WHERE id < 3', BATCH, stream="Users")[1]) == [
        {"id": 1}, {"id": 2}]
    with pytest.raises(ConfigError, match="table 'datafusion.public.users' not found"):
        run("SELECT id FROM Users", BATCH, stream="Users")


def test_a_filter_that_keeps_nothing_returns_no_batch():
    schema, out, t = run("SELECT id FROM users WHERE age > 100", BATCH, BATCH)
    assert out == []
    assert same(schema, pa.schema([pg("id", pa.int32(), "integer", False)],
                                  metadata={"primary_key": "id"}))
    assert (t.stats["rows_in"], t.stats["rows_out"]) == (8, 0)


def orders(rows: int = 60_000, batch_rows: int = 5_000) -> list[pa.RecordBatch]:
    regions = pa.array(["north", "south", "west"] * (rows // 3))
    table = pa.table({"id": pa.array(range(rows), pa.int64()), "region": regions,
                      "amount": pa.array([1.5] * rows)})
    return table.to_batches(max_chunksize=batch_rows)


def test_group_by_over_batches_is_refused_not_answered_per_batch():
    # 60,000 rows in 5,000-row batches, 3 regions: per batch this gave 36 rows, not 3
    batches = orders()
    assert len(batches) == 12
    query = "SELECT region, count(*) AS n FROM orders GROUP BY region"
    message = ('transforms[0].config.query: GROUP BY would be computed on each batch alone, '
               'not over the whole stream; the sql transform works row by row (query: '
               '"SELECT region, count(*) AS n FROM orders GROUP BY region")')
    with pytest.raises(ConfigError) as err:
        validate_sql(query, "public.orders", batches[0].schema, index=0)
    assert str(err.value) == message
    with pytest.raises(ConfigError) as err:
        SqlTransform({"query": query}, index=0).open("public.orders", batches[0].schema)
    assert str(err.value) == message


@pytest.mark.parametrize(("query", "construct"), [
    ("SELECT count(*) AS n, max(amount) FROM orders", "an aggregate function"),
    ("SELECT DISTINCT region FROM orders", "DISTINCT"),
    ("SELECT * FROM orders ORDER BY id", "ORDER BY"),
    ("SELECT * FROM orders LIMIT 10", "LIMIT/OFFSET"),
    ("SELECT * FROM orders LIMIT 10 OFFSET 5", "LIMIT/OFFSET"),
    ("SELECT id, row_number() OVER (PARTITION BY region) AS r FROM orders",
     "a window function"),
    ("SELECT * FROM (SELECT region, sum(amount) AS s FROM orders GROUP BY region) t "
     "WHERE s > 0", "GROUP BY"),
    ("SELECT id FROM orders WHERE amount > (SELECT avg(amount) FROM orders)", "a subquery"),
    ("SELECT id FROM orders WHERE id IN (SELECT id FROM orders WHERE amount > 1)",
     "a subquery"),
    ("SELECT a.id FROM orders a JOIN orders b ON a.id = b.id", "a JOIN of the input with itself"),
    ("SELECT id FROM orders UNION ALL SELECT 0", "UNION with rows not read from the input"),
    ("SELECT 1 AS one", "a query that does not read the input"),
    ("SELECT v.column1 FROM orders o RIGHT JOIN (VALUES (1)) v ON v.column1 = o.id",
     "a JOIN that keeps rows not read from the input"),
])
def test_constructs_over_many_rows_are_refused(query, construct):
    with pytest.raises(ConfigError, match="^transforms\\[2\\].config.query: " + re.escape(
            f"{construct} would be computed on each batch alone, not over the whole stream")):
        SqlTransform({"query": query}, index=2).open("public.orders", orders(3)[0].schema)


@pytest.mark.parametrize("query", [
    "SELECT id, upper(region) AS region, amount * 2 AS twice FROM orders WHERE amount > 1",
    "SELECT * FROM (SELECT id, region FROM orders) t WHERE region <> 'west'",
    "WITH o AS (SELECT id FROM orders) SELECT id FROM o",
    "SELECT id FROM orders UNION ALL SELECT id + 1 FROM orders",
    "SELECT o.id, v.column2 AS label FROM orders o LEFT JOIN (VALUES (1, 'one')) v "
    "ON v.column1 = o.id",
    "SELECT id, CASE WHEN id IN (1, 2) THEN 'low' ELSE coalesce(region, '?') END AS c "
    "FROM orders",
])
def test_row_by_row_queries_run_on_every_batch(query):
    batches = orders(30, 10)
    t = SqlTransform({"query": query}, index=0)
    t.open("public.orders", batches[0].schema)
    out = [o for b in batches for o in t.apply(b)]
    assert sum(b.num_rows for b in out) >= 20


def test_order_of_a_large_batch_survives_a_filter():
    n = 300_000
    big = users(list(range(n)), ["x"] * n, [i % 100 for i in range(n)])
    _, out, _ = run("SELECT id FROM users WHERE age < 50", big)
    assert len(out) == 1
    assert out[0].column("id").to_pylist() == [i for i in range(n) if i % 100 < 50]


def test_field_metadata_only_through_plain_column_references():
    schema, out, _ = run(
        "SELECT id AS user_id, name, CAST(id AS BIGINT) AS id64, age + 1 AS next_age, "
        "CAST(age AS VARCHAR) AS age_text, md5(name) AS digest FROM users", BATCH)
    assert same(schema, pa.schema([
        pg("user_id", pa.int32(), "integer", False),  # renamed, still the same column
        pg("name", pa.utf8(), "varchar(20)"),
        pa.field("id64", pa.int64(), False),  # DataFusion keeps pg_type through a cast; we drop it
        pa.field("next_age", pa.int64()),
        pa.field("age_text", pa.utf8()),  # not DataFusion's Utf8View
        pa.field("digest", pa.utf8()),  # md5 returns Utf8View: made plain
    ]))  # no primary key: column id is not in the output
    assert same(out[0].schema, schema)
    assert out[0].column("age_text").to_pylist() == ["34", "12", "50", None]
    assert out[0].column("digest").to_pylist() == [
        hashlib.md5(b"ann").hexdigest(), hashlib.md5(b"bob").hexdigest(), None,
        hashlib.md5("dörte".encode()).hexdigest()]


def test_primary_key_dropped_when_its_column_is_computed():
    schema, _, _ = run("SELECT id + 0 AS id, name FROM users", BATCH)
    assert schema.metadata is None
    assert schema.field("id").metadata is None


def test_validate_sql_gives_the_open_schema():
    query = "SELECT id, upper(name) AS name FROM users WHERE age > 1"
    assert same(validate_sql(query, "public.users", USERS), run(query)[0])


# ---- errors ----------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "message"), [
    ("SELECT nope FROM users",
     "Schema error: No field named nope. Did you mean 'users.name'? Valid fields are users.id, "
     "users.name, users.age. at Line: 1, Column: 8"),
    ("SELECT id,\n  u.agee FROM users u",
     "Schema error: No field named u.agee. Did you mean 'u.age'? Valid fields are u.id, "
     "u.name, u.age. at Line: 2, Column: 3"),
    ("SELECT 'nope' AS x, nope FROM users -- nope",
     "Schema error: No field named nope. Did you mean 'users.name'? Valid fields are users.id, "
     "users.name, users.age. at Line: 1, Column: 21"),
    ("selec id FROM users",
     "SQL error: Expected: an SQL statement, found: selec at Line: 1, Column: 1"),
    ("SELECT id FROM users WHERE",
     "SQL error: Expected: an expression, found: EOF at Line: 1, Column: 27"),
    ("SELECT id FROM usrs",
     "Error during planning: table 'datafusion.public.usrs' not found at Line: 1, Column: 16"),
    ("SELECT uper(name) FROM users",
     "Error during planning: Invalid function 'uper'. Did you mean 'upper'? at Line: 1, Column: 8"),
    ("SELECT id FROM users WHERE id = 'abc'",
     "Arrow error: Cast error: Cannot cast string 'abc' to value of Int32 type"),
    ("SELECT NULL AS nothing, id FROM users",
     "column nothing has no type (a bare NULL); cast it, e.g. CAST(NULL AS TEXT)"),
    ("CREATE TABLE t AS SELECT * FROM users",
     "Error during planning: DDL not supported: CreateMemoryTable"),
    ("COPY (SELECT * FROM users) TO '/tmp/rbf_never_written.csv'",
     "Error during planning: DML not supported: COPY"),
    ("SELECT 1; SELECT 2",
     "This feature is not implemented: The context currently only supports a single SQL "
     "statement"),
])
def test_bad_queries_fail_at_open_with_one_line(query, message):
    with pytest.raises(ConfigError) as err:
        SqlTransform({"query": query}, index=0).open("public.users", USERS)
    shown = query.replace("\n", "\\n")
    assert err.value.problems == [f'transforms[0].config.query: {message} (query: "{shown}")']


def test_error_without_index_and_validate_sql_error():
    with pytest.raises(ConfigError) as err:
        validate_sql("SELECT nope FROM users", "users", USERS)
    assert str(err.value).startswith("config.query: Schema error: No field named nope.")
    with pytest.raises(ConfigError) as err:
        validate_sql("SELECT nope FROM users", "users", USERS, index=3)
    assert str(err.value).startswith("transforms[3].config.query: Schema error:")


@pytest.mark.parametrize("config", [{}, {"query": "  "}, {"query": 5}])
def test_missing_query(config):
    with pytest.raises(ConfigError) as err:
        SqlTransform(config, index=2)
    assert err.value.problems == [
        "transforms[2].config.query: the sql transform needs a non-empty query"]


def test_unknown_config_keys():
    with pytest.raises(ConfigError) as err:
        SqlTransform({"qurey": "SELECT 1", "mode": "x"})
    assert err.value.problems == [
        "config.qurey: unknown key (did you mean 'query'?)",
        "config.mode: unknown key",
        "config.query: the sql transform needs a non-empty query"]


def test_a_batch_that_fails_raises_data_error_naming_stream_and_transform():
    t = SqlTransform({"query": "SELECT id / (age - age) AS x FROM users"}, index=1)
    t.open("public.users", USERS)
    assert rows(t.apply(BATCH.slice(3))) == [{"x": None}]  # age NULL: no division
    with pytest.raises(DataError) as err:
        t.apply(BATCH)
    assert str(err.value) == (
        "stream public.users: transforms[1] (sql): Arrow error: Divide by zero error "
        '(query: "SELECT id / (age - age) AS x FROM users")')
