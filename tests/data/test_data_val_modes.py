"""Validation modes, loader defaults and a real Engine.fit with the default (no) validation."""

from __future__ import annotations

import os

import pytest

from anomalib_maa.data import Ksdd, Mcsd, Rsdds, default_num_workers


@pytest.fixture(params=["ksdd", "rsdds", "mcsd"])
def make_datamodule(request, tmp_path, trees):
    """Factory building one of the three datamodules on a small generated tree."""
    kind = request.param
    if kind == "ksdd":
        trees.ksdd(tmp_path / "ksdd", {"kos01": [0, 0, 1, 0, 0, 1], "kos02": [0, 0, 0, 0, 0, 1]})
        return lambda **kw: Ksdd(root=tmp_path / "ksdd", num_workers=0, **kw)
    if kind == "rsdds":
        trees.rsdds(tmp_path / "rsdds", strips={"a": [(30, 40)], "b": [(300, 310)]}, size=(55, 440))
        return lambda **kw: Rsdds(root=tmp_path / "rsdds", cache_dir=tmp_path / "cache", num_workers=0, **kw)
    trees.mcsd(tmp_path / "mcsd", n_good=9, n_defect=3)
    return lambda **kw: Mcsd(root=tmp_path / "mcsd", num_workers=0, **kw)


def test_default_is_no_validation(make_datamodule) -> None:
    datamodule = make_datamodule()
    datamodule.setup()
    assert datamodule.val_split_mode == "none"
    assert not hasattr(datamodule, "val_data")
    assert datamodule.val_dataloader() == []


@pytest.mark.parametrize("mode", ["same_as_test", "from_test", "from_train", "synthetic"])
def test_other_anomalib_val_modes(make_datamodule, mode: str) -> None:
    reference = make_datamodule()
    reference.setup()
    n_train, n_test = len(reference.train_data), len(reference.test_data)

    datamodule = make_datamodule(val_split_mode=mode, val_split_ratio=0.5)
    datamodule.setup()
    n_val = len(datamodule.val_data)
    assert n_val > 0
    if mode == "same_as_test":
        assert n_val == n_test and len(datamodule.test_data) == n_test
    elif mode == "from_test":
        assert n_val + len(datamodule.test_data) == n_test and datamodule.val_data.has_anomalous
    else:  # from_train, synthetic: taken from the training images
        assert n_val + len(datamodule.train_data) == n_train
    batch = next(iter(datamodule.val_dataloader()))
    assert batch.image.shape[0] > 0
    assert not set(datamodule.val_data.samples.image_path) & set(datamodule.train_data.samples.image_path)


def test_from_dir_needs_a_validation_folder(tmp_path) -> None:
    for cls in (Ksdd, Rsdds):
        with pytest.raises(ValueError, match="from_dir"):
            cls(root=tmp_path, val_split_mode="from_dir")


def test_num_workers_default_is_sized_to_the_machine(tmp_path) -> None:
    workers = default_num_workers()
    assert 0 <= workers <= min(4, os.cpu_count() or 1)
    for datamodule in (Ksdd(root=tmp_path), Rsdds(root=tmp_path), Mcsd(root=tmp_path)):
        assert datamodule.num_workers == workers
    assert Ksdd(root=tmp_path, num_workers=0).num_workers == 0


@pytest.mark.parametrize("mode", ["none"])
def test_engine_fit_and_test(tmp_path, trees, mode: str) -> None:
    """A real anomalib Engine.fit: with the default 'none' it needs no limit_val_batches=0."""
    from anomalib.engine import Engine
    from anomalib.models import Padim

    trees.mcsd(tmp_path / "mcsd", n_good=8, n_defect=3)
    datamodule = Mcsd(root=tmp_path / "mcsd", num_workers=0, train_batch_size=4, eval_batch_size=4, val_split_mode=mode)
    model = Padim(
        backbone="resnet18",
        layers=["layer1"],
        pre_trained=False,
        n_features=8,
        pre_processor=Padim.configure_pre_processor(image_size=(32, 32)),
        visualizer=False,
    )
    engine = Engine(accelerator="cpu", devices=1, default_root_dir=tmp_path / "out", logger=False, max_epochs=1)
    engine.fit(model, datamodule=datamodule)
    assert engine.trainer.state.finished
    results = engine.test(model, datamodule=datamodule)
    assert "image_AUROC" in results[0]
