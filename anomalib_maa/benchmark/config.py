"""Leaderboard configuration: models, datamodules and seeds, expanded into jobs.

A configuration is a YAML mapping::

    name: smoke                      # optional title of the leaderboard
    seeds: [0, 1, 2]
    trainer: {accelerator: cpu}      # Engine / Lightning Trainer arguments for every job
    threads: 1                       # torch CPU threads (default: torch's choice); --threads overrides
    keep_checkpoints: false          # delete *.ckpt files after each job (default)
    models:
      - name: Maa                    # label in the tables (default: the class name)
        preset: cpu                  # optional second label
        model: maa                   # short name (anomalib's or the plugin's) or class path
        init_args: {image_size: [128, 128], max_epochs: 10, ab_seed: ${seed}}
        weights: lite0               # optional: lite0 | imagenet | random (PaDiM, PatchCore, ...)
        score_variants: [pixel_l1, markov_l1, fmd]   # optional: MAA's Table III rows
        trainer: {max_epochs: 1}     # optional per-model Trainer arguments
        datasets: [ksdd]             # optional: run this model on these datamodules only
      - name: Maa
        preset: cpu
        recipe: configs/maa_cpu.yaml  # model and init_args from an anomalib-style config (init_args below win)
        init_args: {ab_seed: "${seed}"}
    datamodules:
      - name: sample
        kind: sample                 # generated data (make_sample_dataset) under <output>/data/<name>
        init_args: {n_train: 32, size: 64, batch_size: 8}
      - name: ksdd
        class_path: anomalib_maa.data.Ksdd
        init_args: {root: ../shared/data/KolektorSDD}
        cache: true                  # keep decoded, resized items in memory across epochs and jobs

Top-level keys starting with ``_`` are ignored (a place for YAML anchors). Any ``init_args`` value
may be a ``{class_path, init_args}`` mapping (instantiated, e.g. a post-processor), and the string
``${seed}`` anywhere in ``init_args`` is replaced by the job's seed. Relative paths (e.g. a dataset
``root``) are taken relative to the working directory.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["BenchmarkConfig", "ConfigError", "DataSpec", "Job", "ModelSpec", "load_config", "substitute_seed"]

WEIGHT_OPTIONS = ("lite0", "imagenet", "random")
SCORE_VARIANTS = ("pixel_l1", "markov_l1", "fmd", "local_fmd", "map_max")
_SEED = "${seed}"


class ConfigError(ValueError):
    """The leaderboard configuration is invalid."""


@dataclass(frozen=True)
class ModelSpec:
    """One model of the leaderboard.

    Args:
        name: Label in the tables.
        model: Short name or class path.
        preset: Second label (e.g. ``cpu``, ``paper``, ``lite0``).
        init_args: Constructor arguments.
        weights: ``lite0``, ``imagenet``, ``random`` or ``None`` (the model's own arguments decide).
        score_variants: MAA scoring variants reported as extra rows (Table III).
        trainer: Trainer arguments for this model only.
        datasets: Names of the datamodules to run this model on (empty: all).
    """

    name: str
    model: str
    preset: str = ""
    init_args: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    score_variants: tuple[str, ...] = ()
    trainer: dict[str, Any] = field(default_factory=dict)
    datasets: tuple[str, ...] = ()


@dataclass(frozen=True)
class DataSpec:
    """One datamodule of the leaderboard.

    Args:
        name: Label in the tables.
        class_path: Datamodule class path, or ``None`` with ``kind="sample"``.
        kind: ``"sample"`` for generated data, else ``"class"``.
        init_args: Constructor arguments (for ``sample``: those of ``make_sample_dataset`` and ``batch_size``).
        cache: Keep decoded items in memory (:mod:`anomalib_maa.benchmark.cache`); deterministic transforms only.
    """

    name: str
    class_path: str | None = None
    kind: str = "class"
    init_args: dict[str, Any] = field(default_factory=dict)
    cache: bool = False


@dataclass(frozen=True)
class Job:
    """One model x datamodule x seed run."""

    model: ModelSpec
    data: DataSpec
    seed: int

    @property
    def job_id(self) -> str:
        """Stable identifier used for skipping finished jobs and naming run folders."""
        label = f"{self.model.name}-{self.model.preset}" if self.model.preset else self.model.name
        return _slug(f"{label}__{self.data.name}__seed{self.seed}")


@dataclass(frozen=True)
class BenchmarkConfig:
    """A parsed leaderboard configuration."""

    name: str
    models: tuple[ModelSpec, ...]
    datamodules: tuple[DataSpec, ...]
    seeds: tuple[int, ...]
    trainer: dict[str, Any] = field(default_factory=dict)
    keep_checkpoints: bool = False
    threads: int | None = None

    def jobs(self) -> list[Job]:
        """All jobs: per dataset, seed by seed, every model (so a cut-short run still compares all models)."""
        return [
            Job(m, d, s)
            for d in self.datamodules
            for s in self.seeds
            for m in self.models
            if not m.datasets or d.name in m.datasets
        ]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")


def substitute_seed(value: Any, seed: int) -> Any:
    """Replace ``${seed}`` in nested arguments: a bare ``${seed}`` becomes the int, else text substitution.

    Args:
        value: Arguments (mappings, lists, scalars).
        seed: The job's seed.

    Returns:
        A copy with the seed filled in.

    Example:
        >>> substitute_seed({"ab_seed": "${seed}", "tag": "run-${seed}"}, 3)
        {'ab_seed': 3, 'tag': 'run-3'}
    """
    if isinstance(value, str):
        return seed if value == _SEED else value.replace(_SEED, str(seed))
    if isinstance(value, dict):
        return {key: substitute_seed(item, seed) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(substitute_seed(item, seed) for item in value)
    return value


def _mapping(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        msg = f"{where} must be a mapping, got {type(raw).__name__}"
        raise ConfigError(msg)
    return copy.deepcopy(raw)


def _recipe(path: Any, index: int) -> dict[str, Any]:
    """The ``model`` section of an anomalib-style config file (relative to the working directory)."""
    file = Path(str(path))
    if not file.is_file():
        msg = f"models[{index}].recipe: no config file {file}"
        raise ConfigError(msg)
    with file.open(encoding="utf-8") as handle:
        content = yaml.safe_load(handle) or {}
    model = content.get("model")
    if not isinstance(model, dict):
        msg = f"models[{index}].recipe: {file} has no `model` section"
        raise ConfigError(msg)
    return model


def _model_spec(raw: Any, index: int) -> ModelSpec:
    if isinstance(raw, str):
        raw = {"model": raw}
    raw = _mapping(raw, f"models[{index}]")
    keys = {"name", "model", "class_path", "preset", "init_args", "weights", "score_variants", "trainer", "datasets"}
    unknown = set(raw) - keys - {"recipe"}
    if unknown:
        msg = f"models[{index}] has unknown keys {sorted(unknown)}"
        raise ConfigError(msg)
    if raw.get("recipe"):
        recipe = _recipe(raw["recipe"], index)
        raw["model"] = raw.get("model") or recipe.get("class_path")
        raw["init_args"] = {**(recipe.get("init_args") or {}), **(raw.get("init_args") or {})}
    model = raw.get("model") or raw.get("class_path")
    if not model:
        msg = f"models[{index}] needs `model` (short name or class path)"
        raise ConfigError(msg)
    weights = raw.get("weights")
    if weights is not None and weights not in WEIGHT_OPTIONS:
        msg = f"models[{index}].weights must be one of {WEIGHT_OPTIONS}, got {weights!r}"
        raise ConfigError(msg)
    variants = tuple(raw.get("score_variants") or ())
    bad = [variant for variant in variants if variant not in SCORE_VARIANTS]
    if bad:
        msg = f"models[{index}].score_variants must be among {SCORE_VARIANTS}, got {bad}"
        raise ConfigError(msg)
    return ModelSpec(
        name=str(raw.get("name") or str(model).rsplit(".", 1)[-1]),
        model=str(model),
        preset=str(raw.get("preset") or ""),
        init_args=_mapping(raw.get("init_args"), f"models[{index}].init_args"),
        weights=weights,
        score_variants=variants,
        trainer=_mapping(raw.get("trainer"), f"models[{index}].trainer"),
        datasets=tuple(str(name) for name in raw.get("datasets") or ()),
    )


def _data_spec(raw: Any, index: int) -> DataSpec:
    raw = _mapping(raw, f"datamodules[{index}]")
    unknown = set(raw) - {"name", "class_path", "kind", "init_args", "cache"}
    if unknown:
        msg = f"datamodules[{index}] has unknown keys {sorted(unknown)}"
        raise ConfigError(msg)
    kind = raw.get("kind", "class")
    if kind not in {"class", "sample"}:
        msg = f"datamodules[{index}].kind must be 'class' or 'sample', got {kind!r}"
        raise ConfigError(msg)
    class_path = raw.get("class_path")
    if kind == "class" and not class_path:
        msg = f"datamodules[{index}] needs `class_path` (or kind: sample)"
        raise ConfigError(msg)
    name = raw.get("name") or (kind if kind == "sample" else str(class_path).rsplit(".", 1)[-1].lower())
    init_args = _mapping(raw.get("init_args"), f"datamodules[{index}].init_args")
    return DataSpec(name=str(name), class_path=class_path, kind=kind, init_args=init_args, cache=bool(raw.get("cache")))


def parse_config(raw: Any, default_name: str = "leaderboard") -> BenchmarkConfig:
    """Validate a configuration mapping.

    Args:
        raw: The YAML content.
        default_name: Title used when the mapping has no ``name``.

    Returns:
        The configuration.

    Raises:
        ConfigError: On unknown keys, missing models/datamodules/seeds or duplicate labels.
    """
    raw = _mapping(raw, "The configuration")
    raw = {key: value for key, value in raw.items() if not str(key).startswith("_")}  # "_x": YAML anchors only
    unknown = set(raw) - {"name", "models", "datamodules", "seeds", "trainer", "keep_checkpoints", "threads"}
    if unknown:
        msg = f"Unknown configuration keys {sorted(unknown)}"
        raise ConfigError(msg)
    models = tuple(_model_spec(item, i) for i, item in enumerate(raw.get("models") or []))
    datamodules = tuple(_data_spec(item, i) for i, item in enumerate(raw.get("datamodules") or []))
    seeds = raw.get("seeds", [0])
    seeds = (seeds,) if isinstance(seeds, int) else tuple(int(seed) for seed in seeds)
    if not models or not datamodules or not seeds:
        msg = "A configuration needs at least one model, one datamodule and one seed"
        raise ConfigError(msg)
    for kind, labels in (
        ("model", [(m.name, m.preset) for m in models]),
        ("datamodule", [d.name for d in datamodules]),
        ("seed", list(seeds)),
    ):
        if len(set(labels)) != len(labels):
            msg = f"Duplicate {kind} labels in {labels}: give each a unique name (and preset)"
            raise ConfigError(msg)
    names = {d.name for d in datamodules}
    for model in models:
        missing = sorted(set(model.datasets) - names)
        if missing:
            msg = f"Model {model.name} {model.preset} names unknown datasets {missing}: use some of {sorted(names)}"
            raise ConfigError(msg)
    return BenchmarkConfig(
        name=str(raw.get("name") or default_name),
        models=models,
        datamodules=datamodules,
        seeds=seeds,
        trainer=_mapping(raw.get("trainer"), "trainer"),
        keep_checkpoints=bool(raw.get("keep_checkpoints", False)),
        threads=int(raw["threads"]) if raw.get("threads") else None,
    )


def load_config(path: str | Path) -> BenchmarkConfig:
    """Read and validate a leaderboard YAML file.

    Args:
        path: The file.

    Returns:
        The configuration.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    return parse_config(raw, default_name=path.stem)
