"""The generate source: exact values, schemas, sizes and batch-split invariance of the
DATASETS.md datasets, checked against formulas re-implemented here row by row."""
from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from rapidbyte_fast.errors import ConfigError
from rapidbyte_fast.sources.generate import (
    DATASETS,
    GenerateReader,
    dataset_schema,
    estimate_row_bytes,
    generate_batches,
)
from rapidbyte_fast.sources.generate import _PARAGRAPHS as paragraphs  # 2 KB of prose, not copied

UTC = timezone.utc
T0 = datetime(2024, 1, 1)


def table(dataset: str, start: int, stop: int, batch_rows: int = 100_000) -> pa.Table:
    return pa.Table.from_batches(list(generate_batches(dataset, start, stop, batch_rows)),
                                 schema=dataset_schema(dataset))


def row(dataset: str, i: int) -> dict:
    return table(dataset, i, i + 1).to_pylist()[0]


def uid(i: int) -> bytes:
    return i.to_bytes(16, "big")


# ---- schemas ---------------------------------------------------------------------------

SCHEMAS = {
    "bench_events": [
        ("id", "integer"), ("event_type", "text"), ("user_id", "integer"), ("amount", "integer"),
        ("is_active", "boolean"), ("payload", "text"),
        ("created_at", "timestamp without time zone"),
    ],
    "small": [
        ("id", "bigint"), ("event_id", "uuid"), ("event_type", "text"), ("user_id", "bigint"),
        ("session_id", "bigint"), ("device_type", "text"), ("ip_address", "inet"),
        ("country_code", "text"), ("page_url", "text"), ("referrer_url", "text"),
        ("utm_source", "text"), ("utm_medium", "text"), ("duration_ms", "integer"),
        ("is_converted", "boolean"), ("created_at", "timestamp with time zone"),
    ],
    "medium": [
        ("id", "bigint"), ("order_id", "uuid"), ("customer_id", "bigint"),
        ("organization_id", "bigint"), ("status", "text"), ("currency", "text"),
        ("subtotal", "numeric(12,2)"), ("tax_amount", "numeric(12,2)"),
        ("total_amount", "numeric(12,2)"), ("shipping_name", "text"),
        ("shipping_street", "text"), ("shipping_city", "text"), ("shipping_state", "text"),
        ("shipping_zip", "text"), ("shipping_country", "text"), ("billing_name", "text"),
        ("billing_email", "text"), ("notes", "text"), ("tags", "text"), ("metadata", "jsonb"),
        ("created_at", "timestamp with time zone"), ("updated_at", "timestamp with time zone"),
    ],
    "large": [
        ("id", "bigint"), ("document_id", "uuid"), ("author_id", "bigint"),
        ("category_id", "integer"), ("title", "text"), ("slug", "text"), ("status", "text"),
        ("summary", "text"), ("body_text", "text"), ("body_html", "text"),
        ("metadata", "jsonb"), ("settings", "jsonb"), ("tags", "text"), ("revision", "integer"),
        ("word_count", "integer"), ("view_count", "bigint"), ("is_published", "boolean"),
        ("published_at", "timestamp with time zone"), ("created_at", "timestamp with time zone"),
        ("updated_at", "timestamp with time zone"),
    ],
}
NULLABLE = {
    "bench_events": set(),
    "small": {"session_id", "referrer_url", "utm_source", "utm_medium"},
    "medium": {"shipping_state", "notes"},
    "large": {"published_at"},
}
ARROW = {
    "integer": pa.int32(), "bigint": pa.int64(), "text": pa.string(), "boolean": pa.bool_(),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"), "uuid": pa.binary(16),
    "inet": pa.string(), "numeric(12,2)": pa.decimal128(12, 2), "jsonb": pa.string(),
}


def test_datasets_tuple() -> None:
    assert DATASETS == ("bench_events", "small", "medium", "large")


