"""How a MAA model exports itself: the FMD switch and the metadata written into ONNX/OpenVINO files.

:meth:`Maa.to_onnx <anomalib_maa.Maa.to_onnx>` (which anomalib's ``to_openvino`` calls) wraps the export in
:func:`exportable_fmd` and records :func:`export_metadata` in the ONNX file; the OpenVINO converter carries it into
the IR's ``rt_info`` (section ``framework``). Reading exports back is :mod:`anomalib_maa.deploy`'s job; the names
here are importable from there too.

Example:
    >>> from anomalib_maa import Maa
    >>> model = Maa(image_size=32, n_features=4)
    >>> with exportable_fmd(model):
    ...     model.model.fmd_method
    'polar'
    >>> model.model.fmd_method
    'eigh'
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "EXPORT_FMD_METHOD",
    "METADATA_PREFIX",
    "OPENVINO_CONFIG",
    "export_metadata",
    "exportable_fmd",
    "write_onnx_metadata",
]

EXPORT_FMD_METHOD = "polar"
"""FMD used inside exported ONNX/OpenVINO graphs (matmul-only, float32-safe)."""

OPENVINO_CONFIG: dict[str, str] = {"INFERENCE_PRECISION_HINT": "f32"}
"""Compile configuration for exported MAA models in OpenVINO.

On CPUs with bfloat16 units (AVX512-BF16, AMX) OpenVINO's default CPU precision is bfloat16; the FMD
then collapses to 0 and every image is labelled normal. The hint cannot be stored in the IR (the CPU
plugin ignores ``rt_info`` runtime options for it), so it must be passed at compile time.
"""

METADATA_PREFIX = "maa."
"""Prefix of the metadata keys in exported files."""


@contextmanager
def exportable_fmd(module: nn.Module, method: str = EXPORT_FMD_METHOD) -> Iterator[nn.Module]:
    """Switch a MAA model's FMD (``fmd_method``) for the time of an export, then restore it.

    Args:
        module: A :class:`~anomalib_maa.Maa` or a :class:`~anomalib_maa.MaaModel`.
        method: FMD method inside the block; ``"polar"`` (matmul-only, float32-safe) by default.

    Yields:
        The module.

    Raises:
        TypeError: If the module is not a MAA model.
    """
    torch_model = getattr(module, "model", module)
    if not hasattr(torch_model, "fmd_method"):
        msg = f"exportable_fmd needs a MAA model (Maa or MaaModel), got {type(module).__name__}"
        raise TypeError(msg)
    previous = torch_model.fmd_method
    torch_model.fmd_method = method
    try:
        yield module
    finally:
        torch_model.fmd_method = previous


def _number(tensor: torch.Tensor | None) -> float | None:
    if tensor is None:
        return None
    value = float(tensor.detach().cpu().double())
    return value if math.isfinite(value) else None


def export_metadata(model: nn.Module) -> dict[str, str]:
    """What a deployed model needs besides the graph: input size, thresholds, normalisation.

    Args:
        model: A trained :class:`~anomalib_maa.Maa`.

    Returns:
        String metadata, keys prefixed with ``maa.``: ``image_size`` (``"H,W"``), ``in_channels``,
        ``fmd``, ``image_threshold`` and ``pixel_threshold`` (raw, ``""`` when not fitted),
        ``image_scale`` and ``pixel_scale`` (the σ of the normalisation), ``normalized``
        (``"1"`` when scores and maps leave the graph normalised), ``openvino_config`` (JSON).
    """
    torch_model = getattr(model, "model", model)
    post = getattr(model, "post_processor", None)
    image_size = getattr(model, "image_size", None)
    if image_size is None:
        image_size = getattr(torch_model, "image_size", None)
    values: dict[str, Any] = {
        "image_size": ",".join(str(int(side)) for side in image_size) if image_size else "",
        "in_channels": getattr(torch_model, "in_channels", ""),
        "fmd": EXPORT_FMD_METHOD,
        "image_threshold": _number(getattr(post, "image_threshold", None)),
        "pixel_threshold": _number(getattr(post, "pixel_threshold", None)),
        "image_scale": _number(getattr(post, "image_std", None)),
        "pixel_scale": _number(getattr(post, "pixel_std", None)),
        "normalized": int(bool(getattr(post, "enable_normalization", False))),
        "openvino_config": json.dumps(OPENVINO_CONFIG),
    }
    return {METADATA_PREFIX + key: "" if value is None else str(value) for key, value in values.items()}


def write_onnx_metadata(path: str | Path, model: nn.Module) -> None:
    """Add :func:`export_metadata` to an ONNX file's ``metadata_props`` (in place).

    Args:
        path: The ``.onnx`` file.
        model: The exported model.
    """
    import onnx

    proto = onnx.load(str(path))
    props = {entry.key: entry.value for entry in proto.metadata_props}
    props.update(export_metadata(model))
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(path))
