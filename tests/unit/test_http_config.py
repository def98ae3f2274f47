"""The http source's config and stream models: what they accept, what they refuse (naming
the key), and that secrets never show in their repr or dump."""
from __future__ import annotations

import pytest

from rapidbyte_fast.config.base import validate_section
from rapidbyte_fast.errors import ConfigError
from rapidbyte_fast.sources.http import HttpConnector, HttpSourceConfig, HttpStream
from rapidbyte_fast.sources.http.auth import Masker
from rapidbyte_fast.sources.http.pagination import next_link, with_params


def _errors(model, data, at) -> list[str]:
    with pytest.raises(ConfigError) as err:
        validate_section(model, data, at)
    return err.value.problems


def test_defaults():
    cfg = HttpSourceConfig.model_validate({"base_url": "https://api.example.com/v1"})
    assert (cfg.timeout, cfg.concurrency, cfg.retry.max_attempts, cfg.auth) == (30.0, 4, 5, None)
    st = HttpStream.model_validate({"name": "users"})
    assert (st.method, st.format, st.pagination.type, st.sync_mode, st.cursor_field,
            st.columns, st.partition_key, st.tie_breaker_field) == (
        "GET", "json", "none", "full_refresh", None, None, None, None)


def test_connector_declares_its_models():
    assert HttpConnector.name == "http"
    assert HttpConnector.config_model is HttpSourceConfig
    assert HttpConnector.stream_model is HttpStream
    assert HttpConnector.capabilities.incremental


def test_incremental_sets_the_sync_mode():
    st = HttpStream.model_validate({"name": "e", "incremental": {"cursor_field": "u",
                                                                 "param": "since"}})
    assert (st.sync_mode, st.cursor_field) == ("incremental", "u")


@pytest.mark.parametrize("data, expected", [
    ({"base_url": "ftp://x"}, "config.base_url: must start with http:// or https:// "
                              "(got 'ftp://x')"),
    ({"base_url": "http://x", "auth": {"type": "oauth"}}, "config.auth: input tag 'oauth' "
     "found using 'type' does not match any of the expected tags: 'bearer', 'basic', "
     "'api_key' (got {'type': 'oauth'})"),
    ({"base_url": "http://x", "auth": {"type": "bearer"}}, "config.auth.bearer.token: is "
                                                           "required"),
    ({"base_url": "http://x", "concurency": 2}, "config.concurency: unknown key (did you "
                                                "mean 'concurrency'?)"),
    ({"base_url": "http://x", "params": {"d": "{{ tomorrow }}"}},
     "config.params: unknown template '{{ tomorrow }}' (use today, yesterday, now, "
     "days_ago(N), hours_ago(N)) (got {'d': '{{ tomorrow }}'})"),
    ({"base_url": "http://x", "retry": {"min_delay_secs": 5, "max_delay_secs": 1}},
     "config.retry.max_delay_secs: must be >= min_delay_secs"),
])
def test_source_config_errors(data, expected):
    assert _errors(HttpSourceConfig, data, ("config",)) == [expected]


@pytest.mark.parametrize("data, expected", [
    ({"name": "s", "pagination": {"type": "pages"}}, "s.pagination: input tag 'pages' found "
     "using 'type' does not match any of the expected tags: 'none', 'limit_offset', "
     "'page_number', 'page_only', 'cursor', 'link_header', 'next_url' (got {'type': 'pages'})"),
    ({"name": "s", "pagination": {"type": "cursor", "cursor_param": "c"}},
     "s.pagination.cursor.cursor_path: is required"),
    ({"name": "s", "pagination": {"type": "page_only", "total_pages_path": "n"}},
     "s.pagination.page_only.total_pages_path: page_only has no total (use type: "
     "page_number)"),
    ({"name": "s", "schema": {"a": "text; drop table x"}}, "s.schema: field a: 'text; drop "
     "table x' is not a valid Postgres type name (got {'a': 'text; drop table x'})"),
    ({"name": "s", "sync_mode": "incremental"}, "s.incremental: required when sync_mode is "
                                                "incremental ({cursor_field, param})"),
    ({"name": "s", "format": "ndjson", "data_path": "d"}, "s.data_path: is for format json "
                                                          "(ndjson lines are the records)"),
    ({"name": "s", "incremental": {"cursor_field": "u", "param": "p", "format": "epoch"}},
     "s.incremental.format: must be one of auto, raw, iso8601, unix, unix_ms, date or a "
     "strftime pattern (got 'epoch')"),
    ({"name": "s", "pagnation": {}}, "s.pagnation: unknown key (did you mean 'pagination'?)"),
])
def test_stream_errors_name_the_key(data, expected):
    assert _errors(HttpStream, data, ("s",)) == [expected]


def test_a_plain_config_mapping_is_validated_by_the_connector():
    conn = HttpConnector({"base_url": "http://x", "timeout": 5})
    assert (conn.config.timeout, conn.endpoint) == (5.0, "http://x")
    with pytest.raises(ConfigError, match=r"^source.config.timeout: must be > 0"):
        HttpConnector({"base_url": "http://x", "timeout": 0})


def test_secrets_are_hidden_in_repr_and_dump():
    cfg = HttpSourceConfig.model_validate({"base_url": "http://x", "auth": {
        "type": "basic", "username": "u", "password": "hunter2-secret"}})
    assert "hunter2-secret" not in repr(cfg)
    assert "hunter2-secret" not in str(cfg.model_dump(mode="json"))


def test_masker():
    cfg = HttpSourceConfig.model_validate({
        "base_url": "http://x", "auth": {"type": "api_key", "name": "k", "value": "s3cr3t/+&v",
                                         "in": "query"},
        "headers": {"X-Api-Token": "hdr-secret", "Accept": "json"},
        "params": {"access_token": "prm-secret", "page": "1"}})
    mask = Masker(cfg)
    text = ("GET http://x/a?k=s3cr3t%2F%2B%26v&page=1&access_token=zzz&format=json "
            "hdr-secret prm-secret s3cr3t/+&v postgresql://u:pw@h/db")
    assert mask(text) == ("GET http://x/a?k=***&page=1&access_token=***&format=json "
                          "*** *** *** postgresql://u:***@h/db")


def test_url_helpers():
    assert with_params("http://x/a?b=1&c=2", {"c": "3", "d": "a b"}) == "http://x/a?b=1&c=3&d=a+b"
    assert next_link('<http://x/?p=1>; rel="prev", <http://x/?p=3>; rel="next last"') == (
        "http://x/?p=3")
    assert next_link('<http://x/?p=1>; rel="prev"') is None
    assert next_link(None) is None
