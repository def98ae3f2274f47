"""Pipeline config: loading, ${VAR} substitution, defaults, every problem reported at once
with exact messages, cross-field rules, embedded forms, secrets never shown."""
from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import platformdirs
import pydantic
import pytest

from rapidbyte_fast.config import (
    DestinationConfig,
    GenerateConfig,
    PipelineConfig,
    PluginLimits,
    PostgresDestinationConfig,
    PostgresSourceConfig,
    ResourcesConfig,
    SchemaEvolution,
    SqlConfig,
    StateConfig,
    StreamConfig,
    load_config,
    parse_size,
)
from rapidbyte_fast.errors import ConfigError

DESIGN_YAML = """\
version: "1.0"
pipeline: orders_sync
source:
  use: postgres                 # built-in: postgres, generate, http; or a .wasm plugin
  config:
    url: ${SRC_URL}             # libpq URL/DSN, or host/port/user/password/database; or embedded: NAME
    schema: public
  streams:
    - name: orders              # table (schema.table allowed)
      sync_mode: incremental    # full_refresh | incremental | cdc
      cursor_field: updated_at
      tie_breaker_field: id
      columns: [id, status, updated_at]   # projection pushdown
      partition_key: id         # parallel shards for full_refresh
transforms:                     # in order; the SQL table is the stream name (alias: input)
  - use: sql
    config: {query: "SELECT id, upper(status) AS status, updated_at FROM orders"}
destination:
  use: postgres
  config: {url: ${DST_URL}, schema: raw, load_method: copy}   # copy | insert
  write_mode: upsert            # append | replace | upsert
  primary_key: [id]
  on_data_error: fail           # fail | skip | dlq
  schema_evolution: {new_column: add, removed_column: ignore, type_change: fail, nullability_change: allow}
state: {backend: sqlite, connection: ~/.local/share/rapidbyte-fast/state.db}   # or postgres
resources:
  parallelism: auto             # or an integer
  max_inflight_batches: 16
  max_batch_bytes: 64mb
  compression: lz4              # lz4 | zstd | none, between stages
  checkpoint_interval_bytes: 64mb   # also _rows, _seconds; 0 disables
  max_retries: 3
"""
SRC_URL = "postgresql://app:S3cr3t-src@db.example:5432/shop"
DST_URL = "postgresql://loader:S3cr3t-dst@dw.example:5433/warehouse?sslmode=require"
ENV = {"SRC_URL": SRC_URL, "DST_URL": DST_URL}


def write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def minimal() -> dict[str, Any]:
    return {
        "pipeline": "p1",
        "source": {
            "use": "postgres",
            "config": {"url": "postgresql://u@h/d"},
            "streams": [{"name": "t"}],
        },
        "destination": {"use": "postgres", "config": {"embedded": "dw"}},
    }


def problems(data: Any, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(data, env=env or {})
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def with_changes(*changes: tuple[tuple[str | int, ...], Any]) -> dict[str, Any]:
    data = minimal()
    for path, value in changes:
        node = data
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
        node[path[-1]] = value
    return data


# --- the DESIGN §4 example -----------------------------------------------------------------


def test_design_example_loads_with_expected_values_and_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, DESIGN_YAML), env=ENV)

    assert (cfg.version, cfg.pipeline) == ("1.0", "orders_sync")
    src = cfg.source
    assert src.use == "postgres"
    assert type(src.config) is PostgresSourceConfig
    assert src.config.url == SRC_URL
    assert (src.config.host, src.config.port, src.config.user, src.config.password) == (
        None, 5432, None, None)
    assert (src.config.database, src.config.embedded) == (None, None)
    assert (src.config.schema_name, src.config.connect_timeout) == ("public", 10)
    assert src.streams == (
        StreamConfig(
            name="orders", sync_mode="incremental", cursor_field="updated_at",
            tie_breaker_field="id", columns=("id", "status", "updated_at"), partition_key="id",
        ),
    )
    assert len(cfg.transforms) == 1
    assert cfg.transforms[0].use == "sql"
    assert cfg.transforms[0].config == SqlConfig(
        query="SELECT id, upper(status) AS status, updated_at FROM orders")
    assert cfg.transforms[0].limits is None

    dst = cfg.destination
    assert type(dst.config) is PostgresDestinationConfig
    assert dst.config.url == DST_URL
    assert dst.config.schema_name == "raw"
    assert (dst.config.load_method, dst.config.passthrough, dst.config.copy_format) == (
        "copy", "auto", "binary")
    assert dst.config.copy_flush_bytes is None
    assert (dst.config.insert_batch_rows, dst.config.insert_batch_bytes) == (5000, 4 * 1024**2)
    assert (dst.write_mode, dst.primary_key, dst.on_data_error) == ("upsert", ("id",), "fail")
    assert dst.allow_empty_replace is False
    assert dst.schema_evolution == SchemaEvolution(
        new_column="add", removed_column="ignore", type_change="fail",
        nullability_change="allow",
    )

    assert cfg.state == StateConfig(
        backend="sqlite", connection="~/.local/share/rapidbyte-fast/state.db")
    assert cfg.resources == ResourcesConfig(
        parallelism="auto", max_inflight_batches=16, max_batch_bytes=64 * 1024**2,
        max_batch_rows=100_000, compression="lz4", compression_level=0,
        checkpoint_interval_bytes=64 * 1024**2, checkpoint_interval_rows=0,
        checkpoint_interval_seconds=0.0, max_retries=3,
    )


