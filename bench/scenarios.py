"""Benchmark scenarios: a name such as ``small-copy-lz4`` ↔ its settings, the standard
sets (``expand``, ``MATRIX``), and the pipeline a scenario runs.

Name grammar: ``DATASET-MODE`` then, in any order, ``lz4|zstd`` (compression), ``p_N|p_auto``
(parallelism), ``transform|transform_filter|filter_wasm`` and ``aot_on|aot_off``. The
canonical name lists them in that order and leaves out defaults (none, p_1).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterable

from rapidbyte_fast.config import DATASETS

#: upsert re-syncs: after the first iteration the target already holds the same rows
MODES = ("insert", "copy", "passthrough", "upsert")
COMPRESSIONS = ("none", "lz4", "zstd")

#: Rows per dataset when --rows is not given: roughly 100 MB of COPY data each (large is
#: ~69 KB a row, so 100k rows of it would be ~7 GB).
DEFAULT_ROWS = {"bench_events": 1_000_000, "small": 200_000, "medium": 50_000, "large": 2_000}

#: Transforms of the seed's benchmarks (SQL) and of the example WASM plugin. They are
#: written for bench_events; the plugin's config follows the transform-filter example.
TRANSFORMS: dict[str, tuple[dict[str, Any], ...]] = {
    "transform": ({"use": "sql", "config": {"query": (
        "SELECT id, upper(event_type) AS event_type, user_id, amount, is_active, payload, "
        "created_at FROM bench_events")}},),
    "transform_filter": ({"use": "sql", "config": {
        "query": "SELECT * FROM bench_events WHERE amount >= 5000"}},),
    "filter_wasm": ({"use": "transform-filter", "config": {
        "column": "amount", "op": ">=", "value": 5000}},),
}
#: Transforms that keep only rows with amount >= 5000 (their expected checksums differ).
FILTERING = frozenset({"transform_filter", "filter_wasm"})

#: Environment variable the tool reads to turn the WASM AOT cache on or off.
AOT_ENV = "RAPIDBYTE_WASM_AOT"


@dataclass(frozen=True)
class Scenario:
    """One way of copying one dataset Postgres → Postgres."""

    dataset: str
    mode: str = "copy"
    compression: str = "none"
    parallelism: str = "1"
    transform: str | None = None
    aot: bool | None = None
    #: ``run --executor`` of the tool: local, dask://local, dask://HOST:PORT
    executor: str = "local"

    def __post_init__(self) -> None:
        problems = []
        if self.dataset not in DATASETS:
            problems.append(f"dataset {self.dataset!r} is not one of {', '.join(DATASETS)}")
        if self.mode not in MODES:
            problems.append(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.compression not in COMPRESSIONS:
            problems.append(f"compression {self.compression!r} is not one of "
                            f"{', '.join(COMPRESSIONS)}")
        if not (self.parallelism == "auto" or (self.parallelism.isdigit()
                                               and int(self.parallelism) >= 1)):
            problems.append(f"parallelism {self.parallelism!r} is not 'auto' or a count >= 1")
        if self.transform is not None:
            if self.transform not in TRANSFORMS:
                problems.append(f"transform {self.transform!r} is not one of "
                                f"{', '.join(TRANSFORMS)}")
            if self.dataset != "bench_events":
                problems.append("transform scenarios are defined for bench_events only")
            if self.mode == "passthrough":
                problems.append("passthrough moves raw COPY bytes and cannot transform")
        if self.aot is not None and self.transform != "filter_wasm":
            problems.append("aot_on/aot_off only matter with a WASM plugin (filter_wasm)")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def name(self) -> str:
        parts = [self.dataset, self.mode]
        if self.compression != "none":
            parts.append(self.compression)
        if self.parallelism != "1":
            parts.append(f"p_{self.parallelism}")
        if self.transform:
            parts.append(self.transform)
        if self.aot is not None:
            parts.append("aot_on" if self.aot else "aot_off")
        if self.executor != "local":
            parts.append("dask" if self.executor == "dask://local"
                         else "dask@" + self.executor.removeprefix("dask://"))
        return "-".join(parts)

    def tool_args(self) -> list[str]:
        """Extra arguments of the tool's ``run`` command."""
        return [] if self.executor == "local" else ["--executor", self.executor]

    @property
    def feature_gated(self) -> bool:
        """True when the scenario needs features the tool may not have yet (transforms,
        plugins): a configuration the tool rejects then means "skip", not "fail"."""
        return self.transform is not None

    def env(self) -> dict[str, str]:
        """Extra environment for the tool's process."""
        return {} if self.aot is None else {AOT_ENV: "1" if self.aot else "0"}

    def pipeline(self, url: str, source_schema: str, dest_schema: str) -> dict[str, Any]:
        """The pipeline (as YAML data) copying ``source_schema.<dataset>`` into
        ``dest_schema.<dataset>`` with a primary key, replacing it (or upserting into it)."""
        dest_config: dict[str, Any] = {
            "url": url, "schema": dest_schema,
            "load_method": "insert" if self.mode == "insert" else "copy",
            # copy measures the Arrow path: passthrough must not be chosen for it.
            "passthrough": "auto" if self.mode in ("passthrough", "upsert") else "off",
        }
        pipeline: dict[str, Any] = {
            "version": "1.0",
            "pipeline": "bench-" + self.name.replace("_", "-"),
            "source": {"use": "postgres", "config": {"url": url, "schema": source_schema},
                       "streams": [{"name": self.dataset}]},
            "destination": {"use": "postgres", "config": dest_config,
                            "write_mode": "upsert" if self.mode == "upsert" else "replace",
                            "primary_key": ["id"]},
            "resources": {"compression": self.compression,
                          "parallelism": self.parallelism if self.parallelism == "auto"
                          else int(self.parallelism)},
        }
        if self.transform:
            pipeline["transforms"] = [dict(t) for t in TRANSFORMS[self.transform]]
        return pipeline


