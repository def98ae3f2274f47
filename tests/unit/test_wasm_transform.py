"""Both example plugins end to end through WasmTransform, checked value for value against
pyarrow.compute (filter) and a Python reference (mask), on generated bench_events batches
and on batches covering every column layout the SDK carries, with NULLs and slices."""
from __future__ import annotations

import decimal
import math
import threading
from datetime import date, datetime, timedelta, timezone

import hypothesis.strategies as st
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings

from rapidbyte_fast.errors import ConfigError, PluginError
from rapidbyte_fast.sources.generate import generate_batches
from rapidbyte_fast.transforms.wasm import WasmTransform

OPS = {"==": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
       ">": pc.greater, ">=": pc.greater_equal}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RAPIDBYTE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "aot"))


def examples(n: int) -> settings:
    return settings(max_examples=n, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def keep(column: str, op: str, value) -> WasmTransform:
    return WasmTransform("transform-filter", {"column": column, "op": op, "value": value})


def run(transform: WasmTransform, batches: list[pa.RecordBatch], stream: str = "s") -> pa.Table:
    schema = transform.open(stream, batches[0].schema)
    out = [b for batch in batches for b in transform.apply(batch)] + transform.finish()
    transform.close()
    assert all(b.schema.equals(schema, check_metadata=True) for b in out)
    return pa.Table.from_batches(out, schema=schema)


def bench_events(rows: int = 60_000, batch_rows: int = 20_000) -> list[pa.RecordBatch]:
    return list(generate_batches("bench_events", 1, rows + 1, batch_rows))


def assert_same(got: pa.Table, expected: pa.Table) -> None:
    """Equal schemas (with metadata) and equal values, NaN matching NaN."""
    def rows(table: pa.Table) -> list[dict]:
        return [{k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
                for r in table.to_pylist()]

    assert got.schema.equals(expected.schema, check_metadata=True)
    assert rows(got) == rows(expected)


def expected_filter(batches: list[pa.RecordBatch], column: str, op: str, value) -> pa.Table:
    table = pa.Table.from_batches(batches)
    values = table[column]
    if isinstance(value, float) and pa.types.is_integer(values.type):
        # the plugin's documented rule: an integer column meets a non-integral value as float64
        values = values.cast(pa.float64(), safe=False)
    return table.filter(OPS[op](values, value))


# -- filter ---------------------------------------------------------------------------------

@pytest.mark.parametrize("op", list(OPS))
def test_filter_bench_events_matches_pyarrow(op):
    batches = bench_events()
    transform = keep("amount", op, 5000)
    got = run(transform, batches, "bench_events")
    expected = expected_filter(batches, "amount", op, 5000)
    assert got.num_rows == expected.num_rows > 0
    assert got.equals(expected, check_metadata=True)
    assert got.schema.metadata == {b"primary_key": b"id"}
    assert got.schema.field("amount").metadata == {b"pg_type": b"integer"}
    assert transform.stats["rows_in"] == 60_000
    assert transform.stats["rows_out"] == expected.num_rows
    assert transform.stats["batches_in"] == 3


@pytest.mark.parametrize(("column", "op", "value"), [
    ("amount", ">=", 5000.5), ("amount", "==", 70.0), ("amount", "<", -1),
    ("id", "!=", 3), ("user_id", ">", 1e4),
])
def test_filter_values_of_other_kinds(column, op, value):
    batches = bench_events(6000, 2500)
    got = run(keep(column, op, value), batches)
    assert got.equals(expected_filter(batches, column, op, value), check_metadata=True)


def wide_batch() -> pa.RecordBatch:
    """Seven rows over every layout: fixed widths 1..32 bytes, booleans, utf8/binary and
    their large variants, with NULLs in every column."""
    utc = timezone.utc
    return pa.record_batch({
        "i8": pa.array([1, -2, None, 127, -128, 0, 5], pa.int8()),
        "i16": pa.array([300, None, -300, 7, 8, 9, 10], pa.int16()),
        "i32": pa.array([None, 5000, 4999, 5001, -5000, 2**31 - 1, -(2**31)], pa.int32()),
        "i64": pa.array([2**62, -(2**62), 9007199254740993, None, 0, 1, -1], pa.int64()),
        "u8": pa.array([255, 0, None, 1, 2, 3, 128], pa.uint8()),
        "u16": pa.array([65535, 0, 1, None, 2, 3, 4], pa.uint16()),
        "u32": pa.array([2**32 - 1, 0, 1, 2, None, 3, 2**31], pa.uint32()),
        "f32": pa.array([1.5, float("nan"), None, -0.0, float("inf"), 0.1, -7.25], pa.float32()),
        "f64": pa.array([0.1, float("nan"), float("-inf"), None, -0.0, 5000.0, 1e300]),
        "flag": pa.array([True, None, False, True, True, False, None]),
        "text": pa.array(["a", None, "ünïcödé", "", "tab\there", "x" * 300, "📧"]),
        "big_text": pa.array([None, "b", "cc", "ddd", None, "", "eeeee"], pa.large_string()),
        "blob": pa.array([b"\x00\x01", None, b"", b"\xff" * 9, b"z", b"y", None], pa.binary()),
        "big_blob": pa.array([b"q", b"", None, b"r", b"s", b"t", b"u"], pa.large_binary()),
        "ts": pa.array([datetime(2024, 1, 1, tzinfo=utc), None]
                       + [datetime(1970, 1, 1, tzinfo=utc)] * 5, pa.timestamp("us", tz="UTC")),
        "day": pa.array([date(2024, 2, 29), date(1, 1, 1), None, date(9999, 12, 31)]
                        + [date(2000, 1, 1)] * 3),
        "day64": pa.array([0, None, 86_400_000, -86_400_000, 0, 0, 0], pa.date64()),
        "t64": pa.array([1, 2, None, 4, 5, 6, 7], pa.time64("us")),
        "dur": pa.array([timedelta(seconds=1), None] + [timedelta(0)] * 5, pa.duration("us")),
        "dec": pa.array([decimal.Decimal("1.2345"), None, decimal.Decimal("-99999999.9999")] +
                        [decimal.Decimal(0)] * 4, pa.decimal128(12, 4)),
        "dec256": pa.array([decimal.Decimal(1)] * 6 + [None], pa.decimal256(40, 2)),
        "uuid": pa.array([bytes(range(16)), None] + [b"\xab" * 16] * 5, pa.binary(16)),
        "mdn": pa.array([None, (1, 2, 3), (4, 5, 6), (7, 8, 9), (0, 0, 0), (1, 1, 1), (2, 2, 2)],
                        pa.month_day_nano_interval()),
    })


@pytest.mark.parametrize(("column", "value"), [
    ("i8", 0), ("i16", 8), ("i32", 5000), ("i64", 9007199254740993), ("i64", 0.5),
    ("u8", 2), ("u16", 1), ("u32", 2**31), ("f32", 0.1), ("f32", -0.0), ("f64", 0.1),
    ("f64", 5000), ("f64", -1e308),
])
@pytest.mark.parametrize("op", list(OPS))
def test_filter_every_numeric_type_and_carry_every_layout(column, value, op):
    batch = wide_batch()
    got = run(keep(column, op, value), [batch])
    assert_same(got, expected_filter([batch], column, op, value))


def test_filter_sliced_batches():
    batch = pa.concat_batches([wide_batch()] * 50)
    slices = [batch.slice(3, 101), batch.slice(150, 77), batch.slice(349, 1)]
    got = run(keep("i32", ">", 0), slices)
    assert_same(got, expected_filter(slices, "i32", ">", 0))


def test_filter_empty_results_and_empty_batches():
    batches = bench_events(3000, 1000)
    transform = keep("amount", "<", -1)
    schema = transform.open("s", batches[0].schema)
    assert schema.equals(batches[0].schema, check_metadata=True)
    assert [transform.apply(b) for b in batches] == [[], [], []]
    assert transform.apply(batches[0].slice(0, 0)) == []
    assert transform.finish() == []
    assert (transform.stats["rows_in"], transform.stats["rows_out"]) == (3000, 0)
    transform.close()


@examples(60)
@given(values=st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
                       min_size=1, max_size=300),
       op=st.sampled_from(list(OPS)),
       value=st.one_of(st.integers(-(2**63), 2**63 - 1),
                       st.floats(allow_nan=False, allow_infinity=False, width=64)))
def test_filter_int64_property(values, op, value):
    batch = pa.record_batch({"v": pa.array(values, pa.int64()), "s": [str(v) for v in values]})
    got = run(keep("v", op, value), [batch])
    assert got.equals(expected_filter([batch], "v", op, value))


@examples(60)
@given(values=st.lists(st.one_of(st.none(), st.floats(width=64)), min_size=1, max_size=300),
       op=st.sampled_from(list(OPS)),
       value=st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_filter_float64_property(values, op, value):
    batch = pa.record_batch({"v": pa.array(values, pa.float64())})
    got = run(keep("v", op, value), [batch])
    assert_same(got, expected_filter([batch], "v", op, value))


@pytest.mark.parametrize(("config", "where", "error"), [
    ({"column": "nope", "op": ">", "value": 1}, "rb_run",
     "config.column 'nope' is not a column of the stream"),
    ({"column": "text", "op": ">", "value": 1}, "rb_run",
     "config.column must be an int8-64, uint8-32, float32 or float64 column"),
    ({"column": "ts", "op": ">", "value": 1}, "rb_run",
     "config.column must be an int8-64, uint8-32, float32 or float64 column"),
    ({"column": "i32", "op": "~", "value": 1}, "rb_init",
     "config.op must be one of == != < <= > >="),
    ({"column": "i32", "op": ">"}, "rb_init", "config.value is required"),
    ({"column": "i32", "op": ">", "value": "5"}, "rb_init", "config.value must be a number"),
    ({"column": "i32", "op": ">", "value": True}, "rb_init", "config.value must be a number"),
    ({"column": 3, "op": ">", "value": 1}, "rb_init", "config: expected a string"),
    ({"colum": "i32", "op": ">", "value": 1}, "rb_init",
     "config: unknown key 'colum' (expected column, op, value)"),
])
def test_filter_config_errors(config, where, error):
    transform = WasmTransform("transform-filter", config)
    with pytest.raises(PluginError) as info:
        transform.open("s", wide_batch().schema)
    assert str(info.value) == f"plugin 'transform-filter' failed in {where}: {error}"
    transform.close()


@pytest.mark.parametrize(("field", "error"), [
    (pa.field("l", pa.list_(pa.int32())), "column 'l': nested columns are not supported"),
    (pa.field("d", pa.dictionary(pa.int32(), pa.string())),
     "column 'd': dictionary-encoded columns are not supported"),
    (pa.field("n", pa.null()), "column 'n': unsupported Arrow type"),
    (pa.field("sv", pa.string_view()), "column 'sv': unsupported Arrow type"),
])
def test_unsupported_schemas_are_named(field, error):
    schema = pa.schema([pa.field("v", pa.int32()), field])
    transform = keep("v", ">", 1)
    with pytest.raises(PluginError, match=f"^plugin 'transform-filter' failed in rb_run: {error}$"):
        transform.open("s", schema)
    transform.close()


@pytest.mark.parametrize("value", [math.inf, math.nan, date(2024, 1, 1)])
def test_config_must_be_plain_json(value):
    with pytest.raises(ConfigError,
                       match=r"^plugin 'transform-filter': config must be plain JSON \("):
        keep("v", ">", value)


def test_unicode_column_names_in_config():
    batch = pa.record_batch({"émail📧": pa.array([1, 2, 3]), "x": ["a", "b", "c"]})
    got = run(keep("émail📧", ">=", 2), [batch])
    assert got.to_pydict() == {"émail📧": [2, 3], "x": ["b", "c"]}


def test_one_transform_serves_streams_one_after_another():
    transform = keep("amount", ">", 9000)
    first = bench_events(2000, 1000)
    wide = wide_batch()
    second = [wide.rename_columns(["amount" if n == "i32" else n for n in wide.schema.names])]
    assert run(transform, first, "a").equals(expected_filter(first, "amount", ">", 9000))
    assert_same(run(transform, second, "b"), expected_filter(second, "amount", ">", 9000))
    assert transform.stats["rows_in"] == 2007


def test_close_mid_stream_stops_the_instance():
    transform = keep("amount", ">", 9000)
    batches = bench_events(2000, 1000)
    transform.open("halfway", batches[0].schema)
    transform.apply(batches[0])
    assert any(t.name == "plugin transform-filter: halfway" for t in threading.enumerate())
    transform.close()
    assert not any(t.name.startswith("plugin transform-filter") for t in threading.enumerate())


# -- mask -------------------------------------------------------------------------------------

def fnv1a_hex(text: str) -> str:
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & (2**64 - 1)
    return f"{h:016x}"


def masked(text: str) -> str:
    at = text.rfind("@")
    return "*" * len(text) if at < 0 else "*" * len(text[:at]) + text[at:]


REFERENCE = {"hash": fnv1a_hex, "mask": masked}

EMAILS = ["alice@example.com", None, "bob", "ünïcödé@exämple.org", "", "a@b@c.io", "@nolocal",
          "trailing@", "📧📧@mail.test", None]


@pytest.mark.parametrize("mode", ["hash", "mask"])
@pytest.mark.parametrize("text_type", [pa.string(), pa.large_string()])
def test_mask_values_nulls_and_other_columns(mode, text_type):
    batch = pa.record_batch({
        "id": pa.array(range(len(EMAILS)), pa.int64()),
        "email": pa.array(EMAILS, text_type),
        "note": pa.array([f"n{i}" if i % 3 else None for i in range(len(EMAILS))]),
    })
    got = run(WasmTransform("transform-mask", {"columns": ["email"], "mode": mode}), [batch])
    assert got.column("email").type == text_type
    assert got.column("email").to_pylist() == [None if e is None else REFERENCE[mode](e)
                                               for e in EMAILS]
    assert got.column("email").null_count == 2
    source = pa.Table.from_batches([batch])
    assert got.drop_columns(["email"]).equals(source.drop_columns(["email"]))


def test_mask_hash_examples():
    # FNV-1a 64 test vectors: "" is the offset basis, "a" and "foobar" from the reference.
    batch = pa.record_batch({"s": ["", "a", "foobar"]})
    got = run(WasmTransform("transform-mask", {"columns": ["s"], "mode": "hash"}), [batch])
    assert got.column("s").to_pylist() == [
        "cbf29ce484222325", "af63dc4c8601ec8c", "85944171f73967e8"]


def test_mask_bench_events_deterministic():
    batches = bench_events(20_000, 8_000)
    config = {"columns": ["event_type", "payload"], "mode": "hash"}
    first = run(WasmTransform("transform-mask", config), batches)
    second = run(WasmTransform("transform-mask", config), batches)
    assert first.equals(second)
    source = pa.Table.from_batches(batches)
    for name in ("event_type", "payload"):
        assert first.column(name).to_pylist() == [
            fnv1a_hex(v) for v in source.column(name).to_pylist()]
    assert first.drop_columns(["event_type", "payload"]).equals(
        source.drop_columns(["event_type", "payload"]), check_metadata=True)


def test_mask_sliced_input():
    batch = pa.record_batch({"email": EMAILS * 20, "n": list(range(len(EMAILS) * 20))})
    slices = [batch.slice(5, 50), batch.slice(77, 3)]
    got = run(WasmTransform("transform-mask", {"columns": ["email"], "mode": "mask"}), slices)
    source = pa.Table.from_batches(slices)
    assert got.column("email").to_pylist() == [None if e is None else masked(e)
                                               for e in source.column("email").to_pylist()]
    assert got.column("n").to_pylist() == source.column("n").to_pylist()


@examples(80)
@given(values=st.lists(st.one_of(st.none(), st.text(st.characters(blacklist_categories=["Cs"]))),
                       min_size=1, max_size=100),
       mode=st.sampled_from(["hash", "mask"]))
def test_mask_property(values, mode):
    batch = pa.record_batch({"t": pa.array(values, pa.string())})
    got = run(WasmTransform("transform-mask", {"columns": ["t"], "mode": mode}), [batch])
    assert got.column("t").to_pylist() == [None if v is None else REFERENCE[mode](v)
                                           for v in values]


@pytest.mark.parametrize(("config", "where", "error"), [
    ({"columns": ["i32"], "mode": "hash"}, "rb_run",
     "config.columns: 'i32' is not a text (utf8) column"),
    ({"columns": ["blob"], "mode": "hash"}, "rb_run",
     "config.columns: 'blob' is not a text (utf8) column"),
    ({"columns": ["text", "gone"], "mode": "mask"}, "rb_run",
     "config.columns: 'gone' is not a column of the stream"),
    ({"columns": [], "mode": "mask"}, "rb_init", "config.columns must not be empty"),
    ({"columns": "text", "mode": "mask"}, "rb_init",
     "config.columns must be a list of column names"),
    ({"columns": ["text"], "mode": "scramble"}, "rb_init", "config.mode must be hash or mask"),
    ({"columns": ["text"]}, "rb_init", "config.mode is required (hash or mask)"),
    ({"columns": ["text"], "mode": "hash", "salt": "x"}, "rb_init",
     "config: unknown key 'salt' (expected columns, mode)"),
])
def test_mask_config_errors(config, where, error):
    transform = WasmTransform("transform-mask", config)
    with pytest.raises(PluginError) as info:
        transform.open("s", wide_batch().schema)
    assert str(info.value) == f"plugin 'transform-mask' failed in {where}: {error}"
    transform.close()


@examples(150)
@given(value=st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_filter_reads_config_floats_exactly(value):
    # The value's neighbours one ulp away must not match "==": the plugin's JSON reader
    # rounds correctly (17-digit reprs, subnormals and the largest doubles included).
    near = [math.nextafter(value, -math.inf), value, math.nextafter(value, math.inf)]
    batch = pa.record_batch({"v": pa.array(near, pa.float64())})
    got = run(keep("v", "==", value), [batch])
    assert got.column("v").to_pylist() == [value]


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63), 2**53 + 1, -(2**53) - 1, 10**18, 0])
def test_filter_reads_config_integers_exactly(value):
    near = [v for v in (value - 1, value, value + 1) if -(2**63) <= v < 2**63]
    batch = pa.record_batch({"v": pa.array(near, pa.int64())})
    got = run(keep("v", "==", value), [batch])
    assert got.column("v").to_pylist() == [value]
