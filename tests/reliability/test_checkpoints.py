"""Checkpoints: safe loading, what they carry, exact resume, and no run overwriting another."""

from __future__ import annotations

import pytest
import torch
from reliability_helpers import digest, fit_maa, max_state_difference, raw_test_scores

from anomalib_maa import Maa
from anomalib_maa.callbacks import ReusedTrainerError


def test_weights_only_load_carries_memory_pauta_and_preset(runs):
    a = runs.a
    checkpoint = torch.load(a.ckpt, weights_only=True)  # no arbitrary pickle anywhere in the file
    assert checkpoint["hyper_parameters"]["n_features"] == 4
    assert tuple(checkpoint["hyper_parameters"]["image_size"]) == (32, 32)
    assert checkpoint["anomalib_post_processor_config"]["gamma"] == 3.0
    state = checkpoint["state_dict"]
    for key in ("model.generator.memory.h", "model.generator.memory.c", "post_processor.image_mean"):
        assert torch.isfinite(state[key]).all(), key
    assert state["model.generator.memory.h"].abs().sum() > 0, "the memory state was trained and saved"
    last_seen = checkpoint["maa_last_seen"]  # the model's own entry: the A/B images a resumed fit starts from
    assert set(last_seen) == {"a", "b"} and last_seen["a"].shape[-2:] == (32, 32)
    assert "last_seen" not in checkpoint["callbacks"]["ResumeState"]

    reloaded = Maa.load_from_checkpoint(a.ckpt, weights_only=True)
    assert reloaded.model.generator.memory.h.shape == a.model.model.generator.memory.h.shape
    assert max_state_difference(reloaded, a.model) == 0.0
    assert reloaded.post_processor.is_fitted
    torch.testing.assert_close(reloaded.post_processor.train_scores, a.model.post_processor.train_scores)
    torch.testing.assert_close(
        raw_test_scores(reloaded, a.datamodule), raw_test_scores(a.model, a.datamodule), rtol=0, atol=0
    )


def test_resume_continues_exactly_like_an_uninterrupted_run(runs):
    straight, resumed = runs.c, runs.d
    assert resumed.engine.trainer.current_epoch == straight.engine.trainer.current_epoch == 2
    assert resumed.engine.trainer.global_step == straight.engine.trainer.global_step
    optimizers = zip(straight.engine.trainer.optimizers, resumed.engine.trainer.optimizers, strict=True)
    for opt_straight, opt_resumed in optimizers:
        steps = [s["step"] for s in opt_resumed.state_dict()["state"].values()]
        assert steps == [s["step"] for s in opt_straight.state_dict()["state"].values()]
    memory = resumed.model.model.generator.memory
    torch.testing.assert_close(memory.h, straight.model.model.generator.memory.h, atol=1e-6, rtol=0)
    assert max_state_difference(resumed.model, straight.model) <= 1e-6
    assert resumed.ckpt.parent != runs.a.ckpt.parent


def test_second_run_gets_its_own_folder_and_keeps_the_first(runs):
    a, b = runs.a, runs.b
    assert a.run_dir != b.run_dir
    assert {a.run_dir.name, b.run_dir.name} == {"v0", "v1"}
    assert a.ckpt.is_file() and b.ckpt.is_file() and a.ckpt != b.ckpt
    assert (a.run_dir / "pauta_threshold.json").is_file() and (b.run_dir / "pauta_threshold.json").is_file()
    # nothing in the first run's folder changed after the second run and the resumed run read it
    assert digest(a.run_dir) == runs.a_files


def test_second_fit_on_a_used_engine_is_refused(runs, tiny_root):
    a = runs.a
    before = digest(a.run_dir)
    second = Maa(image_size=(32, 32), n_features=4, max_epochs=1, visualizer=False)
    with pytest.raises(ReusedTrainerError, match="already trained.*new anomalib Engine"):
        a.engine.fit(second, datamodule=a.datamodule)
    assert digest(a.run_dir) == before


def test_resume_from_a_missing_checkpoint_names_it(tiny_root, tmp_path):
    missing = tmp_path / "nowhere" / "model.ckpt"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        fit_maa(tmp_path / "out", tiny_root, epochs=2, ckpt_path=missing)
