"""Predict on an image or a folder with a MAA checkpoint or an exported model; write a CSV and overlays.

This is the ``anomalib-maa predict`` command and its Python equivalent::

    from anomalib_maa.deploy import predict_folder

    table = predict_folder("model.ckpt", "images/", output="results/predict")

The model is a Lightning checkpoint (``.ckpt``), an anomalib torch export (``.pt``), or an ONNX
(``.onnx``) or OpenVINO (``.xml``) export, run with OpenVINO. Every image is read as the plugin's
datamodules read it (:func:`anomalib_maa.io.read_image`: RGB, grayscale replicated to three
channels, 16-bit images scaled rather than clipped), resized to the model's input size with
antialiasing (as the Lightning pre-processor does) and scored in batches. The outputs:

* ``predictions.csv``: ``image_path, score, normalized_score, label, threshold, error``: the raw
  FMD score, the normalised score (0.5 at the threshold), the label (1 = defective), the raw
  Pauta threshold; ``error`` is set, and the other fields empty, for an image that could not be
  read;
* ``overlays/<relative path>.png`` per image: the image with the normalised anomaly map as a
  heat map (left) and with the predicted defect mask (right), at the image's own resolution.

Errors: a corrupt or unreadable image is logged and gets an error row, the rest is predicted;
non-image files are skipped; a missing model file, a checkpoint of another model, or an image
with a channel count other than 1 or 3 (CMYK; RGBA and gray + alpha when ``drop_alpha=False``) raise an
error naming the file, before anything is written; by default the alpha is dropped, exactly as in training
(:class:`~anomalib_maa.callbacks.DataGuard`); existing outputs are kept unless ``overwrite=True``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF  # noqa: N812
from tqdm.auto import tqdm

from anomalib_maa.data.checks import ALPHA_MODES
from anomalib_maa.errors import DatasetError
from anomalib_maa.io import IMAGE_EXTENSIONS, read_image

__all__ = [
    "CSV_COLUMNS",
    "IMAGE_EXTENSIONS",
    "PredictionError",
    "Predictor",
    "check_maa_checkpoint",
    "list_images",
    "load_predictor",
    "predict_folder",
]

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("image_path", "score", "normalized_score", "label", "threshold", "error")
"""Columns of ``predictions.csv``."""

_CSV_NAME = "predictions.csv"
_OVERLAY_DIR = "overlays"
_ACCEPTED_BANDS = (1, 3)
_ALPHA_MODES = ALPHA_MODES


class PredictionError(ValueError):
    """A model file or an input image that cannot be used (the message names it)."""


# ---------------------------------------------------------------------------------------- predictors


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
    """

    def __init__(self, model: Any, path: Path, device: str = "cpu") -> None:  # noqa: ANN401
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.path = path
        self.image_size = tuple(int(side) for side in model.image_size)
        post = model.post_processor
        self.threshold = float(post.image_threshold)
        self.normalized = bool(getattr(post, "enable_normalization", False))

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> BatchPrediction:
        """Pre-processor -> model -> post-processor, as the Lightning predict loop and the export."""
        images = images.to(self.device)
        raw = self.model.model(self.model.pre_processor(images))
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


# ---------------------------------------------------------------------------------------- images


def list_images(data_path: str | Path) -> tuple[Path, list[Path]]:
    """The images under ``data_path`` (recursively, sorted) or ``data_path`` itself.

    Args:
        data_path: A folder or one image.

    Returns:
        The root the output paths are relative to, and the image files.

    Raises:
        FileNotFoundError: If ``data_path`` does not exist.
        PredictionError: If it is a file that is not an image, or a folder without images.
    """
    data_path = Path(data_path)
    if not data_path.exists():
        msg = f"Data path not found: {data_path}"
        raise FileNotFoundError(msg)
    if data_path.is_file():
        if data_path.suffix.lower() not in IMAGE_EXTENSIONS:
            msg = f"{data_path} is not an image file (suffixes read: {', '.join(IMAGE_EXTENSIONS)})"
            raise PredictionError(msg)
        return data_path.parent, [data_path]
    files = sorted(path for path in data_path.rglob("*") if path.is_file())
    images = [path for path in files if path.suffix.lower() in IMAGE_EXTENSIONS]
    skipped = len(files) - len(images)
    if skipped:
        logger.info("Skipping %d non-image file(s) in %s", skipped, data_path)
    if not images:
        msg = f"No images in {data_path} (suffixes read: {', '.join(IMAGE_EXTENSIONS)})"
        raise PredictionError(msg)
    return data_path, images


