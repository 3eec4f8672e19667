"""Helpers for the Pauta post-processor tests: a tiny MVTec-style dataset, PaDiM, Engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SIZE = 64
N_TRAIN = 20
N_TEST_GOOD = 6
N_TEST_DEFECT = 6


def _texture(rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """A woven-looking normal texture: two crossed gratings with a random phase plus noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    phase_x, phase_y = rng.uniform(0, 2 * np.pi, size=2)
    base = 0.5 + 0.18 * np.sin(2 * np.pi * xx / 8 + phase_x) + 0.18 * np.sin(2 * np.pi * yy / 8 + phase_y)
    base = base + rng.normal(0.0, 0.04, size=(size, size))
    rgb = np.stack([base, 0.9 * base + 0.05, 0.8 * base + 0.1], axis=-1)
    return np.clip(rgb, 0.0, 1.0)


def _add_defect(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw a dark scratch or a bright blob; return the image and its binary mask."""
    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size]
    cy, cx = rng.integers(16, size - 16, size=2)
    if rng.random() < 0.5:
        radius = rng.integers(5, 9)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        value = 1.0
    else:
        angle = rng.uniform(0, np.pi)
        distance = np.abs((yy - cy) * np.cos(angle) - (xx - cx) * np.sin(angle))
        along = np.abs((yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle))
        mask = (distance <= 2) & (along <= 14)
        value = 0.0
    image = image.copy()
    image[mask] = value
    return image, mask


def _save_rgb(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((array * 255).round().astype(np.uint8)).save(path)


def make_tiny_dataset(root: Path, seed: int = 0) -> Path:
    """Write a tiny MVTec-style tree under ``root`` and return it.

    Layout: ``train/good``, ``test/good``, ``test/defect`` and ``ground_truth/defect`` (masks share
    the file name of their image).
    """
    rng = np.random.default_rng(seed)
    for index in range(N_TRAIN):
        _save_rgb(_texture(rng), root / "train" / "good" / f"{index:03d}.png")
    for index in range(N_TEST_GOOD):
        _save_rgb(_texture(rng), root / "test" / "good" / f"{index:03d}.png")
    for index in range(N_TEST_DEFECT):
        image, mask = _add_defect(_texture(rng), rng)
        _save_rgb(image, root / "test" / "defect" / f"{index:03d}.png")
        mask_path = root / "ground_truth" / "defect" / f"{index:03d}.png"
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)
    return root


def make_folder(root: Path, val_split_mode: str = "none", **kwargs):
    """A ``Folder`` datamodule over :func:`make_tiny_dataset`'s tree, single process."""
    from anomalib.data import Folder

    arguments = {
        "name": "tiny",
        "root": root,
        "normal_dir": "train/good",
        "abnormal_dir": "test/defect",
        "normal_test_dir": "test/good",
        "mask_dir": "ground_truth/defect",
        "train_batch_size": 8,
        "eval_batch_size": 8,
        "num_workers": 0,
        "val_split_mode": val_split_mode,
        "seed": 0,
    }
    arguments.update(kwargs)
    return Folder(**arguments)


def make_padim(post_processor=None, seed: int = 0):
    """PaDiM on ResNet-18 with random weights (offline), 64x64 inputs, Table II evaluator."""
    from anomalib.models import Padim
    from lightning.pytorch import seed_everything

    from anomalib_maa.metrics import table2_evaluator
    from anomalib_maa.post_processing import PautaPostProcessor

    seed_everything(seed, verbose=False)
    return Padim(
        backbone="resnet18",
        pre_trained=False,
        n_features=50,
        pre_processor=Padim.configure_pre_processor(image_size=(IMAGE_SIZE, IMAGE_SIZE)),
        post_processor=post_processor if post_processor is not None else PautaPostProcessor(gamma=3.0),
        evaluator=table2_evaluator(),
        visualizer=False,
    )


def make_engine(root_dir: Path, val_split_mode: str = "none", **kwargs):
    """A quiet single-CPU Engine; ``val_split_mode="none"`` needs ``limit_val_batches=0``."""
    from anomalib.engine import Engine

    arguments = {
        "default_root_dir": root_dir,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "accelerator": "cpu",
        "devices": 1,
    }
    if val_split_mode == "none":
        arguments["limit_val_batches"] = 0
    arguments.update(kwargs)
    return Engine(**arguments)


class PadimRun:
    """A PaDiM model fitted once with val_split_mode none, and what the tests need of it."""

    def __init__(self, root: Path, work: Path) -> None:
        self.root = root
        self.datamodule = make_folder(root, val_split_mode="none")
        self.model = make_padim()
        self.engine = make_engine(work / "results")
        self.engine.fit(self.model, datamodule=self.datamodule)
        self.checkpoint = Path(self.engine.best_model_path)
        self.results_dir = Path(self.engine.trainer.default_root_dir)
        self.metrics = self.engine.test(self.model, datamodule=self.datamodule, verbose=False)[0]
