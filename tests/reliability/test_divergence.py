"""A diverging GAN stops with a message naming epoch and step; nothing NaN is written or silently labelled."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from anomalib.engine import Engine
from reliability_helpers import MODEL_ARGS, digest, fit_maa

import anomalib_maa.models.maa.torch_model as torch_model
from anomalib_maa import Maa
from anomalib_maa.callbacks import DivergenceError
from anomalib_maa.utils.sample_data import folder_datamodule

_FMD = torch_model.frechet_markov_distance


def _checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.ckpt"))


def _nan_fmd_when(condition):
    """An FMD that returns NaN for the first image of a batch while ``condition()`` holds."""

    def fmd(*args, **kwargs):
        scores = _FMD(*args, **kwargs)
        if condition():
            scores = scores.clone()
            scores[0] = float("nan")
        return scores

    return fmd


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_last_checkpoint(tiny_root, tmp_path):
    model = Maa(**MODEL_ARGS, max_epochs=3)
    original = model.generator_loss.forward

    def poisoned(*args, **kwargs):
        loss, parts = original(*args, **kwargs)
        return (loss * float("nan") if model.trainer.current_epoch == 1 else loss), parts

    model.generator_loss.forward = poisoned
    with pytest.raises(DivergenceError, match=r"epoch 1, batch 0 \(global step \d+\): the generator loss is nan"):
        fit_maa(tmp_path, tiny_root, model=model)
    (checkpoint,) = _checkpoints(tmp_path)  # epoch 0's file, not overwritten by the NaN epoch
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["epoch"] == 0
    weights = {key: value for key, value in saved["state_dict"].items() if key.startswith("model.")}
    assert weights and all(torch.isfinite(value).all() for value in weights.values() if value.is_floating_point())


def test_nan_weights_at_epoch_end_stop_before_threshold_and_checkpoint(tiny_root, tmp_path):
    model = Maa(**MODEL_ARGS, max_epochs=1)
    original = model.training_step

    def poisoned(batch, batch_idx):
        output = original(batch, batch_idx)
        if batch_idx == 1:  # the last batch: a finite loss, then an update that left NaN weights
            with torch.no_grad():
                model.model.generator.decoder.layers[-2].weight[0, 0, 0, 0] = float("nan")
        return output

    model.training_step = poisoned
    with pytest.raises(DivergenceError, match=r"weights are not finite at the end of epoch 0.*generator\.decoder"):
        fit_maa(tmp_path, tiny_root, model=model)
    assert _checkpoints(tmp_path) == []
    assert not model.post_processor.is_fitted


def test_checkpoint_with_nan_weights_is_not_written(runs, tmp_path):
    b = runs.b
    before = digest(b.run_dir)
    weight = b.model.model.discriminator.head[0].weight
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight[0, 0, 0, 0] = float("inf")
        for target in (tmp_path / "new.ckpt", b.ckpt):
            with pytest.raises(DivergenceError, match=r"Refusing to write.*discriminator\.head\.0\.weight"):
                b.engine.trainer.save_checkpoint(target)
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    assert not (tmp_path / "new.ckpt").exists()
    assert digest(b.run_dir) == before


def test_training_images_scoring_nan_refuse_the_checkpoint(tiny_root, tmp_path, monkeypatch):
    model = Maa(**MODEL_ARGS, max_epochs=1)
    calls = iter(range(1000))  # FMD runs only in eval mode: here, when the threshold scores the 8 training images
    monkeypatch.setattr(torch_model, "frechet_markov_distance", _nan_fmd_when(lambda: next(calls) == 0))
    with pytest.raises(DivergenceError, match=r"fitted on 7 finite scores, but the training set holds 8 images"):
        fit_maa(tmp_path, tiny_root, model=model)
    assert _checkpoints(tmp_path) == []


def test_nan_validation_score_stops_training(tiny_root, tmp_path, monkeypatch):
    model = Maa(**MODEL_ARGS, max_epochs=2)
    monkeypatch.setattr(torch_model, "frechet_markov_distance", _nan_fmd_when(lambda: True))
    with pytest.raises(DivergenceError, match=r"non-finite pred_score .* for .*\.png in epoch 0 \(global step \d+\)"):
        datamodule = folder_datamodule(tiny_root, batch_size=4, val_split_mode="same_as_test")
        fit_maa(tmp_path, None, model=model, datamodule=datamodule, limit_val_batches=1)
    assert _checkpoints(tmp_path) == []


def test_nan_test_score_is_an_error_naming_the_image(runs, tmp_path, monkeypatch):
    a = runs.a
    monkeypatch.setattr(torch_model, "frechet_markov_distance", _nan_fmd_when(lambda: True))
    engine = Engine(accelerator="cpu", default_root_dir=tmp_path, enable_progress_bar=False, logger=False)
    first = re.escape(str(a.datamodule.test_data.samples["image_path"].iloc[0]))
    with pytest.raises(DivergenceError, match=rf"non-finite pred_score .*for {first}.* in test batch 0"):
        engine.test(a.model, datamodule=a.datamodule, verbose=False)


def test_testing_without_a_fitted_threshold_is_refused(tiny_root, tmp_path):
    model = Maa(**MODEL_ARGS, max_epochs=1)
    engine = Engine(accelerator="cpu", default_root_dir=tmp_path, enable_progress_bar=False, logger=False)
    with pytest.raises(DivergenceError, match="no threshold statistics, so every image would be labelled normal"):
        engine.test(model, datamodule=folder_datamodule(tiny_root, batch_size=4), verbose=False)
