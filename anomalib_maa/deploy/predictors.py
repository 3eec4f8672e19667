"""Predictors: a MAA checkpoint, torch export, ONNX or OpenVINO model behind one ``predict`` call.

:func:`load_predictor` picks the predictor by the file's suffix: a Lightning checkpoint (``.ckpt``) or an
anomalib torch export (``.pt``) runs in PyTorch (:class:`TorchPredictor`), an ONNX (``.onnx``) or OpenVINO
(``.xml``) export in OpenVINO with float32 inference (:class:`OpenVINOPredictor`). Each takes a batch of RGB
images in [0, 1] at the model's input size and returns NumPy scores, labels, maps and masks
(:class:`BatchPrediction`). :mod:`anomalib_maa.deploy.predict` runs them over folders.

Example:
    >>> from anomalib_maa.deploy.predictors import load_predictor
    >>> load_predictor("missing.ckpt")
    Traceback (most recent call last):
    ...
    FileNotFoundError: Model file not found: missing.ckpt
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anomalib_maa.deploy.optimize import optimize_for_inference

__all__ = [
    "BatchPrediction",
    "OpenVINOPredictor",
    "PredictionError",
    "Predictor",
    "TorchPredictor",
    "check_maa_checkpoint",
    "load_predictor",
]


class PredictionError(ValueError):
    """A model file or an input image that cannot be used (the message names it)."""


@dataclass
class BatchPrediction:
    """Outputs for a batch of ``B`` images (NumPy arrays).

    Attributes:
        score: Raw anomaly scores (FMD), ``(B,)``.
        normalized_score: Normalised scores, ``(B,)`` (0.5 at the threshold).
        label: Predicted labels, ``(B,)``, 1 = defective.
        anomaly_map: Normalised anomaly maps, ``(B, H, W)``.
        mask: Predicted defect masks, ``(B, H, W)`` bool.
    """

    score: np.ndarray
    normalized_score: np.ndarray
    label: np.ndarray
    anomaly_map: np.ndarray
    mask: np.ndarray


class Predictor:
    """Scores batches of RGB images in [0, 1]; subclasses wrap one kind of model file.

    Attributes:
        path: The model file.
        image_size: Input ``(H, W)`` that images are resized to (``None``: the graph resizes).
        threshold: Raw image threshold ``T`` (``nan`` when the model was never fitted).
        normalized: Whether the model outputs normalised scores and maps.
    """

    path: Path
    image_size: tuple[int, int] | None
    threshold: float
    normalized: bool

    def predict(self, images: torch.Tensor) -> BatchPrediction:
        """Score a batch ``(B, 3, H, W)`` of RGB images in [0, 1] at :attr:`image_size`."""
        raise NotImplementedError


def _squeeze_maps(maps: np.ndarray | None, batch: int, size: tuple[int, int]) -> np.ndarray:
    if maps is None:
        return np.zeros((batch, *size), dtype=np.float32)
    maps = np.asarray(maps, dtype=np.float32)
    return maps.reshape(batch, *maps.shape[-2:])


class TorchPredictor(Predictor):
    """A :class:`~anomalib_maa.Maa` in PyTorch (from a checkpoint or an anomalib torch export).

    Args:
        model: The trained model.
        path: The file it came from.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        optimize: Run a copy of the torch model with batch norm folded and channels-last memory
            (:func:`~anomalib_maa.deploy.optimize.optimize_for_inference`): the same values to float32 rounding,
            faster on CPU. ``False`` runs the model as trained.
    """

    def __init__(self, model: Any, path: Path, device: str = "cpu", optimize: bool = True) -> None:  # noqa: ANN401
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.optimize = optimize
        self._torch_model = optimize_for_inference(copy.deepcopy(model.model)) if optimize else model.model
        self.path = path
        self.image_size = tuple(int(side) for side in model.image_size)
        post = model.post_processor
        self.threshold = float(post.image_threshold)
        self.normalized = bool(getattr(post, "enable_normalization", False))

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> BatchPrediction:
        """Pre-processor -> model -> post-processor, as the Lightning predict loop and the export."""
        images = images.to(self.device)
        inputs = self.model.pre_processor(images)
        if self.optimize:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        raw = self._torch_model(inputs)
        out = self.model.post_processor(raw)
        batch = images.shape[0]
        label = out.pred_label if out.pred_label is not None else raw.pred_score > self.threshold
        return BatchPrediction(
            score=raw.pred_score.detach().double().cpu().numpy().reshape(batch),
            normalized_score=out.pred_score.detach().double().cpu().numpy().reshape(batch),
            label=label.detach().cpu().numpy().reshape(batch).astype(np.int64),
            anomaly_map=_squeeze_maps(_numpy(out.anomaly_map), batch, self.image_size),
            mask=_squeeze_maps(_numpy(out.pred_mask), batch, self.image_size) > 0,
        )


def _numpy(tensor: torch.Tensor | None) -> np.ndarray | None:
    return None if tensor is None else tensor.detach().cpu().numpy()


def _unsquash(values: np.ndarray, threshold: float, scale: float) -> np.ndarray:
    """Invert the Pauta normalisation ``0.5 + 0.5·z/(1+|z|)``, ``z = (x - T)/σ``."""
    t = 2.0 * np.asarray(values, dtype=np.float64) - 1.0
    with np.errstate(divide="ignore"):
        z = t / np.maximum(1.0 - np.abs(t), 0.0)
    return threshold + scale * z


class OpenVINOPredictor(Predictor):
    """An exported ONNX or OpenVINO IR model, compiled with float32 inference.

    The raw score is recovered from the normalised one with the threshold and scale stored in the
    file's metadata (float32 resolution: about 1e-5 relative for scores up to 100 σ above ``T``).

    Args:
        path: ``.onnx``, ``.xml`` or ``.bin`` file.
        device: OpenVINO device, or ``"cpu"``/``"auto"``/``"cuda"`` (mapped to CPU/AUTO/GPU).
    """

    def __init__(self, path: Path, device: str = "cpu") -> None:
        from anomalib_maa.deploy.export import OPENVINO_CONFIG, read_export_metadata

        try:
            import openvino as ov
        except ImportError as error:
            msg = f"Running {path} needs OpenVINO: pip install 'anomalib-maa[export]'"
            raise PredictionError(msg) from error
        if path.suffix == ".bin":
            path = path.with_suffix(".xml")
        try:
            metadata = read_export_metadata(path)
            core = ov.Core()
            model = core.read_model(str(path))
        except Exception as error:
            msg = f"{path} is not a readable ONNX or OpenVINO model: {error}"
            raise PredictionError(msg) from error
        if "fmd" not in metadata:
            msg = (
                f"{path} was not exported from a MAA model (it has no 'maa.*' metadata); "
                "export MAA with Engine.export or anomalib-maa export"
            )
            raise PredictionError(msg)
        self.path = path
        self.metadata = metadata
        device_name = {"cpu": "CPU", "auto": "AUTO", "cuda": "GPU", "gpu": "GPU"}.get(device.lower(), device)
        config = {**OPENVINO_CONFIG, **json.loads(metadata.get("openvino_config") or "{}")}
        self.compiled = core.compile_model(model, device_name, config)
        self.input = self.compiled.input(0)
        shape = self.input.get_partial_shape()
        self.static_batch = int(shape[0].get_length()) if shape[0].is_static else None
        if shape[2].is_static and shape[3].is_static:
            self.image_size = (int(shape[2].get_length()), int(shape[3].get_length()))
        elif metadata.get("image_size"):
            height, width = (int(side) for side in metadata["image_size"].split(","))
            self.image_size = (height, width)
        else:
            self.image_size = None
        self.threshold = _float(metadata.get("image_threshold"))
        scale = _float(metadata.get("image_scale"))
        self.scale = scale if math.isfinite(scale) and scale > 0 else 1.0
        self.normalized = metadata.get("normalized") == "1"

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        result = self.compiled({self.input.any_name: images})
        return {
            next(iter(output.names)): value
            for output, value in zip(self.compiled.outputs, result.to_tuple(), strict=True)
        }

    def predict(self, images: torch.Tensor) -> BatchPrediction:
        """Run the compiled model (one image at a time when its batch size is static)."""
        array = images.detach().cpu().numpy().astype(np.float32)
        if self.static_batch is not None and self.static_batch != array.shape[0]:
            parts = [self._run(array[index : index + 1]) for index in range(array.shape[0])]
            out = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
        else:
            out = self._run(array)
        batch = array.shape[0]
        size = tuple(array.shape[-2:])
        normalized = np.asarray(out["pred_score"], dtype=np.float64).reshape(batch)
        raw = normalized
        if self.normalized and math.isfinite(self.threshold):
            raw = _unsquash(normalized, self.threshold, self.scale)
        return BatchPrediction(
            score=raw,
            normalized_score=normalized,
            label=np.asarray(out["pred_label"]).reshape(batch).astype(np.int64),
            anomaly_map=_squeeze_maps(out.get("anomaly_map"), batch, size),
            mask=_squeeze_maps(out.get("pred_mask"), batch, size) > 0,
        )


def _float(value: str | None) -> float:
    try:
        return float(value) if value else float("nan")
    except ValueError:
        return float("nan")


def _torch_load(path: Path, kind: str) -> Any:  # noqa: ANN401
    """``torch.load`` on the CPU, or a :class:`PredictionError` naming the file and what it should be."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)  # noqa: S614 - trusted by the user
    except Exception as error:
        msg = f"{path} is not a readable {kind}: {error}"
        raise PredictionError(msg) from error