def test_design_example_round_trips_through_model_dump(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, DESIGN_YAML), env=ENV)
    again = load_config(cfg.model_dump(by_alias=True), env={})
    assert again == cfg
    assert again.model_dump(by_alias=True) == cfg.model_dump(by_alias=True)


def test_minimal_config_gets_every_default() -> None:
    cfg = load_config(minimal(), env={})
    assert cfg.version == "1.0"
    assert cfg.transforms == ()
    assert cfg.source.streams[0] == StreamConfig(name="t")
    stream = cfg.source.streams[0]
    assert (stream.sync_mode, stream.cursor_field, stream.tie_breaker_field) == (
        "full_refresh", None, None)
    assert (stream.columns, stream.partition_key) == (None, None)
    assert cfg.destination.write_mode == "append"
    assert cfg.destination.primary_key == ()
    assert cfg.destination.schema_evolution == SchemaEvolution()
    assert cfg.destination.schema_evolution.type_change == "fail"
    assert cfg.state == StateConfig(backend="sqlite", connection=None)
    assert cfg.resources == ResourcesConfig()
    assert cfg.resources.parallelism == "auto"
    assert cfg.resources.max_batch_bytes == 67_108_864


def test_plugin_and_http_configs_stay_free_dicts() -> None:
    data = with_changes(
        (("source", "use"), "connectors/my_source.wasm"),
        (("source", "config"), {"anything": [1, 2], "nested": {"k": "v"}}),
        (("destination", "use"), "http"),
        (("destination", "config"), {"endpoint": "https://x"}),
        (("transforms",), [{"use": "transform-filter", "config": {"rules": ["id > 0"]}},
                           {"use": "mask.wasm"}]),
    )
    cfg = load_config(data, env={})
    assert cfg.source.config == {"anything": [1, 2], "nested": {"k": "v"}}
    assert cfg.destination.config == {"endpoint": "https://x"}
    assert [t.use for t in cfg.transforms] == ["transform-filter", "mask.wasm"]
    assert cfg.transforms[0].config == {"rules": ["id > 0"]}
    assert cfg.transforms[1].config == {}
    assert cfg.transforms[1].limits == PluginLimits(
        max_memory=256 << 20, timeout_seconds=30.0, max_output_bytes_per_batch=64 << 20)


def test_generate_source() -> None:
    data = with_changes(
        (("source",), {"use": "generate", "streams": [{"name": "bench_events"}]}))
    cfg = load_config(data, env={})
    assert cfg.source.config == GenerateConfig(rows=1_000_000, dataset=None, start_id=1)
    data["source"] = {"use": "generate", "config": {"rows": 10, "dataset": "small"},
                      "streams": [{"name": "anything"}]}
    assert load_config(data, env={}).source.config == GenerateConfig(rows=10, dataset="small")


# --- unknown keys --------------------------------------------------------------------------


def test_unknown_keys_name_the_path_and_suggest_the_nearest() -> None:
    data = with_changes(
        (("resorces",), {}),
        (("source", "streams", 0, "cursor_feild"), "x"),
        (("source", "zzz"), 1),
        (("destination", "config", "lod_method"), "copy"),
        (("destination", "schema_evolution"), {"new_colum": "add"}),
        (("state",), {"backend": "sqlite", "conection": "x"}),
    )
    assert problems(data) == [
        "resorces: unknown key (did you mean 'resources'?)",
        "source.zzz: unknown key",
        "source.streams[0].cursor_feild: unknown key (did you mean 'cursor_field'?)",
        "destination.config.lod_method: unknown key (did you mean 'load_method'?)",
        "destination.schema_evolution.new_colum: unknown key (did you mean 'new_column'?)",
        "state.conection: unknown key (did you mean 'connection'?)",
    ]


def test_schema_key_is_the_alias_not_the_attribute_name() -> None:
    data = with_changes((("source", "config", "schema_name"), "x"))
    assert problems(data) == [
        "source.config.schema_name: unknown key (did you mean 'schema'?)"]


# --- environment variables -----------------------------------------------------------------


