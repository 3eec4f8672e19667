"""Mcsd on a generated line-data tree: counts, labels, masks, the split, from_dir validation and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_maa.data import DatasetError, Mcsd


def _names(dataset) -> set[str]:
    return {Path(p).name for p in dataset.samples.image_path}


def test_counts_labels_masks_and_split(mcsd_root) -> None:
    datamodule = Mcsd(root=mcsd_root, subset="groove", num_workers=0, seed=5)
    datamodule.setup()
    good = sorted(f"good/g{i:03d}.png" for i in range(10))
    expected_train = {Path(good[i]).name for i in np.random.default_rng(5).permutation(10)[:7]}
    assert _names(datamodule.train_data) == expected_train
    test = datamodule.test_data
    assert len(test) == 3 + 3
    assert _names(test) == {f"d{i:03d}.jpg" for i in range(3)} | ({Path(g).name for g in good} - expected_train)
    assert datamodule.task == "segmentation"
    assert datamodule.category == "groove"
    for item in test:
        defective = Path(item.image_path).parent.name == "defect"
        assert int(item.gt_label) == int(defective)
        assert int(item.gt_mask.sum()) == (64 if defective else 0)


def test_without_masks_is_classification(tmp_path, trees) -> None:
    trees.mcsd(tmp_path, subset="hook", masks=False)
    datamodule = Mcsd(root=tmp_path, subset="hook", num_workers=0)
    datamodule.setup()
    assert datamodule.task == "classification"
    assert len(datamodule.train_data) == 7
    assert all(item.gt_mask is None for item in datamodule.test_data)


def test_new_line_name_and_ignored_files(tmp_path, trees) -> None:
    folder = trees.mcsd(tmp_path, subset="line7_brush", n_good=4, n_defect=1)
    (folder / "good" / "Thumbs.db").write_bytes(b"junk")
    (folder / "good" / "notes.txt").write_text("shift B")
    (folder / "good" / ".hidden.png").write_bytes(b"junk")
    datamodule = Mcsd(root=tmp_path, subset="line7_brush", num_workers=0)
    datamodule.setup()
    assert len(datamodule.train_data) + len(datamodule.test_data) == 5


@pytest.mark.parametrize("subset", ["", "../groove", "a/b", ".."])
def test_subset_must_be_a_folder_name(mcsd_root, subset: str) -> None:
    with pytest.raises(ValueError, match="subset"):
        Mcsd(root=mcsd_root, subset=subset)


def test_missing_root(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere.*nowhere/cylinder/good"):
        Mcsd(root=tmp_path / "nowhere", subset="cylinder").setup()


def test_missing_subset_lists_present_ones(mcsd_root) -> None:
    with pytest.raises(FileNotFoundError, match=r"hook.*subsets present: \['groove'\]"):
        Mcsd(root=mcsd_root, subset="hook").setup()


def test_empty_good_folder(tmp_path, trees) -> None:
    trees.mcsd(tmp_path, n_good=0)
    with pytest.raises(DatasetError, match=r"No images in .*groove/good"):
        Mcsd(root=tmp_path).setup()


def test_empty_defect_folder(tmp_path, trees) -> None:
    trees.mcsd(tmp_path, n_defect=0)
    with pytest.raises(DatasetError, match=r"No images in .*groove/defect"):
        Mcsd(root=tmp_path).setup()


def test_missing_defect_folder(tmp_path, trees) -> None:
    folder = trees.mcsd(tmp_path, n_defect=0, masks=False)
    (folder / "defect").rmdir()
    with pytest.raises(FileNotFoundError, match=r"groove/defect"):
        Mcsd(root=tmp_path).setup()


def test_image_without_mask(mcsd_root) -> None:
    (mcsd_root / "groove" / "mask" / "d001.png").unlink()
    with pytest.raises(DatasetError, match=r"defect/d001\.jpg has no mask"):
        Mcsd(root=mcsd_root).setup()


def test_mask_without_image(mcsd_root) -> None:
    (mcsd_root / "groove" / "defect" / "d002.jpg").unlink()
    with pytest.raises(DatasetError, match=r"Mask .*mask/d002\.png has no image"):
        Mcsd(root=mcsd_root).setup()


def test_two_images_with_one_stem(mcsd_root) -> None:
    Image.new("RGB", (32, 32)).save(mcsd_root / "groove" / "defect" / "d000.png")
    with pytest.raises(DatasetError, match=r"same name stem.*d000"):
        Mcsd(root=mcsd_root).setup()


def test_truncated_image(mcsd_root, trees) -> None:
    trees.truncate(mcsd_root / "groove" / "good" / "g004.png")
    with pytest.raises(DatasetError, match=r"Cannot read image file .*good/g004\.png"):
        Mcsd(root=mcsd_root).setup()


def test_mask_of_another_size(mcsd_root) -> None:
    Image.new("L", (16, 32)).save(mcsd_root / "groove" / "mask" / "d000.png")
    with pytest.raises(DatasetError, match=r"mask/d000\.png is 16x32 pixels but its image .*d000\.jpg is 32x32"):
        Mcsd(root=mcsd_root).setup()


def test_val_from_dir(mcsd_root, trees) -> None:
    trees.mcsd(mcsd_root / "groove", subset="val", n_good=2, n_defect=1)
    datamodule = Mcsd(root=mcsd_root, num_workers=0, val_split_mode="from_dir")
    datamodule.setup()
    assert {Path(p).parent.parent.name for p in datamodule.val_data.samples.image_path} == {"val"}
    assert len(datamodule.val_data) == 3
    assert len(datamodule.train_data) == 7  # val/ is not part of the protocol split
    batch = next(iter(datamodule.val_dataloader()))
    assert batch.gt_mask.shape == (3, 32, 32)


def test_val_from_dir_without_val_folder(mcsd_root) -> None:
    with pytest.raises(FileNotFoundError, match=r"groove/val/good"):
        Mcsd(root=mcsd_root, val_split_mode="from_dir").setup()


def test_source_folder_is_never_written(mcsd_root, trees) -> None:
    before = trees.snapshot(mcsd_root)
    datamodule = Mcsd(root=mcsd_root, num_workers=0)
    datamodule.prepare_data()
    datamodule.setup()
    for batch in datamodule.test_dataloader():
        assert batch.image.shape[1:] == (3, 32, 32)
    assert trees.snapshot(mcsd_root) == before
