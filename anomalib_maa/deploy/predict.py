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
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from anomalib.data.utils.image import get_image_filenames_from_dir, is_image_file
from anomalib.visualization.image.functional import overlay_images, visualize_anomaly_map, visualize_mask
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF  # noqa: N812
from tqdm.auto import tqdm

from anomalib_maa.data.checks import ALPHA_MODES
from anomalib_maa.deploy.predictors import PredictionError, Predictor, check_maa_checkpoint, load_predictor
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
        if not is_image_file(data_path):
            msg = f"{data_path} is not an image file (suffixes read: {', '.join(IMAGE_EXTENSIONS)})"
            raise PredictionError(msg)
        return data_path.parent, [data_path]
    try:
        images = [path for path in get_image_filenames_from_dir(data_path) if path.is_file()]
    except ValueError:
        images = []
    if not images:
        msg = f"No images in {data_path} (suffixes read: {', '.join(IMAGE_EXTENSIONS)})"
        raise PredictionError(msg)
    skipped = sum(1 for path in data_path.rglob("*") if path.is_file() and not is_image_file(path))
    if skipped:
        logger.info("Skipping %d non-image file(s) in %s", skipped, data_path)
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
    """Side by side, drawn by ``anomalib.visualization``: heat map over the image | predicted mask (BGR for OpenCV).

    A normalised map (in [0, 1], the threshold at 0.5) is coloured as it is; a raw map is scaled per image.
    """
    height, width = rgb.shape[:2]
    heat = cv2.resize(anomaly_map.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    if not normalized:  # raw maps: scaled per image in float (anomalib's own scaling rounds to 8 bits first)
        low, high = float(heat.min()), float(heat.max())
        heat = (heat - low) / (high - low) if high > low else np.zeros_like(heat)
    region = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    base = Image.fromarray(rgb)
    left = overlay_images(base, visualize_anomaly_map(torch.from_numpy(np.clip(heat, 0.0, 1.0))), alpha=0.5)
    region_tensor = torch.from_numpy(region)
    masks = [visualize_mask(region_tensor, mode="fill", alpha=0.5), visualize_mask(region_tensor, mode="contour")]
    right = overlay_images(base, masks, alpha=[1.0, 1.0])
    picture = np.concatenate([np.asarray(left.convert("RGB")), np.asarray(right.convert("RGB"))], axis=1)
    return cv2.cvtColor(picture, cv2.COLOR_RGB2BGR)


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
