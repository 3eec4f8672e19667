"""Failed runs lose nothing and move nothing: one good run, then four that fail early, into one root folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from reliability_helpers import digest, fit_maa

from anomalib_maa.callbacks import discard_failed_run
from anomalib_maa.data import DatasetError, Ksdd


def _empty_tree(root: Path) -> Path:
    for folder in ("train/good", "test/good", "test/defect", "ground_truth/defect"):
        (root / folder).mkdir(parents=True)
    return root


def test_four_failed_runs_leave_no_folder_and_keep_latest_on_the_model(tiny_root, tmp_path):
    out = tmp_path / "results"
    good = fit_maa(out, tiny_root)
    run_folder = out / "Maa" / "sample"
    before = digest(run_folder / "v0")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_root, corrupt)
    image = corrupt / "train" / "good" / "003.png"
    image.write_bytes(image.read_bytes()[:70])
    failing = [
        (tmp_path / "missing", FileNotFoundError, r"missing"),
        (_empty_tree(tmp_path / "empty"), RuntimeError, r"Found 0 .*images in .*empty"),
        (corrupt, DatasetError, r"Cannot read image file .*003\.png"),
    ]
    for root, error, message in failing:
        with pytest.raises(error, match=message):
            fit_maa(out, root)
    with pytest.raises(FileNotFoundError, match="Ksdd dataset root not found"):
        fit_maa(out, None, datamodule=Ksdd(root=tmp_path / "no_ksdd", num_workers=0))
    assert sorted(path.name for path in run_folder.iterdir()) == ["latest", "v0"]
    assert os.readlink(run_folder / "latest") == str(good.run_dir)
    assert (run_folder / "latest" / "weights" / "lightning" / "model.ckpt").is_file()
    assert digest(run_folder / "v0") == before
    assert not any(path.name.startswith("v") for path in (out / "Maa" / "Ksdd").rglob("*"))


def test_a_failed_run_after_a_failed_first_run_points_latest_back(tmp_path):
    root = tmp_path / "Maa" / "line"
    (root / "v0" / "weights").mkdir(parents=True)
    (root / "v0" / "weights" / "model.ckpt").write_bytes(b"x")
    (root / "v1").mkdir()
    (root / "v1" / "notes.txt").write_text("kept: not an empty run")
    (root / "v2").mkdir()
    (root / "v2" / "config.yaml").write_text("model: maa")
    (root / "latest").symlink_to(root / "v2", target_is_directory=True)
    assert "removed its empty folder" in discard_failed_run(root / "v2")
    assert not (root / "v2").exists()
    assert os.readlink(root / "latest") == str(root / "v0")
    (root / "latest").unlink()
    (root / "latest").symlink_to(root / "v1", target_is_directory=True)
    discard_failed_run(root / "v1")  # a folder holding other files is kept, latest still goes back to the model
    assert (root / "v1" / "notes.txt").is_file()
    assert os.readlink(root / "latest") == str(root / "v0")
    assert discard_failed_run(root / "v0") is None  # not what latest points to
    assert discard_failed_run(tmp_path) is None  # not a version folder
