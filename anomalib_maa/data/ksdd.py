"""KolektorSDD (KSDD) datamodule with the paper's 70/30 protocol.

Reads the native layout ``<root>/kosNN/PartN.jpg`` with ``PartN_label.bmp`` beside each image; an image is
defective when its mask has any non-zero pixel. From anomalib's ``Kolektor`` it reuses the download description
and ``download_and_extract`` (only when ``download=True``). It does not reuse ``make_kolektor_dataset`` because,
in anomalib 2.7, that function pairs images with masks by sorted position rather than by name (a missing mask
shifts every later pair), labels a mask OpenCV cannot read as defective, and always splits 80/20 with
``random_state=42`` regardless of any argument.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from pandas import DataFrame

from anomalib_maa.data.base import SAMPLE_COLUMNS, ProtocolDataModule
from anomalib_maa.data.checks import DatasetError, check_image, pair_images_masks, read_defect_mask

logger = logging.getLogger(__name__)

MASK_SUFFIX = "_label.bmp"
KSDD_URL = "https://www.vicos.si/resources/kolektorsdd/"
DOWNLOAD_TIMEOUT_S = 60


class Ksdd(ProtocolDataModule):
    """KolektorSDD datamodule: 70 % of the 347 defect-free images train, the rest and the 52 defective test.

    Args:
        root: Folder holding ``kos01`` ... ``kos50``. Defaults to ``"./datasets/KolektorSDD"``.
        download: When the root is missing, download and unpack the archive there (anomalib's
            ``download_and_extract``, with a progress bar, 60 s socket timeout). Defaults to ``False``: a missing
            root fails at once with a message saying where to put the data.
        **kwargs: Protocol, loader and validation arguments of
            :class:`~anomalib_maa.data.base.ProtocolDataModule` (``train_ratio``, ``seed``, ``num_workers``,
            ``val_split_mode``, ...).

    Example:
        >>> datamodule = Ksdd(root="../shared/data/KolektorSDD", num_workers=0)
        >>> datamodule.setup()
        >>> len(datamodule.train_data), len(datamodule.test_data)
        (243, 156)
    """

    def __init__(self, root: str | Path = "./datasets/KolektorSDD", download: bool = False, **kwargs) -> None:
        super().__init__(root=root, **kwargs)
        self.download = download

    def _missing_root_hint(self) -> str:
        return (
            f"Download KolektorSDD (CC BY-NC-SA 4.0) from {KSDD_URL}, unpack it so that "
            f"{self.root / 'kos01' / 'Part0.jpg'} exists, or pass root=<folder> "
            "(CLI: --data.init_args.root <folder>), or download=True. See docs/datasets.md."
        )

    def prepare_data(self) -> None:
        """Download the dataset when the root is missing and ``download=True``; otherwise fail with a hint."""
        if self.download and not self.root.exists():
            _download(self.root)
        self._check_root()

    def _collect_samples(self) -> DataFrame:
        root = self._check_root().resolve()
        files = [path for path in root.rglob("*") if path.is_file()]
        images = {str(path.with_suffix("")): path for path in files if path.suffix.lower() == ".jpg"}
        masks = {str(path)[: -len(MASK_SUFFIX)]: path for path in files if path.name.lower().endswith(MASK_SUFFIX)}
        if not images:
            msg = f"No KolektorSDD images (kosNN/PartN.jpg) under {root}. {self._missing_root_hint()}"
            raise DatasetError(msg)
        pairs = pair_images_masks(images, masks, lambda image: f"{image.stem}{MASK_SUFFIX} beside it")

        rows = []
        for image, mask in pairs:
            defective = bool(read_defect_mask(mask, check_image(image), image).any())
            key = image.relative_to(root).as_posix()
            rows.append((key, str(image), str(mask), "defect" if defective else "good", int(defective)))
        return DataFrame(rows, columns=SAMPLE_COLUMNS)


def _download(root: Path) -> None:
    """Download and unpack KolektorSDD into ``root`` with anomalib's downloader, failing fast when offline."""
    from anomalib.data.datamodules.image.kolektor import DOWNLOAD_INFO
    from anomalib.data.utils import download_and_extract

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # anomalib's urlretrieve has no timeout and can hang
    try:
        download_and_extract(root, DOWNLOAD_INFO)
    except OSError as error:
        archive = root / (DOWNLOAD_INFO.filename or "KolektorSDD.zip")
        archive.unlink(missing_ok=True)  # anomalib would reuse a partial archive without checking its hash
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        msg = f"Could not download KolektorSDD to {root}: {error}. Download it by hand from {KSDD_URL}."
        raise FileNotFoundError(msg) from error
    finally:
        socket.setdefaulttimeout(previous)
