"""Reading the images a line camera produces as float tensors in [0, 1], without clipping 16-bit data.

anomalib 2.7's ``anomalib.data.utils.read_image`` opens every file with ``PIL.Image.open(path).convert("RGB")``.
For 16-bit grayscale PNG or TIFF (Pillow mode ``I;16``) that conversion *clips* each value at 255: a frame using
the full 0-65535 range comes out 99.6 % white. 32-bit float TIFF (mode ``F``) in [0, 1] comes out all black.
:func:`read_image` scales instead:

===========================================  ==========================================================
File                                          Result (3 x H x W, float32)
===========================================  ==========================================================
8-bit grayscale (``L``), bilevel (``1``)      value / 255, repeated on three channels
RGB, palette (``P``)                          value / 255
RGBA, LA (with alpha)                         alpha dropped (as anomalib does), value / 255
16-bit grayscale PNG/TIFF (``I;16*``)         value / 65535, repeated on three channels
32-bit integer (``I``) within 0..65535        value / 65535 (16-bit data decoded as 32-bit)
32-bit float (``F``) within [0, 1]            as is
16-bit colour PNG                             Pillow decodes it at 8-bit precision (high byte): scaled
===========================================  ==========================================================

Anything else, a float image outside [0, 1] or an integer image outside 0..65535, raises
:class:`~anomalib_maa.data.DatasetError` naming the file. The datamodules of :mod:`anomalib_maa.data` read
images with this function; anomalib's own datamodules (``Folder``, ``MVTecAD``, ...) still use anomalib's reader.

Example:
    >>> import tempfile, numpy as np
    >>> from PIL import Image
    >>> path = tempfile.mkdtemp() + "/frame.png"
    >>> Image.fromarray(np.full((4, 6), 32768, dtype=np.uint16)).save(path)
    >>> image = read_image(path)
    >>> tuple(image.shape), round(float(image.max()), 4)
    ((3, 4, 6), 0.5)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms.v2.functional import to_dtype, to_image
from torchvision.tv_tensors import Image as TvImage

from anomalib_maa.errors import DatasetError

__all__ = ["IMAGE_EXTENSIONS", "SIXTEEN_BIT_MODES", "image_to_tensor", "load_image", "read_image"]

IMAGE_EXTENSIONS: tuple[str, ...] = IMG_EXTENSIONS
"""Suffixes (compared case-insensitively) of image files, for training and prediction alike: torchvision's
``IMG_EXTENSIONS``, as anomalib's ``PredictDataset`` reads."""

SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
"""Pillow modes of 16-bit grayscale images."""

_UINT16_MAX = 65535.0

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


@contextmanager
def _strict_decoding() -> Iterator[None]:
    """Make Pillow raise on truncated files even if another library switched that off."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def load_image(path: Path, mode: str | None = None) -> Image.Image:
    """Fully decode an image file.

    Args:
        path: Image file.
        mode: Pillow mode to convert to (``"L"``, ``"RGB"``); ``None`` keeps the file's mode.

    Returns:
        The decoded image, detached from the file.

    Raises:
        DatasetError: When the file cannot be opened or decoded (unknown format, truncated, corrupt).
    """
    try:
        with _strict_decoding(), Image.open(path) as image:
            image.load()
            return image.convert(mode) if mode else image.copy()
    except _DECODE_ERRORS as error:
        msg = f"Cannot read image file {path}: {error}"
        raise DatasetError(msg) from error


def image_to_tensor(image: Image.Image, path: str | Path = "<image>") -> torch.Tensor:
    """Convert a decoded Pillow image to a float32 ``(3, H, W)`` tensor in [0, 1].

    8-bit images give exactly what anomalib's ``read_image(path, as_tensor=True)`` gives.

    Args:
        image: Decoded image of any mode Pillow reads.
        path: The file, for error messages.

    Returns:
        The image, scaled to [0, 1] by its bit depth (not clipped), on three channels.

    Raises:
        DatasetError: For float images with values outside [0, 1] (or NaN), 32-bit integer images outside
            0..65535, and modes that cannot be converted to RGB.
    """
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES:
        gray = np.asarray(image).astype(np.float32) / _UINT16_MAX
    elif mode == "I":
        values = np.asarray(image)
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high > _UINT16_MAX:
            msg = (
                f"Cannot scale image file {path}: 32-bit integer pixels range over {low}..{high}, outside the "
                "0..65535 of a 16-bit camera; save it as 8- or 16-bit PNG/TIFF"
            )
            raise DatasetError(msg)
        gray = values.astype(np.float32) / _UINT16_MAX
    elif mode == "F":
        gray = np.asarray(image).astype(np.float32)
        if gray.size and not (np.isfinite(gray).all() and gray.min() >= 0.0 and gray.max() <= 1.0):
            finite = gray[np.isfinite(gray)]
            span = f"{finite.min():.6g}..{finite.max():.6g}" if finite.size else "no finite values"
            msg = (
                f"Cannot scale image file {path}: float pixels must lie in [0, 1] and be finite, found {span}"
                f"{' and NaN/inf' if finite.size < gray.size else ''}; save it as 8- or 16-bit PNG/TIFF"
            )
            raise DatasetError(msg)
    else:
        try:
            rgb = image.convert("RGB")
        except (ValueError, OSError) as error:
            msg = f"Cannot convert image file {path} (mode {mode}) to RGB: {error}"
            raise DatasetError(msg) from error
        return to_dtype(to_image(rgb), torch.float32, scale=True)
    return TvImage(torch.from_numpy(np.ascontiguousarray(gray))[None].expand(3, -1, -1).contiguous())


def read_image(path: str | Path) -> torch.Tensor:
    """Read an image file as a ``(3, H, W)`` float32 tensor in [0, 1] (see the module docstring).

    Drop-in for ``anomalib.data.utils.read_image(path, as_tensor=True)`` that scales 16-bit and float images
    instead of clipping them.

    Args:
        path: Image file (PNG, JPEG, BMP, TIFF, WebP, ...; the extension's case does not matter).

    Returns:
        A torchvision ``Image`` tensor.

    Raises:
        DatasetError: When the file cannot be decoded or its values cannot be scaled; the message names it.
    """
    return image_to_tensor(load_image(Path(path)), path)