def test_every_missing_env_var_is_named_in_one_problem(tmp_path: Path) -> None:
    text = DESIGN_YAML.replace("connection: ~/.local", "connection: ${STATE_DIR}/.local")
    text = text.replace("max_retries: 3", "max_retries: ${RETRIES}")
    text = text.replace("schema: raw", "schema: ${DST_URL}")
    assert problems(write(tmp_path, text), env={"RETRIES": "4"}) == [
        "missing environment variables: SRC_URL (used at source.config.url), "
        "DST_URL (used at destination.config.url, destination.config.schema), "
        "STATE_DIR (used at state.connection)"
    ]


def test_single_missing_env_var_is_reported_alongside_other_problems() -> None:
    data = with_changes((("source", "config", "url"), "${SRC_URL}"),
                        (("resources",), {"max_retries": -1}))
    assert problems(data) == [
        "missing environment variable: SRC_URL (used at source.config.url)",
        "resources.max_retries: must be >= 0 (got -1)",
    ]


def test_env_substitution_defaults_escapes_and_partial_strings(tmp_path: Path) -> None:
    text = """\
pipeline: p_${NAME:-default}
source:
  use: postgres
  config: {url: "postgresql://${USER}:${PW}@h/d", port: "${PORT:-6543}", schema: "$${NOT_A_VAR}"}
  streams: [{name: "${EMPTY:-fallback}"}, {name: "t$${X}${EMPTY}"}]
destination:
  use: postgres
  config: {embedded: "${DB}"}
resources: {parallelism: "${PAR}", max_batch_bytes: "${MB}mb"}
"""
    env = {"USER": "app", "PW": "p#w: {}[],'\"", "EMPTY": "", "DB": "dw", "PAR": "4", "MB": "2"}
    cfg = load_config(write(tmp_path, text), env=env)
    assert cfg.pipeline == "p_default"
    assert cfg.source.config.url == "postgresql://app:p#w: {}[],'\"@h/d"
    assert cfg.source.config.port == 6543
    assert cfg.source.config.schema_name == "${NOT_A_VAR}"
    assert [s.name for s in cfg.source.streams] == ["fallback", "t${X}"]
    assert cfg.destination.config.embedded == "dw"
    assert cfg.resources.parallelism == 4
    assert cfg.resources.max_batch_bytes == 2 * 1024**2


def test_env_substitution_in_a_dict_does_not_touch_keys_or_non_strings() -> None:
    data = with_changes((("source", "config", "url"), "${U}"),
                        (("resources",), {"max_retries": 7}))
    cfg = load_config(data, env={"U": "host=h dbname=d"})
    assert cfg.source.config.url == "host=h dbname=d"
    assert cfg.resources.max_retries == 7
    assert data["source"]["config"]["url"] == "${U}"  # the caller's dict is not modified


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RBF_TEST_URL", "postgresql://x@y/z")
    data = with_changes((("source", "config", "url"), "${RBF_TEST_URL}"))
    assert load_config(data).source.config.url == "postgresql://x@y/z"


def test_invalid_reference_is_a_problem() -> None:
    data = with_changes((("source", "streams", 0, "name"), "${1BAD}"))
    assert problems(data) == [
        "source.streams[0].name: invalid reference '${1BAD}' "
        "(use ${NAME} or ${NAME:-default}; $${...} for a literal)"
    ]


def test_values_from_the_environment_are_never_echoed() -> None:
    data = with_changes((("source", "config", "port"), "${PORT}"),
                        (("resources",), {"compression": "${C}"}))
    assert problems(data, env={"PORT": "hunter2", "C": "hunter3"}) == [
        "source.config.port: must be an integer",
        "resources.compression: must be one of none, lz4, zstd",
    ]


