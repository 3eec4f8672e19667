"""End-to-end tests of PautaPostProcessor with anomalib's Engine, PaDiM and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib import LearningType
from anomalib.data import InferenceBatch
from anomalib.data.utils import ValSplitMode
from anomalib.models import Padim
from anomalib.models.components import AnomalibModule
from lightning.pytorch import Callback
from pauta_helpers import IMAGE_SIZE, N_TRAIN, PadimRun, make_engine, make_folder, make_padim
from torch.utils.data import DataLoader

from anomalib_maa.post_processing import PautaPostProcessor


def raw_outputs(model: AnomalibModule, dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw scores, raw anomaly maps and labels of a dataset, read in order, model in eval mode."""
    loader = DataLoader(dataset, batch_size=8, shuffle=False, collate_fn=dataset.collate_fn)
    scores, maps, labels = [], [], []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in loader:
            output = model.model(model.pre_processor.transform(batch.image))
            scores.append(output.pred_score.reshape(-1))
            maps.append(output.anomaly_map)
            labels.append(batch.gt_label.reshape(-1))
    model.train(was_training)
    return torch.cat(scores), torch.cat(maps), torch.cat(labels)


def test_threshold_is_mu_plus_gamma_sigma_of_training_scores(padim_run: PadimRun) -> None:
    post_processor = padim_run.model.post_processor
    scores, maps, labels = raw_outputs(padim_run.model, padim_run.datamodule.train_data)
    assert len(scores) == N_TRAIN and not labels.any()
    values = scores.double()
    expected = values.mean() + 3.0 * values.std()  # torch.std: ddof=1
    assert post_processor._image_threshold.item() == pytest.approx(expected.item(), rel=1e-5)
    pixels = maps.double().flatten()
    assert post_processor._pixel_threshold.item() == pytest.approx((pixels.mean() + 3 * pixels.std()).item(), rel=1e-5)
    assert torch.allclose(post_processor.train_scores.double(), values, rtol=1e-6)


def test_checkpoint_from_fit_holds_the_fitted_buffers(padim_run: PadimRun) -> None:
    checkpoint = torch.load(padim_run.checkpoint, map_location="cpu", weights_only=False)
    state = checkpoint["state_dict"]
    post_processor = padim_run.model.post_processor
    for name, tensor in post_processor.state_dict().items():
        assert torch.equal(state[f"post_processor.{name}"], tensor), name
    assert math.isfinite(state["post_processor._image_threshold"].item())
    assert checkpoint["anomalib_post_processor_config"]["gamma"] == 3.0


def test_report_json_and_histogram(padim_run: PadimRun) -> None:
    report = json.loads((padim_run.results_dir / "pauta_threshold.json").read_text())
    post_processor = padim_run.model.post_processor
    assert report["n_images"] == N_TRAIN
    assert report["gamma"] == 3.0
    assert report["image"]["threshold"] == pytest.approx(post_processor._image_threshold.item())
    assert report["normality"]["test"] == "dagostino_pearson"
    assert 0.0 <= report["normality"]["p_value"] <= 1.0
    assert report["test"]["n_normal"] > 0 and report["test"]["n_defective"] > 0
    assert (padim_run.results_dir / "pauta_histogram.png").stat().st_size > 1000


def test_padim_val_none_tests_without_nan(padim_run: PadimRun) -> None:
    assert padim_run.metrics, "no test metrics"
    assert all(math.isfinite(value) for value in padim_run.metrics.values()), padim_run.metrics
    images = torch.stack([padim_run.datamodule.test_data[i].image for i in range(len(padim_run.datamodule.test_data))])
    padim_run.model.eval()
    output = padim_run.model(images)  # export path: pre-processor -> model -> post-processor
    assert torch.isfinite(output.pred_score).all() and torch.isfinite(output.anomaly_map).all()
    assert output.pred_label.dtype == torch.bool and output.pred_label.any()
    assert ((output.pred_score > 0) & (output.pred_score < 1)).all()


