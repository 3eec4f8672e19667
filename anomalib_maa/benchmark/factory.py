"""Build the models and datamodules of leaderboard jobs from their specifications."""

from __future__ import annotations

import importlib
import inspect
import json
import shutil
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import instantiate_class

from anomalib_maa.benchmark.config import DataSpec, ModelSpec, substitute_seed

__all__ = ["RUNNER_MODEL_DEFAULTS", "build_datamodule", "build_model", "instantiate", "resolve_class"]

RUNNER_MODEL_DEFAULTS = {"visualizer": False, "evaluator": False}
"""Set unless a configuration says otherwise: the runner computes its own metrics, and writing
visualisations would count in the test time."""


def resolve_class(name: str) -> type:
    """Resolve a model class from a class path or a short name (case-insensitive).

    Short names are looked up among anomalib's models and the plugin's (``maa``).

    Args:
        name: ``"anomalib.models.Padim"``, ``"anomalib_maa.Maa"``, ``"padim"``, ``"Maa"``, ...

    Returns:
        The class.

    Raises:
        ValueError: If the name matches nothing.
    """
    if "." in name:
        module_name, _, attribute = name.rpartition(".")
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            msg = f"Cannot import {name!r}: {error}"
            raise ValueError(msg) from error
    import anomalib.models

    import anomalib_maa

    candidates = {candidate.lower(): getattr(anomalib.models, candidate) for candidate in anomalib.models.__all__}
    candidates["maa"] = anomalib_maa.Maa
    cls = candidates.get(name.replace("_", "").lower()) or candidates.get(name.lower())
    if not isinstance(cls, type):
        msg = f"Unknown model {name!r}: use a class path or one of {sorted(candidates)}"
        raise ValueError(msg)
    return cls


def instantiate(value: Any) -> Any:
    """Instantiate every ``{class_path, init_args}`` mapping inside ``value`` (depth first).

    Each node is built by Lightning's ``instantiate_class``, the function ``LightningCLI`` uses.

    Example:
        >>> instantiate({"x": {"class_path": "collections.Counter", "init_args": {"a": 2}}})
        {'x': Counter({'a': 2})}
    """
    if isinstance(value, dict):
        if "class_path" in value and set(value) <= {"class_path", "init_args"}:
            return instantiate_class((), {**value, "init_args": instantiate(value.get("init_args") or {})})
        return {key: instantiate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [instantiate(item) for item in value]
    return value


def _default(cls: type, parameter: str) -> Any:
    try:
        param = inspect.signature(cls).parameters.get(parameter)
    except (TypeError, ValueError):
        return None
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def describe_weights(cls: type, init_args: dict[str, Any]) -> str:
    """Text for the ``weights`` column from a model's constructor arguments.

    Models without a ``pre_trained`` argument (MAA, GANomaly, ...) are trained from scratch.
    """
    if "pre_trained" not in inspect.signature(cls).parameters:
        return "none (trained from scratch)"
    backbone = init_args.get("backbone", _default(cls, "backbone"))
    backbone = getattr(backbone, "__class__", type(backbone)).__name__ if not isinstance(backbone, str) else backbone
    if init_args.get("pre_trained", _default(cls, "pre_trained")):
        return f"ImageNet {backbone} (timm hub)"
    return f"random {backbone} (pre_trained=False)"


def build_model(spec: ModelSpec, seed: int) -> tuple[Any, str]:
    """Instantiate a job's model and say which weights it uses.

    Args:
        spec: The model specification.
        seed: The job's seed (fills ``${seed}``).

    Returns:
        The model and the text of the ``weights`` column.

    Raises:
        ValueError: If ``weights`` conflicts with ``pre_trained`` in ``init_args``.
        anomalib_maa.weights.WeightsError: If ``weights: lite0`` cannot be honoured.
    """
    cls = resolve_class(spec.model)
    init_args = instantiate(substitute_seed(spec.init_args, seed))
    parameters = inspect.signature(cls).parameters
    for key, value in RUNNER_MODEL_DEFAULTS.items():
        if key in parameters:
            init_args.setdefault(key, value)
    if spec.weights == "lite0":
        from anomalib_maa.weights import build_with_lite0

        return build_with_lite0(cls, **init_args)
    if spec.weights in {"imagenet", "random"}:
        wanted = spec.weights == "imagenet"
        if init_args.get("pre_trained", wanted) != wanted:
            msg = f"weights: {spec.weights} contradicts pre_trained={init_args['pre_trained']}"
            raise ValueError(msg)
        init_args["pre_trained"] = wanted
    return cls(**init_args), describe_weights(cls, init_args)


def build_datamodule(spec: DataSpec, seed: int, data_dir: Path) -> Any:
    """Instantiate a job's datamodule; ``kind: sample`` writes the generated data under ``data_dir/<name>``.

    Args:
        spec: The datamodule specification.
        seed: The job's seed (fills ``${seed}``).
        data_dir: Folder for generated data.

    Returns:
        An anomalib datamodule.
    """
    init_args = instantiate(substitute_seed(spec.init_args, seed))
    if spec.kind == "sample":
        from anomalib_maa.utils.sample_data import folder_datamodule, make_sample_dataset

        generator_keys = {"n_train", "n_test_good", "n_test_defect", "size", "seed"}
        generator_args = {key: init_args.pop(key) for key in list(init_args) if key in generator_keys}
        root = data_dir / spec.name
        marker = root / "sample_args.json"
        wanted = json.dumps(generator_args, sort_keys=True)
        if not marker.is_file() or marker.read_text() != wanted:  # the same arguments write the same images
            shutil.rmtree(root, ignore_errors=True)
            make_sample_dataset(root, **generator_args)
            marker.write_text(wanted)
        return folder_datamodule(root, **init_args)
    return instantiate_class((), {"class_path": str(spec.class_path), "init_args": init_args})
