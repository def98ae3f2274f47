"""The validate transform: each rule's exact pass/fail set (NULLs, NaN, bounds, duplicates
across batches), fail/skip/dlq on a table with a NULL and a malformed email (exact rows
kept, exact DLQ records and reasons), and the exact config errors with their key paths."""
from __future__ import annotations

import json
import math
from datetime import date
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapidbyte_fast.errors import ConfigError, DataError
from rapidbyte_fast.transforms.validate import ValidateTransform

EMAIL = r"^[^@\s]+@[^@\s]+\.[a-z]+$"
RULES = [
    {"not_null": ["id", "email"]},
    {"regex": {"column": "email", "pattern": EMAIL}},
    {"range": {"column": "age", "min": 0, "max": 150}},
    {"accepted_values": {"column": "status", "values": ["new", "paid", "refunded"]}},
    {"unique": ["id"]},
]
CUSTOMERS = pa.schema([
    pa.field("id", pa.int32(), False, {"pg_type": "integer"}),
    pa.field("email", pa.utf8(), True, {"pg_type": "text"}),
    pa.field("age", pa.int32(), True, {"pg_type": "integer"}),
    pa.field("status", pa.utf8(), True, {"pg_type": "text"}),
])


def customers(*rows: tuple) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [dict(zip(CUSTOMERS.names, r)) for r in rows], schema=CUSTOMERS)


# One NULL email, one malformed email; the rest are clean.
TABLE = customers(
    (1, "ann@example.com", 34, "new"),
    (2, None, 41, "paid"),
    (3, "bob@example.org", 27, "refunded"),
    (4, "not-an-email", 19, "new"),
    (5, "cy@example.net", None, None),
)
KEPT = [TABLE.to_pylist()[i] for i in (0, 2, 4)]


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict, list[str], str]] = []

    def __call__(self, stream: str, record: str, errors: list[str], category: str) -> None:
        self.calls.append((stream, json.loads(record), errors, category))


def opened(rules: list, mode: str = "skip", schema: pa.Schema = CUSTOMERS,
           reject: Sink | None = None) -> ValidateTransform:
    t = ValidateTransform({"rules": rules}, mode, reject, index=1)
    assert t.open("public.customers", schema) is schema
    return t


def kept(t: ValidateTransform, *batches: pa.RecordBatch) -> list[dict]:
    out = [o for b in batches for o in t.apply(b)]
    assert all(b.schema.equals(batches[0].schema, check_metadata=True) for b in out)
    return [r for b in out for r in b.to_pylist()]


# ---- fail / skip / dlq on the scenario table -----------------------------------------------

def test_fail_names_stream_row_rule_and_column():
    t = opened(RULES, "fail")
    with pytest.raises(DataError) as err:
        t.apply(TABLE)
    assert str(err.value) == ("stream public.customers, row 1: validation failed: "
                              "not_null: email is null (transforms[1])")


def test_fail_counts_rows_across_batches():
    t = opened(RULES, "fail")
    assert kept(t, TABLE.slice(0, 1)) == KEPT[:1]
    with pytest.raises(DataError) as err:
        t.apply(TABLE.slice(2))  # stream rows 1, 2, 3 = TABLE rows 2, 3, 4
    assert str(err.value) == (
        f"stream public.customers, row 2: validation failed: regex: email does not match "
        f"{EMAIL} (transforms[1])")


def test_skip_drops_the_null_and_the_malformed_email():
    t = opened(RULES, "skip")
    assert kept(t, TABLE) == KEPT
    assert {k: v for k, v in t.stats.items() if k != "seconds"} == {
        "rows_in": 5, "rows_out": 3, "skipped": 2, "dead_lettered": 0}


def test_dlq_stores_each_rejected_row_with_every_failed_rule():
    sink = Sink()
    t = opened(RULES, "dlq", reject=sink)
    bad = customers((6, "x@y", -3, "lost"), (1, "dup@example.com", 30, "new"))
    assert kept(t, TABLE, bad) == KEPT
    assert sink.calls == [
        ("public.customers", {"id": 2, "email": None, "age": 41, "status": "paid"},
         ["not_null: email is null"], "validation"),
        ("public.customers", {"id": 4, "email": "not-an-email", "age": 19, "status": "new"},
         [f"regex: email does not match {EMAIL}"], "validation"),
        ("public.customers", {"id": 6, "email": "x@y", "age": -3, "status": "lost"},
         [f"regex: email does not match {EMAIL}", "range: age is not between 0 and 150",
          "accepted_values: status is not one of [new, paid, refunded]"], "validation"),
        ("public.customers", {"id": 1, "email": "dup@example.com", "age": 30, "status": "new"},
         ["unique: id is a duplicate"], "validation"),
    ]
    assert {k: v for k, v in t.stats.items() if k != "seconds"} == {
        "rows_in": 7, "rows_out": 3, "skipped": 0, "dead_lettered": 4}


