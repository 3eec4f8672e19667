"""Sizes and training length derived from the training images (issue 16), and the user's epoch count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from anomalib.data import Folder
from anomalib.engine import Engine
from PIL import Image

from anomalib_maa import Maa
from anomalib_maa.models.maa.sizing import derive_epochs, derive_image_size, derive_sizes
from anomalib_maa.utils.sample_data import folder_datamodule

SMALL = {"n_features": 2, "feature_layer": 2, "lr": 1e-3, "visualizer": False}


def test_image_size_keeps_aspect_caps_area_and_rounds_to_tiles():
    assert derive_image_size([(1250, 500), (1262, 510), (1240, 498)], tile=128) == (640, 256)  # KSDD strips
    assert derive_image_size([(640, 640)] * 3, tile=128) == (384, 384)  # DeepPCB boards
    assert derive_image_size([(256, 256), (240, 250)], tile=128) == (256, 256)  # never scaled up
    assert derive_image_size([(50, 60)], tile=128) == (128, 128)  # at least one tile
    assert derive_image_size([(900, 900)], tile=(128, 64)) == (384, 384)
    with pytest.raises(ValueError, match="No training images"):
        derive_image_size([], tile=128)


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_channels_grayscale_for_single_channel_and_grey_rgb_files(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (40, 80), dtype=np.uint8)
    _write(tmp_path / "a.png", grey)
    _write(tmp_path / "b.png", np.stack([grey] * 3, -1))  # RGB file with equal channels (DeepPCB has these)
    derived = derive_sizes([tmp_path / "a.png", tmp_path / "b.png"], tile=32)
    assert derived.in_channels == 1
    assert derived.native_size == (40, 80) and derived.image_size == (32, 96)
    _write(tmp_path / "c.png", rng.integers(0, 255, (40, 80, 3), dtype=np.uint8))
    assert derive_sizes([tmp_path / "a.png", tmp_path / "c.png"], tile=32).in_channels == 3


def test_epochs_for_a_step_budget():
    assert derive_epochs(243, 8, 3000) == 97  # 31 steps an epoch
    assert derive_epochs(70, 8, 3000) == 334  # 9 steps an epoch
    assert derive_epochs(5, 32, 10) == 10
    assert derive_epochs(70, 8, 3000, drop_last=True) == 375


@pytest.fixture(scope="module")
def tall_root(tmp_path_factory):
    """A Folder tree of tall 96x32 grayscale images (normal: noise; defective: a bright square)."""
    root = tmp_path_factory.mktemp("tall")
    rng = np.random.default_rng(1)
    for split, count in (("train/good", 12), ("test/good", 4), ("test/defect", 4)):
        for index in range(count):
            image = rng.integers(90, 110, (96, 32), dtype=np.uint8)
            mask = np.zeros_like(image)
            if split == "test/defect":
                image[40:50, 10:20], mask[40:50, 10:20] = 255, 255
                _write(root / "ground_truth/defect" / f"{index:03d}_mask.png", mask)
            _write(root / split / f"{index:03d}.png", image)
    return root


def _tall_datamodule(root):
    return Folder(
        name="tall",
        root=root,
        normal_dir="train/good",
        normal_test_dir="test/good",
        abnormal_dir="test/defect",
        mask_dir="ground_truth/defect",
        train_batch_size=4,
        eval_batch_size=4,
        num_workers=0,
        val_split_mode="none",
    )


def test_derived_sizes_are_used_logged_and_stored_in_the_checkpoint(tall_root, tmp_path, caplog):
    model = Maa(image_size=None, in_channels=None, tile_size=32, max_epochs=1, **SMALL)
    engine = Engine(
        accelerator="cpu", default_root_dir=tmp_path, enable_progress_bar=False, logger=False, limit_val_batches=0
    )
    with caplog.at_level("INFO", logger="anomalib_maa"):
        engine.fit(model, datamodule=_tall_datamodule(tall_root))
    assert model.sizes == {"image_size": [96, 32], "tile_size": [32, 32], "in_channels": 1}
    assert sum("MAA sizes from 12 training images" in record.message for record in caplog.records) == 1
    assert model.model.tiler is not None and model.model.in_channels == 1
    results = engine.test(model, datamodule=_tall_datamodule(tall_root), verbose=False)
    assert results[0]["image_AUROC"] > 0.5
    checkpoint = next(tmp_path.rglob("*.ckpt"))
    reloaded = Maa.load_from_checkpoint(checkpoint)
    assert reloaded.sizes == model.sizes
    assert reloaded.pre_processor.transform.transforms[0].size == [96, 32]
    image = torch.rand(2, 3, 96, 32) * 2 - 1
    model.eval(), reloaded.eval()
    torch.testing.assert_close(reloaded.model(image).pred_score, model.model(image).pred_score)


def test_explicit_sizes_win(tall_root, tmp_path):
    model = Maa(image_size=(64, 32), in_channels=3, max_epochs=1, **SMALL)
    engine = Engine(
        accelerator="cpu", default_root_dir=tmp_path, enable_progress_bar=False, logger=False, limit_val_batches=0
    )
    engine.fit(model, datamodule=_tall_datamodule(tall_root))
    assert model.sizes == {"image_size": [64, 32], "tile_size": None, "in_channels": 3}


def _epochs_trained(sample_root, tmp_path, model_epochs, engine_args):
    model = Maa(image_size=32, max_epochs=model_epochs, train_steps=12, **SMALL)
    engine = Engine(
        accelerator="cpu",
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        logger=False,
        limit_val_batches=0,
        **engine_args,
    )
    engine.fit(model, datamodule=folder_datamodule(sample_root, batch_size=8))
    return engine.trainer.current_epoch


def test_the_users_epoch_count_wins(sample_root, tmp_path):
    assert _epochs_trained(sample_root, tmp_path / "a", None, {"max_epochs": 1}) == 1  # Engine(max_epochs=1)
    assert _epochs_trained(sample_root, tmp_path / "b", 3, {}) == 3  # the model's own argument
    # nobody gave one: about train_steps=12 steps of 6 batches (48 images, batch 8) -> 2 epochs
    assert _epochs_trained(sample_root, tmp_path / "c", None, {}) == 2
