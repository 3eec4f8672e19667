"""One tiny fit/test of Maa through each datamodule, with the default (no) validation."""

from __future__ import annotations

import math

import pytest

import anomalib_maa
from anomalib_maa.data import Ksdd, Mcsd, Rsdds

Maa = getattr(anomalib_maa, "Maa", None)


def _datamodule(kind: str, tmp_path, trees):
    loader = {"num_workers": 0, "train_batch_size": 4, "eval_batch_size": 4}
    if kind == "ksdd":
        trees.ksdd(tmp_path / "ksdd", {"kos01": [0, 0, 0, 1, 0], "kos02": [0, 0, 1, 0, 0]})
        return Ksdd(root=tmp_path / "ksdd", **loader)
    if kind == "rsdds":
        trees.rsdds(tmp_path / "rsdds", strips={"a": [(30, 40)], "b": [(200, 210)]}, size=(55, 330))
        return Rsdds(root=tmp_path / "rsdds", cache_dir=tmp_path / "cache", **loader)
    trees.mcsd(tmp_path / "mcsd", n_good=8, n_defect=2)
    return Mcsd(root=tmp_path / "mcsd", **loader)


@pytest.mark.skipif(Maa is None, reason="anomalib_maa.Maa is not available")
@pytest.mark.parametrize("kind", ["ksdd", "rsdds", "mcsd"])
def test_maa_fit_and_test(kind: str, tmp_path, trees) -> None:
    from anomalib.engine import Engine

    datamodule = _datamodule(kind, tmp_path, trees)
    model = Maa(image_size=(32, 32), n_features=4, max_epochs=1, visualizer=False)
    engine = Engine(accelerator="cpu", devices=1, default_root_dir=tmp_path / "out", logger=False)
    engine.fit(model, datamodule=datamodule)
    results = engine.test(model, datamodule=datamodule)
    assert "image_AUROC" in results[0]
    assert math.isfinite(results[0]["image_AUROC"])