def test_a_batch_that_fails_entirely_gives_no_batch():
    t = opened([{"not_null": "email"}])
    assert t.apply(TABLE.slice(1, 1)) == []
    assert t.finish() == []


def test_dlq_needs_a_sink_and_modes_are_checked():
    with pytest.raises(ValueError, match="needs a reject sink"):
        ValidateTransform({"rules": RULES}, "dlq", None)
    with pytest.raises(ValueError, match="must be fail, skip or dlq"):
        ValidateTransform({"rules": RULES}, "ignore", None)


# ---- each rule ---------------------------------------------------------------------------

def test_accepted_values_of_a_boolean_column():
    schema = pa.schema([("ok", pa.bool_())])
    t = opened([{"accepted_values": {"column": "ok", "values": [True]}}], schema=schema)
    batch = pa.RecordBatch.from_pydict({"ok": [True, False, None]}, schema=schema)
    assert kept(t, batch) == [{"ok": True}, {"ok": None}]


def test_regex_accepted_values_and_range_pass_nulls():
    t = opened([RULES[1], RULES[2], RULES[3]])
    batch = customers((1, None, None, None))
    assert kept(t, batch) == batch.to_pylist()


def test_range_bounds_are_inclusive_and_nan_is_out():
    schema = pa.schema([("x", pa.float64())])
    batch = pa.RecordBatch.from_pylist(
        [{"x": v} for v in (-0.5, 0.0, 10.0, 10.5, math.nan, None, math.inf)], schema=schema)
    both = opened([{"range": {"column": "x", "min": 0, "max": 10}}], schema=schema)
    assert [r["x"] for r in kept(both, batch)] == [0.0, 10.0, None]
    low = opened([{"range": {"column": "x", "min": 0}}], schema=schema)
    assert [r["x"] for r in kept(low, batch)] == [0.0, 10.0, 10.5, None, math.inf]
    sink = Sink()
    high = opened([{"range": {"column": "x", "max": 10}}], "dlq", schema, sink)
    assert [r["x"] for r in kept(high, batch)] == [-0.5, 0.0, 10.0, None]
    assert [(c[1], c[2]) for c in sink.calls] == [
        ({"x": 10.5}, ["range: x is not <= 10"]), ({"x": "NaN"}, ["range: x is not <= 10"]),
        ({"x": "Infinity"}, ["range: x is not <= 10"])]


def test_range_on_dates_with_text_bounds_and_decimals():
    schema = pa.schema([("d", pa.date32()), ("amount", pa.decimal128(12, 2))])
    batch = pa.RecordBatch.from_pydict(
        {"d": pa.array([19000, 19723, 19724], pa.date32()),
         "amount": pa.array([0, 5, 1000], pa.decimal128(12, 2))}, schema=schema)
    t = opened([{"range": {"column": "d", "min": "2024-01-01"}},
                {"range": {"column": "amount", "min": 0.5, "max": 999.99}}], schema=schema)
    assert kept(t, batch) == [{"d": date(2024, 1, 1), "amount": Decimal("5.00")}]
    sink = Sink()
    t = opened([{"range": {"column": "d", "max": "2024-01-01"}}], "dlq", schema, sink)
    assert len(kept(t, batch)) == 2
    assert sink.calls == [("public.customers", {"d": "2024-01-02", "amount": "1000.00"},
                           ["range: d is not <= 2024-01-01"], "validation")]


def test_unique_across_batches_on_text_and_composite_keys():
    schema = pa.schema([("k", pa.utf8()), ("r", pa.int64())])
    batches = [pa.RecordBatch.from_pydict({"k": k, "r": r}, schema=schema) for k, r in [
        (["a", "b", "a", None], [1, 1, 1, 1]),
        (["b", "c", None, "c"], [2, 1, 1, 1]),
    ]]
    single = opened([{"unique": "k"}], schema=schema)
    assert kept(single, *batches) == [
        {"k": "a", "r": 1}, {"k": "b", "r": 1}, {"k": None, "r": 1},
        {"k": "c", "r": 1}, {"k": None, "r": 1}]
    sink = Sink()
    pair = opened([{"unique": ["k", "r"]}], "dlq", schema, sink)
    assert kept(pair, *batches) == [
        {"k": "a", "r": 1}, {"k": "b", "r": 1}, {"k": None, "r": 1},
        {"k": "b", "r": 2}, {"k": "c", "r": 1}, {"k": None, "r": 1}]
    assert sink.calls == [
        ("public.customers", {"k": "a", "r": 1}, ["unique: (k, r) is a duplicate"], "validation"),
        ("public.customers", {"k": "c", "r": 1}, ["unique: (k, r) is a duplicate"], "validation")]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), st.integers(-40, 40)), max_size=30), max_size=12),
       st.sampled_from([pa.int8(), pa.int64(), pa.uint32()]))
