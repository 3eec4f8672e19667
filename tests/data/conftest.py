"""Fixtures that write small dataset trees in each dataset's native layout."""

from __future__ import annotations

import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image


def _noise(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(60, 200, (height, width), dtype=np.uint8)


def write_ksdd(root: Path, labels: dict[str, list[int]], size: tuple[int, int] = (24, 60)) -> dict[str, int]:
    """KolektorSDD layout: root/kosNN/PartN.jpg + PartN_label.bmp. Returns {relative image path: label}."""
    width, height = size
    truth = {}
    for item, part_labels in labels.items():
        (root / item).mkdir(parents=True, exist_ok=True)
        for part, label in enumerate(part_labels):
            seed = zlib.crc32(f"{item}/{part}".encode())
            Image.fromarray(_noise(height, width, seed)).save(root / item / f"Part{part}.jpg", quality=90)
            mask = np.zeros((height, width), np.uint8)
            if label:
                mask[10:20, 5:15] = 255
                Image.fromarray(mask).save(root / item / f"Part{part}_label.bmp")
            else:  # the real defect-free masks are 1-bit BMPs
                Image.fromarray(mask).convert("1").save(root / item / f"Part{part}_label.bmp")
            truth[f"{item}/Part{part}.jpg"] = label
    return truth


def write_rsdds(
    root: Path,
    rail_type: str = "II",
    strips: dict[str, list[tuple[int, int]]] | None = None,
    size: tuple[int, int] = (55, 1250),
    mask_suffix: str = ".jpg",
) -> Path:
    """RSDDs layout: root/Type-X RSDDs dataset/{Rail surface images,GroundTruth}/<name>.jpg.

    ``strips`` maps a strip name to defect row ranges ``(start, stop)`` (full strip width). Returns the type folder.
    """
    width, height = size
    folder = root / f"Type-{rail_type} RSDDs dataset"
    (folder / "Rail surface images").mkdir(parents=True)
    (folder / "GroundTruth").mkdir()
    strips = strips if strips is not None else default_rsdds_strips()
    for index, (name, rows) in enumerate(sorted(strips.items())):
        image = np.stack([_noise(height, width, index)] * 3, axis=-1)
        Image.fromarray(image).save(folder / "Rail surface images" / f"{name}.jpg", quality=95)
        mask = np.zeros((height, width), np.uint8)
        for start, stop in rows:
            mask[start:stop, 10:40] = 255
        Image.fromarray(mask).save(folder / "GroundTruth" / f"{name}{mask_suffix}", quality=95)
    return folder


def default_rsdds_strips() -> dict[str, list[tuple[int, int]]]:
    """Four 55 x 1,250 strips (22 blocks each) with 5 defective blocks in all."""
    return {
        "rail_1": [(175, 200)],  # block 3 (rows 165-219)
        "rail_2": [(590, 625)],  # across blocks 10 (550-604) and 11 (605-659)
        "rail_3": [(20, 40), (1170, 1200)],  # blocks 0 and 21 (1155-1209), the last kept block
        "rail_4": [(1215, 1245)],  # only in the 40-row remainder that is dropped: no defective block
    }


def write_mcsd(
    root: Path,
    subset: str = "groove",
    n_good: int = 10,
    n_defect: int = 3,
    masks: bool = True,
    size: tuple[int, int] = (32, 32),
) -> Path:
    """MCSD layout: root/<subset>/{good,defect,mask}/. Returns the subset folder."""
    width, height = size
    folder = root / subset
    for name in ("good", "defect") + (("mask",) if masks else ()):
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i in range(n_good):
        Image.fromarray(_noise(height, width, i)).convert("RGB").save(folder / "good" / f"g{i:03d}.png")
    for i in range(n_defect):
        Image.fromarray(_noise(height, width, 100 + i)).convert("RGB").save(folder / "defect" / f"d{i:03d}.jpg")
        if masks:
            mask = np.zeros((height, width), np.uint8)
            mask[4:12, 4:12] = 255
            Image.fromarray(mask).save(folder / "mask" / f"d{i:03d}.png")
    return folder


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under root with its size and modification time."""
    return {
        path.relative_to(root).as_posix(): (path.stat().st_size, path.stat().st_mtime_ns) for path in root.rglob("*")
    }


def truncate(path: Path) -> None:
    """Cut a file to half its length, like an interrupted copy."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def ksdd_root(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """Four items, 20 images, 4 defective."""
    root = tmp_path / "KolektorSDD"
    labels = {"kos01": [0, 0, 1, 0, 0], "kos02": [0, 0, 0, 0, 0], "kos03": [1, 0, 0, 1, 0], "kos10": [0, 0, 0, 0, 1]}
    return root, write_ksdd(root, labels)


@pytest.fixture
def rsdds_root(tmp_path: Path) -> Path:
    """Type-II tree with the default strips."""
    root = tmp_path / "RSDDs"
    write_rsdds(root)
    return root


@pytest.fixture
def mcsd_root(tmp_path: Path) -> Path:
    """groove subset with masks, 10 good and 3 defective images."""
    root = tmp_path / "MCSD"
    write_mcsd(root)
    return root


@pytest.fixture
def trees() -> SimpleNamespace:
    """The tree writers and file helpers above, for tests that need a variant tree."""
    return SimpleNamespace(
        ksdd=write_ksdd,
        rsdds=write_rsdds,
        rsdds_strips=default_rsdds_strips,
        mcsd=write_mcsd,
        snapshot=snapshot,
        truncate=truncate,
    )