# --- bad values ----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "value", "expected"), [
    (("source", "streams", 0, "sync_mode"), "incremantal",
     "source.streams[0].sync_mode: must be one of full_refresh, incremental, cdc "
     "(got 'incremantal')"),
    (("destination", "write_mode"), "merge",
     "destination.write_mode: must be one of append, replace, upsert (got 'merge')"),
    (("destination", "on_data_error"), "ignore",
     "destination.on_data_error: must be one of fail, skip, dlq (got 'ignore')"),
    (("destination", "config", "load_method"), "bulk",
     "destination.config.load_method: must be one of copy, insert (got 'bulk')"),
    (("destination", "config", "passthrough"), "on",
     "destination.config.passthrough: must be one of auto, off (got 'on')"),
    (("destination", "config", "copy_format"), "csv",
     "destination.config.copy_format: must be one of binary, text (got 'csv')"),
    (("destination", "schema_evolution", "type_change"), "cast",
     "destination.schema_evolution.type_change: must be one of coerce, fail, null (got 'cast')"),
    (("destination", "schema_evolution", "removed_column"), "drop",
     "destination.schema_evolution.removed_column: must be one of ignore, fail (got 'drop')"),
    (("state", "backend"), "redis",
     "state.backend: must be one of sqlite, postgres (got 'redis')"),
    (("resources", "compression"), "gzip",
     "resources.compression: must be one of none, lz4, zstd (got 'gzip')"),
    (("resources", "parallelism"), "many",
     "resources.parallelism: must be 'auto' or an integer from 1 to 64 (got 'many')"),
    (("resources", "parallelism"), 0,
     "resources.parallelism: must be 'auto' or an integer from 1 to 64 (got 0)"),
    (("resources", "parallelism"), 65,
     "resources.parallelism: must be 'auto' or an integer from 1 to 64 (got 65)"),
    (("resources", "parallelism"), "65",
     "resources.parallelism: must be 'auto' or an integer from 1 to 64 (got '65')"),
    (("resources", "max_inflight_batches"), 0,
     "resources.max_inflight_batches: must be >= 1 (got 0)"),
    (("resources", "max_inflight_batches"), 1025,
     "resources.max_inflight_batches: must be <= 1024 (got 1025)"),
    (("resources", "max_retries"), 101, "resources.max_retries: must be <= 100 (got 101)"),
    (("resources", "max_batch_rows"), "lots",
     "resources.max_batch_rows: must be an integer (got 'lots')"),
    (("resources", "checkpoint_interval_seconds"), -1,
     "resources.checkpoint_interval_seconds: must be >= 0 (got -1)"),
    (("destination", "allow_empty_replace"), "maybe",
     "destination.allow_empty_replace: must be true or false (got 'maybe')"),
    (("destination", "primary_key"), ["id", "id"],
     "destination.primary_key: has duplicate columns (got ('id', 'id'))"),
    (("source", "streams", 0, "columns"), [],
     "source.streams[0].columns: must not be empty (got [])"),
    (("source", "streams", 0, "columns"), "id",
     "source.streams[0].columns: must be a list (got 'id')"),
    (("source", "streams", 0, "name"), "",
     "source.streams[0].name: must not be empty (got '')"),
    (("source", "streams"), [], "source.streams: must not be empty (got [])"),
    (("source", "config"), [1], "source.config: must be a mapping (got [1])"),
    (("source", "config", "port"), 70000,
     "source.config.port: must be <= 65535 (got 70000)"),
    (("source", "config", "url"), "mysql://root@h/db",
     "source.config.url: must be a postgresql:// URL, a key=value DSN or 'embedded' "
     "(got 'mysql://root@h/db')"),
    (("destination", "config", "embedded"), "no spaces",
     "destination.config.embedded: must be 1-64 letters, digits, '_' or '-' (got 'no spaces')"),
    (("pipeline",), "has space",
     "pipeline: must be letters, digits, '_', '.' or '-' (got 'has space')"),
    (("version",), "2.0",
     "version: unsupported version (only '1.0' is supported) (got '2.0')"),
    (("transforms",), {"use": "sql"}, "transforms: must be a list (got {'use': 'sql'})"),
])
def test_bad_values(path: tuple[str | int, ...], value: Any, expected: str) -> None:
    assert problems(with_changes((path, value))) == [expected]


def test_required_keys() -> None:
    assert problems({"source": {"streams": [{}]}, "destination": {}}) == [
        "pipeline: is required",
        "source.use: is required",
        "source.streams[0].name: is required",
        "destination.use: is required",
    ]


@pytest.mark.parametrize(("size", "expected"), [
    ("64 parsecs", "resources.max_batch_bytes: must be a size: bytes, or a number with b, kb, "
                   "mb, gb or tb (e.g. 512kb, 64mb, 1.5gb) (got '64 parsecs')"),
    ("-1mb", "resources.max_batch_bytes: must be a size: bytes, or a number with b, kb, "
             "mb, gb or tb (e.g. 512kb, 64mb, 1.5gb) (got '-1mb')"),
    (True, "resources.max_batch_bytes: must be a size: bytes, or a number with b, kb, "
           "mb, gb or tb (e.g. 512kb, 64mb, 1.5gb) (got True)"),
    ("32kb", "resources.max_batch_bytes: must be at least 64kb (got '32kb')"),
])
def test_bad_sizes(size: Any, expected: str) -> None:
    assert problems(with_changes((("resources", "max_batch_bytes"), size))) == [expected]


def test_bad_size_in_destination_and_checkpoint() -> None:
    data = with_changes((("destination", "config", "copy_flush_bytes"), "1 gallon"),
                        (("resources", "checkpoint_interval_bytes"), "lots"))
    hint = "must be a size: bytes, or a number with b, kb, mb, gb or tb (e.g. 512kb, 64mb, 1.5gb)"
    assert problems(data) == [
        f"destination.config.copy_flush_bytes: {hint} (got '1 gallon')",
        f"resources.checkpoint_interval_bytes: {hint} (got 'lots')",
    ]