def test_unique_integer_keys_match_a_set(batches, arrow_type):
    if arrow_type == pa.int64():  # keys a float64 would merge
        batches = [[None if v is None else 2**62 + v for v in b] for b in batches]
    if arrow_type == pa.uint32():
        batches = [[None if v is None else abs(v) * 10**8 for v in b] for b in batches]
    schema = pa.schema([("k", arrow_type)])
    t = opened([{"unique": "k"}], schema=schema)
    seen: set[int] = set()
    expected = []
    for values in batches:
        for v in values:
            if v is None or v not in seen:
                expected.append(v)
            if v is not None:
                seen.add(v)
    got = [r["k"] for b in batches
           for r in kept(t, pa.RecordBatch.from_pydict({"k": pa.array(b, arrow_type)}))]
    assert got == expected


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(st.one_of(st.none(), st.sampled_from(["a", "b", "ü", ""])),
                                   st.one_of(st.none(), st.integers(0, 2))), max_size=20),
                max_size=8),
       st.booleans())
def test_unique_text_and_composite_keys_match_a_set(batches, composite):
    schema = pa.schema([("k", pa.utf8()), ("n", pa.int16())])
    t = opened([{"unique": ["k", "n"] if composite else ["k"]}], schema=schema)
    seen: set = set()
    expected = []
    for values in batches:
        for k, n in values:
            key = (k, n) if composite else (k,)
            if None in key or key not in seen:
                expected.append({"k": k, "n": n})
            if None not in key:
                seen.add(key)
    got = kept(t, *(pa.RecordBatch.from_pylist([{"k": k, "n": n} for k, n in b], schema=schema)
                    for b in batches))
    assert got == expected


# ---- config errors -------------------------------------------------------------------------

def problems(config: dict, schema: pa.Schema | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        t = ValidateTransform(config, "skip", None, index=2)
        t.open("public.customers", schema or CUSTOMERS)
    return err.value.problems


def test_rule_shape_errors_are_all_reported_with_key_paths():
    assert problems({"rulez": [], "rules": [
        {"not_nul": ["id"]},
        {"regex": {"column": "email", "pattern": "a(b"}},
        {"range": {"column": "age"}},
        "unique",
        {"unique": []},
        {"accepted_values": {"colum": "status", "values": []}},
        {"not_null": ["id"], "unique": ["id"]},
        {"range": {"column": "age", "min": [1]}},
    ]}) == [
        "transforms[2].config.rulez: unknown key (did you mean 'rules'?)",
        "transforms[2].config.rules[0]: unknown rule 'not_nul' (did you mean 'not_null'?); "
        "rules are not_null, regex, range, accepted_values, unique",
        "transforms[2].config.rules[1].regex.pattern: invalid regular expression: missing ): a(b",
        "transforms[2].config.rules[2].range: needs min, max or both",
        "transforms[2].config.rules[3]: must be a mapping with exactly one rule, "
        "e.g. {not_null: [id]} (got 'unique')",
        "transforms[2].config.rules[4].unique: must be a column name or a non-empty list of "
        "column names",
        "transforms[2].config.rules[5].accepted_values.colum: unknown key "
        "(did you mean 'column'?)",
        "transforms[2].config.rules[5].accepted_values.column: must be a column name",
        "transforms[2].config.rules[5].accepted_values.values: must be a non-empty list of values",
        "transforms[2].config.rules[6]: must be a mapping with exactly one rule, "
        "e.g. {not_null: [id]} (got keys not_null, unique)",
        "transforms[2].config.rules[7].range.min: must be a number (or a date/time as text)",
    ]


def test_no_rules():
    assert problems({}) == ["transforms[2].config.rules: must be a non-empty list of rules"]


def test_rules_against_the_schema_at_open():
    assert problems({"rules": [
        {"not_null": ["id", "emial"]},
        {"range": {"column": "age", "min": 150, "max": 0}},
        {"regex": {"column": "age", "pattern": "x"}},
        {"range": {"column": "status", "min": 1}},
        {"accepted_values": {"column": "age", "values": ["x"]}},
        {"unique": "nope"},
        {"range": {"column": "age", "min": "ten"}},
    ]}) == [
        "transforms[2].config.rules[0].not_null[1]: stream public.customers has no column "
        "'emial' (did you mean 'email'?)",
        "transforms[2].config.rules[1].range: min 150 is greater than max 0",
        "transforms[2].config.rules[2].regex.column: regex needs a text column; age is int32",
        "transforms[2].config.rules[3].range.column: range needs a numeric, date or time "
        "column; status is string",
        "transforms[2].config.rules[4].accepted_values.values: ['x'] do not fit age (int32)",
        "transforms[2].config.rules[5].unique: stream public.customers has no column 'nope'",
        "transforms[2].config.rules[6].range.min: 'ten' cannot be compared with age (int32)",
    ]


def test_unique_refuses_nested_columns():
    schema = pa.schema([("tags", pa.list_(pa.utf8()))])
    assert problems({"rules": [{"unique": "tags"}]}, schema) == [
        "transforms[2].config.rules[0].unique: cannot check uniqueness of tags "
        "(list<item: string>)"]
