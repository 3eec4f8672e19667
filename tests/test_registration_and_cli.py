"""Registration with anomalib, the stock CLI with the class path, and the anomalib-maa command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from anomalib.engine import Engine
from anomalib.models import get_model
from anomalib.models.components import AnomalibModule

from anomalib_maa import Maa
from anomalib_maa.utils.sample_data import folder_datamodule

REPO = Path(__file__).resolve().parents[1]


def _data_args(root: Path) -> list[str]:
    return [
        "--data", "anomalib.data.Folder", "--data.name", "tiny", "--data.root", str(root),
        "--data.normal_dir", "train/good", "--data.abnormal_dir", "test/defect",
        "--data.normal_test_dir", "test/good", "--data.mask_dir", "ground_truth/defect",
        "--data.val_split_mode", "none", "--data.num_workers", "0",
        "--data.train_batch_size", "4", "--data.eval_batch_size", "4",
    ]  # fmt: skip


def test_get_model_returns_maa_direct_subclass(tiny_root, tmp_path):
    model = get_model("maa", image_size=(32, 32), n_features=4, max_epochs=1)
    assert type(model) is Maa
    assert Maa in AnomalibModule.__subclasses__()
    engine = Engine(accelerator="cpu", default_root_dir=tmp_path, limit_val_batches=0, enable_progress_bar=False)
    datamodule = folder_datamodule(tiny_root, batch_size=4)
    engine.fit(model, datamodule=datamodule)
    assert "image_AUROC" in engine.test(model, datamodule=datamodule)[0]


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _tested(root_dir: Path) -> bool:
    return any(root_dir.rglob("*.ckpt")) and any(root_dir.rglob("images/*/*.png"))


def test_stock_cli_with_class_path(tiny_root, tmp_path):
    anomalib = Path(sys.executable).with_name("anomalib")
    command = [str(anomalib), "train", "--model", "anomalib_maa.Maa", "--model.image_size", "[32, 32]"]
    command += ["--model.n_features", "4", "--model.max_epochs", "1", "--trainer.limit_val_batches", "0"]
    _run([*command, *_data_args(tiny_root), "--default_root_dir", str(tmp_path)], tmp_path)
    assert _tested(tmp_path)


@pytest.mark.parametrize("spelling", ["maa", "MAA"])
def test_anomalib_maa_cli_with_short_name_in_yaml(tiny_root, tmp_path, spelling):
    config = yaml.safe_load((REPO / "configs" / "maa_cpu.yaml").read_text())
    config["model"]["class_path"] = spelling
    config["model"]["init_args"].update({"image_size": [64, 32], "tile_size": [32, 32], "max_epochs": 1})
    config_path = tmp_path / "maa.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "anomalib_maa.cli", "train", "--config", str(config_path)]
    _run([*command, *_data_args(tiny_root), "--default_root_dir", str(tmp_path / "run")], tmp_path)
    assert _tested(tmp_path / "run")


def test_anomalib_maa_cli_model_flag(tiny_root, tmp_path):
    command = [sys.executable, "-m", "anomalib_maa.cli", "train", "--model", "maa", "--model.image_size", "[32, 32]"]
    command += ["--model.n_features", "4", "--model.max_epochs", "1", "--trainer.limit_val_batches", "0"]
    _run([*command, *_data_args(tiny_root), "--default_root_dir", str(tmp_path)], tmp_path)
    assert _tested(tmp_path)


def test_unknown_model_name_still_fails(tiny_root, tmp_path):
    command = [sys.executable, "-m", "anomalib_maa.cli", "fit", "--model", "nosuchmodel"]
    result = subprocess.run(
        [*command, *_data_args(tiny_root)], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode != 0
    assert "nosuchmodel" in (result.stdout + result.stderr).lower()


def test_readme_folder_command_needs_no_size_and_derives_it(tiny_root, tmp_path):
    """README's "Train on your data" command with the CPU preset, shortened by one trainer flag."""
    command = [sys.executable, "-m", "anomalib_maa.cli", "train", "--config", str(REPO / "configs" / "maa_cpu.yaml")]
    command += ["--trainer.max_epochs", "1"]
    result = _run([*command, *_data_args(tiny_root), "--default_root_dir", str(tmp_path / "run")], tmp_path)
    assert _tested(tmp_path / "run")
    logged = result.stdout + result.stderr
    assert "MAA sizes from 8 training images (median 32x32): image_size=[128, 128]" in logged
    assert "in_channels=1" in logged or "in_channels=3" in logged
    assert "MAA trains" not in logged, "--trainer.max_epochs 1 wins over the step budget"