def parse(name: str) -> Scenario:
    """The scenario a name denotes; ``ValueError`` names what is wrong with it."""
    dataset, _, rest = name.partition("-")
    tokens = rest.split("-") if rest else []
    if not tokens or tokens[0] not in MODES:
        raise ValueError(f"scenario {name!r}: expected DATASET-MODE[-OPTION...] with MODE one "
                         f"of {', '.join(MODES)}")
    fields: dict[str, Any] = {"dataset": dataset, "mode": tokens[0]}
    for token in tokens[1:]:
        if token in COMPRESSIONS:
            key, value = "compression", token
        elif token.startswith("p_"):
            key, value = "parallelism", token[2:]
        elif token in TRANSFORMS:
            key, value = "transform", token
        elif token in ("aot_on", "aot_off"):
            key, value = "aot", token == "aot_on"
        elif token == "dask" or token.startswith("dask@"):
            key, value = "executor", "dask://" + (token[5:] or "local")
        else:
            raise ValueError(f"scenario {name!r}: unknown option {token!r} (use "
                             f"{'|'.join(COMPRESSIONS[1:])}, p_N|p_auto, "
                             f"{'|'.join(TRANSFORMS)}, aot_on|aot_off, dask|dask@HOST:PORT)")
        if key in fields:
            raise ValueError(f"scenario {name!r}: {key} given twice")
        fields[key] = value
    try:
        return Scenario(**fields)
    except ValueError as exc:
        raise ValueError(f"scenario {name!r}: {exc}") from None


def expand(datasets: Iterable[str], modes: Iterable[str], compressions: Iterable[str],
           parallelisms: Iterable[str], executors: Iterable[str] = ("local",)
           ) -> list[Scenario]:
    """Every combination, datasets outermost, in the order given."""
    return [Scenario(d, m, c, p, executor=x)
            for d, m, c, p, x in itertools.product(datasets, modes, compressions, parallelisms,
                                                   executors)]


#: ``python -m bench matrix``: every mode on bench_events and small, the Arrow path with each
#: codec everywhere, passthrough and parallel shards, and the feature-gated transforms.
MATRIX: tuple[Scenario, ...] = tuple(parse(n) for n in (
    "bench_events-insert", "bench_events-copy", "bench_events-passthrough",
    "bench_events-copy-lz4", "bench_events-copy-zstd",
    "bench_events-copy-p_auto", "bench_events-passthrough-p_auto",
    "bench_events-copy-transform", "bench_events-copy-transform_filter",
    "bench_events-copy-filter_wasm-aot_on", "bench_events-copy-filter_wasm-aot_off",
    "small-insert", "small-copy", "small-passthrough", "small-copy-lz4", "small-copy-zstd",
    "medium-copy", "medium-passthrough", "medium-copy-lz4", "medium-copy-zstd",
    "large-copy", "large-passthrough", "large-copy-lz4", "large-copy-zstd",
))
