"""`rapidbyte-fast init` starter pipelines: they load, show every key of the config models
with its model default, keep secrets in ${VAR}, never overwrite a file unasked; and the
quickstart pipeline is examples/quickstart.yaml."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from rapidbyte_fast import starter
from rapidbyte_fast.cli import main
from rapidbyte_fast.config import (
    DestinationConfig,
    GenerateConfig,
    PipelineConfig,
    PostgresDestinationConfig,
    PostgresSourceConfig,
    ResourcesConfig,
    SchemaEvolution,
    SourceConfig,
    StateConfig,
    StreamConfig,
    TransformConfig,
    load_config,
)
from rapidbyte_fast.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
ENV = {"SRC_URL": "postgresql://app@src.example.com/shop",
       "DST_URL": "postgresql://app@dst.example.com/warehouse", "API_TOKEN": "t0ken"}
#: the config models each starter shows, every field of them
MODELS = {
    "postgres": (PipelineConfig, SourceConfig, PostgresSourceConfig, StreamConfig,
                 TransformConfig, DestinationConfig, PostgresDestinationConfig,
                 SchemaEvolution, StateConfig, ResourcesConfig),
    "generate": (PipelineConfig, SourceConfig, GenerateConfig, TransformConfig,
                 DestinationConfig, PostgresDestinationConfig, SchemaEvolution, StateConfig,
                 ResourcesConfig),
}


def _not_shown(text: str, keys: set[str]) -> list[str]:
    """The keys that appear in ``text`` neither as a key nor in a comment."""
    return sorted(k for k in keys if not re.search(rf"(^|[\s{{,#-]){k}:", text, re.M))


def _write(tmp_path: Path, source: str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    starter.write_pipeline(str(path), source, "postgres")
    return path


@pytest.mark.parametrize("source", ["postgres", "generate"])
def test_starter_loads_with_model_defaults(tmp_path, source):
    cfg = load_config(_write(tmp_path, source, "orders sync.yaml"), env=ENV)
    assert cfg.pipeline == "orders_sync"
    assert cfg.transforms == ()
    assert cfg.state == StateConfig() and cfg.resources == ResourcesConfig()
    dest = cfg.destination
    assert dest.model_dump(exclude={"use", "config"}) == DestinationConfig(use="x").model_dump(
        exclude={"use", "config"})
    assert dest.config.url == ENV["DST_URL"]
    assert dest.config.schema_name == ("raw" if source == "postgres" else "public")
    defaults = PostgresDestinationConfig(url="embedded")
    assert dest.config.model_dump(exclude={"url", "schema_name"}) == defaults.model_dump(
        exclude={"url", "schema_name"})
    if source == "postgres":
        assert cfg.source.config == PostgresSourceConfig(url=ENV["SRC_URL"])
        assert cfg.source.streams == (StreamConfig(name="orders"),)
    else:
        assert cfg.source.config == GenerateConfig()
        assert cfg.source.streams == (StreamConfig(name="bench_events"),)


@pytest.mark.parametrize("source", sorted(MODELS))
def test_starter_shows_every_key(source):
    text = starter.pipeline_yaml(source, "postgres", "p.yaml")
    keys = {f.alias or name for model in MODELS[source]
            for name, f in model.model_fields.items()}
    assert _not_shown(text, keys) == []


@pytest.mark.parametrize("source", starter.SOURCES)
def test_starter_keeps_secrets_in_variables(source):
    text = starter.pipeline_yaml(source, "postgres", "p.yaml")
    secret_lines = [line for line in text.splitlines()
                    if re.search(r"\b(password|token|url):\s", line)]
    assert secret_lines
    for line in secret_lines:
        value = re.search(r"\b(?:password|token|url):\s*(\S+)", line).group(1)
        assert value.startswith("${"), line
    assert all(len(line) <= 100 for line in text.splitlines())


def _http_wired() -> bool:
    try:
        load_config({"pipeline": "p", "source": {"use": "http",
                     "config": {"base_url": "https://x"}, "streams": [{"name": "a", "path": "/a"}]},
                     "destination": {"use": "postgres", "config": {"url": "embedded"}}})
    except ConfigError:
        return False
    return True


def _model_keys(model: BaseModel) -> set[str]:
    keys = set()
    for name, field in type(model).model_fields.items():
        keys.add(field.alias or name)
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            keys |= _model_keys(value)
    return keys


def test_http_starter_loads_with_model_defaults(tmp_path):
    if not _http_wired():
        pytest.skip("the http source is not wired into the config yet (HTTP issue)")
    text = starter.pipeline_yaml("http", "postgres", "p.yaml")
    cfg = load_config(_write(tmp_path, "http"), env=ENV)
    source, stream = cfg.source.config, cfg.source.streams[0]
    assert source.auth.token.get_secret_value() == ENV["API_TOKEN"]
    assert source.model_dump(exclude={"base_url", "auth"}) == type(source).model_validate(
        {"base_url": source.base_url}).model_dump(exclude={"base_url", "auth"})
    examples = {"path", "data_path", "pagination"}
    assert stream.model_dump(exclude=examples) == type(stream).model_validate(
        {"name": stream.name}).model_dump(exclude=examples)
    keys = _model_keys(source) | _model_keys(stream) | {"requests_per_second", "cursor_field"}
    assert _not_shown(text, keys) == []


def test_init_cli_writes_refuses_overwrite_and_prints(tmp_path):
    runner = CliRunner()
    path = tmp_path / "nightly.yaml"
    done = runner.invoke(main, ["init", "--source", "generate", str(path)])
    assert done.exit_code == 0, done.output
    assert done.output.splitlines() == [
        f"wrote {path} (generate → postgres, pipeline nightly); edit it, then:",
        f"  rapidbyte-fast check {path}",
        f"  rapidbyte-fast run {path}",
    ]
    assert path.read_text() == starter.pipeline_yaml("generate", "postgres", str(path))
    path.write_text("mine")
    again = runner.invoke(main, ["init", str(path)])
    assert again.exit_code == 1
    assert again.output == f"error: {path} already exists (use --force to overwrite it)\n"
    assert path.read_text() == "mine"
    forced = runner.invoke(main, ["init", "--force", str(path)])
    assert forced.exit_code == 0
    assert path.read_text() == starter.pipeline_yaml("postgres", "postgres", str(path))
    shown = runner.invoke(main, ["init", "-", "--source", "http"])
    assert shown.exit_code == 0
    assert shown.output == starter.pipeline_yaml("http", "postgres", "-")
    bad = runner.invoke(main, ["init", "--source", "mysql", str(tmp_path / "x.yaml")])
    assert bad.exit_code == 2 and "'mysql' is not one of" in bad.output
    missing_dir = runner.invoke(main, ["init", str(tmp_path / "no" / "x.yaml")])
    assert missing_dir.exit_code == 1
    assert missing_dir.output.startswith(f"error: cannot write {tmp_path / 'no' / 'x.yaml'}: ")


@pytest.mark.parametrize("path,name", [("pipeline.yaml", "pipeline"), ("-", "my_pipeline"),
                                       ("a/My Orders!.yml", "My_Orders"), ("ü.yaml", "my_pipeline")])
def test_pipeline_name_from_path(path, name):
    assert starter.pipeline_name(path) == name


def test_quickstart_pipeline_is_the_example():
    example = load_config(ROOT / "examples" / "quickstart.yaml", env={})
    assert load_config(starter.quickstart_pipeline()) == example
    assert load_config(starter.quickstart_pipeline(5000)).source.config.rows == 5000



def test_psql_hint_falls_back_to_pgservers_psql(monkeypatch):
    sql = "SELECT 1"
    monkeypatch.setattr(starter.shutil, "which", lambda name: "/usr/bin/psql")
    assert starter.psql_hint(sql) == 'psql "$(rapidbyte-fast embedded url)" -c \'SELECT 1\''
    pgserver = pytest.importorskip("pgserver._commands")
    monkeypatch.setattr(starter.shutil, "which", lambda name: None)
    shipped = pgserver.POSTGRES_BIN_PATH / "psql"
    assert shipped.is_file()
    assert starter.psql_hint(sql) == f'{shipped} "$(rapidbyte-fast embedded url)" -c \'SELECT 1\''
