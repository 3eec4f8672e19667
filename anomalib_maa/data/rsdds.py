"""RSDDs (rail surface defects) datamodule: strips cut into square blocks, then the paper's 70/30 protocol.

Every RSDDs strip contains a defect, so, as in the paper, each strip of ``Rail surface images/`` is cut along
its length into square blocks whose side is the strip width (Type-I 160 x 1,000 gives 6 blocks, Type-II
55 x 1,250 gives 22; the shorter remainder at the end is dropped). A block is defective when its
``GroundTruth/`` block has at least one defect pixel. Blocks are written once to ``cache_dir`` (see
:mod:`anomalib_maa.data.tiling`) and served from there with their masks; the source folder is only read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pandas import DataFrame

from anomalib_maa.data.base import SAMPLE_COLUMNS, ProtocolDataModule
from anomalib_maa.data.checks import DatasetError, index_by_stem, list_images, pair_images_masks, require_dir
from anomalib_maa.data.tiling import cached_blocks

IMAGES_DIR = "Rail surface images"
MASKS_DIR = "GroundTruth"
RSDDS_SOURCE = "Gan et al., IEEE Sensors Journal 17(23), 2017; see docs/datasets.md"


class Rsdds(ProtocolDataModule):
    """RSDDs datamodule over square blocks of the rail strips.

    Args:
        root: Folder the RSDDs archive unpacks to, holding ``Type-I RSDDs dataset/`` and
            ``Type-II RSDDs dataset/``; a ``Type-... RSDDs dataset`` folder itself is accepted too.
            Defaults to ``"./datasets/RSDDs"``.
        rail_type: ``"I"`` (express rails) or ``"II"`` (heavy-haul rails, used in the paper). Defaults to ``"II"``.
        cache_dir: Where the blocks are written; ``type_<rail_type>/`` is created inside. Must lie outside
            ``root``. Defaults to ``"./datasets/cache/rsdds"``.
        **kwargs: Protocol, loader and validation arguments of
            :class:`~anomalib_maa.data.base.ProtocolDataModule` (``train_ratio``, ``seed``, ``num_workers``,
            ``val_split_mode``, ...).

    Example:
        >>> datamodule = Rsdds(root="./datasets/RSDDs", rail_type="II")
        >>> datamodule.setup()  # first run writes the blocks, later runs re-use them
    """

    def __init__(
        self,
        root: str | Path = "./datasets/RSDDs",
        rail_type: Literal["I", "II"] = "II",
        cache_dir: str | Path = "./datasets/cache/rsdds",
        **kwargs,
    ) -> None:
        super().__init__(root=root, **kwargs)
        if rail_type not in ("I", "II"):
            msg = f"rail_type must be 'I' or 'II', got {rail_type!r}"
            raise ValueError(msg)
        self.rail_type = rail_type
        self.cache_dir = Path(cache_dir)
        self.category = f"type_{rail_type}"

    @property
    def source_dir(self) -> Path:
        """The ``Type-<rail_type> RSDDs dataset`` folder (or ``root`` itself when it is such a folder)."""
        if (self.root / IMAGES_DIR).is_dir():
            return self.root
        return self.root / f"Type-{self.rail_type} RSDDs dataset"

    @property
    def block_dir(self) -> Path:
        """Cache folder of this rail type's blocks."""
        return self.cache_dir / f"type_{self.rail_type}"

    def _missing_root_hint(self) -> str:
        return (
            f"Get the RSDDs archive ({RSDDS_SOURCE}), unpack it so that "
            f"{self.root / f'Type-{self.rail_type} RSDDs dataset' / IMAGES_DIR} exists, or pass root=<folder> "
            "(CLI: --data.init_args.root <folder>). See docs/datasets.md."
        )

    def prepare_data(self) -> None:
        """Check the source and write the block cache when it is missing or stale."""
        self._blocks()

    def _blocks(self) -> list[dict]:
        self._check_root()
        source = require_dir(self.source_dir, "RSDDs rail-type folder", self._missing_root_hint())
        cache, resolved_source = self.block_dir.resolve(), source.resolve()
        if cache.is_relative_to(resolved_source) or resolved_source.is_relative_to(cache):
            msg = f"cache_dir {self.cache_dir} must lie outside the dataset folder {source}"
            raise ValueError(msg)
        image_dir = require_dir(source / IMAGES_DIR, "RSDDs image folder", self._missing_root_hint())
        mask_dir = require_dir(source / MASKS_DIR, "RSDDs ground-truth folder", self._missing_root_hint())
        images, masks = index_by_stem(list_images(image_dir)), index_by_stem(list_images(mask_dir))
        if not images:
            msg = f"No rail images in {image_dir}"
            raise DatasetError(msg)
        pairs = pair_images_masks(images, masks, lambda image: f"a file named {image.stem}.* in {mask_dir}")
        return cached_blocks(pairs, cache)

    def _collect_samples(self) -> DataFrame:
        rows = [
            (
                block["key"],
                block["image"],
                block["mask"],
                "defect" if block["label_index"] else "good",
                block["label_index"],
            )
            for block in self._blocks()
        ]
        return DataFrame(rows, columns=SAMPLE_COLUMNS)
