"""redact(): passwords in URLs, DSNs and quoted pairs are masked, idempotently."""
from __future__ import annotations

import pytest

from rapidbyte_fast.redact import redact, redact_url

CASES = [
    ("postgresql://user:secret@host:5432/db", "postgresql://user:***@host:5432/db"),
    ("postgres://u:s3cr3t@h/d?sslmode=require", "postgres://u:***@h/d?sslmode=require"),
    ("mysql+pymysql://root:pw@db/x", "mysql+pymysql://root:***@db/x"),
    ("https://api:tok@example.com/v1", "https://api:***@example.com/v1"),
    ("postgresql://:only@h/d", "postgresql://:***@h/d"),
    # a raw '@' or '/' in the password must not leak its tail
    ("postgresql://u:p@ss/w@h/d", "postgresql://u:***@h/d"),
    ("failed: 'postgresql://u:pw@h/d' and postgresql://a:b@c/d",
     "failed: 'postgresql://u:***@h/d' and postgresql://a:***@c/d"),
    # no password: untouched
    ("postgresql://user@host/db", "postgresql://user@host/db"),
    ("postgresql://host:5432/db", "postgresql://host:5432/db"),
    ("host=h password=secret dbname=d", "host=h password=*** dbname=d"),
    ("host=h password = secret dbname=d", "host=h password = *** dbname=d"),
    ("host=h password='se cret' dbname=d", "host=h password=*** dbname=d"),
    (r"password='it\'s here' user=u", "password=*** user=u"),
    ("password='unterminated rest of it", "password=***"),
    ("sslpassword=k PASSWORD=X", "sslpassword=*** PASSWORD=***"),
    ("PGPASSWORD=hunter2 psql", "PGPASSWORD=*** psql"),
    ("{'password': 'secret', 'user': 'u'}", "{'password': '***', 'user': 'u'}"),
    ('{"password": "sec\\"ret"}', "{\"password\": '***'}"),
    ("password=\nhost=h", "password=\nhost=h"),
    ("nothing secret here", "nothing secret here"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_redact_is_idempotent(text: str, expected: str) -> None:
    assert redact(redact(text)) == expected


def test_redact_url() -> None:
    assert redact_url("postgresql://app:pw@db:5432/shop") == "postgresql://app:***@db:5432/shop"
    assert redact_url("host=db password=pw") == "host=db password=***"