def check_maa_checkpoint(path: Path) -> None:
    """Refuse a file that is not a Lightning checkpoint of a MAA model.

    Args:
        path: The ``.ckpt`` file.

    Raises:
        PredictionError: Naming the file, and for another model its modules and hyperparameters.
    """
    checkpoint = _torch_load(path, "PyTorch Lightning checkpoint")
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        msg = f"{path} is not a Lightning checkpoint (no 'state_dict')"
        raise PredictionError(msg)
    if not any(key.startswith("model.generator.") for key in state) or not any(
        key.startswith("model.discriminator.") for key in state
    ):
        modules = sorted({".".join(key.split(".")[:2]) for key in state})[:6]
        hparams = sorted(checkpoint.get("hyper_parameters") or {})[:8]
        msg = (
            f"{path} is a checkpoint of another model, not MAA: it has no MAA generator/discriminator weights "
            f"(its modules: {', '.join(modules) or 'none'}; hyperparameters: {', '.join(hparams) or 'none'})"
        )
        raise PredictionError(msg)


def _load_lightning_checkpoint(path: Path, device: str) -> Any:  # noqa: ANN401
    from anomalib_maa import Maa

    check_maa_checkpoint(path)
    try:
        return Maa.load_from_checkpoint(path, map_location=device if device != "auto" else None)
    except Exception as error:
        msg = f"Could not load the MAA checkpoint {path}: {error}"
        raise PredictionError(msg) from error


