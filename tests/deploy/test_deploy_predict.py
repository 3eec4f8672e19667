"""``predict_folder`` / ``anomalib-maa predict``: CSV, overlays, bad input, no overwrite (issue 7)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalib_maa.cli import main
from anomalib_maa.deploy.predict import CSV_COLUMNS, PredictionError, predict_folder


@pytest.fixture
def messy_folder(tiny_run, tmp_path) -> Path:
    """Two good and one defective image (one in a subfolder), a truncated PNG, a fake JPEG, a text file."""
    folder = tmp_path / "incoming"
    (folder / "line2").mkdir(parents=True)
    test = tiny_run.data / "test"
    shutil.copy(test / "good" / "000.png", folder / "good_000.png")
    shutil.copy(test / "good" / "001.png", folder / "line2" / "good_001.png")
    shutil.copy(test / "defect" / "000.png", folder / "defect_000.png")
    (folder / "corrupt.png").write_bytes((test / "good" / "002.png").read_bytes()[:60])
    (folder / "fake.jpg").write_text("not a picture")
    (folder / "notes.txt").write_text("operator notes")
    return folder


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        return list(reader)


def _check_outputs(output: Path, folder: Path) -> dict[str, dict[str, str]]:
    table = _read_csv(output / "predictions.csv")
    rows = {Path(row["image_path"]).relative_to(folder).as_posix(): row for row in table}
    assert sorted(rows) == ["corrupt.png", "defect_000.png", "fake.jpg", "good_000.png", "line2/good_001.png"]
    for name in ("corrupt.png", "fake.jpg"):
        assert rows[name]["error"].startswith("unreadable image") and rows[name]["score"] == ""
        assert not (output / "overlays" / name).with_suffix(".png").exists()
    for name in ("defect_000.png", "good_000.png", "line2/good_001.png"):
        row = rows[name]
        assert row["error"] == "" and row["label"] in {"0", "1"}
        assert 0.0 < float(row["normalized_score"]) < 1.0 and float(row["score"]) >= 0.0
        overlay = np.asarray(Image.open(output / "overlays" / name))
        assert overlay.shape == (32, 64, 3)  # heat map | mask, at the image's resolution
    return rows


def test_predict_folder_with_checkpoint(tiny_run, messy_folder, tmp_path, caplog):
    output = tmp_path / "out"
    rows = predict_folder(tiny_run.ckpt, messy_folder, output=output, batch_size=2, progress=False)
    assert len(rows) == 5
    assert "corrupt.png" in caplog.text and "fake.jpg" in caplog.text
    checked = _check_outputs(output, messy_folder)
    threshold = float(tiny_run.model.post_processor._image_threshold)
    assert float(checked["good_000.png"]["threshold"]) == pytest.approx(threshold)
    # the same numbers as the Lightning predict loop for the same file
    index = tiny_run.test_images.index(tiny_run.data / "test" / "defect" / "000.png")
    assert float(checked["defect_000.png"]["normalized_score"]) == pytest.approx(
        float(tiny_run.reference["pred_score"][index]), rel=1e-6
    )


def test_predict_folder_with_openvino_matches_checkpoint(tiny_run, exports, messy_folder, tmp_path):
    by_ckpt = predict_folder(tiny_run.ckpt, messy_folder, output=tmp_path / "ckpt", progress=False)
    by_ir = predict_folder(exports.openvino, messy_folder, output=tmp_path / "ir", progress=False)
    _check_outputs(tmp_path / "ir", messy_folder)
    for row_ckpt, row_ir in zip(by_ckpt, by_ir, strict=True):
        assert row_ckpt["label"] == row_ir["label"] and row_ckpt["error"] == row_ir["error"]
        if not row_ckpt["error"]:
            for key in ("score", "normalized_score"):
                assert float(row_ir[key]) == pytest.approx(float(row_ckpt[key]), rel=1e-3)


def test_predict_cli_single_image_and_no_overwrite(tiny_run, messy_folder, tmp_path, capsys):
    output = tmp_path / "cli"
    args = ["predict", "--ckpt_path", str(tiny_run.ckpt), "--data_path", str(messy_folder / "good_000.png")]
    main([*args, "--output", str(output), "--no_progress"])
    rows = _read_csv(output / "predictions.csv")
    assert len(rows) == 1 and (output / "overlays" / "good_000.png").is_file()
    before = (output / "predictions.csv").read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--output", str(output), "--no_progress"])
    assert exit_info.value.code == 2
    assert "exist" in capsys.readouterr().err
    assert (output / "predictions.csv").read_bytes() == before
    main([*args, "--output", str(output), "--overwrite", "--no_progress"])
    assert len(_read_csv(output / "predictions.csv")) == 1


def test_missing_checkpoint_names_it(tiny_run, messy_folder, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "model.ckpt"
    with pytest.raises(FileNotFoundError, match="model.ckpt"):
        predict_folder(missing, messy_folder, output=tmp_path / "out")
    with pytest.raises(SystemExit):
        main(["predict", "--ckpt_path", str(missing), "--data_path", str(messy_folder), "--output", str(tmp_path)])
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_checkpoint_of_another_model_is_refused(tiny_run, messy_folder, tmp_path, capsys):
    from anomalib.models import Padim

    other = Padim(backbone="resnet18", pre_trained=False)
    path = tmp_path / "padim.ckpt"
    torch.save({"state_dict": other.state_dict(), "hyper_parameters": dict(other.hparams)}, path)
    with pytest.raises(PredictionError, match="another model, not MAA"):
        predict_folder(path, messy_folder, output=tmp_path / "out")
    with pytest.raises(SystemExit):
        main(["export", "--ckpt_path", str(path), "--export_type", "torch", "--export_root", str(tmp_path)])
    assert "padim.ckpt" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_wrong_channel_count_is_refused(tiny_run, messy_folder, tmp_path):
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(messy_folder / "line2" / "with_alpha.png")
    with pytest.raises(PredictionError, match=r"with_alpha\.png \(4 channels, RGBA\)"):
        predict_folder(tiny_run.ckpt, messy_folder, output=tmp_path / "out", drop_alpha=False)
    assert not (tmp_path / "out").exists()  # nothing written before the check
    rows = predict_folder(tiny_run.ckpt, messy_folder, output=tmp_path / "out", overlays=False)  # as training
    assert any(row["image_path"].endswith("with_alpha.png") and row["label"] in {0, 1} for row in rows)
    Image.fromarray(rgba, mode="RGBA").convert("CMYK").save(messy_folder / "line2" / "cmyk.jpg")
    with pytest.raises(PredictionError, match=r"cmyk\.jpg \(4 channels, CMYK\)"):
        predict_folder(tiny_run.ckpt, messy_folder, output=tmp_path / "out2")


def test_anomalib_predict_form_is_left_to_anomalib():
    from anomalib_maa.deploy.cli import is_plugin_predict

    assert is_plugin_predict(["--ckpt_path", "m.ckpt", "--data_path", "x"])
    assert is_plugin_predict(["--help"])
    assert not is_plugin_predict(["--model", "maa", "--data", "x", "--ckpt_path", "m.ckpt"])
    assert not is_plugin_predict(["--config", "run.yaml"])


def test_optimized_torch_predictor_keeps_the_model_as_trained_and_its_values(tiny_run):
    from torch import nn
    from torchvision.io import read_image

    from anomalib_maa.deploy.predictors import TorchPredictor

    images = torch.stack([read_image(str(path)).expand(3, -1, -1) / 255.0 for path in tiny_run.test_images])
    plain = TorchPredictor(tiny_run.model, tiny_run.ckpt, optimize=False).predict(images)
    predictor = TorchPredictor(tiny_run.model, tiny_run.ckpt)
    fast = predictor.predict(images)
    folded = [m for m in predictor._torch_model.modules() if isinstance(m, nn.BatchNorm2d)]
    kept = [m for m in tiny_run.model.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert not folded and kept  # the copy is folded, the user's model is not
    np.testing.assert_allclose(fast.score, plain.score, rtol=1e-5)
    np.testing.assert_allclose(fast.anomaly_map, plain.anomaly_map, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(fast.label, plain.label)
    np.testing.assert_allclose(plain.normalized_score, tiny_run.reference["pred_score"].numpy(), rtol=1e-5)
