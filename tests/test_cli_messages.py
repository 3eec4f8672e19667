"""The anomalib-maa command on a user's own folder: no extra flags, one-line errors, each log line once."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from anomalib_maa.console import is_cli_process, one_line_error, unknown_model_message
from anomalib_maa.errors import InputError

MAA = [sys.executable, "-m", "anomalib_maa.cli"]
TINY_MAA = ["--model.image_size", "[32, 32]", "--model.n_features", "4", "--model.max_epochs", "1"]
PAUTA = "anomalib_maa.post_processing.PautaPostProcessor"


def _data_args(root: Path) -> list[str]:
    """README's Folder form: no --trainer.limit_val_batches."""
    return [
        "--data", "anomalib.data.Folder", "--data.name", "tiny", "--data.root", str(root),
        "--data.normal_dir", "train/good", "--data.abnormal_dir", "test/defect",
        "--data.normal_test_dir", "test/good", "--data.mask_dir", "ground_truth/defect",
        "--data.val_split_mode", "none", "--data.num_workers", "0",
        "--data.train_batch_size", "4", "--data.eval_batch_size", "4",
    ]  # fmt: skip


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def _messages(output: str) -> list[str]:
    """Log messages without their time stamps (``<time> - <name> - <level> - <message>``)."""
    return [line.split(" - ", 3)[3] for line in output.splitlines() if line.count(" - ") >= 3]


def test_maa_train_without_config_or_validation_flag_logs_each_line_once(tiny_root, tmp_path):
    command = [*MAA, "train", "--model", "maa", *TINY_MAA, *_data_args(tiny_root), "--default_root_dir", "out"]
    result = _run(command, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert list((tmp_path / "out").rglob("latest/weights/lightning/model.ckpt"))
    messages = _messages(output)
    assert output.count("checked 16 images") == 1, output[-3000:]  # in any handler's format
    assert output.count("Pauta threshold from") == 1
    repeated = [first for first, second in zip(messages, messages[1:], strict=False) if first == second]
    assert not repeated, repeated  # two handlers print each line twice in a row
    assert "FutureWarning" not in output


def test_stock_anomalib_train_with_val_split_none_needs_no_flag(tiny_root, tmp_path):
    anomalib = Path(sys.executable).with_name("anomalib")
    command = [str(anomalib), "train", "--model", "anomalib_maa.Maa", *TINY_MAA, *_data_args(tiny_root)]
    result = _run([*command, "--default_root_dir", "out"], tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert list((tmp_path / "out").rglob("*.ckpt"))


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--model", "maa", "--model.post_processor", PAUTA, "--model.post_processor.false_alarm_rate", "2"],
            "error: false_alarm_rate must lie strictly between 0",
        ),
        (["--model", "maa", "--model.gamma", "-1"], "error: gamma must be a finite number >= 0"),
        (
            ["--model", "maa", "--model.gamma", "2", "--model.post_processor", PAUTA],
            "error: gamma (2.0) is the shorthand of the default post-processor: give it to the post-processor passed",
        ),
        (["--model", "maaa"], "error: Unknown model 'maaa': did you mean 'maa'?"),
    ],
)
def test_bad_arguments_print_one_line(tiny_root, tmp_path, args, line):
    result = _run([*MAA, "fit", *args, *_data_args(tiny_root), "--default_root_dir", "out"], tmp_path)
    assert result.returncode == 2
    assert line in result.stderr.splitlines()[-1], result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("v*"))


def test_corrupt_image_prints_one_line_naming_it_and_leaves_no_run_folder(tiny_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    image = root / "test" / "defect" / "002.png"
    image.write_bytes(image.read_bytes()[:90])
    result = _run([*MAA, "fit", "--model", "maa", *TINY_MAA, *_data_args(root), "--default_root_dir", "out"], tmp_path)
    assert result.returncode == 2
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: Cannot read image file ") and last.count("002.png") == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert not list((tmp_path / "out").rglob("v[0-9]*"))


def test_one_line_error_finds_the_input_error_jsonargparse_quoted():
    error = InputError("gamma must be a finite number >= 0, got -1.0.")
    wrapped = ValueError(f"Does not validate\n  Errors:\n    - {error}\n  Given value: ...")
    assert one_line_error(wrapped) == str(error)
    assert one_line_error(RuntimeError("a bug")) is None
    assert one_line_error(FileNotFoundError("Ksdd dataset root not found: /x")) == "Ksdd dataset root not found: /x"


def test_model_name_suggestions():
    known = ["Maa", "Padim", "Patchcore"]
    assert unknown_model_message("maaa", known) == "Unknown model 'maaa': did you mean 'maa'?"
    assert unknown_model_message("padim", known) is None
    assert unknown_model_message("anomalib.models.Padim", known) is None
    assert "known models: maa, padim, patchcore" in unknown_model_message("xyz", known)


def test_only_the_command_filters_warnings():
    assert is_cli_process(["/venv/bin/anomalib-maa", "train"])
    assert is_cli_process(["python", "-m", "anomalib_maa.cli", "fit"])
    assert not is_cli_process(["python", "-m", "pytest", "-q"])
    assert not is_cli_process()  # this pytest process


def test_configure_logging_keeps_one_handler_and_quiets_onnx_passes():
    import logging

    from anomalib_maa.console import configure_logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure_logging()
        configure_logging()  # twice: still no second handler
        assert len(root.handlers) == max(1, len(handlers))
        assert not logging.getLogger("onnx_ir.passes.common.initializer_deduplication").isEnabledFor(logging.INFO)
        assert logging.getLogger("anomalib_maa").isEnabledFor(logging.INFO)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name in ("onnx_ir", "onnxscript"):
            logging.getLogger(name).setLevel(logging.NOTSET)


def test_padim_through_the_command_is_guarded_too(tiny_root, tmp_path):
    """The command adds DataGuard and FailedRunCleanup for other models: a mask of the wrong size, in one line."""
    from PIL import Image

    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    Image.new("L", (8, 8), 255).save(root / "ground_truth" / "defect" / "001_mask.png")
    model = ["--model", "Padim", "--model.pre_trained", "false", "--model.backbone", "resnet18"]
    result = _run([*MAA, "fit", *model, *_data_args(root), "--default_root_dir", "out"], tmp_path)
    assert result.returncode == 2, (result.stdout + result.stderr)[-3000:]
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: Mask ") and "001_mask.png is 8x8 pixels but its image" in last, last
    assert not list((tmp_path / "out").rglob("v[0-9]*"))
