"""The ``generate`` source: the benchmark datasets of DATASETS.md as Arrow record batches.

Every value is a pure function of the 1-based row index ``i`` (no randomness, no clock), so
any machine, run or batch split yields identical data and a checksum can verify a copy.
Columns are built a whole batch at a time with numpy and pyarrow compute, never row by row:
text is joined from literals, integer renderings and word-pool lookups, and JSON documents
from templates (``_json``) whose parts that depend only on i mod a small period are rendered
once per residue (``_cycle``).
"""
from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import date, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import DATASETS, GenerateConfig
from ..connector import Capabilities, CursorPlan, KeyRange, StreamInfo
from ..errors import ConfigError

#: 2024-01-01 00:00:00 (UTC for the timestamptz columns) in µs since the Unix epoch.
_T0_US = 1_704_067_200_000_000
_SECOND_US = 1_000_000
_DAY_US = 86_400 * _SECOND_US
_YEAR_S = 31_536_000

#: Batches stay well below the 2 GiB that int32 string offsets can address.
_MAX_BATCH_BYTES = 1 << 30

_ARROW_FOR_PG: dict[str, pa.DataType] = {
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "text": pa.utf8(),
    "boolean": pa.bool_(),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "uuid": pa.binary(16),
    "inet": pa.utf8(),
    "numeric(12,2)": pa.decimal128(12, 2),
    "jsonb": pa.utf8(),
}

_TSTZ = "timestamp with time zone"

#: (name, pg_type, nullable) per column, in table order.
_COLUMNS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "bench_events": (
        ("id", "integer", False),
        ("event_type", "text", False),
        ("user_id", "integer", False),
        ("amount", "integer", False),
        ("is_active", "boolean", False),
        ("payload", "text", False),
        ("created_at", "timestamp without time zone", False),
    ),
    "small": (
        ("id", "bigint", False),
        ("event_id", "uuid", False),
        ("event_type", "text", False),
        ("user_id", "bigint", False),
        ("session_id", "bigint", True),
        ("device_type", "text", False),
        ("ip_address", "inet", False),
        ("country_code", "text", False),
        ("page_url", "text", False),
        ("referrer_url", "text", True),
        ("utm_source", "text", True),
        ("utm_medium", "text", True),
        ("duration_ms", "integer", False),
        ("is_converted", "boolean", False),
        ("created_at", _TSTZ, False),
    ),
    "medium": (
        ("id", "bigint", False),
        ("order_id", "uuid", False),
        ("customer_id", "bigint", False),
        ("organization_id", "bigint", False),
        ("status", "text", False),
        ("currency", "text", False),
        ("subtotal", "numeric(12,2)", False),
        ("tax_amount", "numeric(12,2)", False),
        ("total_amount", "numeric(12,2)", False),
        ("shipping_name", "text", False),
        ("shipping_street", "text", False),
        ("shipping_city", "text", False),
        ("shipping_state", "text", True),
        ("shipping_zip", "text", False),
        ("shipping_country", "text", False),
        ("billing_name", "text", False),
        ("billing_email", "text", False),
        ("notes", "text", True),
        ("tags", "text", False),
        ("metadata", "jsonb", False),
        ("created_at", _TSTZ, False),
        ("updated_at", _TSTZ, False),
    ),
    "large": (
        ("id", "bigint", False),
        ("document_id", "uuid", False),
        ("author_id", "bigint", False),
        ("category_id", "integer", False),
        ("title", "text", False),
        ("slug", "text", False),
        ("status", "text", False),
        ("summary", "text", False),
        ("body_text", "text", False),
        ("body_html", "text", False),
        ("metadata", "jsonb", False),
        ("settings", "jsonb", False),
        ("tags", "text", False),
        ("revision", "integer", False),
        ("word_count", "integer", False),
        ("view_count", "bigint", False),
        ("is_published", "boolean", False),
        ("published_at", _TSTZ, True),
        ("created_at", _TSTZ, False),
        ("updated_at", _TSTZ, False),
    ),
}

#: Rough Arrow bytes per row (measured), for sizing batches from a byte budget.
_ROW_BYTES = {"bench_events": 100, "small": 160, "medium": 1_800, "large": 45_000}


def _pool(*words: str) -> pa.Array:
    return pa.array(words, pa.utf8())


_EVENT5 = _pool("click", "purchase", "view", "signup", "logout")
_EVENT8 = _pool("click", "purchase", "view", "signup", "logout", "scroll", "hover", "submit")
_DEVICES = _pool("mobile", "desktop", "tablet")
_COUNTRIES = _pool(
    "US", "GB", "DE", "FR", "CA", "JP", "AU", "BR", "IN", "NL",
    "ES", "IT", "SE", "MX", "KR", "PL", "CH", "SG", "IE", "NZ",
)
_UTM_SOURCES = _pool("google", "facebook", "twitter", "linkedin")
_UTM_MEDIUMS = _pool("cpc", "organic", "social", "email")
_BOOLS = _pool("false", "true")