@pytest.mark.parametrize("dataset", DATASETS)
def test_schema_exact(dataset: str) -> None:
    schema = dataset_schema(dataset)
    assert schema.metadata == {b"primary_key": b"id"}
    got = [(f.name, f.metadata, f.type, f.nullable) for f in schema]
    want = [(name, {b"pg_type": pg.encode()}, ARROW[pg], name in NULLABLE[dataset])
            for name, pg in SCHEMAS[dataset]]
    assert got == want


@pytest.mark.parametrize("dataset", DATASETS)
def test_batches_carry_the_schema_with_metadata(dataset: str) -> None:
    for batch in generate_batches(dataset, 1, 12, 5):
        assert batch.schema.equals(dataset_schema(dataset), check_metadata=True)


# ---- bench_events ----------------------------------------------------------------------

def bench_events_row(i: int) -> dict:
    return {
        "id": i,
        "event_type": ["click", "purchase", "view", "signup", "logout"][i % 5],
        "user_id": i % 1000 + 1,
        "amount": 7 * i % 10000,
        "is_active": i % 3 != 0,
        "payload": f"payload-{i}-" + "x" * 50,
        "created_at": T0 - timedelta(seconds=37 * i % 86400),
    }


@pytest.mark.parametrize("i, want", [
    (1, {"id": 1, "event_type": "purchase", "user_id": 2, "amount": 7, "is_active": True,
         "payload": "payload-1-" + "x" * 50, "created_at": datetime(2023, 12, 31, 23, 59, 23)}),
    (2, {"id": 2, "event_type": "view", "user_id": 3, "amount": 14, "is_active": True,
         "payload": "payload-2-" + "x" * 50, "created_at": datetime(2023, 12, 31, 23, 58, 46)}),
    (5, {"id": 5, "event_type": "click", "user_id": 6, "amount": 35, "is_active": True,
         "payload": "payload-5-" + "x" * 50, "created_at": datetime(2023, 12, 31, 23, 56, 55)}),
    (999_999, {"id": 999_999, "event_type": "logout", "user_id": 1000, "amount": 9993,
               "is_active": False, "payload": "payload-999999-" + "x" * 50,
               "created_at": datetime(2023, 12, 31, 18, 13, 57)}),
])
def test_bench_events_exact_rows(i: int, want: dict) -> None:
    assert row("bench_events", i) == want


def test_bench_events_follow_the_formulas() -> None:
    for start, stop in ((1, 3001), (998_500, 1_000_001)):
        assert table("bench_events", start, stop).to_pylist() == [
            bench_events_row(i) for i in range(start, stop)]


def test_bench_events_checksum_inputs() -> None:
    t = table("bench_events", 1, 100_001)
    assert t.num_rows == 100_000
    assert pc.sum(t["amount"]).as_py() == sum(7 * i % 10000 for i in range(1, 100_001))
    assert pc.count_distinct(t["payload"]).as_py() == 100_000


# ---- small -----------------------------------------------------------------------------

def small_row(i: int) -> dict:
    tenth = i % 10
    return {
        "id": i,
        "event_id": uid(i),
        "event_type": ["click", "purchase", "view", "signup", "logout", "scroll", "hover",
                       "submit"][i % 8],
        "user_id": i % 100000 + 1,
        "session_id": 31 * i % 500000 if tenth < 7 else None,
        "device_type": ["mobile", "desktop", "tablet"][i % 3],
        "ip_address": f"10.{i % 256}.{i // 256 % 256}.{i % 253 + 1}",
        "country_code": ["US", "GB", "DE", "FR", "CA", "JP", "AU", "BR", "IN", "NL", "ES", "IT",
                         "SE", "MX", "KR", "PL", "CH", "SG", "IE", "NZ"][i % 20],
        "page_url": f"/section-{i % 12}/page-{i % 500}",
        "referrer_url": (f"https://ref-{i % 50}.example.com/campaign/{i % 200}"
                         if tenth < 6 else None),
        "utm_source": ["google", "facebook", "twitter", "linkedin"][i % 4] if tenth < 4 else None,
        "utm_medium": ["cpc", "organic", "social", "email"][i % 4] if tenth < 4 else None,
        "duration_ms": 7 * i % 30000,
        "is_converted": i % 5 == 0,
        "created_at": datetime(2024, 1, 1, tzinfo=UTC) - timedelta(seconds=37 * i % 86400),
    }


