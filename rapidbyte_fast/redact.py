"""Mask secrets in text bound for users: config errors, logs, run summaries.

Covers passwords in URLs (``scheme://user:secret@host``, any scheme), libpq DSN key/value
pairs (``password=secret``, ``password='se cret'``, ``sslpassword=...``) and quoted
``'password': '...'`` pairs as printed by Python or JSON. Masking is idempotent.
"""
from __future__ import annotations

import re

MASK = "***"

# The password runs to the LAST '@' of the whitespace-delimited token: a raw '@' or '/' in
# a password must not leak its tail. A stray '@' later in a query string over-masks, which
# is the safe direction.
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@]*:)\S*(?=@)")
# libpq allows spaces around '=' and single-quoted values with backslash escapes; an
# unterminated quote masks the rest of the text rather than leaking it.
_DSN_PASSWORD = re.compile(
    r"(\b\w*password[ \t]*=[ \t]*)(?:'(?:[^'\\]|\\.)*'?|[^\s']\S*)", re.IGNORECASE
)
_QUOTED_PASSWORD = re.compile(
    r"""(["']\w*password["']\s*:\s*)(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""", re.IGNORECASE
)


def redact(text: str) -> str:
    """Return ``text`` with every recognised password replaced by ``***``."""
    text = _URL_PASSWORD.sub(r"\1" + MASK, text)
    text = _DSN_PASSWORD.sub(r"\1" + MASK, text)
    return _QUOTED_PASSWORD.sub(lambda m: f"{m.group(1)}'{MASK}'", text)


def redact_url(url: str) -> str:
    """Mask the password of a connection URL or DSN (same rules as :func:`redact`)."""
    return redact(url)
