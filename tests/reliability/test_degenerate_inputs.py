"""Degenerate training sets: identical images, one image, fewer images than the batch size, batch size 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reliability_helpers import fit_maa, raw_test_scores, write_tree


def _texture(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(90, 170, (32, 32), dtype=np.uint8)


def _defect(seed: int) -> np.ndarray:
    image = _texture(seed)
    image[8:20, 8:20] = 10
    return image


def test_identical_constant_images_train_with_finite_scores(tmp_path):
    gray = np.full((32, 32), 128, np.uint8)
    root = write_tree(tmp_path / "data", train=[gray] * 6, test_good=[gray] * 2, defects=[_defect(1), _defect(2)])
    run = fit_maa(tmp_path / "out", root, epochs=1)
    post_processor = run.model.post_processor
    assert post_processor.is_fitted
    assert torch.isfinite(post_processor.image_std) and float(post_processor.image_std) < 1e-3  # all scores equal
    metrics = run.engine.test(run.model, datamodule=run.datamodule, verbose=False)[0]
    assert torch.isfinite(raw_test_scores(run.model, run.datamodule)).all()
    assert np.isfinite(metrics["image_AUROC"])
    assert run.ckpt.is_file()


def test_single_training_image_fails_with_a_clear_message(tmp_path):
    root = write_tree(tmp_path / "data", train=[_texture(0)], test_good=[_texture(1)], defects=[_defect(2)])
    with pytest.raises(ValueError, match="at least two defect-free training images.*got 1"):
        fit_maa(tmp_path / "out", root, epochs=1)
    assert not list((tmp_path / "out").rglob("*.ckpt"))


def test_fewer_images_than_the_batch_size_train(tmp_path):
    root = write_tree(
        tmp_path / "data", train=[_texture(i) for i in range(3)], test_good=[_texture(9)], defects=[_defect(8)]
    )
    run = fit_maa(tmp_path / "out", root, epochs=1, batch_size=8)
    assert run.engine.trainer.global_step == 2  # one batch of 3: one discriminator and one generator step
    assert run.model.post_processor.is_fitted and run.ckpt.is_file()


def test_batch_size_one_trains(tmp_path):
    root = write_tree(
        tmp_path / "data", train=[_texture(i) for i in range(2)], test_good=[_texture(9)], defects=[_defect(8)]
    )
    run = fit_maa(tmp_path / "out", root, epochs=1, batch_size=1)
    # every batch holds one set only: each pairs with the other set's last image (or a stand-in on the first)
    assert run.engine.trainer.global_step >= 2
    assert torch.isfinite(run.model.post_processor.image_mean)
    assert run.model.post_processor.is_fitted and run.ckpt.is_file()
