"""A small MVTec-style dataset the project generates itself (for the quick start, tests and smoke runs).

Normal images are a stationary brushed-metal texture (noise smeared along one axis, fine grain).
Defective images carry a drawn scratch or a pit, and a mask marks it::

    root/
      train/good/000.png ...
      test/good/000.png ...
      test/defect/000.png ...
      ground_truth/defect/000_mask.png ...

Example:
    >>> import tempfile
    >>> root = make_sample_dataset(tempfile.mkdtemp(), n_train=4, n_test_good=2, n_test_defect=2, size=32)
    >>> sorted(p.name for p in root.iterdir())
    ['ground_truth', 'test', 'train']
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

__all__ = ["folder_datamodule", "make_sample_dataset"]


def _normal_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Stationary brushed-metal grain: noise smeared along x, a little isotropic grain, mild shading."""
    brushed = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), sigmaX=4, sigmaY=0.6)
    grain = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), sigmaX=0.8)
    texture = brushed / (brushed.std() + 1e-6) * 0.08 + grain / (grain.std() + 1e-6) * 0.03
    return np.clip(0.5 + rng.uniform(-0.03, 0.03) + texture, 0, 1)


def _draw_defect(rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    mask = np.zeros_like(image, dtype=np.uint8)
    if rng.uniform() < 0.5:
        centre = rng.uniform(0.35, 0.65, 2) * size
        half = rng.uniform(0.15, 0.3) * size * np.array([np.cos(angle := rng.uniform(0, np.pi)), np.sin(angle)])
        start, end = (centre - half).astype(int), (centre + half).astype(int)
        cv2.line(mask, tuple(int(v) for v in start), tuple(int(v) for v in end), 1, max(2, size // 16))
    else:
        centre = tuple(int(v) for v in rng.integers(size // 4, 3 * size // 4, 2))
        axes = tuple(int(v) for v in rng.integers(max(2, size // 12), max(3, size // 6), 2))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    value = rng.choice([0.05, 0.95])
    defective = np.where(mask > 0, value, image).astype(np.float32)
    return defective, mask


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array):
        msg = f"Could not write {path}"
        raise OSError(msg)


def make_sample_dataset(
    root: str | Path,
    n_train: int = 48,
    n_test_good: int = 16,
    n_test_defect: int = 16,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write a small MVTec-style tree of normal and defective textures with masks.

    Args:
        root: Output folder (created; existing files with the same names are replaced).
        n_train: Defect-free training images.
        n_test_good: Defect-free test images.
        n_test_defect: Defective test images (each with a mask).
        size: Side of the square images.
        seed: Random seed; the same seed writes the same images.

    Returns:
        The root folder.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("test", n_test_good)):
        for index in range(count):
            image = _normal_texture(rng, size)
            _write(root / split / "good" / f"{index:03d}.png", (image * 255).astype(np.uint8))
    for index in range(n_test_defect):
        image, mask = _draw_defect(rng, _normal_texture(rng, size))
        _write(root / "test" / "defect" / f"{index:03d}.png", (image * 255).astype(np.uint8))
        _write(root / "ground_truth" / "defect" / f"{index:03d}_mask.png", mask * 255)
    return root


def folder_datamodule(root: str | Path, batch_size: int = 8, num_workers: int = 0, **kwargs):  # noqa: ANN201
    """An anomalib ``Folder`` datamodule over a tree written by :func:`make_sample_dataset`.

    Args:
        root: The tree's root.
        batch_size: Train and eval batch size.
        num_workers: Data-loading workers.
        **kwargs: Further ``Folder`` arguments (e.g. ``val_split_mode``).
    """
    from anomalib.data import Folder

    options = {"val_split_mode": "none", "seed": 0, **kwargs}
    return Folder(
        name="sample",
        root=root,
        normal_dir="train/good",
        normal_test_dir="test/good",
        abnormal_dir="test/defect",
        mask_dir="ground_truth/defect",
        train_batch_size=batch_size,
        eval_batch_size=batch_size,
        num_workers=num_workers,
        **options,
    )
