"""Synthetic defects for healing training (an issue-13 recipe option)."""

from __future__ import annotations

import pytest
import torch
from anomalib.engine import Engine

from anomalib_maa import Maa
from anomalib_maa.models.maa.synthetic import synthetic_defects
from anomalib_maa.utils.sample_data import folder_datamodule


def test_synthetic_defects_change_only_masked_pixels():
    images = torch.rand(16, 3, 64, 64) * 2 - 1
    corrupted, mask = synthetic_defects(images, prob=1.0, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (16, 1, 64, 64) and mask.dtype == torch.bool
    changed = (corrupted != images).any(dim=1, keepdim=True)
    assert not (changed & ~mask).any(), "pixels outside the defect mask are untouched"
    assert changed.flatten(1).any(dim=1).all(), "every image got a visible defect"
    share = mask.float().mean()
    assert 0.001 < share < 0.2, "defects are small and local"


def test_no_defects_at_probability_zero_and_seeded():
    images = torch.rand(8, 1, 32, 32)
    corrupted, mask = synthetic_defects(images, prob=0.0)
    assert torch.equal(corrupted, images) and not mask.any()
    a = synthetic_defects(images, 0.5, generator=torch.Generator().manual_seed(3))[0]
    b = synthetic_defects(images, 0.5, generator=torch.Generator().manual_seed(3))[0]
    assert torch.equal(a, b)


def test_healing_trains_and_scores(sample_root, tmp_path):
    model = Maa(image_size=32, n_features=2, feature_layer=2, max_epochs=1, visualizer=False, heal_prob=1.0)
    engine = Engine(
        accelerator="cpu", default_root_dir=tmp_path, limit_val_batches=0, enable_progress_bar=False, logger=False
    )
    engine.fit(model, datamodule=folder_datamodule(sample_root, batch_size=8))
    results = engine.test(model, datamodule=folder_datamodule(sample_root, batch_size=8), verbose=False)
    assert 0.0 <= results[0]["image_AUROC"] <= 1.0


def test_heal_prob_is_checked():
    with pytest.raises(ValueError, match="heal_prob must lie in"):
        Maa(heal_prob=1.5)
