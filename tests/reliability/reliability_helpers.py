"""Helpers of the reliability tests: tiny MAA fits (32x32, n_features 4, 1-2 epochs), digests, comparisons.

Every run seeds with ``seed_everything`` before building the model, as a user would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from anomalib.engine import Engine
from lightning.pytorch import seed_everything

from anomalib_maa import Maa
from anomalib_maa.post_processing import PautaPostProcessor
from anomalib_maa.utils.sample_data import folder_datamodule

MODEL_ARGS = {"image_size": (32, 32), "n_features": 4, "visualizer": False}


@contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op thread: on a loaded two-core machine OpenMP's spin-waiting made a two-step fit 20x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class Run:
    """One fit: the model, its engine and datamodule, the checkpoint and the run folder."""

    model: Maa
    engine: Engine
    datamodule: object
    metrics: dict = field(default_factory=dict)

    @property
    def ckpt(self) -> Path:
        callback = self.engine.trainer.checkpoint_callback
        return Path(callback.best_model_path or callback.last_model_path)

    @property
    def run_dir(self) -> Path:
        return Path(self.engine.trainer.default_root_dir).resolve()


def fit_maa(
    out: Path,
    data_root: Path | None,
    epochs: int = 1,
    batch_size: int = 4,
    ckpt_path: Path | None = None,
    seed: int = 0,
    report: bool = False,
    model: Maa | None = None,
    datamodule: object | None = None,
    limit_val_batches: int | float = 0,
    **model_args,
) -> Run:
    """Seed, build a tiny MAA and a ``Folder`` datamodule (unless given) and fit with a fresh Engine under ``out``."""
    seed_everything(seed)
    if datamodule is None:
        datamodule = folder_datamodule(data_root, batch_size=batch_size)
    if model is None:
        args = {**MODEL_ARGS, "max_epochs": epochs, **model_args}
        model = Maa(**args, post_processor=PautaPostProcessor(save_report=report))
    engine = Engine(
        accelerator="cpu",
        default_root_dir=out,
        limit_val_batches=limit_val_batches,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
    )
    engine.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return Run(model, engine, datamodule)


def digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def raw_test_scores(model: Maa, datamodule) -> torch.Tensor:
    """Raw FMD scores of the test images, straight from the torch model in eval mode."""
    model.eval()
    with torch.no_grad():
        scores = [
            model.model(model.pre_processor.transform(batch.image)).pred_score for batch in datamodule.test_dataloader()
        ]
    return torch.cat(scores)


def max_state_difference(first: Maa, second: Maa) -> float:
    """Largest absolute difference over every floating-point entry of two state dicts (NaN equal to NaN)."""
    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys()
    worst = 0.0
    for key, value in a.items():
        if value.is_floating_point() and value.numel():
            assert value.shape == b[key].shape, key
            both_nan = torch.isnan(value) & torch.isnan(b[key])
            diff = (value.double() - b[key].double()).abs().masked_fill(both_nan, 0)
            worst = max(worst, float(diff.max()))
    return worst


def write_tree(root: Path, train: list[np.ndarray], test_good: list[np.ndarray], defects: list[np.ndarray]) -> Path:
    """An MVTec-style tree as ``make_sample_dataset`` writes it, from given 8-bit grayscale arrays."""
    for split, images in (("train/good", train), ("test/good", test_good), ("test/defect", defects)):
        for index, image in enumerate(images):
            path = root / split / f"{index:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), image)
    for index, image in enumerate(defects):
        path = root / "ground_truth" / "defect" / f"{index:03d}_mask.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.where(image < 60, 255, 0).astype(np.uint8))
    return root
