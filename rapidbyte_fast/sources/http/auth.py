"""Authentication headers and query parameters, and the masking of every secret they hold.

A ``Masker`` knows the secret values of a source (tokens, passwords, API keys, header
values, query parameters whose names look secret) and replaces them with ``***`` in any
text bound for users: error messages, logs, URLs.
"""
from __future__ import annotations

import base64
import re
from urllib.parse import quote, quote_plus

from ...redact import MASK, redact
from .config import ApiKeyAuth, BasicAuth, BearerAuth, HttpSourceConfig

#: Header and query parameter names whose values are secrets.
_SECRET_PARAM = re.compile(r"token|key|secret|pass|auth|sig|session|credential|cookie",
                           re.IGNORECASE)
_QUERY_PAIR = re.compile(r"([?&])([^=&#\s]+)=([^&#\s]*)")


def auth_headers(cfg: HttpSourceConfig) -> dict[str, str]:
    """Headers that carry the credentials."""
    auth = cfg.auth
    if isinstance(auth, BearerAuth):
        return {"Authorization": f"Bearer {auth.token.get_secret_value()}"}
    if isinstance(auth, BasicAuth):
        pair = f"{auth.username}:{auth.password.get_secret_value()}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    if isinstance(auth, ApiKeyAuth) and auth.in_ == "header":
        return {auth.name: auth.value.get_secret_value()}
    return {}


def auth_params(cfg: HttpSourceConfig) -> dict[str, str]:
    """Query parameters that carry the credentials."""
    auth = cfg.auth
    if isinstance(auth, ApiKeyAuth) and auth.in_ == "query":
        return {auth.name: auth.value.get_secret_value()}
    return {}


class Masker:
    """Masks a source's secrets (and URL passwords) in text."""

    def __init__(self, cfg: HttpSourceConfig) -> None:
        auth = cfg.auth
        values = [str(v) for k, v in [*cfg.headers.items(), *cfg.params.items()]
                  if _SECRET_PARAM.search(k)]
        if isinstance(auth, BearerAuth):
            values.append(auth.token.get_secret_value())
        elif isinstance(auth, BasicAuth):
            values.append(auth.password.get_secret_value())
            values += auth_headers(cfg).values()
        elif isinstance(auth, ApiKeyAuth):
            values.append(auth.value.get_secret_value())
        forms = {form for v in values if len(v) >= 3
                 for form in (v, quote(v, safe=""), quote_plus(v, safe=""))}
        # longest first: a secret that contains another is masked whole
        self._secrets = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        text = _QUERY_PAIR.sub(
            lambda m: f"{m.group(1)}{m.group(2)}={MASK}" if _SECRET_PARAM.search(m.group(2))
            else m.group(0), text)
        return redact(text)
