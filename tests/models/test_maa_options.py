"""Options beyond the paper (cosine learning-rate decay, flip augmentation, tiles) and the threshold shorthand."""

from __future__ import annotations

import pytest
import torch
from anomalib.engine import Engine
from lightning.pytorch import seed_everything

from anomalib_maa import Maa, PautaPostProcessor
from anomalib_maa.errors import InputError
from anomalib_maa.post_processing import DEFAULT_GAMMA
from anomalib_maa.utils.sample_data import folder_datamodule

TINY = {"image_size": (32, 32), "n_features": 2, "feature_layer": 2, "lr": 1e-3, "visualizer": False}


def _fit(sample_root, tmp_path, **kwargs) -> tuple[Maa, Engine]:
    seed_everything(0)
    model = Maa(**TINY, **kwargs)
    engine = Engine(
        accelerator="cpu", default_root_dir=tmp_path, limit_val_batches=0, enable_progress_bar=False, logger=False
    )
    engine.fit(model, datamodule=folder_datamodule(sample_root, batch_size=8))
    return model, engine


def test_cosine_schedule_decays_both_learning_rates_to_zero(sample_root, tmp_path):
    model, engine = _fit(sample_root, tmp_path, max_epochs=3, lr_schedule="cosine")
    for optimizer in engine.trainer.optimizers:
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    schedulers = model.lr_schedulers()
    assert [s.last_epoch for s in schedulers] == [3, 3]


def test_constant_schedule_keeps_the_learning_rate(sample_root, tmp_path):
    model, engine = _fit(sample_root, tmp_path, max_epochs=2)
    assert [opt.param_groups[0]["lr"] for opt in engine.trainer.optimizers] == [1e-3, 1e-3]
    assert model.lr_schedulers() is None


def test_flip_augmentation_changes_training_and_stays_seeded(sample_root, tmp_path):
    plain, _ = _fit(sample_root, tmp_path / "plain", max_epochs=1)
    flipped, _ = _fit(sample_root, tmp_path / "flip", max_epochs=1, augment_flips=True)
    again, _ = _fit(sample_root, tmp_path / "again", max_epochs=1, augment_flips=True)
    weights = [m.model.generator.encoder.state_dict() for m in (plain, flipped, again)]
    key = next(iter(weights[0]))
    assert not torch.equal(weights[0][key], weights[1][key])
    for name in weights[1]:
        torch.testing.assert_close(weights[1][name], weights[2][name], rtol=0, atol=0)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="Unknown lr_schedule"):
        Maa(**TINY, lr_schedule="step")


def test_gamma_is_the_default_post_processors_shorthand_and_the_rest_is_the_post_processors():
    assert Maa(**TINY).post_processor.gamma == DEFAULT_GAMMA
    assert Maa(**TINY, gamma=2.0).post_processor.gamma == 2.0
    assert Maa.configure_post_processor().method == "normal"
    given = PautaPostProcessor(false_alarm_rate=0.1, method="lognormal")
    assert Maa(**TINY, post_processor=given).post_processor is given
    with pytest.raises(InputError, match=r"gamma \(2.0\) is the shorthand of the default post-processor"):
        Maa(**TINY, gamma=2.0, post_processor=given)
    with pytest.raises(InputError, match="Give either gamma"):
        PautaPostProcessor(gamma=2.0, false_alarm_rate=0.1)


def test_checkpoint_that_kept_the_default_gamma_next_to_a_rate_loads_with_the_rate(tmp_path):
    model = Maa(**TINY, post_processor=PautaPostProcessor(false_alarm_rate=0.1, method="lognormal"))
    # what Maa saved when it took the threshold options itself, before gamma and the rate were exclusive
    hparams = {**dict(model.hparams), "gamma": 3.0, "false_alarm_rate": 0.1, "threshold_method": "lognormal"}
    path = tmp_path / "old.ckpt"
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": hparams, "pytorch-lightning_version": "2.6.0"}
    model.on_save_checkpoint(checkpoint)  # the post-processor's own configuration, as Lightning stores it
    torch.save(checkpoint, path)
    loaded = Maa.load_from_checkpoint(path)
    assert loaded.post_processor.false_alarm_rate == 0.1
    assert loaded.post_processor.method == "lognormal"
    assert Maa.load_from_checkpoint(path, gamma=2.0).post_processor.gamma == 2.0


def test_tiled_training_uses_tile_sized_crops_and_scores_whole_images(sample_root, tmp_path):
    seed_everything(0)
    model = Maa(**{**TINY, "image_size": (64, 64)}, tile_size=32, max_epochs=1)
    engine = Engine(
        accelerator="cpu", default_root_dir=tmp_path, limit_val_batches=0, enable_progress_bar=False, logger=False
    )
    datamodule = folder_datamodule(sample_root, batch_size=8)
    engine.fit(model, datamodule=datamodule)
    assert model.model.generator.memory.h.shape[-2:] == (4, 4)  # 32 / 8: trained on 32x32 crops
    predictions = engine.predict(model, datamodule=datamodule, return_predictions=True)
    batch = predictions[0]
    assert batch.anomaly_map.shape[-2:] == (64, 64)
    assert batch.pred_score.shape == (len(batch.image_path),)
    assert torch.isfinite(batch.pred_score).all()