def test_small_exact_rows() -> None:
    assert row("small", 1) == {
        "id": 1, "event_id": b"\x00" * 15 + b"\x01", "event_type": "purchase", "user_id": 2,
        "session_id": 31, "device_type": "desktop", "ip_address": "10.1.0.2",
        "country_code": "GB", "page_url": "/section-1/page-1",
        "referrer_url": "https://ref-1.example.com/campaign/1", "utm_source": "facebook",
        "utm_medium": "organic", "duration_ms": 7, "is_converted": False,
        "created_at": datetime(2023, 12, 31, 23, 59, 23, tzinfo=UTC),
    }
    assert row("small", 7) == {
        "id": 7, "event_id": b"\x00" * 15 + b"\x07", "event_type": "submit", "user_id": 8,
        "session_id": None, "device_type": "desktop", "ip_address": "10.7.0.8",
        "country_code": "BR", "page_url": "/section-7/page-7", "referrer_url": None,
        "utm_source": None, "utm_medium": None, "duration_ms": 49, "is_converted": False,
        "created_at": datetime(2023, 12, 31, 23, 55, 41, tzinfo=UTC),
    }
    r = row("small", 773)
    assert (r["ip_address"], r["event_id"].hex()) == ("10.5.3.15", "0" * 29 + "305")


def test_small_follows_the_formulas() -> None:
    for start, stop in ((1, 2001), (654_321, 655_321)):
        assert table("small", start, stop).to_pylist() == [small_row(i) for i in range(start, stop)]


# ---- medium ----------------------------------------------------------------------------

def cents(n: int) -> Decimal:
    return Decimal(n) / 100


def test_medium_exact_row_1() -> None:
    r = row("medium", 1)
    metadata = json.loads(r.pop("metadata"))
    created = datetime(2023, 12, 31, 23, 58, 59, tzinfo=UTC)
    assert r == {
        "id": 1, "order_id": uid(1), "customer_id": 2, "organization_id": 2,
        "status": "processing", "currency": "EUR", "subtotal": Decimal("1.13"),
        "tax_amount": Decimal("0.09"), "total_amount": Decimal("1.22"),
        "shipping_name": "Liam Smith", "shipping_street": "8 Oak Avenue",
        "shipping_city": "Portland", "shipping_state": "OR", "shipping_zip": "07919",
        "shipping_country": "US", "billing_name": "Liam Smith",
        "billing_email": "liam.smith1@mail.example.org",
        "notes": "Order 1: please deliver after 5 pm on weekdays.",
        "tags": "wholesale,express,vip", "created_at": created,
        "updated_at": created + timedelta(seconds=17),
    }
    assert metadata["plan"] == {"name": "starter", "tier": 1, "seats": 4,
                                "billing_cycle": "annual", "trial": False,
                                "renews_on": "2024-01-08"}
    assert metadata["features"][2] == {"name": "custom_domains", "enabled": False,
                                       "limit": 50000, "usage": 45, "reset": "monthly"}
    assert len(metadata["features"]) == 5
    assert metadata["preferences"]["notifications"]["email"] == {
        "enabled": True, "frequency": "instant", "categories": ["billing", "security", "product"]}
    assert metadata["invoices"] == [
        {"number": "INV-1-1", "amount_cents": 113, "currency": "USD", "status": "open",
         "issued_on": "2023-12-01"},
        {"number": "INV-1-2", "amount_cents": 226, "currency": "USD", "status": "void",
         "issued_on": "2023-11-01"},
        {"number": "INV-1-3", "amount_cents": 339, "currency": "USD", "status": "paid",
         "issued_on": "2023-10-02"},
    ]
    assert metadata["custom_fields"] == {
        "account_manager": "Olivia Johnson", "external_ref": "EXT-1", "po_number": "PO-007919",
        "contract": "CTR-1",
        "classification": {"region": "emea", "segment": "smb",
                           "acquisition_channel": "paid_search", "priority": 2,
                           "cost_center": "CC-12", "onboarded": True},
    }
    # Keys in a fixed order, compact separators.
    assert list(metadata) == ["plan", "features", "preferences", "invoices", "custom_fields"]
    assert row("medium", 1)["metadata"].startswith('{"plan":{"name":"starter","tier":1,')


