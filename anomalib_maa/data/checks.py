"""Input checks shared by the datamodules.

Every file a datamodule uses is decoded once (:func:`inspect_image` remembers the files it decoded) so that a
missing, unreadable or truncated file, or a mask of the wrong size, stops the run with an error that names the file
before any training starts. Nothing here writes to the dataset folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from anomalib_maa.errors import DatasetError
from anomalib_maa.io import IMAGE_EXTENSIONS, image_to_tensor, load_image

LOSSY_EXTENSIONS = (".jpg", ".jpeg")
"""Mask formats whose compression noise is ignored: a pixel of such a mask is a defect only above mid-grey."""

ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
"""Pillow modes with an alpha channel (grayscale or colour + alpha)."""


def require_dir(path: Path, what: str, hint: str = "") -> Path:
    """Return ``path`` if it is a folder, else raise.

    Args:
        path: Folder that must exist.
        what: What the folder is, for the message (e.g. ``"KolektorSDD root"``).
        hint: Extra sentence telling the user how to fix it.

    Returns:
        The same path.

    Raises:
        FileNotFoundError: When ``path`` is not an existing folder.
    """
    if not path.is_dir():
        msg = f"{what} not found: {path.resolve()}"
        raise FileNotFoundError(f"{msg}. {hint}" if hint else msg)
    return path


def list_images(folder: Path) -> list[Path]:
    """List the image files directly inside ``folder``, sorted by name.

    Hidden files and files whose suffix is not in :data:`IMAGE_EXTENSIONS` (``Thumbs.db``, notes, ...) are skipped.

    Args:
        folder: Folder to list.

    Returns:
        Sorted image paths.
    """
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS
    )


def index_by_stem(paths: list[Path]) -> dict[str, Path]:
    """Map file stems to paths, refusing two files with the same stem (``a.png`` and ``a.jpg``).

    Args:
        paths: Files of one folder.

    Returns:
        ``{stem: path}``.

    Raises:
        DatasetError: When two files share a stem, so that pairing by name would be ambiguous.
    """
    index: dict[str, Path] = {}
    for path in paths:
        if path.stem in index:
            msg = f"Two files with the same name stem, cannot pair them with masks: {index[path.stem]} and {path}"
            raise DatasetError(msg)
        index[path.stem] = path
    return index


@dataclass(frozen=True)
class ImageInfo:
    """What a full decode of an image file found.

    Attributes:
        size: ``(width, height)``.
        mode: Pillow mode (``"L"``, ``"RGB"``, ``"I;16"``, ``"RGBA"``, ...).
    """

    size: tuple[int, int]
    mode: str

    @property
    def bands(self) -> int:
        """Channel count of the file (1 for grayscale and 16-bit, 3 for RGB, 4 for RGBA)."""
        return Image.getmodebands(self.mode)


_INSPECTED: dict[tuple[str, int, int], ImageInfo] = {}
"""Files already decoded in this process, keyed by path, modification time and size (each is checked once)."""


def inspect_image(path: Path) -> ImageInfo:
    """Decode an image file once (per process and file version) and return its size and mode.

    Args:
        path: Image file.

    Returns:
        The file's :class:`ImageInfo`.

    Raises:
        DatasetError: When the file is missing or cannot be decoded, or its pixel values cannot be scaled to
            [0, 1] (32-bit integer or float images out of range, see :mod:`anomalib_maa.io`).
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as error:
        msg = f"Cannot read image file {path}: {error.strerror or error}"
        raise DatasetError(msg) from error
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key in _INSPECTED:
        return _INSPECTED[key]
    image = load_image(path)
    if image.mode in ("I", "F"):
        image_to_tensor(image, path)
    info = ImageInfo(size=image.size, mode=image.mode)
    _INSPECTED[key] = info
    return info


def check_image(path: Path) -> tuple[int, int]:
    """Decode an image file once and return its size (see :func:`inspect_image`).

    Args:
        path: Image file.

    Returns:
        ``(width, height)``.

    Raises:
        DatasetError: When the file cannot be decoded or its pixel values cannot be scaled to [0, 1].
    """
    return inspect_image(path).size


def read_defect_mask(path: Path, image_size: tuple[int, int], image_path: Path | None = None) -> np.ndarray:
    """Read a ground-truth mask as a boolean defect map and check it matches its image.

    A pixel is a defect when it is non-zero; for JPEG masks (lossy, see :data:`LOSSY_EXTENSIONS`) when it is above
    127, so that compression noise around a defect is not counted as defect.

    Args:
        path: Mask file.
        image_size: ``(width, height)`` of the image the mask belongs to.
        image_path: That image, for the error message.

    Returns:
        Boolean array of shape ``(height, width)``.

    Raises:
        DatasetError: When the mask cannot be decoded or its size differs from the image's.
    """
    mask = load_image(path, mode="L")
    if mask.size != image_size:
        width, height = image_size
        owner = f"its image {image_path}" if image_path else "its image"
        msg = (
            f"Mask {path} is {mask.width}x{mask.height} pixels but {owner} is {width}x{height}: give each "
            "defective image a mask of its own size (check that the mask folder pairs the right files)"
        )
        raise DatasetError(msg)
    threshold = 127 if path.suffix.lower() in LOSSY_EXTENSIONS else 0
    return np.asarray(mask) > threshold


def pair_images_masks(
    images: dict[str, Path], masks: dict[str, Path], expected_mask: Callable[[Path], str]
) -> list[tuple[Path, Path]]:
    """Pair images with masks that share a key (e.g. the file stem), refusing orphans on either side.

    Args:
        images: ``{key: image path}``.
        masks: ``{key: mask path}``.
        expected_mask: Describes, for an image without mask, which mask file was expected (for the message).

    Returns:
        ``(image, mask)`` pairs sorted by key.

    Raises:
        DatasetError: For the first mask without image, or image without mask, naming the file.
    """
    for key, mask in sorted(masks.items()):
        if key not in images:
            msg = f"Mask {mask} has no image of the same name"
            raise DatasetError(msg)
    pairs = []
    for key, image in sorted(images.items()):
        if key not in masks:
            msg = f"Image {image} has no mask: expected {expected_mask(image)}"
            raise DatasetError(msg)
        pairs.append((image, masks[key]))
    return pairs