def test_reload_from_checkpoint_gives_identical_buffers_and_labels(padim_run: PadimRun) -> None:
    reloaded = Padim.load_from_checkpoint(padim_run.checkpoint, post_processor=PautaPostProcessor(), visualizer=False)
    assert isinstance(reloaded.post_processor, PautaPostProcessor)
    assert reloaded.post_processor.gamma == 3.0
    for name, tensor in padim_run.model.post_processor.state_dict().items():
        assert torch.equal(reloaded.post_processor.state_dict()[name], tensor), name
    images = torch.stack([padim_run.datamodule.test_data[i].image for i in range(len(padim_run.datamodule.test_data))])
    padim_run.model.eval()
    reloaded.eval()
    original, again = padim_run.model(images), reloaded(images)
    assert torch.equal(original.pred_label, again.pred_label)
    assert torch.equal(original.pred_score, again.pred_score)


def test_new_gamma_on_trained_checkpoint_moves_threshold_not_auroc(padim_run: PadimRun, tmp_path: Path) -> None:
    trained = padim_run.model.post_processor
    model = make_padim(PautaPostProcessor(gamma=1.0))
    engine = make_engine(tmp_path)
    metrics = engine.test(model, datamodule=padim_run.datamodule, ckpt_path=padim_run.checkpoint, verbose=False)[0]
    post_processor = model.post_processor
    assert post_processor.gamma == 1.0  # the explicit new gamma wins over the checkpoint's 3.0
    assert torch.equal(post_processor.image_mean, trained.image_mean)
    assert torch.equal(post_processor.image_std, trained.image_std)
    expected = trained.image_mean.double() + 1.0 * trained.image_std.double()
    assert post_processor._image_threshold.item() == pytest.approx(expected.item(), rel=1e-6)
    assert post_processor._image_threshold < trained._image_threshold
    assert metrics["image_AUROC"] == padim_run.metrics["image_AUROC"]
    # Pixel maps: ~50k values, a few float32 ties appear or vanish when the threshold moves.
    assert metrics["pixel_AUROC"] == pytest.approx(padim_run.metrics["pixel_AUROC"], abs=1e-6)
    report = json.loads((Path(engine.trainer.default_root_dir) / "pauta_threshold.json").read_text())
    assert report["gamma"] == 1.0

    # Same scores, new labels: raw score > new threshold.
    raw, _, _ = raw_outputs(model, padim_run.datamodule.test_data)
    model.eval()
    images = torch.stack([padim_run.datamodule.test_data[i].image for i in range(len(raw))])
    assert torch.equal(model(images).pred_label.reshape(-1), raw > post_processor._image_threshold)

    # From Python, on the loaded model: move gamma and the threshold follows.
    post_processor.gamma = 0.0
    assert post_processor._image_threshold.item() == pytest.approx(trained.image_mean.item(), rel=1e-6)
    assert torch.equal(model(images).pred_label.reshape(-1), raw > trained.image_mean)


def test_normalisation_does_not_change_auroc_or_labels(padim_run: PadimRun, tmp_path: Path) -> None:
    model = padim_run.model
    model.post_processor.enable_normalization = False
    try:
        raw_metrics = make_engine(tmp_path).test(model, datamodule=padim_run.datamodule, verbose=False)[0]
    finally:
        model.post_processor.enable_normalization = True
    # Image AUROC on raw scores == on normalised ones; labels come from raw scores, so F1 etc. agree too.
    pixel = raw_metrics.pop("pixel_AUROC")
    expected = dict(padim_run.metrics)
    assert pixel == pytest.approx(expected.pop("pixel_AUROC"), abs=1e-6)
    assert raw_metrics == expected