def test_sizes_are_parsed_in_the_models() -> None:
    data = with_changes((("destination", "config", "copy_flush_bytes"), "512KB"),
                        (("destination", "config", "insert_batch_bytes"), 1000),
                        (("resources", "max_batch_bytes"), "1.5mb"),
                        (("resources", "checkpoint_interval_bytes"), 0))
    cfg = load_config(data, env={})
    assert cfg.destination.config.copy_flush_bytes == 524_288
    assert cfg.destination.config.insert_batch_bytes == 1000
    assert cfg.resources.max_batch_bytes == 1_572_864
    assert cfg.resources.checkpoint_interval_bytes == 0


def test_all_problems_are_reported_together() -> None:
    data = with_changes(
        (("source", "streams", 0, "sync_mode"), "incremantal"),
        (("destination", "config", "lod_method"), "copy"),
        (("resources",), {"max_batch_bytes": "64 parsecs"}),
        (("destination", "write_mode"), "upsert"),
    )
    assert problems(data) == [
        "source.streams[0].sync_mode: must be one of full_refresh, incremental, cdc "
        "(got 'incremantal')",
        "destination.config.lod_method: unknown key (did you mean 'load_method'?)",
        "destination.primary_key: required when write_mode is upsert",
        "resources.max_batch_bytes: must be a size: bytes, or a number with b, kb, mb, gb or "
        "tb (e.g. 512kb, 64mb, 1.5gb) (got '64 parsecs')",
    ]


def test_problems_in_sibling_list_items_are_all_reported() -> None:
    data = with_changes((("source", "streams"), [
        {"name": "a", "sync_mode": "x"}, {"name": "b"}, {"name": "c", "columns": 5}]))
    assert problems(data) == [
        "source.streams[0].sync_mode: must be one of full_refresh, incremental, cdc (got 'x')",
        "source.streams[2].columns: must be a list (got 5)",
    ]


# --- cross-field rules ---------------------------------------------------------------------


def test_stream_rules() -> None:
    data = with_changes((("source", "streams"), [
        {"name": "a", "sync_mode": "incremental"},
        {"name": "b", "tie_breaker_field": "id"},
        {"name": "c", "sync_mode": "cdc", "columns": ["id"]},
        {"name": "d", "columns": ["id", "v", "id"], "sync_mode": "incremental",
         "cursor_field": "ts", "tie_breaker_field": "seq", "partition_key": "pk"},
        {"name": "a"},
    ]))
    assert problems(data) == [
        "source.streams[0].cursor_field: required when sync_mode is incremental",
        "source.streams[1].tie_breaker_field: needs a cursor_field",
        "source.streams[2].columns: cdc captures whole rows: remove columns (or use a "
        "transform)",
        "source.streams[3].columns: duplicate column 'id'",
        "source.streams[3].cursor_field: 'ts' is not in columns",
        "source.streams[3].tie_breaker_field: 'seq' is not in columns",
        "source.streams[3].partition_key: 'pk' is not in columns",
        "source.streams[4].name: duplicate stream 'a'",
    ]


def test_stream_with_columns_containing_its_fields_is_valid() -> None:
    stream = {"name": "public.orders", "columns": ["id", "ts"], "sync_mode": "incremental",
              "cursor_field": "ts", "tie_breaker_field": "id", "partition_key": "id"}
    data = with_changes((("source", "streams"), [stream]),
                        (("destination", "primary_key"), ["id"]))
    assert load_config(data, env={}).source.streams[0].name == "public.orders"


def test_upsert_needs_a_primary_key_inside_the_projection() -> None:
    data = with_changes((("destination", "write_mode"), "upsert"))
    assert problems(data) == ["destination.primary_key: required when write_mode is upsert"]
    data = with_changes((("destination", "write_mode"), "upsert"),
                        (("destination", "primary_key"), ["id", "region"]),
                        (("source", "streams"), [{"name": "t", "columns": ["id", "v"]}]))
    assert problems(data) == [
        "destination.primary_key: 'region' is not in the columns of stream 't'"]


def test_primary_key_outside_projection_is_allowed_when_a_transform_may_compute_it() -> None:
    data = with_changes((("destination", "primary_key"), "region"),
                        (("source", "streams"), [{"name": "t", "columns": ["id"]}]),
                        (("transforms",), [{"use": "sql", "config": {
                            "query": "SELECT id, 'eu' AS region FROM t"}}]))
    assert load_config(data, env={}).destination.primary_key == ("region",)


def test_pipeline_rule_still_runs_when_another_section_is_invalid() -> None:
    data = with_changes((("destination", "primary_key"), ["nope"]),
                        (("source", "streams"), [{"name": "t", "columns": ["id"]}]),
                        (("resources",), {"max_retries": "x"}))
    assert problems(data) == [
        "resources.max_retries: must be an integer (got 'x')",
        "destination.primary_key: 'nope' is not in the columns of stream 't'",
    ]