def test_medium_numerics_nulls_and_json() -> None:
    start, stop = 3001, 7001
    t = table("medium", start, stop)
    assert t["subtotal"].type == pa.decimal128(12, 2)
    cent = Decimal("0.01")
    for i, r in zip(range(start, stop), t.to_pylist()):
        subtotal = cents(13 * i % 50000 + 100)
        assert r["subtotal"] == subtotal
        assert r["tax_amount"] == (subtotal * Decimal("0.08")).quantize(cent, ROUND_HALF_UP)
        assert r["total_amount"] == (subtotal * Decimal("1.08")).quantize(cent, ROUND_HALF_UP)
        assert (r["shipping_state"] is None) == (i % 5 == 4)
        assert (r["notes"] is None) == (i % 10 >= 6)
        if r["notes"] is not None:
            assert r["notes"].startswith(f"Order {i}: please ")
        assert r["order_id"] == uid(i)
        assert (r["customer_id"], r["organization_id"]) == (i % 50000 + 1, i % 2000 + 1)
        assert len(r["shipping_zip"]) == 5 and r["shipping_zip"].isdigit()
        assert 3 + (i % 2 == 0) == len(r["tags"].split(","))
        metadata = json.loads(r["metadata"])
        assert metadata["custom_fields"]["external_ref"] == f"EXT-{i}"
        assert [inv["number"] for inv in metadata["invoices"]] == [
            f"INV-{i}-1", f"INV-{i}-2", f"INV-{i}-3"]
    r = row("medium", 3846)
    assert (r["subtotal"], r["tax_amount"], r["total_amount"]) == (
        Decimal("500.98"), Decimal("40.08"), Decimal("541.06"))
    r = row("medium", 7)
    assert (r["shipping_name"], r["billing_name"]) == ("James Smith", "Chloe Smith")


# ---- large -----------------------------------------------------------------------------

def test_large_exact_values() -> None:
    r = row("large", 1)
    title = "Definitive Guide to Distributed Query Planning for Data Engineers, Part 2"
    slug = "definitive-guide-to-distributed-query-planning-for-data-engineers-part-2-1"
    created = datetime(2023, 12, 31, 23, 58, 23, tzinfo=UTC)
    assert {k: r[k] for k in ("id", "document_id", "author_id", "category_id", "title", "slug",
                              "status", "revision", "word_count", "view_count", "is_published",
                              "published_at", "created_at", "updated_at", "tags")} == {
        "id": 1, "document_id": uid(1), "author_id": 2, "category_id": 2, "title": title,
        "slug": slug, "status": "featured", "revision": 2, "word_count": 41 * 64,
        "view_count": 7919, "is_published": True, "published_at": created + timedelta(hours=1),
        "created_at": created, "updated_at": created + timedelta(hours=1),
        "tags": "postgres,performance,storage,python,indexing,replication",
    }
    assert r["summary"] == f"{title}. {paragraphs[3]}"
    assert r["body_text"] == "\n\n".join([paragraphs[1]] * 41)
    assert r["body_html"].startswith(
        f'<article id="doc-1" class="featured">\n<header><h1>{title}</h1>'
        '<p class="byline">By author #2</p></header>\n<section id="s1"><h2>1. ')
    assert r["body_html"].endswith(
        f'<footer><a href="/docs/{slug}">Permalink</a></footer>\n</article>')
    assert r["body_html"].count("<section ") == 36
    metadata, settings = json.loads(r["metadata"]), json.loads(r["settings"])
    assert metadata["document"] == {"id": 1, "slug": slug, "language": "en-GB", "revision": 2,
                                    "category_id": 2}
    assert metadata["stats"] == {"views": 7919, "words": 2624, "reading_minutes": 12}
    assert len(metadata["outline"]) == 36
    assert settings["access"]["editors"] == [2, 20]
    assert settings["integrations"][0]["tracking_id"] == "UA-1-1"