def _channel_count(path: Path) -> tuple[int, str] | None:
    """Bands and mode from the header, or ``None`` when the file cannot be opened (reported later)."""
    try:
        with Image.open(path) as image:
            return len(image.getbands()), image.mode
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None


def check_channels(images: Iterable[Path], drop_alpha: bool = True) -> None:
    """Refuse images whose channel count is neither 1 (grayscale) nor 3 (RGB).

    Args:
        images: Image files.
        drop_alpha: Accept grayscale or RGB images with an alpha channel (the alpha is dropped when
            the image is read, as in training). Defaults to ``True``.

    Raises:
        PredictionError: Naming every such image, its channel count and mode.
    """
    wrong = []
    for path in images:
        found = _channel_count(path)
        if found is None or found[0] in _ACCEPTED_BANDS or (drop_alpha and found[1] in _ALPHA_MODES):
            continue
        wrong.append(f"{path} ({found[0]} channels, {found[1]})")
    if wrong:
        shown = "; ".join(wrong[:5]) + (f"; and {len(wrong) - 5} more" if len(wrong) > 5 else "")  # noqa: PLR2004
        msg = (
            f"Wrong channel count: MAA takes 1-channel (grayscale) or 3-channel (RGB) images, got {shown}. "
            "Convert them to RGB or grayscale first."
        )
        raise PredictionError(msg)


def read_rgb(path: Path) -> torch.Tensor:
    """Decode an image as the plugin's datamodules do: ``(3, H, W)`` float32 in [0, 1].

    :func:`anomalib_maa.io.read_image`: grayscale replicated to three channels, alpha dropped,
    16-bit and float images scaled rather than clipped.

    Raises:
        OSError: If the file is corrupt, truncated, unreadable, or its values cannot be scaled.
    """
    try:
        return read_image(path).as_subclass(torch.Tensor)
    except DatasetError as error:
        raise OSError(str(error)) from error


