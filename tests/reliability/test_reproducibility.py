"""Same seed, same run: A/B split, weights after one epoch and test scores, through Engine and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from anomalib.cli.cli import AnomalibCLI
from reliability_helpers import MODEL_ARGS, fit_maa, max_state_difference, raw_test_scores

from anomalib_maa import Maa
from anomalib_maa.cli import _seeded_cli_class, main
from anomalib_maa.utils.sample_data import folder_datamodule


def _cli_args(root: Path, out: Path, seed: int | None) -> list[str]:
    args = [
        "fit", "--model", "anomalib_maa.Maa", "--model.image_size", "[32, 32]", "--model.n_features", "4",
        "--model.max_epochs", "1", "--model.visualizer", "false",
        "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.logger", "false",
        "--default_root_dir", str(out),
        "--data", "anomalib.data.Folder", "--data.name", "sample", "--data.root", str(root),
        "--data.normal_dir", "train/good", "--data.abnormal_dir", "test/defect",
        "--data.normal_test_dir", "test/good", "--data.mask_dir", "ground_truth/defect",
        "--data.val_split_mode", "none", "--data.num_workers", "0", "--data.seed", "0",
        "--data.train_batch_size", "4", "--data.eval_batch_size", "4",
    ]  # fmt: skip
    return args + (["--seed_everything", str(seed)] if seed is not None else [])


def test_engine_same_seed_same_split_weights_and_scores(runs):
    a, b = runs.a, runs.b
    assert a.model.ab_batches.set_a == b.model.ab_batches.set_a
    assert 0 < len(a.model.ab_batches.set_a) < len(a.datamodule.train_data)
    assert max_state_difference(a.model, b.model) <= 1e-6
    torch.testing.assert_close(
        raw_test_scores(b.model, b.datamodule), raw_test_scores(a.model, a.datamodule), rtol=0, atol=1e-6
    )
    assert a.metrics == b.metrics


@pytest.mark.forks
def test_dataloader_workers_do_not_change_the_weights(runs, tiny_root, tmp_path):
    datamodule = folder_datamodule(tiny_root, batch_size=4, num_workers=2)
    run = fit_maa(tmp_path, None, datamodule=datamodule, epochs=1)
    assert max_state_difference(run.model, runs.a.model) <= 1e-6


def _first_weight(model: Maa) -> torch.Tensor:
    return model.model.generator.encoder.layers[0][0].weight.detach().clone()


def _seeded_reference(seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return _first_weight(Maa(**MODEL_ARGS, max_epochs=1))


def test_stock_anomalib_cli_ignores_seed_everything(tiny_root, tmp_path):
    """anomalib 2.7 trap: ``--seed_everything 7`` is parsed but never applied; the RNG state left before wins."""
    torch.manual_seed(123)
    cli = AnomalibCLI(_cli_args(tiny_root, tmp_path, seed=7), run=False)
    assert not torch.equal(_first_weight(cli.model), _seeded_reference(7))


def test_maa_cli_applies_seed_everything(tiny_root, tmp_path):
    torch.manual_seed(123)
    cli = _seeded_cli_class()(_cli_args(tiny_root, tmp_path, seed=7), run=False)
    torch.testing.assert_close(_first_weight(cli.model), _seeded_reference(7), rtol=0, atol=0)


def test_maa_cli_fit_gives_the_engine_weights(runs, tiny_root, tmp_path):
    main(_cli_args(tiny_root, tmp_path, seed=0))
    checkpoints = list(tmp_path.rglob("*.ckpt"))
    assert len(checkpoints) == 1
    from_cli = Maa.load_from_checkpoint(checkpoints[0], weights_only=True)
    assert max_state_difference(from_cli, runs.a.model) <= 1e-6
