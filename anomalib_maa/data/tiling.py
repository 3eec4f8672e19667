"""Cut long strips into square blocks once, into a cache folder that is re-used until the source changes.

Cache layout (all names deterministic)::

    <cache>/
    ├── manifest.json          # fingerprint of the source + one entry per block
    ├── good/<stem>_<k>.png    # defect-free blocks, k = 000, 001, ... along the strip
    ├── defect/<stem>_<k>.png  # blocks whose mask block has at least one defect pixel
    └── mask/<stem>_<k>.png    # binary masks (0/255) of the defective blocks

The fingerprint covers the names, sizes and modification times of every source image and mask, and the block
format version; any change rebuilds the whole cache in a temporary folder that then replaces the old one.
The source folder is only read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from anomalib_maa.data.checks import DatasetError, load_image, read_defect_mask

_FORMAT_FAMILY = "anomalib_maa.blocks/"
CACHE_FORMAT = _FORMAT_FAMILY + "1"
MANIFEST = "manifest.json"


def block_boxes(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Boxes of the square blocks of a strip: side = the short side, laid along the long side.

    The remainder shorter than one block at the far end is dropped (55 x 1,250 gives 22 blocks, 40 rows unused).

    Args:
        width: Strip width in pixels.
        height: Strip height in pixels.

    Returns:
        ``(left, upper, right, lower)`` boxes in Pillow's convention, in order along the strip.
    """
    side = min(width, height)
    count = max(width, height) // side
    if height >= width:
        return [(0, k * side, side, (k + 1) * side) for k in range(count)]
    return [(k * side, 0, (k + 1) * side, side) for k in range(count)]


def source_fingerprint(pairs: list[tuple[Path, Path]]) -> str:
    """Hash of the names, sizes and modification times of the source files and of the block format.

    Args:
        pairs: ``(image, mask)`` source pairs.

    Returns:
        Hex SHA-256 digest.
    """
    entries: list = [CACHE_FORMAT]
    for image, mask in sorted(pairs):
        for path in (image, mask):
            stat = path.stat()
            entries.append([path.name, stat.st_size, stat.st_mtime_ns])
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def cached_blocks(pairs: list[tuple[Path, Path]], cache: Path) -> list[dict]:
    """Return the blocks of ``pairs``, cutting them into ``cache`` first when the cache is missing or stale.

    Args:
        pairs: ``(image, mask)`` source pairs, already paired by name.
        cache: Cache folder; created if needed. An existing folder that is not such a cache is refused.

    Returns:
        One entry per block: ``key`` (``<stem>_<k>``), ``image`` and ``mask`` (absolute paths; ``mask`` is
        ``""`` for defect-free blocks), ``label_index`` and ``source`` (the strip's file name).

    Raises:
        DatasetError: When a source file is unreadable, a mask has another size than its strip, or ``cache``
            is a non-empty folder without a manifest.
    """
    fingerprint = source_fingerprint(pairs)
    manifest = _read_manifest(cache)
    if manifest is None or manifest.get("fingerprint") != fingerprint or not _files_present(cache, manifest):
        manifest = _rebuild(pairs, cache, fingerprint)
    return [
        {**block, "image": str(cache / block["image"]), "mask": str(cache / block["mask"]) if block["mask"] else ""}
        for block in manifest["blocks"]
    ]


def _read_manifest(cache: Path) -> dict | None:
    path = cache / MANIFEST
    if not path.is_file():
        if cache.is_dir() and any(cache.iterdir()):
            msg = f"Cache folder {cache} is not empty and has no {MANIFEST}: choose another cache_dir"
            raise DatasetError(msg)
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or not str(manifest.get("format", "")).startswith(_FORMAT_FAMILY):
        msg = f"{path} is not a block-cache manifest of anomalib_maa: choose another cache_dir"
        raise DatasetError(msg)
    return manifest if manifest["format"] == CACHE_FORMAT else None  # older format: rebuild


def _files_present(cache: Path, manifest: dict) -> bool:
    return all(
        (cache / block["image"]).is_file() and (not block["mask"] or (cache / block["mask"]).is_file())
        for block in manifest.get("blocks", [])
    )


def _rebuild(pairs: list[tuple[Path, Path]], cache: Path, fingerprint: str) -> dict:
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{cache.name}.", dir=cache.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the cache is an ordinary folder
    try:
        manifest = {"format": CACHE_FORMAT, "fingerprint": fingerprint, "blocks": _cut(pairs, staging)}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if cache.exists():
            shutil.rmtree(cache)  # only reached for a folder holding our manifest, or an empty one
        os.replace(staging, cache)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _cut(pairs: list[tuple[Path, Path]], out: Path) -> list[dict]:
    for folder in ("good", "defect", "mask"):
        (out / folder).mkdir()
    blocks = []
    for image_path, mask_path in sorted(pairs):
        image = load_image(image_path)
        if image.mode not in ("L", "RGB", "I;16", "I;16L", "I;16B"):  # 16-bit stays 16-bit, scaled when read
            image = image.convert("RGB")
        defects = read_defect_mask(mask_path, image.size, image_path)
        for k, box in enumerate(block_boxes(*image.size)):
            left, upper, right, lower = box
            block_mask = defects[upper:lower, left:right]
            defective = bool(block_mask.any())
            name = f"{image_path.stem}_{k:03d}.png"
            image_rel = f"{'defect' if defective else 'good'}/{name}"
            image.crop(box).save(out / image_rel)
            mask_rel = ""
            if defective:
                mask_rel = f"mask/{name}"
                Image.fromarray(block_mask.astype(np.uint8) * 255).save(out / mask_rel)
            blocks.append(
                {
                    "key": f"{image_path.stem}_{k:03d}",
                    "image": image_rel,
                    "mask": mask_rel,
                    "label_index": int(defective),
                    "source": image_path.name,
                }
            )
    return blocks
