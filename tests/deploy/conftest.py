"""One tiny trained MAA per session, its exports and the Lightning model's own predictions.

Image size 32, ``n_features`` 4, 2 epochs on 8 generated 32x32 images (4 normal + 4 defective
test images), trained once; exported once to torch and ONNX with ``Engine.export`` and once to
OpenVINO through ``anomalib-maa export`` (without ``--model``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch


@dataclass
class TinyRun:
    """The trained model, its checkpoint, its data and the Lightning predictions on the test images."""

    model: object
    ckpt: Path
    data: Path
    test_images: list[Path]
    reference: dict[str, torch.Tensor]


@dataclass
class Exports:
    """Paths of the exported models."""

    torch: Path
    onnx: Path
    openvino: Path


def _lightning_predictions(engine, model, images: list[Path]) -> dict[str, torch.Tensor]:
    """``Engine.predict`` over the images: the Lightning path (transform hooks, post-processor callback)."""
    from anomalib.data import PredictDataset
    from torch.utils.data import DataLoader

    dataset = PredictDataset(images[0].parent.parent)
    dataset.image_filenames = images
    loader = DataLoader(dataset, batch_size=len(images), collate_fn=dataset.collate_fn)
    batch = engine.predict(model, dataloaders=loader)[0]
    return {
        "pred_score": batch.pred_score.detach().reshape(-1).double(),
        "pred_label": batch.pred_label.detach().reshape(-1).bool(),
        "anomaly_map": batch.anomaly_map.detach().reshape(len(images), 32, 32).double(),
        "pred_mask": batch.pred_mask.detach().reshape(len(images), 32, 32).bool(),
    }


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """Train the tiny model once."""
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_maa import Maa
    from anomalib_maa.utils.sample_data import folder_datamodule, make_sample_dataset

    warnings.filterwarnings("ignore")
    seed_everything(0)
    root = tmp_path_factory.mktemp("deploy")
    data = make_sample_dataset(root / "data", n_train=8, n_test_good=4, n_test_defect=4, size=32)
    model = Maa(image_size=32, n_features=4, max_epochs=2)
    engine = Engine(
        default_root_dir=root / "run",
        accelerator="cpu",
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    engine.fit(model, datamodule=folder_datamodule(data, batch_size=8))
    callback = engine.trainer.checkpoint_callback
    ckpt = Path(callback.best_model_path or callback.last_model_path)
    assert ckpt.is_file()
    images = sorted((data / "test").rglob("*.png"))
    reference = _lightning_predictions(engine, model, images)
    return TinyRun(model=model.eval(), ckpt=ckpt, data=data, test_images=images, reference=reference)


@pytest.fixture(scope="session")
def exports(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Exports:
    """Export once per format (skipped without the ``export`` extra)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    pytest.importorskip("openvino")
    from anomalib.engine import Engine

    from anomalib_maa.cli import main

    root = tmp_path_factory.mktemp("exports")
    engine = Engine(accelerator="cpu", logger=False, default_root_dir=root)
    torch_path = engine.export(tiny_run.model, "torch", export_root=root / "api")
    onnx_path = engine.export(tiny_run.model, "onnx", export_root=root / "api")
    cwd = Path.cwd()
    os.chdir(root)  # anomalib's CLI engine may write next to the working directory
    try:
        main(["export", "--ckpt_path", str(tiny_run.ckpt), "--export_type", "openvino", "--export_root", str(root)])
    finally:
        os.chdir(cwd)
    openvino_path = root / "weights" / "openvino" / "model.xml"
    return Exports(torch=Path(torch_path), onnx=Path(onnx_path), openvino=openvino_path)
