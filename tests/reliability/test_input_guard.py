"""DataGuard on anomalib's own datamodules: every file checked once before training, 16-bit read scaled.

Each test builds an anomalib ``Folder`` (or ``MVTecAD``) tree with one awkward file and shows what the plugin does
with it: a clear error naming the file and the fix, before anything is trained, or a correct read.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.data.utils import read_image as anomalib_read_image
from PIL import Image
from reliability_helpers import fit_maa

from anomalib_maa.callbacks import DataGuard
from anomalib_maa.data import DatasetError, SampleDataset
from anomalib_maa.io import read_image
from anomalib_maa.utils.sample_data import folder_datamodule, make_sample_dataset


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A fresh copy of a 32x32 tree (8 train, 4 + 4 test) that a test may spoil."""
    return make_sample_dataset(tmp_path / "data", n_train=8, n_test_good=4, n_test_defect=4, size=32)


def _guard(datamodule, drop_alpha: bool = True, stage: str = "fit") -> SimpleNamespace:
    """Set the datamodule up and run DataGuard's setup on it, as the trainer does before the first batch."""
    datamodule.setup()
    trainer = SimpleNamespace(datamodule=datamodule, limit_val_batches=1.0)
    DataGuard(drop_alpha=drop_alpha).setup(trainer, None, stage)
    return trainer


def test_truncated_jpeg_in_training_folder_is_named_before_training(tree, tmp_path):
    first = tree / "train" / "good" / "000.png"
    jpeg = tree / "train" / "good" / "cut.jpg"
    Image.open(first).convert("RGB").save(jpeg, quality=95)
    jpeg.write_bytes(jpeg.read_bytes()[:300])
    with pytest.raises(DatasetError, match=r"Cannot read image file .*cut\.jpg") as error:
        fit_maa(tmp_path / "out", tree)
    assert "\n" not in str(error.value)
    assert not list((tmp_path / "out").rglob("*.ckpt"))


def test_mask_of_another_size_is_refused_naming_both_files(tree):
    mask = tree / "ground_truth" / "defect" / "001_mask.png"
    Image.new("L", (10, 10), 255).save(mask)
    with pytest.raises(DatasetError, match=r"Mask .*001_mask\.png is 10x10 pixels but its image .*001\.png is 32x32"):
        _guard(folder_datamodule(tree))


def test_rgba_alpha_is_dropped_like_predict_or_refused_with_the_fix(tree):
    path = tree / "train" / "good" / "003.png"
    rgb = np.asarray(Image.open(path).convert("RGB"))
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]), "RGBA").save(path)
    with pytest.raises(DatasetError, match=r"003\.png has an alpha channel \(mode RGBA\): convert .*predict"):
        _guard(folder_datamodule(tree), drop_alpha=False)
    datamodule = folder_datamodule(tree)
    _guard(datamodule)
    index = [Path(p).name for p in datamodule.train_data.samples.image_path].index("003.png")
    image = datamodule.train_data[index].image
    assert torch.equal(image, read_image(path))  # the reader of anomalib-maa predict
    assert torch.allclose(image, torch.from_numpy(rgb.copy()).permute(2, 0, 1) / 255.0)


def test_cmyk_is_refused(tree):
    path = tree / "test" / "good" / "000.png"
    Image.open(path).convert("CMYK").save(path.with_suffix(".jpg"))
    path.unlink()
    with pytest.raises(DatasetError, match=r"000\.jpg has 4 channels \(mode CMYK\)"):
        _guard(folder_datamodule(tree))


def test_16bit_folder_images_are_read_scaled_not_clipped(tree):
    for path in (tree / "train" / "good").glob("*.png"):
        gray = np.asarray(Image.open(path).convert("L")).astype(np.uint16) * 257
        Image.fromarray(gray).save(path)  # 16-bit: the same picture, values up to 65535
    sample = tree / "train" / "good" / "000.png"
    assert float(anomalib_read_image(sample, as_tensor=True).min()) == 1.0  # anomalib alone: all white
    datamodule = folder_datamodule(tree)
    _guard(datamodule)
    assert isinstance(datamodule.train_data, SampleDataset)
    expected = torch.from_numpy(np.asarray(Image.open(sample)).astype(np.float32) / 65535.0)
    index = [Path(p).name for p in datamodule.train_data.samples.image_path].index("000.png")
    assert torch.allclose(datamodule.train_data[index].image[0], expected)
    assert not isinstance(datamodule.test_data, SampleDataset)  # 8-bit test images keep anomalib's reader


def test_mixed_gray_and_rgb_are_read_as_rgb_and_reported_once(tree, caplog):
    path = tree / "train" / "good" / "002.png"
    Image.open(path).convert("RGB").save(path)
    datamodule = folder_datamodule(tree)
    with caplog.at_level("INFO", logger="anomalib_maa"):
        _guard(datamodule)
        _guard(datamodule, stage="test")
    assert sum("grayscale and 1 colour images" in record.message for record in caplog.records) == 1
    assert all(item.image.shape[0] == 3 for item in (datamodule.train_data[0], datamodule.train_data[2]))


def test_no_validation_set_switches_validation_off(tree):
    trainer = _guard(folder_datamodule(tree, val_split_mode="none"))
    assert trainer.limit_val_batches == 0
    trainer = _guard(folder_datamodule(tree, val_split_mode="from_test"))
    assert trainer.limit_val_batches == 1.0


def test_engine_fit_with_val_split_none_needs_no_trainer_flag(tiny_root, tmp_path):
    run = fit_maa(tmp_path / "out", tiny_root, limit_val_batches=1.0)
    assert run.ckpt.is_file()
    assert run.engine.trainer.limit_val_batches == 0


def test_mvtecad_truncated_png_is_named(tree, tmp_path):
    root = tmp_path / "mvtec"
    shutil.copytree(tree, root / "line")
    (root / "line" / "ground_truth" / "defect").mkdir(exist_ok=True)
    broken = root / "line" / "test" / "good" / "001.png"
    broken.write_bytes(broken.read_bytes()[:80])
    datamodule = MVTecAD(root=root, category="line", num_workers=0, val_split_mode="none")
    with pytest.raises(DatasetError, match=r"test/good/001\.png"):
        _guard(datamodule)


def test_16bit_folder_trains_on_the_scaled_images(tree, tmp_path):
    for path in [*(tree / "train" / "good").glob("*.png"), *(tree / "test").rglob("*.png")]:
        gray = np.asarray(Image.open(path).convert("L")).astype(np.uint16) * 257
        Image.fromarray(gray).save(path)
    run = fit_maa(tmp_path / "out", tree)
    assert isinstance(run.datamodule.train_data, SampleDataset)
    assert float(run.model.post_processor.image_std) > 0  # clipped all-white images would give sigma 0
    metrics = run.engine.test(run.model, datamodule=run.datamodule, verbose=False)[0]
    assert np.isfinite(metrics["image_AUROC"])
