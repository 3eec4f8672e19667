"""Check every image and mask of any anomalib dataset once, and read 16-bit images scaled, not clipped.

Used by :class:`~anomalib_maa.callbacks.DataGuard` for whatever datamodule feeds a run (the plugin's, anomalib's
``Folder`` or ``MVTecAD``, any other): each file listed in a dataset's ``samples`` is decoded once
(:func:`~anomalib_maa.data.checks.inspect_image`), and

- an unreadable, missing or truncated image or mask, a mask whose size differs from its image's, an image with
  other than 1 or 3 channels (CMYK; RGBA and gray + alpha with ``drop_alpha=False``) raises one
  :class:`~anomalib_maa.data.DatasetError` that names the file and the fix;
- 16-bit and 32-bit images, which anomalib's reader clips at 255, are read by :func:`anomalib_maa.io.read_image`
  instead (scaled by 65535), the same reader ``anomalib-maa predict`` uses: :func:`use_scaling_reader`;
- the alpha channel of RGBA and gray + alpha images is dropped (by both readers, ``convert("RGB")``), as
  ``anomalib-maa predict`` drops it;
- a mix of grayscale and colour images is read as RGB throughout (grayscale repeated on three channels, by both
  readers) and reported once in the log.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from anomalib.data.datasets.base.image import AnomalibDataset
from PIL import Image

from anomalib_maa.data.checks import ALPHA_MODES, DatasetError, inspect_image, read_defect_mask

__all__ = ["DatasetSummary", "check_dataset", "describe_mix", "needs_scaling", "use_scaling_reader"]

logger = logging.getLogger(__name__)

_WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
"""Modes anomalib's reader (``convert("RGB")``) clips: 16-bit grayscale, 32-bit integer and float."""


@dataclass
class DatasetSummary:
    """What :func:`check_dataset` found in one dataset.

    Attributes:
        n_images: Images checked.
        wide: Images anomalib's reader would clip (16-bit, 32-bit).
        modes: Number of images per Pillow mode.
        examples: One image per mode, for messages.
        alpha: Images whose alpha channel is dropped.
    """

    n_images: int = 0
    wide: list[Path] = field(default_factory=list)
    modes: Counter = field(default_factory=Counter)
    examples: dict[str, Path] = field(default_factory=dict)
    alpha: list[Path] = field(default_factory=list)


def needs_scaling(mode: str) -> bool:
    """Whether anomalib's reader would clip images of this Pillow mode (16-bit or 32-bit pixels)."""
    return mode in _WIDE_MODES


def _mask_of(row: object) -> Path | None:
    mask = getattr(row, "mask_path", "")
    return Path(mask) if isinstance(mask, str | Path) and str(mask) else None


def _check_channels(path: Path, mode: str, bands: int, drop_alpha: bool) -> None:
    if mode in ALPHA_MODES:
        if drop_alpha:
            return
        msg = (
            f"Image {path} has an alpha channel (mode {mode}): convert the images to RGB or grayscale first "
            "(e.g. PIL's image.convert('RGB'), or ImageMagick's `mogrify -alpha off *.png`), or drop the alpha "
            "(DataGuard(drop_alpha=True), as anomalib-maa predict does)"
        )
        raise DatasetError(msg)
    if bands not in (1, 3):
        msg = f"Image {path} has {bands} channels (mode {mode}): convert the images to RGB or grayscale first"
        raise DatasetError(msg)


def check_dataset(dataset: AnomalibDataset, drop_alpha: bool = True) -> DatasetSummary:
    """Decode every image and mask a dataset lists once and refuse the first file that cannot be used.

    Args:
        dataset: Any anomalib dataset (its ``samples`` table has ``image_path`` and, with masks, ``mask_path``).
        drop_alpha: Accept RGBA and gray + alpha images (the alpha is dropped when read, as
            ``anomalib-maa predict`` does). Defaults to ``True``; ``False`` refuses them.

    Returns:
        The :class:`DatasetSummary`.

    Raises:
        DatasetError: Naming the first unreadable or truncated file, mask of the wrong size, or image with an
            alpha channel or an unusual channel count, and the fix.
    """
    summary = DatasetSummary()
    for row in dataset.samples.itertuples(index=False):
        path = Path(row.image_path)
        info = inspect_image(path)
        _check_channels(path, info.mode, info.bands, drop_alpha)
        mask = _mask_of(row)
        if mask is not None:
            read_defect_mask(mask, info.size, path)
        summary.n_images += 1
        summary.modes[info.mode] += 1
        summary.examples.setdefault(info.mode, path)
        if needs_scaling(info.mode):
            summary.wide.append(path)
        if info.mode in ALPHA_MODES:
            summary.alpha.append(path)
    return summary


def use_scaling_reader(dataset: AnomalibDataset) -> AnomalibDataset:
    """The same samples and augmentations, read with :func:`anomalib_maa.io.read_image` (16-bit scaled).

    The plugin's :class:`~anomalib_maa.data.SampleDataset` is returned as is.

    Args:
        dataset: An anomalib dataset.

    Returns:
        A :class:`~anomalib_maa.data.SampleDataset` over the same samples.
    """
    from anomalib_maa.data.base import SampleDataset

    if isinstance(dataset, SampleDataset):
        return dataset
    scaled = SampleDataset(dataset.samples, task=str(dataset.task.value), name=dataset.name)
    scaled.augmentations = dataset.augmentations
    return scaled


def describe_mix(summary: DatasetSummary) -> str | None:
    """One sentence about a mix of grayscale and colour images, or ``None`` when all have one channel count."""
    gray = {mode: n for mode, n in summary.modes.items() if Image.getmodebands(mode) == 1}
    colour = {mode: n for mode, n in summary.modes.items() if Image.getmodebands(mode) != 1}
    if not gray or not colour:
        return None
    one_gray = summary.examples[next(iter(gray))]
    one_colour = summary.examples[next(iter(colour))]
    return (
        f"{sum(gray.values())} grayscale and {sum(colour.values())} colour images (e.g. {one_gray} and "
        f"{one_colour}): all are read as RGB, grayscale repeated on three channels"
    )