def _load_torch_export(path: Path) -> Any:  # noqa: ANN401
    from anomalib_maa import Maa

    content = _torch_load(path, "torch export")
    model = content.get("model") if isinstance(content, dict) else content
    if not isinstance(model, Maa):
        msg = f"{path} holds a {type(model).__name__}, not a MAA model"
        raise PredictionError(msg)
    return model


def load_predictor(path: str | Path, device: str = "cpu") -> Predictor:
    """Open a MAA model file for prediction, chosen by its suffix.

    Args:
        path: ``.ckpt`` (Lightning checkpoint), ``.pt``/``.pth`` (anomalib torch export; unpickled,
            so only open trusted files), ``.onnx`` or ``.xml``/``.bin`` (OpenVINO, float32).
        device: ``"cpu"``, ``"cuda"``, ``"auto"``, or an OpenVINO device name for exported models.

    Returns:
        The predictor.

    Raises:
        FileNotFoundError: If the file does not exist.
        PredictionError: If it is not a MAA model, or its suffix is unknown.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"Model file not found: {path}"
        raise FileNotFoundError(msg)
    suffix = path.suffix.lower()
    if suffix == ".ckpt":
        return TorchPredictor(_load_lightning_checkpoint(path, device), path, device)
    if suffix in {".pt", ".pth"}:
        return TorchPredictor(_load_torch_export(path), path, device)
    if suffix in {".onnx", ".xml", ".bin"}:
        return OpenVINOPredictor(path, device)
    msg = f"Unknown model file type {path.name!r}: use a .ckpt, .pt, .onnx or OpenVINO .xml file"
    raise PredictionError(msg)