def test_cli_gamma_override_on_checkpoint(padim_run: PadimRun, tmp_path: Path) -> None:
    from anomalib.cli import AnomalibCLI

    args = [
        "test",
        "--model", "Padim",
        "--model.backbone", "resnet18",
        "--model.pre_trained", "false",
        "--model.n_features", "50",
        "--model.post_processor", "anomalib_maa.post_processing.PautaPostProcessor",
        "--model.post_processor.gamma", "1.5",
        "--model.visualizer", "false",
        "--data", "Folder",
        "--data.name", "tiny",
        "--data.root", str(padim_run.root),
        "--data.normal_dir", "train/good",
        "--data.abnormal_dir", "test/defect",
        "--data.normal_test_dir", "test/good",
        "--data.mask_dir", "ground_truth/defect",
        "--data.num_workers", "0",
        "--data.val_split_mode", "none",
        "--ckpt_path", str(padim_run.checkpoint),
        "--default_root_dir", str(tmp_path),
        "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    cli = AnomalibCLI(args=args)
    post_processor = cli.model.post_processor
    trained = padim_run.model.post_processor
    assert isinstance(post_processor, PautaPostProcessor) and post_processor.gamma == 1.5
    expected = trained.image_mean.double() + 1.5 * trained.image_std.double()
    assert post_processor._image_threshold.item() == pytest.approx(expected.item(), rel=1e-6)
    assert math.isfinite(float(cli.engine.trainer.callback_metrics["image_AUROC"]))


def test_val_split_modes_share_the_training_threshold(padim_run: PadimRun, tmp_path: Path) -> None:
    # same_as_test: validation runs on the test images (with defects); the threshold must ignore them.
    datamodule = make_folder(padim_run.root, val_split_mode="same_as_test")
    model = make_padim()
    engine = make_engine(tmp_path / "same", val_split_mode="same_as_test")
    engine.fit(model, datamodule=datamodule)
    trained = padim_run.model.post_processor
    for name in ("image_mean", "image_std", "_image_threshold", "_pixel_threshold", "train_scores"):
        assert torch.allclose(getattr(model.post_processor, name), getattr(trained, name), rtol=1e-6), name
    checkpoint = torch.load(engine.best_model_path, map_location="cpu", weights_only=False)
    assert torch.equal(checkpoint["state_dict"]["post_processor._image_threshold"], trained._image_threshold)


def test_from_train_split_and_validation_statistics(tiny_dataset: Path, tmp_path: Path) -> None:
    datamodule = make_folder(tiny_dataset, val_split_mode=ValSplitMode.FROM_TRAIN, val_split_ratio=0.25)
    model = make_padim(PautaPostProcessor(gamma=2.0, stats_source="val"))
    engine = make_engine(tmp_path, val_split_mode="from_train")
    engine.fit(model, datamodule=datamodule)
    post_processor = model.post_processor
    val_scores, _, val_labels = raw_outputs(model, datamodule.val_data)
    assert not val_labels.any()
    assert post_processor.report["n_images"] == len(val_scores) < N_TRAIN
    expected = val_scores.double().mean() + 2.0 * val_scores.double().std()
    assert post_processor._image_threshold.item() == pytest.approx(expected.item(), rel=1e-5)
    checkpoint = torch.load(engine.best_model_path, map_location="cpu", weights_only=False)
    assert torch.equal(checkpoint["state_dict"]["post_processor._image_threshold"], post_processor._image_threshold)
    assert checkpoint["anomalib_post_processor_config"]["stats_source"] == "val"

    # The default source on the same split: the (smaller) training subset, never the validation images.
    post_processor.stats_source = "train"
    report = post_processor.fit_from_model(model, engine.trainer)
    train_scores, _, _ = raw_outputs(model, datamodule.train_data)
    assert report["n_images"] == len(train_scores) == N_TRAIN - len(val_scores)
    expected = train_scores.double().mean() + 2.0 * train_scores.double().std()
    assert post_processor._image_threshold.item() == pytest.approx(expected.item(), rel=1e-5)
    metrics = engine.test(model, datamodule=datamodule, verbose=False)[0]
    assert all(math.isfinite(value) for value in metrics.values())


def test_val_source_without_validation_split_fails_early(tiny_dataset: Path, tmp_path: Path) -> None:
    model = make_padim(PautaPostProcessor(stats_source="val"))
    with pytest.raises(ValueError, match="from_train"):
        make_engine(tmp_path).fit(model, datamodule=make_folder(tiny_dataset, val_split_mode="none"))


class _TinyTorchModel(torch.nn.Module):
    """Anomaly map = |image - its mean| scaled by one trainable weight."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor | InferenceBatch:
        anomaly_map = (images - images.mean(dim=(-2, -1), keepdim=True)).abs().mean(1, keepdim=True) * self.weight
        if self.training:
            return anomaly_map
        return InferenceBatch(pred_score=anomaly_map.flatten(1).amax(1), anomaly_map=anomaly_map)


class _TinyMultiEpochModel(AnomalibModule):
    """A trainable stand-in for a GAN: several epochs, weights change every step."""

    def __init__(self, max_epochs: int = 3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model = _TinyTorchModel()
        self.max_epochs = max_epochs

    def training_step(self, batch, *args, **kwargs):
        del args, kwargs
        return {"loss": (self.model(batch.image).mean() - 0.2) ** 2}

    def validation_step(self, batch, *args, **kwargs):
        del args, kwargs
        return batch.update(**self.model(batch.image)._asdict())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)

    @property
    def trainer_arguments(self) -> dict:
        return {"max_epochs": self.max_epochs, "num_sanity_val_steps": 0}

    @property
    def learning_type(self) -> LearningType:
        return LearningType.ONE_CLASS


@pytest.mark.parametrize("val_split_mode", ["none", "same_as_test"])
def test_multi_epoch_model_scored_once_after_last_epoch(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, val_split_mode: str
) -> None:
    calls: list[int] = []
    original = PautaPostProcessor.fit_from_model

    def counting(self, pl_module, trainer=None, dataloader=None):
        calls.append(trainer.current_epoch)
        return original(self, pl_module, trainer, dataloader)

    monkeypatch.setattr(PautaPostProcessor, "fit_from_model", counting)
    model = _tiny_model(max_epochs=3)
    engine = make_engine(tmp_path, val_split_mode=val_split_mode)
    engine.fit(model, datamodule=make_folder(tiny_dataset, val_split_mode=val_split_mode))
    assert calls == [2]
    scores, _, _ = raw_outputs(model, engine.trainer.datamodule.train_data)
    expected = scores.double().mean() + 2.0 * scores.double().std()
    assert model.post_processor._image_threshold.item() == pytest.approx(expected.item(), rel=1e-5)
    checkpoint = torch.load(engine.best_model_path, map_location="cpu", weights_only=False)
    state = checkpoint["state_dict"]
    assert torch.equal(state["post_processor._image_threshold"], model.post_processor._image_threshold)
    assert np.isclose(state["model.weight"].item(), model.model.weight.item())


class _StopAfterFirstValidation(Callback):
    """Early stopping's timing: ask to stop in on_validation_end, after the checkpoint of that epoch."""

    def on_validation_end(self, trainer, pl_module) -> None:
        del pl_module
        trainer.should_stop = True


def _tiny_model(max_epochs: int = 3) -> _TinyMultiEpochModel:
    return _TinyMultiEpochModel(
        max_epochs=max_epochs,
        pre_processor=AnomalibModule.configure_pre_processor(image_size=(IMAGE_SIZE, IMAGE_SIZE)),
        post_processor=PautaPostProcessor(gamma=2.0),
        visualizer=False,
    )


def test_early_stop_rewrites_checkpoint_with_statistics(tiny_dataset: Path, tmp_path: Path) -> None:
    # With val_check_interval != 1.0, ModelCheckpoint saves at on_validation_end; stopping there
    # means the statistics only come in on_train_epoch_end, after that save: on_fit_end rewrites it.
    model = _tiny_model(max_epochs=5)
    engine = make_engine(
        tmp_path, val_split_mode="same_as_test", val_check_interval=0.5, callbacks=[_StopAfterFirstValidation()]
    )
    engine.fit(model, datamodule=make_folder(tiny_dataset, val_split_mode="same_as_test"))
    assert engine.trainer.current_epoch <= 1  # stopped in the first epoch
    assert model.post_processor.is_fitted
    state = torch.load(engine.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
    assert torch.equal(state["post_processor._image_threshold"], model.post_processor._image_threshold)


def test_scoring_restores_each_module_mode(tiny_dataset: Path) -> None:
    model = _tiny_model()
    model.train()
    model.pre_processor.eval()  # a frozen part stays frozen
    before = {name: module.training for name, module in model.named_modules()}
    train_data = make_folder(tiny_dataset)
    train_data.setup()
    loader = DataLoader(train_data.train_data, batch_size=8, collate_fn=train_data.train_data.collate_fn)
    report = model.post_processor.fit_from_model(model, dataloader=loader)
    assert report["n_images"] == N_TRAIN
    assert {name: module.training for name, module in model.named_modules()} == before
