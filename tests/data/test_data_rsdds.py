"""Rsdds on generated RSDDs strips: tiling, block labels and masks, the cache, the split, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_maa.data import DatasetError, Rsdds, tiling
from anomalib_maa.data.tiling import block_boxes

SIDE, LENGTH = 55, 1250


def _expected_blocks(strips: dict[str, list[tuple[int, int]]], side: int, length: int) -> dict[str, int]:
    """Block key -> label from the defect row ranges, computed without the package."""
    n_blocks = length // side
    expected = {}
    for name, rows in strips.items():
        for k in range(n_blocks):
            top, bottom = k * side, (k + 1) * side
            expected[f"{name}_{k:03d}"] = int(any(start < bottom and stop > top for start, stop in rows))
    return expected


def _datamodule(root: Path, tmp_path: Path, **kwargs) -> Rsdds:
    return Rsdds(root=root, cache_dir=tmp_path / "cache", num_workers=0, **kwargs)


def _keys(dataset) -> set[str]:
    return {Path(p).stem for p in dataset.samples.image_path}


def test_tiling_counts_labels_masks_and_split(rsdds_root, tmp_path, trees) -> None:
    datamodule = _datamodule(rsdds_root, tmp_path, seed=11)
    datamodule.setup()
    expected = _expected_blocks(trees.rsdds_strips(), SIDE, LENGTH)
    assert len(expected) == 4 * 22
    assert sum(expected.values()) == 5

    train, test = datamodule.train_data, datamodule.test_data
    assert len(train) + len(test) == 88
    assert _keys(train) | _keys(test) == set(expected)
    assert not _keys(train) & _keys(test)

    good = sorted(key for key, label in expected.items() if label == 0)
    n_train = 58  # round(0.7 * 83 = 58.1)
    assert _keys(train) == {good[i] for i in np.random.default_rng(11).permutation(len(good))[:n_train]}

    for item in test:
        key = Path(item.image_path).stem
        assert int(item.gt_label) == expected[key]
        assert tuple(item.image.shape) == (3, SIDE, SIDE)
        assert tuple(item.gt_mask.shape) == (SIDE, SIDE)
        assert bool(item.gt_mask.any()) == bool(expected[key])
    assert datamodule.category == "type_II"


def test_block_mask_content(rsdds_root, tmp_path) -> None:
    datamodule = _datamodule(rsdds_root, tmp_path)
    datamodule.setup()
    samples = datamodule.test_data.samples
    samples = samples.set_index(samples.image_path.map(lambda p: Path(p).stem))
    # rail_2 defect rows 590-624, columns 10-39: block 10 holds rows 590-604, block 11 rows 605-624
    for key, rows in (("rail_2_010", 15), ("rail_2_011", 20)):
        mask = np.asarray(Image.open(samples.loc[key, "mask_path"])) > 0
        assert mask.sum(axis=1).astype(bool).sum() == rows
        assert mask.sum(axis=0).astype(bool).sum() == 30


def test_type_one_strips(tmp_path, trees) -> None:
    root = tmp_path / "RSDDs"
    strips = {"rail_1": [(500, 520)], "rail_2": []}
    trees.rsdds(root, rail_type="I", strips=strips, size=(160, 1000))
    datamodule = _datamodule(root, tmp_path, rail_type="I")
    datamodule.setup()
    keys = _keys(datamodule.train_data) | _keys(datamodule.test_data)
    assert keys == set(_expected_blocks(strips, 160, 1000))
    assert len(keys) == 12
    assert int(datamodule.test_data.samples.label_index.sum()) == 1
    assert (tmp_path / "cache" / "type_I" / "manifest.json").is_file()


def test_root_may_be_the_type_folder(rsdds_root, tmp_path) -> None:
    datamodule = _datamodule(rsdds_root / "Type-II RSDDs dataset", tmp_path)
    datamodule.setup()
    assert len(datamodule.train_data) + len(datamodule.test_data) == 88


def test_cache_is_reused_then_rebuilt_when_the_source_changes(rsdds_root, tmp_path, trees, monkeypatch) -> None:
    source_before = trees.snapshot(rsdds_root)
    _datamodule(rsdds_root, tmp_path).setup()
    cache = tmp_path / "cache" / "type_II"
    manifest = json.loads((cache / "manifest.json").read_text())
    assert len(manifest["blocks"]) == 88
    assert len(list((cache / "good").iterdir())) == 83
    assert sorted(p.name for p in (cache / "mask").iterdir()) == sorted(p.name for p in (cache / "defect").iterdir())

    real_cut = tiling._cut

    def no_cut(*_args):
        raise AssertionError("the cache should have been re-used")

    monkeypatch.setattr(tiling, "_cut", no_cut)
    again = _datamodule(rsdds_root, tmp_path)
    again.setup()
    assert len(again.train_data) + len(again.test_data) == 88

    # a new defect in rail_4 block 2 changes the source: the cache is rebuilt
    monkeypatch.setattr(tiling, "_cut", real_cut)
    mask_path = rsdds_root / "Type-II RSDDs dataset" / "GroundTruth" / "rail_4.jpg"
    mask = np.zeros((LENGTH, SIDE), np.uint8)
    mask[120:140, 10:40] = 255
    Image.fromarray(mask).save(mask_path, quality=95)
    rebuilt = _datamodule(rsdds_root, tmp_path)
    rebuilt.setup()
    defective = set(rebuilt.test_data.samples.query("label_index == 1").image_path.map(lambda p: Path(p).stem))
    assert "rail_4_002" in defective
    assert len(defective) == 6
    assert not [p for p in tmp_path.joinpath("cache").iterdir() if p.name.startswith(".")]  # no staging left
    assert set(trees.snapshot(rsdds_root)) == set(source_before)  # the source only changed where we edited it


def test_source_folder_is_never_written(rsdds_root, tmp_path, trees) -> None:
    before = trees.snapshot(rsdds_root)
    datamodule = _datamodule(rsdds_root, tmp_path)
    datamodule.prepare_data()
    datamodule.setup()
    next(iter(datamodule.test_dataloader()))
    assert trees.snapshot(rsdds_root) == before


def test_cache_inside_source_is_refused(rsdds_root) -> None:
    datamodule = Rsdds(root=rsdds_root, cache_dir=rsdds_root / "Type-II RSDDs dataset" / "blocks")
    with pytest.raises(ValueError, match="outside the dataset folder"):
        datamodule.setup()
    assert not (rsdds_root / "Type-II RSDDs dataset" / "blocks").exists()


def test_foreign_cache_folder_is_not_overwritten(rsdds_root, tmp_path) -> None:
    foreign = tmp_path / "cache" / "type_II"
    foreign.mkdir(parents=True)
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not empty and has no manifest"):
        _datamodule(rsdds_root, tmp_path).setup()
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_missing_root(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"Type-II RSDDs dataset/Rail surface images"):
        _datamodule(tmp_path / "nowhere", tmp_path).setup()


def test_missing_type_folder(rsdds_root, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="Type-I RSDDs dataset"):
        _datamodule(rsdds_root, tmp_path, rail_type="I").setup()


def test_empty_image_folder(tmp_path, trees) -> None:
    root = tmp_path / "RSDDs"
    trees.rsdds(root, strips={})
    with pytest.raises(DatasetError, match="No rail images"):
        _datamodule(root, tmp_path).setup()


def test_image_without_mask(rsdds_root, tmp_path) -> None:
    (rsdds_root / "Type-II RSDDs dataset" / "GroundTruth" / "rail_3.jpg").unlink()
    with pytest.raises(DatasetError, match=r"Rail surface images/rail_3\.jpg has no mask"):
        _datamodule(rsdds_root, tmp_path).setup()


def test_mask_without_image(rsdds_root, tmp_path) -> None:
    (rsdds_root / "Type-II RSDDs dataset" / "Rail surface images" / "rail_1.jpg").unlink()
    with pytest.raises(DatasetError, match=r"Mask .*GroundTruth/rail_1\.jpg has no image"):
        _datamodule(rsdds_root, tmp_path).setup()


def test_truncated_strip(rsdds_root, tmp_path, trees) -> None:
    trees.truncate(rsdds_root / "Type-II RSDDs dataset" / "Rail surface images" / "rail_2.jpg")
    with pytest.raises(DatasetError, match=r"rail_2\.jpg"):
        _datamodule(rsdds_root, tmp_path).setup()
    assert not (tmp_path / "cache" / "type_II").exists()


def test_mask_of_another_size(rsdds_root, tmp_path) -> None:
    Image.new("L", (SIDE, 1000)).save(rsdds_root / "Type-II RSDDs dataset" / "GroundTruth" / "rail_4.jpg")
    with pytest.raises(DatasetError, match=r"GroundTruth/rail_4\.jpg is 55x1000 pixels"):
        _datamodule(rsdds_root, tmp_path).setup()


def test_bad_rail_type(rsdds_root) -> None:
    with pytest.raises(ValueError, match="rail_type"):
        Rsdds(root=rsdds_root, rail_type="III")


@pytest.mark.parametrize(
    ("size", "boxes"),
    [
        ((55, 120), [(0, 0, 55, 55), (0, 55, 55, 110)]),
        ((120, 55), [(0, 0, 55, 55), (55, 0, 110, 55)]),
        ((40, 40), [(0, 0, 40, 40)]),
    ],
)
def test_block_boxes(size: tuple[int, int], boxes: list) -> None:
    assert block_boxes(*size) == boxes