def test_rules_skip_fields_that_failed_validation() -> None:
    data = with_changes((("source", "streams"), [
        {"name": "a", "sync_mode": "incremental", "cursor_field": ["x"],
         "tie_breaker_field": "id"},
        {"name": "b", "sync_mode": "bogus", "columns": ["id", "id"]},
    ]), (("destination", "write_mode"), "upsert"), (("destination", "primary_key"), 7.5))
    assert problems(data) == [
        "source.streams[0].cursor_field: must be a string (got ['x'])",
        "source.streams[1].sync_mode: must be one of full_refresh, incremental, cdc "
        "(got 'bogus')",
        "source.streams[1].columns: duplicate column 'id'",
        "destination.primary_key: must be a list (got 7.5)",
    ]


def test_sql_transform_needs_a_query() -> None:
    data = with_changes((("transforms",), [
        {"use": "sql"}, {"use": "sql", "config": {"query": "  "}},
        {"use": "sql", "config": {"query": 5}}, {"use": "validate"}]))
    assert problems(data) == [
        f"transforms[{i}].config.query: the sql transform needs a non-empty query"
        for i in range(3)
    ] + ["transforms[3].config.rules: must be a non-empty list of rules"]


def test_generate_streams_must_name_a_dataset() -> None:
    data = with_changes((("source",), {
        "use": "generate", "config": {"rows": -1},
        "streams": [{"name": "orders"}, {"name": "small"}]}))
    assert problems(data) == ["source.config.rows: must be >= 0 (got -1)"]
    data["source"]["config"] = {"rows": 5}
    assert problems(data) == [
        "source.streams[0].name: 'orders' is not a generate dataset (use one of bench_events, "
        "small, medium, large, or set source.config.dataset)"
    ]


def test_postgres_state_needs_a_connection() -> None:
    data = with_changes((("state",), {"backend": "postgres"}))
    assert problems(data) == ["state.connection: required when backend is postgres"]


def test_connection_needs_exactly_one_of_url_host_embedded() -> None:
    data = with_changes((("source", "config"), {}),
                        (("destination", "config"),
                         {"url": "host=a", "host": "b", "embedded": "c"}))
    assert problems(data) == [
        "source.config: set exactly one of url, host or embedded (none is set)",
        "destination.config: set exactly one of url, host or embedded "
        "(url and host and embedded are set)",
    ]


# --- embedded, conninfo, describe ----------------------------------------------------------


def test_embedded_forms() -> None:
    assert PostgresSourceConfig(url="embedded").embedded_name() == "default"
    assert PostgresSourceConfig(embedded="warehouse").embedded_name() == "warehouse"
    assert PostgresSourceConfig(url="postgresql://u@h/d").embedded_name() is None
    assert PostgresSourceConfig(host="h").embedded_name() is None
    assert PostgresSourceConfig(embedded="wh").describe() == "embedded server 'wh' (schema public)"
    assert PostgresSourceConfig(url="embedded", schema="raw").describe() == (
        "embedded server 'default' (schema raw)")
    with pytest.raises(ValueError, match="^an embedded server has no conninfo before it is"):
        PostgresSourceConfig(embedded="wh").conninfo()


def test_embedded_rejects_connection_fields_and_a_second_target() -> None:
    data = with_changes((("destination", "config"), {
        "url": "embedded", "user": "u", "password": "pw", "port": 1, "database": "d"}))
    assert problems(data) == [
        f"destination.config.{key}: not used with an embedded server"
        for key in ("port", "user", "password", "database")
    ]
    data = with_changes((("destination", "config"), {"url": "embedded", "embedded": "x"}))
    assert problems(data) == [
        "destination.config: set exactly one of url, host or embedded (url and embedded are set)"]


def test_conninfo() -> None:
    assert PostgresSourceConfig(
        host="db", port=6000, user="app", password="it's a b\\", database="shop",
        connect_timeout=3,
    ).conninfo() == (
        r"host=db port=6000 connect_timeout=3 user=app password='it\'s a b\\' dbname=shop")
    assert PostgresSourceConfig(host="db").conninfo() == "host=db port=5432 connect_timeout=10"
    url = "postgresql://u@h/d?connect_timeout=3"
    assert PostgresSourceConfig(url=url).conninfo() == url
    assert PostgresSourceConfig(url="postgresql://u@h/d").conninfo() == (
        "user=u dbname=d host=h connect_timeout=10")
    assert PostgresSourceConfig(url=url, password="pw", port=6000).conninfo() == (
        "user=u connect_timeout=3 dbname=d host=h password=pw port=6000")
    # a connect_timeout set in the config wins over the URL's
    assert PostgresSourceConfig(url=url, connect_timeout=5).conninfo() == (
        "user=u connect_timeout=5 dbname=d host=h")


