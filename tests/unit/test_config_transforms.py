"""Transforms in the pipeline file: ``config`` and ``limits`` typed by ``use``, so that a
bad sql config, validate rule or plugin limit is a ConfigError at load_config naming its
exact key path; the typed models reach the transforms, and dumps load again."""
from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from rapidbyte_fast.config import (
    ConfigModel,
    GenerateConfig,
    PluginLimits,
    PostgresDestinationConfig,
    PostgresSourceConfig,
    SqlConfig,
    ValidateConfig,
    ValidateRule,
    connector_config_model,
    did_you_mean,
    load_config,
    transform_config_model,
    validate_section,
)
from rapidbyte_fast.config.transforms import AcceptedValuesRule, RangeRule, RegexRule
from rapidbyte_fast.errors import ConfigError
from rapidbyte_fast.transforms.chain import build
from rapidbyte_fast.transforms.sql import SqlTransform
from rapidbyte_fast.transforms.validate import ValidateTransform


def pipeline(*transforms: dict[str, Any]) -> dict[str, Any]:
    return {
        "pipeline": "p1",
        "source": {"use": "postgres", "config": {"url": "postgresql://u@h/d"},
                   "streams": [{"name": "t"}]},
        "transforms": list(transforms),
        "destination": {"use": "postgres", "config": {"embedded": "dw"}},
    }


