"""Pipeline configuration: the YAML file (Rapidbyte-compatible keys) as frozen pydantic
models, every problem found at load time and reported together with its key path.

``loading`` reads the file and substitutes ``${VAR}``; ``models`` holds the pipeline's
sections, ``connectors`` the built-in connectors' ``config`` models, ``transforms`` the
transforms' ``config`` and ``limits``; ``base`` and ``problems`` gather and word the
problems; ``sizes`` parses sizes.
"""
from __future__ import annotations

from .base import ConfigModel, validate_section
from .connectors import (
    DATASETS,
    GenerateConfig,
    PostgresConnection,
    PostgresDestinationConfig,
    PostgresSourceConfig,
    connector_config_model,
)
from .loading import load_config
from .models import (
    MAX_PARALLELISM,
    DestinationConfig,
    PipelineConfig,
    ResourcesConfig,
    SchemaEvolution,
    SourceConfig,
    StateConfig,
    StreamConfig,
)
from .problems import did_you_mean
from .sizes import Size, parse_size
from .transforms import (
    PluginLimits,
    SqlConfig,
    TransformConfig,
    ValidateConfig,
    ValidateRule,
    transform_config,
    transform_config_model,
)

__all__ = [
    "DATASETS",
    "MAX_PARALLELISM",
    "ConfigModel",
    "DestinationConfig",
    "GenerateConfig",
    "PipelineConfig",
    "PluginLimits",
    "PostgresConnection",
    "PostgresDestinationConfig",
    "PostgresSourceConfig",
    "ResourcesConfig",
    "SchemaEvolution",
    "Size",
    "SourceConfig",
    "SqlConfig",
    "StateConfig",
    "StreamConfig",
    "TransformConfig",
    "ValidateConfig",
    "ValidateRule",
    "connector_config_model",
    "did_you_mean",
    "load_config",
    "parse_size",
    "transform_config",
    "transform_config_model",
    "validate_section",
]