def test_malformed_dsn_fails_at_conninfo_without_echoing_it() -> None:
    cfg = PostgresSourceConfig(url="host=h password=dsn-secret oops")
    with pytest.raises(ConfigError) as info:
        cfg.conninfo()
    assert info.value.problems == [
        "host=h password=*** oops (schema public): not a valid libpq URL or DSN"]
    assert info.value.__cause__ is None


def test_describe_masks_passwords() -> None:
    assert PostgresSourceConfig(url=SRC_URL).describe() == (
        "postgresql://app:***@db.example:5432/shop (schema public)")
    assert PostgresSourceConfig(url="host=h password=pw dbname=d").describe() == (
        "host=h password=*** dbname=d (schema public)")
    assert PostgresDestinationConfig(
        host="h", user="u", password="pw", database="d", schema="raw").describe() == (
        "postgresql://u:***@h:5432/d (schema raw)")
    assert PostgresSourceConfig(host="h").describe() == "postgresql://h:5432/ (schema public)"


# --- secrets -------------------------------------------------------------------------------


def test_secrets_never_appear_in_errors_dumps_or_reprs(tmp_path: Path) -> None:
    secrets = ["S3cr3t-src", "S3cr3t-dst", "pw-field-secret", "env-secret", "dsn-secret"]
    text = DESIGN_YAML.replace("schema: raw,", "schema: raw, password: pw-field-secret,")
    text = text.replace("max_retries: 3", "max_retries: 300")
    text = text.replace("schema: public", "schema: public\n    port: ${PORT}")
    env = {**ENV, "DST_URL": DST_URL, "PORT": "env-secret"}
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env=env)
    assert info.value.problems == [
        "source.config.port: must be an integer",
        "resources.max_retries: must be <= 100 (got 300)",
    ]

    bad_values = with_changes(
        (("source", "config"), {"url": "mysql://root:S3cr3t-src@h/d"}),
        (("destination", "config"),
         {"url": "host=h password=dsn-secret", "password": ["pw-field-secret"]}),
        (("destination", "config", "load_method"), "S3cr3t-dst"),
    )
    with pytest.raises(ConfigError) as info:
        load_config(bad_values, env={})
    assert info.value.problems == [
        "source.config.url: must be a postgresql:// URL, a key=value DSN or 'embedded' "
        "(got 'mysql://root:***@h/d')",
        "destination.config.password: must be a string",
        "destination.config.load_method: must be one of copy, insert (got 'S3cr3t-dst')",
    ]

    with_password = DESIGN_YAML.replace("schema: raw,", "schema: raw, password: pw-field-secret,")
    cfg = load_config(write(tmp_path, with_password), env=ENV)
    shown = [str(cfg.redacted_dict()), repr(cfg), str(cfg), cfg.source.config.describe(),
             cfg.destination.config.describe()]
    for text in shown:
        for secret in secrets:
            assert secret not in text
    dumped = cfg.redacted_dict()
    assert dumped["source"]["config"]["url"] == "postgresql://app:***@db.example:5432/shop"
    assert dumped["destination"]["config"]["password"] == "***"
    assert dumped["destination"]["config"]["url"] == (
        "postgresql://loader:***@dw.example:5433/warehouse?sslmode=require")
    assert cfg.destination.config.password.get_secret_value() == "pw-field-secret"


def test_redacted_dict_masks_secret_keys_in_plugin_configs() -> None:
    data = with_changes((("source", "use"), "restapi"), (("source", "config"), {
        "api_key": "k1", "auth": {"token": "t1", "header": "X"}, "base": "https://u:p@x/"}))
    dumped = load_config(data, env={}).redacted_dict()
    assert dumped["source"]["config"] == {
        "api_key": "***", "auth": {"token": "***", "header": "X"}, "base": "https://u:***@x/"}
    assert dumped["source"]["streams"] == [{
        "name": "t", "sync_mode": "full_refresh", "cursor_field": None,
        "tie_breaker_field": None, "columns": None, "partition_key": None}]