def problems(data: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(data, env=env or {})
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


SQL = {"use": "sql", "config": {"query": "SELECT * FROM t"}}


# --- the required problems, each with its exact key path -----------------------------------


def test_a_bad_validate_rule_is_found_at_load_time() -> None:
    data = pipeline(SQL, {"use": "validate", "config": {"rules": [
        {"range": {"column": "age", "min": [1]}}]}})
    assert problems(data) == [
        "transforms[1].config.rules[0].range.min: must be a number (or a date/time as text)"]


def test_a_sql_transform_without_a_query_is_found_at_load_time() -> None:
    assert problems(pipeline({"use": "sql", "config": {"qurey": "SELECT 1"}})) == [
        "transforms[0].config.qurey: unknown key (did you mean 'query'?)",
        "transforms[0].config.query: the sql transform needs a non-empty query",
    ]


def test_a_bad_plugin_limit_is_found_at_load_time() -> None:
    data = pipeline({"use": "transform-mask", "limits": {
        "max_memory": "8gb", "timeout_seconds": 0, "max_output_bytes_per_batch": "lots",
        "max_memroy": 1}})
    assert problems(data) == [
        "transforms[0].limits.max_memroy: unknown key (did you mean 'max_memory'?)",
        "transforms[0].limits.max_memory: must be from 64kb to 4gb (got '8gb')",
        "transforms[0].limits.timeout_seconds: must be > 0 (got 0)",
        "transforms[0].limits.max_output_bytes_per_batch: must be a size: bytes, or a number "
        "with b, kb, mb, gb or tb (e.g. 512kb, 64mb, 1.5gb) (got 'lots')",
    ]


@pytest.mark.parametrize(("limits", "expected"), [
    ({"max_output_bytes_per_batch": "32kb"},
     "transforms[0].limits.max_output_bytes_per_batch: must be at least 64kb (got '32kb')"),
    ({"max_memory": "32kb"}, "transforms[0].limits.max_memory: must be from 64kb to 4gb "
                             "(got '32kb')"),
    ({"timeout_seconds": 86401}, "transforms[0].limits.timeout_seconds: must be <= 86400 "
                                 "(got 86401)"),
    ({"timeout_seconds": "soon"}, "transforms[0].limits.timeout_seconds: must be a number "
                                  "(got 'soon')"),
    ([1], "transforms[0].limits: must be a mapping (got [1])"),
])
def test_plugin_limit_bounds(limits: Any, expected: str) -> None:
    assert problems(pipeline({"use": "x.wasm", "limits": limits})) == [expected]


@pytest.mark.parametrize("use", ["sql", "validate"])
def test_limits_on_a_built_in_transform_are_an_error(use: str) -> None:
    config = SQL["config"] if use == "sql" else {"rules": [{"not_null": "id"}]}
    data = pipeline({"use": use, "config": config, "limits": {"max_memory": "64mb"}})
    assert problems(data) == [
        f"transforms[0].limits: not allowed: only WASM plugin transforms have limits "
        f"({use} runs in-process)"]


def test_parallelism_above_64_is_an_error() -> None:
    data = pipeline()
    data["resources"] = {"parallelism": 65}
    assert problems(data) == [
        "resources.parallelism: must be 'auto' or an integer from 1 to 64 (got 65)"]
    data["resources"] = {"parallelism": 64}
    assert load_config(data, env={}).resources.parallelism == 64


# --- every validate rule shape, at load time ------------------------------------------------


def test_every_rule_shape_problem_is_reported_together() -> None:
    data = pipeline(SQL, SQL, {"use": "validate", "config": {"rulez": [], "rules": [
        {"not_nul": ["id"]},
        {"regex": {"column": "email", "pattern": "a(b"}},
        {"range": {"column": "age"}},
        "unique",
        {"unique": []},
        {"accepted_values": {"colum": "status", "values": []}},
        {"not_null": ["id"], "unique": ["id"]},
        {"range": {"column": "age", "min": True, "max": {"x": 1}}},
        {"regex": ["email"]},
        {"not_null": None},
        {"accepted_values": {"column": "", "values": [[1]]}},
        {"regex": {"column": "email"}},
    ]}})
    assert problems(data) == [
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
        "transforms[2].config.rules[7].range.max: must be a number (or a date/time as text)",
        "transforms[2].config.rules[8].regex: must be a mapping with keys column, pattern",
        "transforms[2].config.rules[9].not_null: must be a column name or a non-empty list of "
        "column names",
        "transforms[2].config.rules[10].accepted_values.column: must be a column name",
        "transforms[2].config.rules[10].accepted_values.values: must be a non-empty list of "
        "values",
        "transforms[2].config.rules[11].regex.pattern: must be a regular expression",
    ]


@pytest.mark.parametrize(("config", "expected"), [
    ({}, "transforms[0].config.rules: must be a non-empty list of rules"),
    ({"rules": []}, "transforms[0].config.rules: must be a non-empty list of rules"),
    ({"rules": {"not_null": "id"}}, "transforms[0].config.rules: must be a non-empty list of "
                                    "rules"),
    ([1], "transforms[0].config: must be a mapping (got [1])"),
])
def test_validate_config_itself(config: Any, expected: str) -> None:
    assert problems(pipeline({"use": "validate", "config": config})) == [expected]


def test_rule_values_from_the_environment_are_not_echoed() -> None:
    data = pipeline({"use": "transform-mask", "limits": {"max_memory": "${MEM}"}})
    assert problems(data, env={"MEM": "hunter2"}) == [
        "transforms[0].limits.max_memory: must be a size: bytes, or a number with b, kb, mb, "
        "gb or tb (e.g. 512kb, 64mb, 1.5gb)"]


# --- typed models, what transforms receive, round trips -------------------------------------


RULES = [
    {"not_null": ["id", "email"]},
    {"regex": {"column": "email", "pattern": "^[^@]+@"}},
    {"range": {"column": "age", "min": 0, "max": 150.5}},
    {"range": {"column": "born", "min": "1900-01-01"}},
    {"accepted_values": {"column": "status", "values": ["new", "paid"]}},
    {"unique": "id"},
]


def test_configs_and_limits_are_typed_by_use() -> None:
    cfg = load_config(pipeline(
        SQL,
        {"use": "validate", "config": {"rules": RULES}},
        {"use": "transform-mask", "config": {"columns": ["email"], "mode": "hash"},
         "limits": {"max_memory": "64m", "timeout_seconds": "2.5"}},
    ), env={})
    sql, validate, plugin = cfg.transforms
    assert sql.config == SqlConfig(query="SELECT * FROM t")
    assert sql.limits is None
    assert validate.limits is None
    assert validate.config == ValidateConfig(rules=(
        ValidateRule(not_null=("id", "email")),
        ValidateRule(regex=RegexRule(column="email", pattern="^[^@]+@")),
        ValidateRule(range=RangeRule(column="age", min=0, max=150.5)),
        ValidateRule(range=RangeRule(column="born", min="1900-01-01")),
        ValidateRule(accepted_values=AcceptedValuesRule(column="status", values=("new", "paid"))),
        ValidateRule(unique="id"),
    ))
    assert [r.kind for r in validate.config.rules] == [
        "not_null", "regex", "range", "range", "accepted_values", "unique"]
    bounds = validate.config.rules[2].range
    assert (type(bounds.min), type(bounds.max)) == (int, float)
    assert plugin.config == {"columns": ["email"], "mode": "hash"}
    assert plugin.limits == PluginLimits(max_memory=64 << 20, timeout_seconds=2.5,
                                         max_output_bytes_per_batch=64 << 20)
    assert plugin.limits.model_fields_set == {"max_memory", "timeout_seconds"}


def test_accepted_values_and_bounds_keep_their_types() -> None:
    config = ValidateConfig.model_validate({"rules": [
        {"accepted_values": {"column": "c", "values": ["1", 1, 2.5, True]}},
        {"range": {"column": "c", "min": "5", "max": 5}}]})
    values = config.rules[0].accepted_values.values
    assert values == ("1", 1, 2.5, True)
    assert [type(v) for v in values] == [str, int, float, bool]
    bounds = config.rules[1].range
    assert (bounds.min, bounds.max) == ("5", 5)


def test_typed_transform_configs_round_trip_through_model_dump() -> None:
    data = pipeline(SQL, {"use": "validate", "config": {"rules": RULES}},
                    {"use": "transform-mask", "limits": {"max_output_bytes_per_batch": "1mb"}})
    # (a dump of an embedded destination names a port, which embedded refuses)
    data["destination"]["config"] = {"url": "postgresql://u@h/dw"}
    cfg = load_config(data, env={})
    dumped = cfg.model_dump(by_alias=True)
    assert dumped["transforms"][1]["config"]["rules"] == (
        {"not_null": ("id", "email")},
        {"regex": {"column": "email", "pattern": "^[^@]+@"}},
        {"range": {"column": "age", "min": 0, "max": 150.5}},
        {"range": {"column": "born", "min": "1900-01-01", "max": None}},
        {"accepted_values": {"column": "status", "values": ("new", "paid")}},
        {"unique": "id"},
    )
    assert dumped["transforms"][2]["limits"] == {
        "max_memory": 256 << 20, "timeout_seconds": 30.0, "max_output_bytes_per_batch": 1 << 20}
    assert load_config(dumped, env={}) == cfg
    assert cfg.redacted_dict()["transforms"][0] == {
        "use": "sql", "config": {"query": "SELECT * FROM t"}, "limits": None}


def test_built_transforms_get_the_typed_config() -> None:
    data = pipeline(SQL, {"use": "validate", "config": {"rules": RULES}})
    sql, validate = build(load_config(data, env={}).transforms, "skip", None)
    assert isinstance(sql, SqlTransform) and sql.query == "SELECT * FROM t"
    assert isinstance(validate, ValidateTransform)
    schema = pa.schema([("id", pa.int64()), ("email", pa.utf8()), ("age", pa.int32()),
                        ("born", pa.date32()), ("status", pa.utf8())])
    assert validate.open("t", schema) is schema
    batch = pa.RecordBatch.from_pylist([
        {"id": 1, "email": "a@x", "age": 3, "born": None, "status": "new"},
        {"id": 2, "email": "nope", "age": 3, "born": None, "status": "new"},
    ], schema=schema)
    assert [b.to_pylist() for b in validate.apply(batch)] == [[batch.to_pylist()[0]]]


def test_transforms_built_alone_check_their_config_with_the_same_models() -> None:
    with pytest.raises(ConfigError) as info:
        ValidateTransform({"rules": [{"range": {"column": "a", "min": [1]}}]}, "fail", None)
    assert info.value.problems == [
        "config.rules[0].range.min: must be a number (or a date/time as text)"]
    with pytest.raises(ConfigError) as info:
        SqlTransform({}, index=4)
    assert info.value.problems == [
        "transforms[4].config.query: the sql transform needs a non-empty query"]


# --- one model per use, one suggestion helper, sections validated alone ---------------------


def test_connector_config_model_gives_the_built_ins_and_none_otherwise() -> None:
    assert connector_config_model("source", "postgres") is PostgresSourceConfig
    assert connector_config_model("source", "generate") is GenerateConfig
    assert connector_config_model("destination", "postgres") is PostgresDestinationConfig
    assert connector_config_model("destination", "generate") is None
    assert connector_config_model("source", "connectors/x.wasm") is None
    assert transform_config_model("sql") is SqlConfig
    assert transform_config_model("validate") is ValidateConfig
    assert transform_config_model("transform-mask") is None


def test_did_you_mean() -> None:
    assert did_you_mean("qurey", ["query", "rules"]) == " (did you mean 'query'?)"
    assert did_you_mean("zzz", ["query"]) == ""
    assert did_you_mean("x", []) == ""


def test_validate_section_prefixes_paths_and_passes_models_through() -> None:
    with pytest.raises(ConfigError) as info:
        validate_section(PluginLimits, {"timeout_seconds": True, "max_memory": 1}, ("x", 2))
    assert info.value.problems == [
        "x[2].max_memory: must be from 64kb to 4gb (got 1)",
        "x[2].timeout_seconds: must be a number (got True)",
    ]
    limits = PluginLimits()
    assert validate_section(PluginLimits, limits, ()) is limits
    assert issubclass(PluginLimits, ConfigModel)


def test_a_plugin_gets_the_limits_the_pipeline_sets(tmp_path_factory: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from rapidbyte_fast.plugins.host import Limits

    monkeypatch.setenv("RAPIDBYTE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "aot"))
    cfg = load_config(pipeline(
        {"use": "transform-mask", "config": {"columns": ["email"], "mode": "hash"},
         "limits": {"max_memory": "64mb", "timeout_seconds": 5}},
        {"use": "transform-mask", "config": {"columns": ["email"], "mode": "hash"}},
    ), env={})
    set_limits, defaults = build(cfg.transforms, "fail", None)
    assert set_limits._limits == Limits(max_memory=64 << 20, timeout_seconds=5.0)
    assert defaults._limits == Limits()