_STATUSES = _pool("pending", "processing", "shipped", "delivered", "cancelled", "refunded")
_CURRENCIES = _pool("USD", "EUR", "GBP", "JPY", "CAD")
_FIRST = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Elijah", "Sophia", "James", "Isabella", "Lucas",
    "Mia", "Mateo", "Amelia", "Benjamin", "Harper", "Hiroshi", "Evelyn", "Aarav", "Chloe",
    "Santiago", "Ingrid", "Kwame", "Lucia", "Dmitri", "Fatima", "Oskar", "Priya", "Tomas",
    "Yara",
)
_LAST = (
    "Smith", "Johnson", "Garcia", "Martinez", "Brown", "Nakamura", "Muller", "Rossi",
    "Kowalski", "Okafor", "Andersson", "Dubois", "Silva", "Patel", "Kim", "Novak", "Fischer",
    "Lopez", "Wilson", "Jensen", "Moreau", "Costa", "Tanaka", "Ivanova", "Byrne", "Haddad",
    "Schmidt", "Nguyen", "Oliveira", "Murphy", "Larsen",
)
_FIRST_NAMES, _LAST_NAMES = _pool(*_FIRST), _pool(*_LAST)
_FIRST_LOWER, _LAST_LOWER = _pool(*(w.lower() for w in _FIRST)), _pool(*(w.lower() for w in _LAST))
_STREETS = _pool(
    "Maple", "Oak", "Cedar", "Elm", "Willow", "Harbor", "Sunset", "Lakeview", "Hillcrest",
    "Riverside", "Park", "Station", "Church", "Mill", "Meadow", "Highland", "Orchard",
)
_STREET_TYPES = _pool("Street", "Avenue", "Road", "Lane", "Boulevard")
#: (city, state, country) kept together so an address is self-consistent.
_PLACES = (
    ("Springfield", "IL", "US"), ("Portland", "OR", "US"), ("Austin", "TX", "US"),
    ("Toronto", "ON", "CA"), ("Vancouver", "BC", "CA"), ("Manchester", "ENG", "GB"),
    ("Edinburgh", "SCT", "GB"), ("Munich", "BY", "DE"), ("Hamburg", "HH", "DE"),
    ("Lyon", "ARA", "FR"), ("Sydney", "NSW", "AU"), ("Melbourne", "VIC", "AU"),
    ("Osaka", "27", "JP"), ("Denver", "CO", "US"), ("Boston", "MA", "US"),
    ("Seattle", "WA", "US"), ("Calgary", "AB", "CA"), ("Leeds", "ENG", "GB"),
    ("Cologne", "NW", "DE"),
)
_CITIES, _STATES, _PLACE_COUNTRIES = (_pool(*col) for col in zip(*_PLACES))
_DOMAINS = _pool(
    "example.com", "mail.example.org", "corp.example.net", "shop.example.com",
    "inbox.example.io", "example.co.uk", "post.example.de",
)
_NOTE_ENDINGS = _pool(
    "leave the parcel at the front desk", "deliver after 5 pm on weekdays",
    "call before delivery", "gift wrap every item separately",
    "use the side entrance next to the garage", "do not ring the doorbell",
    "ship everything in a single box", "include a printed invoice",
)
_TAG_WORDS = _pool(
    "priority", "wholesale", "gift", "returning", "fragile", "express", "bulk", "promo",
    "international", "subscription", "backorder", "vip", "seasonal", "clearance", "b2b",
    "first-order", "eco", "bundle", "preorder", "loyalty", "oversized", "insured", "sample",
)
_PLANS = ("free", "starter", "pro", "enterprise")
_CYCLES = ("monthly", "annual")
_FEATURES = (
    "analytics", "exports", "api_access", "sso", "audit_log", "custom_domains",
    "webhooks", "priority_support", "data_retention",
)
_LIMITS = (100, 1000, 10_000, 50_000)
_LANGUAGE_WORDS = ("en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "ja-JP")
_TIMEZONE_WORDS = (
    "America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London",
    "Europe/Berlin", "Europe/Paris", "Asia/Tokyo", "Australia/Sydney",
)
_THEME_WORDS = ("light", "dark", "system")
_LANGUAGES, _TIMEZONES, _THEMES = (_pool(*w) for w in (_LANGUAGE_WORDS, _TIMEZONE_WORDS,
                                                        _THEME_WORDS))
_FREQUENCIES = ("instant", "daily", "weekly")
_INVOICE_STATES = _pool("paid", "paid", "open", "void")
_REGIONS = ("na", "emea", "apac", "latam")
_SEGMENTS = ("smb", "mid_market", "enterprise")
_CHANNELS = ("organic", "paid_search", "partner", "referral", "outbound")

_DOC_STATUSES = _pool("published", "featured", "archived", "draft")
_ADJECTIVES = _pool(
    "Practical", "Definitive", "Illustrated", "Pragmatic", "Complete", "Hands-On", "Modern",
    "Essential", "Annotated", "Concise", "Advanced",
)
_FORMATS = _pool("Guide", "Handbook", "Primer", "Field Manual", "Playbook", "Walkthrough",
                 "Reference")
_TOPIC_WORDS = (
    "Distributed Query Planning", "Columnar Storage Engines", "Streaming Change Data Capture",
    "Incremental Data Pipelines", "Write-Ahead Log Internals", "Vectorized Execution",
    "Schema Evolution Strategies", "Connection Pool Tuning", "Time-Series Compression",
    "Replication Lag Diagnostics", "Partition Pruning Techniques", "Index Maintenance at Scale",
    "Batch Sizing and Backpressure",
)
_TOPICS = _pool(*_TOPIC_WORDS)
_AUDIENCES = _pool(
    "Platform Teams", "Data Engineers", "Site Reliability Engineers", "Analytics Developers",
    "Database Administrators",
)
_DOC_TAGS = _pool(
    "databases", "postgres", "arrow", "performance", "etl", "streaming", "storage",
    "replication", "benchmarks", "python", "cython", "compression", "indexing", "sql",
    "observability", "tutorial", "architecture",
)
_PARAGRAPHS = (
    "Moving data between databases is rarely limited by the network alone. Most of the time "
    "goes into converting values from one representation to another, allocating objects for "
    "every field, and waiting on round trips that could have been batched. A pipeline that "
    "keeps rows in columnar buffers, encodes them in bulk, and streams them with backpressure "
    "can approach the speed of the wire while staying predictable under load.",
    "Change data capture turns a database into a stream of facts. Each insert, update, and "
    "delete becomes an event with a position in the log, and consumers resume from the last "
    "position they committed. The hard parts are ordering across tables, handling schema "
    "changes without stopping the world, and making sure a crash between reading and writing "
    "never loses or duplicates a single row.",
    "Columnar formats store each field contiguously, which lets the processor work on many "
    "values at once and lets compression find long runs of similar bytes. The cost is that "
    "row-oriented operations, such as building an insert statement, must gather values from "
    "several buffers. Good encoders resolve every per-column decision once per batch and then "
    "run a tight loop with no branches on the type.",
    "Checkpoints make long transfers restartable. After a configured number of bytes or rows, "
    "the destination commits its transaction together with the cursor that describes how far "
    "the source has been read. If the process stops, the next run starts from that cursor "
    "instead of from the beginning, and because the cursor and the data were committed "
    "atomically there is nothing to reconcile by hand.",
    "Benchmarks are only useful when they can be repeated. Deterministic datasets, fixed batch "
    "sizes, and a checksum computed on both sides make it possible to compare two versions of "
    "a pipeline on the same machine and to notice when a change makes things slower. "
    "Reporting the time spent in each stage, rather than a single total, shows whether the "
    "bottleneck is decoding, encoding, or the database itself.",
)
_PARAGRAPH_POOL = _pool(*_PARAGRAPHS)
_HTML_SECTIONS = 36
_VISIBILITY = _pool("public", "internal", "unlisted")


# ---- column builders -------------------------------------------------------------------

def _mask(valid: np.ndarray | None) -> np.ndarray | None:
    return None if valid is None else ~valid


def _pick(pool: pa.Array, index: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """``pool[index mod len(pool)]`` per row; NULL where ``valid`` is False."""
    return pool.take(pa.array(index % len(pool), mask=_mask(valid)))


def _text(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """Decimal renderings of integers; NULL where ``valid`` is False."""
    return pc.cast(pa.array(values, mask=_mask(valid)), pa.utf8())


def _json_bool(flags: np.ndarray) -> pa.Array:
    return _pick(_BOOLS, flags.astype(np.int64))


@functools.cache
def _utf8(literal: str) -> pa.Scalar:
    # A typed scalar: pyarrow's type inference for a bare str costs ~0.2 ms per call.
    return pa.scalar(literal, pa.utf8())


def _join(*parts: str | pa.Array) -> pa.Array:
    """Row-wise concatenation of literals and string arrays (NULL if any array is NULL)."""
    return pc.binary_join_element_wise(
        *(_utf8(p) if isinstance(p, str) else p for p in parts if not isinstance(p, str) or p),
        _utf8(""),
    )


def _word_list(*words: pa.Array) -> pa.Array:
    """Comma-separated words per row, NULL words left out."""
    return pc.binary_join_element_wise(*words, _utf8(","), null_handling="skip")


def _ints(values: np.ndarray, arrow_type: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    return pa.array(values, arrow_type, mask=_mask(valid))


def _timestamps(
    us: np.ndarray, tz: str | None = "UTC", valid: np.ndarray | None = None
) -> pa.Array:
    return pa.array(us, pa.timestamp("us", tz=tz), mask=_mask(valid))


def _uuids(i: np.ndarray) -> pa.Array:
    """The 16 big-endian bytes of i (``i.to_bytes(16, "big")``)."""
    raw = np.zeros((len(i), 2), dtype=">u8")
    raw[:, 1] = i
    return pa.Array.from_buffers(pa.binary(16), len(i), [None, pa.py_buffer(raw)])


def _decimals(units: np.ndarray, arrow_type: pa.DecimalType) -> pa.Array:
    """decimal128 values whose unscaled integers are ``units`` (little-endian int128)."""
    raw = np.empty((len(units), 2), dtype="<i8")
    raw[:, 0] = units
    raw[:, 1] = units >> 63
    return pa.Array.from_buffers(arrow_type, len(units), [None, pa.py_buffer(raw)])


_TOKEN = re.compile(r'"<#(\w+)>"|<(\w+)>')


def _json(template: object, fields: Mapping[str, pa.Array]) -> pa.Array:
    """Compact JSON text of ``template`` per row, with placeholders filled from ``fields``.

    ``"<#name>"`` as a whole JSON string stands for a raw value (number, bool, nested JSON);
    ``<name>`` inside a string is replaced by text that must need no JSON escaping.
    """
    pieces = _TOKEN.split(json.dumps(template, separators=(",", ":")))
    return _join(*(p if k % 3 == 0 else fields[p] for k, p in enumerate(pieces) if p is not None))


_DATE_POOL_START = date(2015, 1, 1)


@functools.cache
def _date_pool() -> pa.Array:
    """ISO dates from 2015-01-01 through 2034: a lookup is ~100× faster than pc.strftime."""
    return _pool(*((_DATE_POOL_START + timedelta(days=d)).isoformat() for d in range(7305)))


def _date_text(us: np.ndarray) -> pa.Array:
    """``YYYY-MM-DD`` of µs timestamps (all generated dates fall in 2015–2034)."""
    epoch_day = (_DATE_POOL_START - date(1970, 1, 1)).days
    return _date_pool().take(pa.array(us // _DAY_US - epoch_day))


# ---- datasets --------------------------------------------------------------------------

def _bench_events(i: np.ndarray) -> list[pa.Array]:
    return [
        _ints(i, pa.int32()),
        _pick(_EVENT5, i),
        _ints(i % 1000 + 1, pa.int32()),
        _ints(7 * i % 10_000, pa.int32()),
        pa.array(i % 3 != 0),
        _join("payload-", _text(i), "-" + "x" * 50),
        _timestamps(_T0_US - (37 * i % 86_400) * _SECOND_US, tz=None),
    ]


def _small(i: np.ndarray) -> list[pa.Array]:
    tenth = i % 10
    utm = tenth < 4
    return [
        _ints(i, pa.int64()),
        _uuids(i),
        _pick(_EVENT8, i),
        _ints(i % 100_000 + 1, pa.int64()),
        _ints(31 * i % 500_000, pa.int64(), valid=tenth < 7),
        _pick(_DEVICES, i),
        _join("10.", _text(i % 256), ".", _text(i // 256 % 256), ".", _text(i % 253 + 1)),
        _pick(_COUNTRIES, i),
        _join("/section-", _text(i % 12), "/page-", _text(i % 500)),
        _join("https://ref-", _text(i % 50, valid=tenth < 6), ".example.com/campaign/",
              _text(i % 200)),
        _pick(_UTM_SOURCES, i, valid=utm),
        _pick(_UTM_MEDIUMS, i, valid=utm),
        _ints(7 * i % 30_000, pa.int32()),
        pa.array(i % 5 == 0),
        _timestamps(_T0_US - (37 * i % 86_400) * _SECOND_US),
    ]


def _cycle(period: int, render: Callable[[int], object]) -> pa.Array:
    """Compact JSON of ``render(r)`` for each residue r = i mod ``period``.

    Rendering parts of a document that depend only on i mod a small period once, instead
    of per row, keeps the per-row join down to a few pieces (each piece costs ~40 ns).
    """
    return _pool(*(json.dumps(render(r), separators=(",", ":")) for r in range(period)))


@functools.cache
def _medium_fragments() -> tuple[pa.Array, ...]:
    """The plan, features, preferences and classification objects, periodic in i."""
    plan = _cycle(500, lambda r: {
        "name": _PLANS[r % 4], "tier": r % 4, "seats": 3 * r % 250 + 1,
        "billing_cycle": _CYCLES[r % 2], "trial": r % 10 == 0,
        "renews_on": (date(2024, 1, 1) + timedelta(days=7 * r % 365)).isoformat(),
    })
    features = _cycle(36, lambda r: [
        {"name": _FEATURES[(r + 2 * k) % 9], "enabled": (r + k) % 3 != 0,
         "limit": _LIMITS[(r + k) % 4], "usage": r * (31 + 7 * k) % _LIMITS[(r + k) % 4],
         "reset": "monthly"}
        for k in range(5)
    ])
    preferences = _cycle(168, lambda r: {
        "language": _LANGUAGE_WORDS[r % 6], "timezone": _TIMEZONE_WORDS[r // 3 % 8],
        "theme": _THEME_WORDS[r % 3], "currency_display": "symbol", "date_format": "YYYY-MM-DD",
        "notifications": {
            "email": {"enabled": r % 7 != 0, "frequency": _FREQUENCIES[r // 2 % 3],
                      "categories": ["billing", "security", "product"]},
            "sms": {"enabled": r % 4 == 0, "frequency": "weekly"},
            "push": {"enabled": True, "quiet_hours": {"start": "22:00", "end": "07:00"}},
        },
    })
    classification = _cycle(60, lambda r: {
        "region": _REGIONS[r % 4], "segment": _SEGMENTS[r // 4 % 3],
        "acquisition_channel": _CHANNELS[r % 5], "priority": r % 5 + 1,
        "cost_center": f"CC-{r % 4}{r % 5 + 1}", "onboarded": True,
    })
    return plan, features, preferences, classification


def _medium_metadata(i: np.ndarray, created_us: np.ndarray) -> pa.Array:
    plan, features, preferences, classification = _medium_fragments()
    fields: dict[str, pa.Array] = {
        "i": _text(i),
        "plan": _pick(plan, i),
        "features": _pick(features, i),
        "preferences": _pick(preferences, i),
        "classification": _pick(classification, i),
        "am_first": _pick(_FIRST_NAMES, i // 7),
        "am_last": _pick(_LAST_NAMES, i),
        "po": pc.utf8_lpad(_text(7919 * i % 1_000_000), width=6, padding="0"),
    }
    invoices = []
    for m in range(1, 4):
        fields[f"inv{m}_cents"] = _text((13 * i * m) % 50_000 + 100 * m)
        fields[f"inv{m}_state"] = _pick(_INVOICE_STATES, i + m)
        fields[f"inv{m}_date"] = _date_text(created_us - 30 * m * _DAY_US)
        invoices.append({"number": f"INV-<i>-{m}", "amount_cents": f"<#inv{m}_cents>",
                         "currency": "USD", "status": f"<inv{m}_state>",
                         "issued_on": f"<inv{m}_date>"})
    return _json({
        "plan": "<#plan>",
        "features": "<#features>",
        "preferences": "<#preferences>",
        "invoices": invoices,
        "custom_fields": {
            "account_manager": "<am_first> <am_last>", "external_ref": "EXT-<i>",
            "po_number": "PO-<po>", "contract": "CTR-<i>", "classification": "<#classification>",
        },
    }, fields)


def _medium(i: np.ndarray) -> list[pa.Array]:
    subtotal = 13 * i % 50_000 + 100  # cents
    created = _T0_US - (61 * i % _YEAR_S) * _SECOND_US
    first, last = _pick(_FIRST_NAMES, i), _pick(_LAST_NAMES, i // 29)
    shipping_name = _join(first, " ", last)
    billing_name = pc.if_else(pa.array(i % 7 == 0),
                              _join(_pick(_FIRST_NAMES, i + 11), " ", last), shipping_name)
    decimal = pa.decimal128(12, 2)
    return [
        _ints(i, pa.int64()),
        _uuids(i),
        _ints(i % 50_000 + 1, pa.int64()),
        _ints(i % 2000 + 1, pa.int64()),
        _pick(_STATUSES, i),
        _pick(_CURRENCIES, i),
        _decimals(subtotal, decimal),
        # Half-up rounding to cents, as Postgres rounds numeric.
        _decimals((subtotal * 8 + 50) // 100, decimal),
        _decimals((subtotal * 108 + 50) // 100, decimal),
        shipping_name,
        _join(_text(7 * i % 9899 + 1), " ", _pick(_STREETS, i), " ", _pick(_STREET_TYPES, i)),
        _pick(_CITIES, i),
        _pick(_STATES, i, valid=i % 5 != 4),
        pc.utf8_lpad(_text(7919 * i % 100_000), width=5, padding="0"),
        _pick(_PLACE_COUNTRIES, i),
        billing_name,
        _join(_pick(_FIRST_LOWER, i), ".", _pick(_LAST_LOWER, i // 29), _text(i % 1000), "@",
              _pick(_DOMAINS, i)),
        _join("Order ", _text(i, valid=i % 10 < 6), ": please ", _pick(_NOTE_ENDINGS, i), "."),
        _word_list(
            _pick(_TAG_WORDS, i), _pick(_TAG_WORDS, i // 2 + 5), _pick(_TAG_WORDS, i // 3 + 11),
            _pick(_TAG_WORDS, i // 5 + 17, valid=i % 2 == 0),
        ),
        _medium_metadata(i, created),
        _timestamps(created),
        _timestamps(created + (17 * i % 604_800) * _SECOND_US),
    ]


@functools.cache
def _large_bodies() -> tuple[pa.Array, pa.Array, np.ndarray]:
    """body_text for each i mod 20, the article sections for each i mod 5, and the word
    count of each body_text.

    body_text is paragraph i mod 5 repeated 40 + i mod 4 times; both residues are fixed by
    i mod 20.
    """
    texts = ["\n\n".join([_PARAGRAPHS[k % 5]] * (40 + k % 4)) for k in range(20)]
    words = np.array([len(t.split()) for t in texts], dtype=np.int64)
    sections = [
        "".join(
            f'<section id="s{k + 1}"><h2>{k + 1}. {_TOPIC_WORDS[(r + k) % 13]}</h2>\n'
            f"<p>{_PARAGRAPHS[(r + k) % 5]}</p>\n"
            f"<ul><li>{_TOPIC_WORDS[(r + 2 * k) % 13]}</li>"
            f"<li>{_TOPIC_WORDS[(r + 3 * k) % 13]}</li></ul></section>\n"
            for k in range(_HTML_SECTIONS)
        )
        for r in range(5)
    ]
    return _pool(*texts), _pool(*sections), words


@functools.cache
def _large_outline() -> pa.Array:
    """The metadata ``outline`` JSON array of each article variant (i mod 5)."""
    return _cycle(5, lambda r: [
        {"anchor": f"s{k + 1}", "heading": _TOPIC_WORDS[(r + k) % 13], "level": 2,
         "paragraph": (r + k) % 5, "words": len(_PARAGRAPHS[(r + k) % 5].split()),
         "excerpt": _PARAGRAPHS[(r + k) % 5][:20]}
        for k in range(_HTML_SECTIONS)
    ])


#: the ``metadata`` and ``settings`` documents of ``large``: ``<field>`` is replaced by a
#: per-row text, ``<#field>`` by a per-row JSON number or boolean (see ``_json``)
_LARGE_METADATA = {
    "document": {"id": "<#id>", "slug": "<slug>", "language": "<lang>",
                 "revision": "<#revision>", "category_id": "<#category>"},
    "seo": {"title": "<title>", "canonical": "https://docs.example.com/<slug>",
            "keywords": "<tags>", "robots": "index,follow"},
    "authors": [{"id": "<#author>", "role": "primary"},
                {"id": "<#coauthor>", "role": "reviewer"}],
    "stats": {"views": "<#views>", "words": "<#words>", "reading_minutes": "<#minutes>"},
    "history": [{"revision": "<#revision>", "editor_id": "<#author>", "on": "<created>"}],
    "outline": "<#outline>",
}
_LARGE_SETTINGS = {
    "visibility": "<visibility>", "status": "<status>", "featured": "<#featured>",
    "display": {"theme": "<theme>", "layout": "article", "show_toc": True,
                "show_reading_time": True, "code_highlighting": "github",
                "font": {"family": "Inter", "size": 16, "line_height": 1.6}},
    "comments": {"enabled": "<#comments_on>", "moderation": "pre", "max_depth": 4,
                 "sort": "oldest", "allow_anonymous": False},
    "access": {"owner_id": "<#author>", "editors": ["<#author>", "<#coauthor>"],
               "roles": {"viewer": ["read"], "editor": ["read", "write"],
                         "admin": ["read", "write", "publish", "delete"]}},
    "distribution": {
        "share_buttons": "<#share_on>",
        "channels": [{"name": n, "enabled": True, "delay_minutes": d}
                     for n, d in (("rss", 0), ("newsletter", 60), ("social", 15),
                                  ("partners", 1440))],
        "canonical_url": "https://docs.example.com/<slug>",
    },
    "localization": {"default_language": "<lang>", "timezone": "<tz>",
                     "fallbacks": ["en-US", "en-GB"], "date_format": "YYYY-MM-DD"},
    "notifications": {"on_publish": ["author", "editors", "subscribers"],
                      "on_comment": ["author"], "digest": "weekly"},
    "experiments": [{"key": "new_toc", "variant": "<#featured>", "since": "<created>"},
                    {"key": "related_posts", "variant": "<#comments_on>",
                     "since": "<created>"}],
    "cache": {"ttl_seconds": 3600, "stale_while_revalidate": 600, "tags": "<tags>"},
    "integrations": [
        {"name": "analytics", "enabled": True, "tracking_id": "UA-<id>-1"},
        {"name": "search_index", "enabled": True, "priority": "<#revision>"},
        {"name": "translation", "enabled": "<#share_on>",
         "languages": ["de-DE", "fr-FR", "ja-JP"]},
    ],
    "retention": {"keep_revisions": 50, "archive_after_days": 730,
                  "purge_drafts_after_days": 90},
    "embeds": {"allow_iframes": False,
               "allowed_hosts": ["youtube.com", "vimeo.com", "gist.github.com", "codepen.io"]},
    "sidebar": {"position": "right", "widgets": ["toc", "related", "newsletter", "tags"]},
}


def _large(i: np.ndarray) -> list[pa.Array]:
    texts, sections, words_by_variant = _large_bodies()
    created = _T0_US - (97 * i % _YEAR_S) * _SECOND_US
    published = i % 4 != 3
    author = i % 5000 + 1
    view_count = 7919 * i % 10_000_000
    revision = i % 20 + 1
    word_count = words_by_variant[i % 20]
    title = _join(_pick(_ADJECTIVES, i), " ", _pick(_FORMATS, i // 11), " to ",
                  _pick(_TOPICS, i // 3), " for ", _pick(_AUDIENCES, i), ", Part ",
                  _text(i % 12 + 1))
    slug = _join(pc.replace_substring_regex(pc.utf8_lower(title), pattern="[^a-z0-9]+",
                                            replacement="-"), "-", _text(i))
    status = _pick(_DOC_STATUSES, i)
    id_text, author_text = _text(i), _text(author)
    tag_count = i % 3
    tags = _word_list(
        *(_pick(_DOC_TAGS, i // (k + 1) + 3 * k) for k in range(5)),
        _pick(_DOC_TAGS, i + 6, valid=tag_count >= 1),
        _pick(_DOC_TAGS, i + 9, valid=tag_count == 2),
    )
    html = _join('<article id="doc-', id_text, '" class="', status, '">\n<header><h1>', title,
                 '</h1><p class="byline">By author #', author_text, "</p></header>\n",
                 _pick(sections, i), '<footer><a href="/docs/', slug,
                 '">Permalink</a></footer>\n</article>')
    fields = {
        "id": id_text, "author": author_text, "coauthor": _text((author + 17) % 5000 + 1),
        "slug": slug, "title": title, "status": status, "tags": tags,
        "revision": _text(revision), "words": _text(word_count),
        "minutes": _text(word_count // 230 + 1), "views": _text(view_count),
        "outline": _pick(_large_outline(), i),
        "category": _text(i % 50 + 1), "visibility": _pick(_VISIBILITY, i),
        "comments_on": _json_bool(i % 3 != 0),
        "featured": _json_bool(i % 4 == 1),
        "created": _date_text(created), "lang": _pick(_LANGUAGES, i),
        "theme": _pick(_THEMES, i // 2), "tz": _pick(_TIMEZONES, i),
        "share_on": _json_bool(i % 5 != 0),
    }
    metadata = _json(_LARGE_METADATA, fields)
    settings = _json(_LARGE_SETTINGS, fields)
    return [
        _ints(i, pa.int64()),
        _uuids(i),
        _ints(author, pa.int64()),
        _ints(i % 50 + 1, pa.int32()),
        title,
        slug,
        status,
        _join(title, ". ", _pick(_PARAGRAPH_POOL, i + 2)),
        _pick(texts, i),
        html,
        metadata,
        settings,
        tags,
        _ints(revision, pa.int32()),
        _ints(word_count, pa.int32()),
        _ints(view_count, pa.int64()),
        pa.array(published),
        _timestamps(created + 3600 * _SECOND_US, valid=published),
        _timestamps(created),
        _timestamps(created + (i % 720) * 3600 * _SECOND_US),
    ]


_BUILDERS = {"bench_events": _bench_events, "small": _small, "medium": _medium, "large": _large}


# ---- public API ------------------------------------------------------------------------

def _check_dataset(dataset: str) -> None:
    if dataset not in _COLUMNS:
        raise ConfigError(
            f"generate: unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}"
        )


@functools.cache
def dataset_schema(dataset: str) -> pa.Schema:
    """Arrow schema of ``dataset``; each field's metadata ``pg_type`` is its Postgres type."""
    _check_dataset(dataset)
    return pa.schema(
        [pa.field(name, _ARROW_FOR_PG[pg_type], nullable, {b"pg_type": pg_type.encode()})
         for name, pg_type, nullable in _COLUMNS[dataset]],
        metadata={b"primary_key": b"id"},
    )


def estimate_row_bytes(dataset: str) -> int:
    """Rough Arrow bytes per row of ``dataset`` (for sizing batches)."""
    _check_dataset(dataset)
    return _ROW_BYTES[dataset]


def generate_batches(
    dataset: str, start: int, stop: int, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """Rows with index i in [start, stop) of ``dataset``, at most ``batch_rows`` per batch.

    Batches are also kept under 1 GiB so string offsets stay 32-bit.
    """
    schema = dataset_schema(dataset)
    if start < 1:
        raise ConfigError(f"generate: row indexes start at 1, got start={start}")
    if batch_rows < 1:
        raise ConfigError(f"generate: batch_rows must be at least 1, got {batch_rows}")
    if stop > 2**31:
        # Keeps bench_events ids within integer (int4) and products like 7919·i within int64.
        raise ConfigError(f"generate: row indexes must stay below 2^31, got stop={stop}")
    step = max(1, min(batch_rows, _MAX_BATCH_BYTES // _ROW_BYTES[dataset]))
    return _batches(_BUILDERS[dataset], schema, start, stop, step)


def _batches(build: Callable[[np.ndarray], list[pa.Array]], schema: pa.Schema, start: int,
             stop: int, step: int) -> Iterator[pa.RecordBatch]:
    for lo in range(start, stop, step):
        i = np.arange(lo, min(lo + step, stop), dtype=np.int64)
        yield pa.RecordBatch.from_arrays(build(i), schema=schema)


class GenerateReader:
    """``rows`` rows of ``dataset`` with ids start_id, start_id + 1, ..."""

    def __init__(self, dataset: str, rows: int, start_id: int = 1) -> None:
        _check_dataset(dataset)
        if rows < 0:
            raise ConfigError(f"generate: rows must be ≥ 0, got {rows}")
        if start_id < 1:
            raise ConfigError(f"generate: start_id must be ≥ 1, got {start_id}")
        self.dataset, self.rows, self.start_id = dataset, rows, start_id
        self.timings = {"source_generate_secs": 0.0}
        self.bytes_read = 0

    def open(self) -> pa.Schema:
        return dataset_schema(self.dataset)

    def batches(self, max_bytes: int, max_rows: int,
                key_range: KeyRange | None = None) -> Iterator[pa.RecordBatch]:
        """All rows, each batch at most ``max_rows`` rows and about ``max_bytes`` bytes."""
        rows = max(1, min(max_rows, max_bytes // estimate_row_bytes(self.dataset)))
        it = generate_batches(self.dataset, self.start_id, self.start_id + self.rows, rows)
        while True:
            t0 = time.perf_counter()
            batch = next(it, None)
            self.timings["source_generate_secs"] += time.perf_counter() - t0
            if batch is None:
                return
            self.bytes_read += batch.nbytes
            yield batch

    def cancel(self) -> None:
        """Nothing to stop: batches are made on demand."""

    def close(self) -> None:
        """Nothing to release."""


class GenerateConnector:
    """``source: use: generate``: synthetic rows, for benchmarks and demos."""

    name = "generate"
    capabilities = Capabilities()
    config_model = GenerateConfig

    def __init__(self, config: GenerateConfig, endpoint: str | None = None) -> None:
        self.config = config
        self.endpoint = endpoint or ""

    def _dataset(self, stream: str) -> str:
        return self.config.dataset or stream

    def describe(self, stream: Any) -> StreamInfo:
        dataset = self._dataset(stream.name)
        return StreamInfo(stream.name, dataset_schema(dataset), ("id",), self.config.rows,
                          self.config.rows * estimate_row_bytes(dataset), dataset)

    def discover(self) -> list[StreamInfo]:
        return [StreamInfo(d, dataset_schema(d), ("id",), qualified_name=d) for d in DATASETS]

    def reader(self, info: StreamInfo, cursor: CursorPlan | None = None,
               snapshot: str | None = None, hold_snapshot: bool = False) -> GenerateReader:
        return GenerateReader(self._dataset(info.name), self.config.rows, self.config.start_id)

    def close(self) -> None:
        """Nothing to release."""