# --- YAML ----------------------------------------------------------------------------------


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline: p\nsource:\n  use: x\n   bad: [\n")
    assert problems(path) == [f"{path}: YAML syntax error at line 4, column 7: "
                              "mapping values are not allowed here"]


def test_yaml_error_text_does_not_echo_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline: p\nsource: {config: {url: postgresql://u:hide-me@h/d}\n")
    (problem,) = problems(path)
    assert problem.startswith(f"{path}: YAML syntax error at line 3, column 1: ")
    assert "hide-me" not in problem


def test_missing_and_empty_files(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: config file not found"]
    assert problems(str(write(tmp_path, "# nothing\n"))) == [
        f"{tmp_path / 'pipeline.yaml'}: config file is empty"]
    assert problems(write(tmp_path, "- a\n- b\n")) == ["<config>: must be a mapping (got list)"]


def test_yaml_text_is_not_a_path() -> None:
    assert problems("pipeline: p\nsource: {}\n") == [
        "<config>: load_config takes a file path or a dict, not YAML text"]


def test_duplicate_yaml_keys_are_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline: a\npipeline: b\n" + "\n".join(
        DESIGN_YAML.splitlines()[2:]) + "\n")
    assert problems(path, env=ENV) == [f"{path}: line 2: duplicate key 'pipeline'"]


def test_yaml_12_booleans_and_null_policy(tmp_path: Path) -> None:
    text = DESIGN_YAML.replace("load_method: copy}", "load_method: copy, passthrough: off}")
    text = text.replace("type_change: fail", "type_change: null")
    text = text.replace('version: "1.0"', "version: 1.0")
    cfg = load_config(write(tmp_path, text), env=ENV)
    assert cfg.destination.config.passthrough == "off"
    assert cfg.destination.schema_evolution.type_change == "null"
    assert cfg.version == "1.0"


# --- state ---------------------------------------------------------------------------------


def test_state_resolved_connection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAPIDBYTE_DATA_DIR", raising=False)
    assert StateConfig(connection="~/s/state.db").resolved_connection() == str(
        tmp_path / "s" / "state.db")
    assert StateConfig().resolved_connection() == str(
        Path(platformdirs.user_data_dir("rapidbyte-fast")) / "state.db")
    monkeypatch.setenv("RAPIDBYTE_DATA_DIR", str(tmp_path / "data"))
    assert StateConfig().resolved_connection() == str(tmp_path / "data" / "state.db")
    pg = StateConfig(backend="postgres", connection="postgresql://x@y/z")
    assert pg.resolved_connection() == "postgresql://x@y/z"


# --- parse_size ----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    (0, 0), (4096, 4096), (4096.0, 4096), ("100b", 100), ("100", 100), ("1kb", 1024),
    ("512kb", 524_288), ("512KB", 524_288), ("64mb", 67_108_864), ("64 MB", 67_108_864),
    ("1gb", 1_073_741_824), ("1.5mb", 1_572_864), ("0.5kb", 512), ("1.1kb", 1126),
    ("2tb", 2 * 1024**4), ("8MiB", 8 * 1024**2), (" 3gib ", 3 * 1024**3), (".5mb", 524_288),
    ("64m", 64 * 1024**2), ("512k", 524_288), ("1GiB", 1024**3), ("2 g", 2 * 1024**3),
])
def test_parse_size(value: Any, expected: int) -> None:
    assert parse_size(value) == expected
    assert type(parse_size(value)) is int


@pytest.mark.parametrize("value", [
    "64 parsecs", "mb", "", "-1", -1, "1.5.5mb", "1e6", True, 1.5, "64x", "1ib", "64mbb",
    None, [64]])
def test_parse_size_rejects(value: Any) -> None:
    with pytest.raises(ValueError) as info:
        parse_size(value)
    assert str(info.value) == (
        "must be a size: bytes, or a number with b, kb, mb, gb or tb (e.g. 512kb, 64mb, 1.5gb)"
        f" (got {value!r})")


# --- models --------------------------------------------------------------------------------


def test_models_are_frozen() -> None:
    cfg = load_config(minimal(), env={})
    for model, field, value in [
        (cfg, "pipeline", "x"), (cfg.source.streams[0], "name", "x"),
        (cfg.resources, "max_retries", 1), (cfg.destination, "write_mode", "replace"),
        (cfg.destination.config, "load_method", "insert"), (cfg.state, "backend", "postgres"),
    ]:
        with pytest.raises(pydantic.ValidationError) as info:
            setattr(model, field, value)
        assert info.value.errors()[0]["type"] == "frozen_instance"
    assert cfg.source.streams == (StreamConfig(name="t"),)


def test_validating_a_pipeline_directly_raises_config_error() -> None:
    data = with_changes((("resources",), {"max_retries": -1}))
    with pytest.raises(ConfigError) as info:
        PipelineConfig.model_validate(data)
    assert info.value.problems == ["resources.max_retries: must be >= 0 (got -1)"]


def test_nested_models_raise_validation_error_with_readable_summary() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        DestinationConfig(use="postgres", write_mode="upsert", colour="red")
    assert info.value.errors()[0]["msg"] == (
        "colour: unknown key; config: set exactly one of url, host or embedded (none is set); "
        "primary_key: required when write_mode is upsert")


def test_load_config_does_not_mutate_input() -> None:
    data = with_changes((("resources",), {"max_batch_bytes": "1mb"}))
    before = copy.deepcopy(data)
    load_config(data, env={})
    assert data == before


def test_config_pickles_for_distributed_tasks(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, DESIGN_YAML), env=ENV)
    again = pickle.loads(pickle.dumps(cfg))
    assert again == cfg
    assert again.source.config.url == SRC_URL
