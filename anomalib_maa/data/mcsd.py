"""MCSD (motor-commutator surface defects) datamodule over a folder layout a line engineer can fill.

Layout, one folder per subset (``groove``, ``cylinder`` and ``hook`` in the paper; any other name works for a
new line)::

    <root>/<subset>/
    ├── good/      defect-free images (any of .png .jpg .jpeg .bmp .pgm .ppm .tif .tiff .webp)
    ├── defect/    defective images
    ├── mask/      optional: one mask per defective image, same stem (defect/a12.jpg -> mask/a12.png),
    │              same size; non-zero pixels are defects
    └── val/       optional, only for val_split_mode="from_dir": good/, defect/ (optional), mask/ as above

Files are taken from these folders only (no sub-folders); hidden files and non-image files are ignored.
The paper's protocol then puts 70 % of ``good/`` in training and the rest of ``good/`` plus all of ``defect/``
in the test set.
"""

from __future__ import annotations

from pathlib import Path

from pandas import DataFrame

from anomalib_maa.data.base import SAMPLE_COLUMNS, ProtocolDataModule
from anomalib_maa.data.checks import (
    DatasetError,
    check_image,
    index_by_stem,
    list_images,
    pair_images_masks,
    read_defect_mask,
    require_dir,
)

SUBSETS = ("groove", "cylinder", "hook")


class Mcsd(ProtocolDataModule):
    """MCSD datamodule: one subset (product feature) of the motor-commutator line data.

    Args:
        root: Folder holding one sub-folder per subset. Defaults to ``"./datasets/MCSD"``.
        subset: ``"groove"``, ``"cylinder"`` or ``"hook"`` (the paper's MCSD-g, -c, -h), or the folder name of
            a new line's data laid out the same way. Defaults to ``"groove"``.
        **kwargs: Protocol, loader and validation arguments of
            :class:`~anomalib_maa.data.base.ProtocolDataModule` (``train_ratio``, ``seed``, ``num_workers``,
            ``val_split_mode``, ...). ``val_split_mode="from_dir"`` reads ``<root>/<subset>/val/``.

    Example:
        >>> datamodule = Mcsd(root="./datasets/MCSD", subset="hook")
        >>> datamodule.setup()
    """

    has_val_dir = True

    def __init__(self, root: str | Path = "./datasets/MCSD", subset: str = "groove", **kwargs) -> None:
        super().__init__(root=root, **kwargs)
        if not subset or Path(subset).name != subset or subset in (".", ".."):
            msg = f"subset must be a plain folder name such as {', '.join(SUBSETS)}; got {subset!r}"
            raise ValueError(msg)
        self.subset = subset
        self.category = subset

    def _missing_root_hint(self) -> str:
        return (
            f"Copy the line images to {self.root / self.subset / 'good'} (defect-free) and "
            f"{self.root / self.subset / 'defect'} (defective), masks optionally to "
            f"{self.root / self.subset / 'mask'}, or pass root=<folder> (CLI: --data.init_args.root <folder>). "
            "See docs/datasets.md."
        )

    def _subset_dir(self) -> Path:
        root = self._check_root().resolve()
        if not (root / self.subset).is_dir():
            found = sorted(path.name for path in root.iterdir() if path.is_dir())
            msg = f"MCSD subset folder not found: {root / self.subset} (subsets present: {found or 'none'})"
            raise FileNotFoundError(msg)
        return root / self.subset

    def _collect_samples(self) -> DataFrame:
        return collect_folder(self._subset_dir(), require_defects=True, hint=self._missing_root_hint())

    def _collect_val_samples(self) -> DataFrame:
        return collect_folder(self._subset_dir() / "val", require_defects=False, hint=self._missing_root_hint())


def collect_folder(folder: Path, require_defects: bool, hint: str = "") -> DataFrame:
    """List and check the samples of one ``good/`` + ``defect/`` (+ ``mask/``) folder.

    Args:
        folder: Folder holding ``good/``, ``defect/`` and optionally ``mask/``.
        require_defects: Whether ``defect/`` must exist and hold images.
        hint: How to fix a missing folder, for the message.

    Returns:
        Rows with :data:`~anomalib_maa.data.base.SAMPLE_COLUMNS`; ``key`` is ``good/<file>`` or ``defect/<file>``.

    Raises:
        FileNotFoundError: When a required folder is missing.
        DatasetError: For an empty folder, a mask without image or image without mask, an unreadable image or a
            mask of another size; the message names the file.
    """
    good = _images(require_dir(folder / "good", "Folder of defect-free images", hint))
    defect_dir = folder / "defect"
    defects = _images(require_dir(defect_dir, "Folder of defective images", hint)) if require_defects else []
    if not require_defects and defect_dir.is_dir():
        defects = list_images(defect_dir)

    masks: dict[Path, Path] = {}
    mask_dir = folder / "mask"
    if mask_dir.is_dir():
        pairs = pair_images_masks(
            index_by_stem(defects),
            index_by_stem(_images(mask_dir)),
            lambda image: f"a file named {image.stem}.* in {mask_dir}",
        )
        masks = dict(pairs)

    rows = []
    for label_index, images in ((0, good), (1, defects)):
        for image in images:
            size = check_image(image)
            mask = masks.get(image)
            if mask is not None:
                read_defect_mask(mask, size, image)
            key = f"{image.parent.name}/{image.name}"
            rows.append((key, str(image), str(mask or ""), "defect" if label_index else "good", label_index))
    return DataFrame(rows, columns=SAMPLE_COLUMNS)


def _images(folder: Path) -> list[Path]:
    images = list_images(folder)
    if not images:
        msg = f"No images in {folder} (expected files ending in .png, .jpg, .bmp, ...)"
        raise DatasetError(msg)
    return images