def test_large_patterns() -> None:
    start, stop = 990, 1030
    for i, r in zip(range(start, stop), table("large", start, stop).to_pylist()):
        assert r["body_text"] == "\n\n".join([paragraphs[i % 5]] * (40 + i % 4))
        assert r["word_count"] == len(r["body_text"].split())
        assert r["is_published"] == (i % 4 != 3)
        assert (r["published_at"] is None) == (i % 4 == 3)
        assert r["status"] == ("draft" if i % 4 == 3 else r["status"])
        assert r["slug"].endswith(f"-{i}")
        assert 5 <= len(r["tags"].split(",")) == 5 + i % 3
        assert json.loads(r["metadata"])["document"]["id"] == i
        assert json.loads(r["settings"])["integrations"][0]["tracking_id"] == f"UA-{i}-1"
        assert r["created_at"] == (datetime(2024, 1, 1, tzinfo=UTC)
                                   - timedelta(seconds=97 * i % 31_536_000))


# ---- sizes -----------------------------------------------------------------------------

def copy_text_bytes(t: pa.Table) -> pa.Array:
    """Per-row length of the table as PostgreSQL COPY text (tabs, newline, \\N, escapes)."""
    total = pa.array(np.full(t.num_rows, t.num_columns, dtype=np.int64))
    for col in t.columns:
        col = col.combine_chunks()
        if pa.types.is_boolean(col.type):
            lens = pa.array(np.ones(len(col), dtype=np.int64))
        elif pa.types.is_timestamp(col.type):  # 2023-12-31 23:59:23[+00]
            lens = pa.array(np.full(len(col), 22 if col.type.tz else 19, dtype=np.int64))
        elif pa.types.is_fixed_size_binary(col.type):  # uuid text
            lens = pa.array(np.full(len(col), 36, dtype=np.int64))
        elif pa.types.is_string(col.type):  # newlines are escaped as \n
            lens = pc.add(pc.binary_length(col), pc.count_substring(col, "\n"))
        else:
            lens = pc.binary_length(pc.cast(col, pa.string()))
        total = pc.add(total, pc.cast(pc.fill_null(lens, 2), pa.int64()))
    return total


def mean(values: pa.Array) -> float:
    return pc.mean(values).as_py()


@pytest.mark.parametrize("dataset, rows, want", [
    ("bench_events", 1_000_000, 95),
    # DATASETS.md's headline sizes for small (~390 B) and large (~69 KB) are not what its own
    # column definitions add up to (every small column is pinned by a formula); these are.
    ("small", 100_000, 170),
    ("medium", 20_000, 1_700),
    ("large", 200, 45_000),
])
def test_average_copy_text_row_size(dataset: str, rows: int, want: int) -> None:
    got = mean(copy_text_bytes(table(dataset, 1, rows + 1)))
    assert 0.8 * want <= got <= 1.2 * want, got


def test_column_sizes_of_the_wide_datasets() -> None:
    medium = table("medium", 1, 5001)
    assert 1_200 <= mean(pc.binary_length(medium["metadata"])) <= 1_800
    large = table("large", 1, 101)
    for column, want in (("title", 80), ("summary", 500), ("body_text", 16_000),
                         ("body_html", 20_000), ("metadata", 5_000), ("settings", 2_000)):
        got = mean(pc.binary_length(large[column]))
        assert 0.8 * want <= got <= 1.2 * want, (column, got)


@pytest.mark.parametrize("dataset, rows", [
    ("bench_events", 5000), ("small", 5000), ("medium", 2000), ("large", 50)])
def test_estimate_row_bytes_within_25_percent(dataset: str, rows: int) -> None:
    actual = table(dataset, 1, rows + 1).nbytes / rows
    assert 0.75 * actual <= estimate_row_bytes(dataset) <= 1.25 * actual


# ---- determinism -----------------------------------------------------------------------

def canonical(v: object) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return str(v)


