"""Ksdd on the real KolektorSDD copy at ../shared/data/KolektorSDD (skipped where it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from anomalib_maa.data import Ksdd

KSDD_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "KolektorSDD"

pytestmark = pytest.mark.skipif(
    not (KSDD_ROOT / "kos01").is_dir(), reason=f"KolektorSDD not found at {KSDD_ROOT} (see docs/datasets.md)"
)


def test_real_ksdd_protocol(trees) -> None:
    before = trees.snapshot(KSDD_ROOT)
    datamodule = Ksdd(root=KSDD_ROOT, num_workers=0)
    datamodule.setup()
    train, test = datamodule.train_data.samples, datamodule.test_data.samples

    assert len(train) + len(test) == 399
    assert int((train.label_index == 0).sum() + (test.label_index == 0).sum()) == 347
    assert int((test.label_index == 1).sum()) == 52
    assert len(train) == 243  # round(0.7 * 347 = 242.9), documented in anomalib_maa.data.protocol
    assert (train.label_index == 0).all()
    assert len(test) == 104 + 52

    paths = list(train.image_path) + list(test.image_path)
    assert len(set(paths)) == 399  # no file used twice
    assert len(set(train.mask_path) | set(test.mask_path)) == 399
    assert trees.snapshot(KSDD_ROOT) == before