def _to_model_input(image: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    if size is not None and tuple(image.shape[-2:]) != tuple(size):
        image = TF.resize(image, list(size), antialias=True)
    return image


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()


# ---------------------------------------------------------------------------------------- outputs


def _overlay(rgb: np.ndarray, anomaly_map: np.ndarray, mask: np.ndarray, normalized: bool) -> np.ndarray:
    """Side by side: heat map over the image, predicted mask over the image (BGR for OpenCV)."""
    height, width = rgb.shape[:2]
    heat = cv2.resize(anomaly_map.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    if not normalized:  # raw maps: scale per image
        low, high = float(heat.min()), float(heat.max())
        heat = (heat - low) / (high - low) if high > low else np.zeros_like(heat)
    heat = cv2.applyColorMap((np.clip(heat, 0.0, 1.0) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    left = cv2.addWeighted(bgr, 0.5, heat, 0.5, 0.0)
    region = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    right = bgr.copy()
    right[region] = (0.5 * right[region] + 0.5 * np.array([0, 0, 255])).astype(np.uint8)
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(right, contours, -1, (0, 0, 255), max(1, min(height, width) // 128))
    return np.concatenate([left, right], axis=1)


def _overlay_path(output: Path, root: Path, image: Path) -> Path:
    return output / _OVERLAY_DIR / image.relative_to(root).with_suffix(".png")


def _check_outputs(paths: Sequence[Path], overwrite: bool) -> None:
    existing = [path for path in paths if path.exists()]
    if existing and not overwrite:
        shown = ", ".join(str(path) for path in existing[:3]) + (
            f" and {len(existing) - 3} more" if len(existing) > 3 else ""  # noqa: PLR2004
        )
        msg = f"Output files exist: {shown}. Pass overwrite=True (--overwrite) or choose another output folder."
        raise FileExistsError(msg)


def _format(value: float) -> str:
    return "" if not math.isfinite(value) else repr(float(value))


def predict_folder(
    model_path: str | Path,
    data_path: str | Path,
    output: str | Path = "results/predict",
    overwrite: bool = False,
    batch_size: int = 8,
    device: str = "cpu",
    overlays: bool = True,
    progress: bool = True,
    drop_alpha: bool = True,
) -> list[dict[str, Any]]:
    """Score an image or a folder of images; write ``predictions.csv`` and overlay PNGs.

    Args:
        model_path: ``.ckpt``, ``.pt``, ``.onnx`` or OpenVINO ``.xml`` file of a MAA model.
        data_path: An image, or a folder searched recursively (non-image files are skipped).
        output: Folder for ``predictions.csv`` and ``overlays/``.
        overwrite: Replace existing output files (otherwise they raise ``FileExistsError``).
        batch_size: Images per forward pass.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` (or an OpenVINO device for exported models).
        overlays: Write the overlay PNGs.
        progress: Show a progress bar.
        drop_alpha: Accept images with an alpha channel (RGBA, gray + alpha) and drop the alpha, as
            training does (:class:`~anomalib_maa.callbacks.DataGuard`). Defaults to ``True``; ``False``
            refuses them.

    Returns:
        The CSV rows as dicts (see :data:`CSV_COLUMNS`), in file order.

    Raises:
        FileNotFoundError: If the model file or the data path does not exist.
        FileExistsError: If an output file exists and ``overwrite`` is false.
        PredictionError: For a model file that is not a MAA model, or images with 2 or 4 channels
            (with ``drop_alpha``: other than gray + alpha and RGBA).
    """
    if batch_size < 1:
        msg = f"batch_size must be at least 1, got {batch_size}"
        raise ValueError(msg)
    predictor = load_predictor(model_path, device)
    root, images = list_images(data_path)
    check_channels(images, drop_alpha)
    output = Path(output)
    csv_path = output / _CSV_NAME
    targets = [csv_path] + ([_overlay_path(output, root, image) for image in images] if overlays else [])
    _check_outputs(targets, overwrite)
    if not math.isfinite(predictor.threshold):
        logger.warning("%s has no fitted threshold: every image is labelled normal.", predictor.path)
    output.mkdir(parents=True, exist_ok=True)

    rows: list[dict[str, Any]] = []
    with (
        csv_path.open("w", newline="") as handle,
        tqdm(total=len(images), desc="Predicting", unit="image", disable=not progress) as bar,
    ):
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            decoded: list[tuple[Path, torch.Tensor]] = []
            batch_rows: dict[Path, dict[str, Any]] = {}
            for path in chunk:
                try:
                    decoded.append((path, read_rgb(path)))
                except OSError as error:
                    logger.error("Could not read %s: %s", path, error)  # noqa: TRY400 - the row carries it on
                    batch_rows[path] = {"image_path": str(path), "error": f"unreadable image: {error}"}
            if decoded:
                _predict_chunk(predictor, decoded, batch_rows, output, root, overlays)
            for path in chunk:
                row = {column: batch_rows[path].get(column, "") for column in CSV_COLUMNS}
                writer.writerow(row)
                rows.append(row)
            handle.flush()
            bar.update(len(chunk))
    errors = sum(1 for row in rows if row["error"])
    logger.info(
        "Predicted %d image(s)%s; results in %s", len(rows) - errors, f", {errors} unreadable" if errors else "", output
    )
    return rows


def _predict_chunk(
    predictor: Predictor,
    decoded: list[tuple[Path, torch.Tensor]],
    rows: dict[Path, dict[str, Any]],
    output: Path,
    root: Path,
    overlays: bool,
) -> None:
    if predictor.image_size is None:  # the graph resizes: one image per pass (sizes may differ)
        groups = [[item] for item in decoded]
    else:
        groups = [decoded]
    for group in groups:
        batch = torch.stack([_to_model_input(rgb, predictor.image_size) for _, rgb in group])
        result = predictor.predict(batch)
        for index, (path, rgb) in enumerate(group):
            rows[path] = {
                "image_path": str(path),
                "score": _format(result.score[index]),
                "normalized_score": _format(result.normalized_score[index]),
                "label": int(result.label[index]),
                "threshold": _format(predictor.threshold),
                "error": "",
            }
            if overlays:
                target = _overlay_path(output, root, path)
                target.parent.mkdir(parents=True, exist_ok=True)
                picture = _overlay(_to_uint8(rgb), result.anomaly_map[index], result.mask[index], predictor.normalized)
                if not cv2.imwrite(str(target), picture):
                    logger.error("Could not write %s", target)