def digest(t: pa.Table) -> str:
    h = hashlib.sha256()
    for name, col in zip(t.column_names, t.columns):
        h.update(name.encode())
        for v in col.to_pylist():
            h.update(b"\x00" + canonical(v).encode())
    return h.hexdigest()


SPLIT_ROWS = {"bench_events": 2000, "small": 1000, "medium": 400, "large": 40}


@pytest.mark.parametrize("dataset", DATASETS)
def test_any_batch_split_gives_the_same_rows(dataset: str) -> None:
    rows = SPLIT_ROWS[dataset]
    whole = table(dataset, 1, rows + 1, batch_rows=rows)
    batches = list(generate_batches(dataset, 1, rows + 1, 7))
    assert [b.num_rows for b in batches] == [7] * (rows // 7) + [rows % 7]
    split = pa.Table.from_batches(batches)
    assert digest(split) == digest(whole)
    assert split.combine_chunks().equals(whole.combine_chunks())
    tail = table(dataset, rows // 2 + 1, rows + 1, batch_rows=3)
    assert tail.equals(whole.slice(rows // 2))


GOLDEN = {
    "bench_events": "4262537f8189c36c8f8f4dd0fb71c5d399c976c9ed40a66c79b1549c65035ffd",
    "small": "fa4b2d0b1a0b3733d18ba8781bb74ba889c9866ec6180978dec086aa2bc1e20b",
    "medium": "39172621908d09652c9c5ccf0753ed88ea61826e3d976c8a03d09dd04d82b71d",
    "large": "2642d33cdc373d3ffdf2fb8b76b5dbde9e2cee68041fda2cb366fa3e57f5d018",
}


@pytest.mark.parametrize("dataset", DATASETS)
def test_golden_digest(dataset: str) -> None:
    # Pins the exact data: benchmarks compare checksums across machines and versions.
    rows = 20 if dataset == "large" else 200
    assert digest(table(dataset, 1, rows + 1, batch_rows=13)) == GOLDEN[dataset]


# ---- GenerateReader and errors ---------------------------------------------------------

def test_generate_source_batches_sized_by_bytes() -> None:
    src = GenerateReader("bench_events", 1000, start_id=10)
    assert src.open() == dataset_schema("bench_events")
    per_batch = 5000 // estimate_row_bytes("bench_events")
    batches = list(src.batches(max_bytes=5000, max_rows=1_000_000))
    assert {b.num_rows for b in batches[:-1]} == {per_batch}
    ids = pa.Table.from_batches(batches)["id"].to_pylist()
    assert ids == list(range(10, 1010))
    again = list(src.batches(max_bytes=1 << 30, max_rows=300))
    assert [b.num_rows for b in again] == [300, 300, 300, 100]
    assert src.bytes_read == sum(b.nbytes for b in batches + again)


def test_generate_source_batches_at_least_one_row() -> None:
    batches = list(GenerateReader("large", 3).batches(max_bytes=1, max_rows=100))
    assert [b.num_rows for b in batches] == [1, 1, 1]


def test_generate_source_zero_rows() -> None:
    assert list(GenerateReader("small", 0).batches(1 << 20, 100)) == []


@pytest.mark.parametrize("call, message", [
    (lambda: dataset_schema("huge"), "unknown dataset 'huge'"),
    (lambda: estimate_row_bytes("huge"), "unknown dataset 'huge'"),
    (lambda: GenerateReader("huge", 10), "unknown dataset 'huge'"),
    (lambda: GenerateReader("small", -1), "rows must be ≥ 0, got -1"),
    (lambda: GenerateReader("small", 1, start_id=0), "start_id must be ≥ 1, got 0"),
    (lambda: generate_batches("small", 0, 5, 10), "row indexes start at 1, got start=0"),
    (lambda: generate_batches("small", 1, 5, 0), "batch_rows must be at least 1, got 0"),
    (lambda: generate_batches("bench_events", 1, 2**31 + 1, 10),
     "row indexes must stay below 2^31"),
])
def test_errors(call, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("^", r"\^")):
        call()
