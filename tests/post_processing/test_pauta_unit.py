"""Unit tests of PautaPostProcessor without Lightning training."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from anomalib.data import InferenceBatch
from anomalib.data.dataclasses.torch import ImageBatch
from scipy import stats
from torchmetrics.classification import BinaryAUROC

from anomalib_maa.post_processing import DEFAULT_GAMMA, PautaPostProcessor, normality_test


def _fitted(gamma: float | None = None, seed: int = 0, **kwargs) -> tuple[PautaPostProcessor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    scores = 2.0 + 0.3 * torch.randn(64, generator=generator)
    maps = 1.0 + 0.2 * torch.randn(64, 1, 8, 8, generator=generator)
    post_processor = PautaPostProcessor(gamma=gamma, **kwargs)
    post_processor.fit_scores(scores, maps)
    return post_processor, scores


def test_default_gamma_is_pauta_three_sigma() -> None:
    assert PautaPostProcessor().gamma == DEFAULT_GAMMA == 3.0


def test_false_alarm_rate_sets_gamma() -> None:
    post_processor = PautaPostProcessor(false_alarm_rate=0.05)
    assert round(post_processor.gamma, 4) == 1.6449
    assert post_processor.false_alarm_rate == 0.05
    assert post_processor.tail_probability == pytest.approx(0.05)


def test_gamma_and_false_alarm_rate_together_is_an_error() -> None:
    with pytest.raises(ValueError, match="either gamma .* or false_alarm_rate .*not both"):
        PautaPostProcessor(gamma=2.0, false_alarm_rate=0.05)
    with pytest.raises(ValueError, match="exactly one"):
        PautaPostProcessor().set_gamma(gamma=1.0, false_alarm_rate=0.1)


@pytest.mark.parametrize("kwargs", [{"false_alarm_rate": 0.0}, {"false_alarm_rate": 1.5}, {"gamma": float("nan")}])
def test_invalid_values_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        PautaPostProcessor(**kwargs)


def test_invalid_choices_are_rejected() -> None:
    with pytest.raises(ValueError, match="method"):
        PautaPostProcessor(method="robust")
    with pytest.raises(ValueError, match="stats_source"):
        PautaPostProcessor(stats_source="test")


def test_threshold_is_mu_plus_gamma_sigma() -> None:
    post_processor, scores = _fitted(gamma=2.5)
    values = scores.double().numpy()
    expected = values.mean() + 2.5 * values.std(ddof=1)
    assert post_processor._image_threshold.item() == pytest.approx(expected, rel=1e-5)
    assert post_processor.image_mean.item() == pytest.approx(values.mean(), rel=1e-6)
    assert post_processor.image_std.item() == pytest.approx(values.std(ddof=1), rel=1e-6)
    assert torch.isfinite(post_processor._pixel_threshold)


def test_pixel_threshold_uses_all_pixels() -> None:
    generator = torch.Generator().manual_seed(1)
    maps = torch.rand(10, 1, 16, 16, generator=generator)
    post_processor = PautaPostProcessor(gamma=1.0)
    post_processor.fit_scores(maps.flatten(1).amax(1), maps)
    pixels = maps.double().flatten().numpy()
    expected = pixels.mean() + pixels.std(ddof=1)
    assert post_processor._pixel_threshold.item() == pytest.approx(expected, rel=1e-5)


def test_changing_gamma_moves_threshold_from_stored_statistics() -> None:
    post_processor, _ = _fitted()
    mean, std = post_processor.image_mean.item(), post_processor.image_std.item()
    post_processor.gamma = 0.0
    assert post_processor._image_threshold.item() == pytest.approx(mean, rel=1e-6)
    post_processor.false_alarm_rate = 0.01
    assert post_processor._image_threshold.item() == pytest.approx(mean + stats.norm.ppf(0.99) * std, rel=1e-6)
    post_processor.set_gamma(gamma=2.0)
    assert post_processor.false_alarm_rate is None
    assert post_processor._image_threshold.item() == pytest.approx(mean + 2.0 * std, rel=1e-6)


def test_empirical_method_uses_quantile() -> None:
    post_processor, scores = _fitted(method="empirical", false_alarm_rate=0.1)
    expected = np.quantile(scores.double().numpy(), 0.9)
    assert post_processor._image_threshold.item() == pytest.approx(expected, rel=1e-6)
    post_processor.method = "normal"
    assert post_processor._image_threshold.item() == pytest.approx(
        post_processor.image_mean.item() + post_processor.gamma * post_processor.image_std.item(), rel=1e-6
    )


def test_lognormal_method_fits_the_log_scores() -> None:
    """Log-normal scores: T = exp(mean + gamma * sd of the logs), normal in log space (no warning)."""
    rng = np.random.default_rng(0)
    scores = torch.as_tensor(np.exp(rng.normal(2.0, 1.5, size=300)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = PautaPostProcessor(gamma=1.0, method="lognormal").fit_scores(scores)
    logs = np.log(scores.numpy())
    assert report["image"]["threshold"] == pytest.approx(np.exp(logs.mean() + logs.std(ddof=1)), rel=1e-6)
    assert report["normality"]["of"] == "log scores"
    assert report["normality"]["normal_at_0.05"] is True
    # about 1 - Phi(1) = 15.9 % of such scores lie above it; the normal rule on the raw scores is far off
    assert np.mean(scores.numpy() > report["image"]["threshold"]) == pytest.approx(0.159, abs=0.05)
    with pytest.warns(UserWarning, match="lognormal"):
        normal = PautaPostProcessor(gamma=1.0).fit_scores(scores)
    assert np.mean(scores.numpy() > normal["image"]["threshold"]) < 0.1
    with pytest.raises(ValueError, match="positive scores"):
        PautaPostProcessor(method="lognormal").fit_scores(torch.tensor([1.0, 0.0, 2.0]))


def test_normality_test_choice_and_warning() -> None:
    rng = np.random.default_rng(0)
    assert normality_test(rng.normal(size=50))["test"] == "dagostino_pearson"
    assert normality_test(rng.normal(size=10))["test"] == "shapiro_wilk"
    assert normality_test([1.0, 1.0, 1.0])["test"] is None
    skewed = torch.as_tensor(rng.exponential(size=200) ** 2)
    with pytest.warns(UserWarning, match="Normality .* rejected"):
        PautaPostProcessor().fit_scores(skewed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = PautaPostProcessor(method="empirical").fit_scores(skewed)  # no warning for empirical
    assert report["normality"]["normal_at_0.05"] is False


def test_normalisation_is_monotonic_without_ties() -> None:
    post_processor, _ = _fitted()
    raw = torch.linspace(-50.0, 80.0, 20001)
    output = post_processor(InferenceBatch(pred_score=raw))
    normalised = output.pred_score
    assert torch.all(normalised[1:] > normalised[:-1])
    assert torch.all((normalised > 0) & (normalised < 1))
    threshold = post_processor._image_threshold
    at_threshold = post_processor(InferenceBatch(pred_score=threshold.reshape(1))).pred_score
    assert at_threshold.item() == pytest.approx(0.5, abs=1e-7)
    assert torch.equal(output.pred_label, raw > threshold)


def _pairwise_auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Exact AUROC (Mann-Whitney): share of (defective, normal) pairs ranked right, ties count half."""
    defective, normal = scores[labels == 1][:, None], scores[labels == 0][None, :]
    return ((defective > normal).double() + 0.5 * (defective == normal).double()).mean().item()


def test_auroc_identical_with_and_without_normalisation() -> None:
    post_processor, _ = _fitted()
    generator = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 2, (300,), generator=generator)
    raw = 2.0 + 0.3 * torch.randn(300, generator=generator) + labels * torch.rand(300, generator=generator) * 30
    normalised = post_processor(InferenceBatch(pred_score=raw)).pred_score
    assert _pairwise_auroc(normalised, labels) == _pairwise_auroc(raw, labels)
    # torchmetrics' float32 trapezoid sum may differ in the last bit when two defective scores far
    # in the tail (here ~100 sigma) round to the same float32 value; the ranking itself is unchanged.
    assert BinaryAUROC()(normalised, labels).item() == pytest.approx(BinaryAUROC()(raw, labels).item(), abs=1e-6)


def test_map_normalisation_keeps_the_ranking_of_pixels_far_below_the_threshold() -> None:
    """Most map pixels are near 0, far below the pixel threshold; float32 normalisation must not tie them."""
    from anomalib_maa.post_processing.normalize import squash, squash_map

    generator = torch.Generator().manual_seed(5)
    labels = (torch.rand(50_000, generator=generator) < 0.05).long()
    # a DeepPCB-like map: values spread over orders of magnitude below 1e-6, defective pixels about 3x larger
    raw = 10 ** (-12 + 6 * torch.rand(50_000, generator=generator)) * (1 + 2 * labels)
    threshold, scale = torch.tensor(0.11), torch.tensor(0.037)
    exact = _pairwise_auroc(raw.double(), labels)
    assert _pairwise_auroc(squash_map(raw, threshold, scale), labels) == pytest.approx(exact, abs=1e-6)
    assert abs(_pairwise_auroc(squash(raw, threshold, scale), labels) - exact) > 0.01  # the plain form ties them
    above = torch.tensor([0.11, 0.2, 5.0])
    torch.testing.assert_close(squash_map(above, threshold, scale), squash(above, threshold, scale))
    assert squash_map(threshold.reshape(1), threshold, scale).item() == pytest.approx(0.5)
    ramp = torch.linspace(0.0, 1.0, 10_001)
    assert torch.all(squash_map(ramp, threshold, scale).diff() > 0)


def test_forward_and_batch_hook_share_code() -> None:
    post_processor, _ = _fitted(gamma=1.0)
    generator = torch.Generator().manual_seed(4)
    scores = 2.0 + torch.randn(4, generator=generator)
    maps = 1.0 + 0.5 * torch.randn(4, 1, 8, 8, generator=generator)
    exported = post_processor(InferenceBatch(pred_score=scores, anomaly_map=maps))
    batch = ImageBatch(image=torch.rand(4, 3, 8, 8), pred_score=scores.clone(), anomaly_map=maps.clone())
    post_processor.post_process_batch(batch)
    assert torch.equal(batch.pred_score, exported.pred_score)
    assert torch.equal(batch.anomaly_map, exported.anomaly_map.squeeze(1))
    assert torch.equal(batch.pred_label, exported.pred_label)
    assert torch.equal(batch.pred_mask, exported.pred_mask.squeeze(1))


def test_unfitted_passes_scores_through() -> None:
    scores = torch.tensor([0.1, 5.0])
    output = PautaPostProcessor()(InferenceBatch(pred_score=scores))
    assert torch.equal(output.pred_score, scores)
    assert not output.pred_label.any()


def test_state_dict_round_trip_and_explicit_gamma_wins() -> None:
    trained, _ = _fitted(gamma=2.0)
    state = trained.state_dict()
    config = trained.checkpoint_config()
    assert config["gamma"] == 2.0

    restored = PautaPostProcessor()  # γ not chosen: the checkpoint's wins
    restored.load_checkpoint_config(config)
    restored.load_state_dict(state)
    assert restored.gamma == 2.0
    for name, tensor in trained.state_dict().items():
        assert torch.equal(restored.state_dict()[name], tensor), name

    chosen = PautaPostProcessor(gamma=1.0)  # γ chosen explicitly: it wins over the checkpoint's
    chosen.load_checkpoint_config(config)
    chosen.load_state_dict(state)
    assert chosen.gamma == 1.0
    expected = trained.image_mean + 1.0 * trained.image_std
    assert chosen._image_threshold.item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.equal(chosen.train_scores, trained.train_scores)


def test_report_files(tmp_path) -> None:
    post_processor, _ = _fitted()
    batch = SimpleNamespace(
        pred_score=torch.tensor([1.9, 2.1, 9.0, 12.0]), anomaly_map=None, gt_label=torch.tensor([0, 0, 1, 1])
    )
    post_processor.on_test_batch_end(None, None, batch)  # keeps the raw scores, then normalises the batch
    assert batch.pred_score.max() < 1.0
    json_path = post_processor.write_report(folder=tmp_path)
    report = json.loads(json_path.read_text())
    assert report["gamma"] == 3.0
    assert report["image"]["threshold"] == pytest.approx(post_processor._image_threshold.item())
    assert report["normality"]["test"] == "dagostino_pearson"
    assert report["test"] == {"n_normal": 2, "n_defective": 2, "false_alarm_rate": 0.0, "recall": 1.0}
    assert (tmp_path / "pauta_histogram.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"false_alarm_rate": 2}, r"^false_alarm_rate must lie strictly between 0 and 1 \(e\.g\. 0\.01 .*got 2"),
        ({"gamma": -1}, r"^gamma must be a finite number >= 0 .*got -1"),
        ({"method": "lognorm"}, r"^method must be one of 'normal', 'lognormal', 'empirical', got 'lognorm'"),
    ],
)
def test_bad_arguments_are_one_line_input_errors(kwargs: dict, message: str) -> None:
    from anomalib_maa.errors import InputError

    with pytest.raises(InputError, match=message) as error:
        PautaPostProcessor(**kwargs)
    assert isinstance(error.value, ValueError)
    assert "\n" not in str(error.value)


def test_gamma_zero_is_allowed_and_negative_set_gamma_is_refused() -> None:
    post_processor = PautaPostProcessor(gamma=0.0)
    assert post_processor.gamma == 0.0
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0"):
        post_processor.set_gamma(-0.5)
    assert post_processor.gamma == 0.0


@pytest.mark.parametrize(
    ("method", "rule"),
    [
        ("normal", r"T = μ \+ 3σ = "),
        ("lognormal", r"T = exp\(μ_log \+ 3σ_log\) = "),
        ("empirical", r"T = 99\.87 % quantile of the training scores = "),
    ],
)
def test_legend_log_and_json_state_the_applied_rule_and_value(method, rule, tmp_path, monkeypatch, caplog) -> None:
    import json
    import re

    from matplotlib.figure import Figure

    legends: list[list[str]] = []
    original = Figure.savefig
    monkeypatch.setattr(
        Figure,
        "savefig",
        lambda figure, *args, **kwargs: (
            legends.append([text.get_text() for text in figure.axes[0].get_legend().get_texts()]),
            original(figure, *args, **kwargs),
        )[1],
    )
    generator = torch.Generator().manual_seed(0)
    scores = torch.exp(-1.6 + 0.5 * torch.randn(64, generator=generator))  # positive, skewed (FMD-like)
    post_processor = PautaPostProcessor(method=method)
    with caplog.at_level("INFO", logger="anomalib_maa"):
        post_processor.fit_scores(scores)
        post_processor._log(None)
        report = json.loads(post_processor.write_report(folder=tmp_path).read_text())
    threshold = float(post_processor.image_threshold)
    stated = f"{threshold:.4g}"
    assert re.fullmatch(rule + re.escape(stated), report["threshold_rule"])
    assert report["threshold_rule"] in legends[-1]
    assert any(report["threshold_rule"] in record.message for record in caplog.records)
    assert report["image"]["threshold"] == pytest.approx(threshold)
    logs = torch.log(scores.double())
    if method == "lognormal":
        assert threshold == pytest.approx(float(torch.exp(logs.mean() + 3 * logs.std())), rel=1e-5)
        assert report["image"]["log_mean"] == pytest.approx(float(logs.mean()))
        assert any(text.startswith("log-normal fit") for text in legends[-1])
    if method == "normal":
        assert threshold == pytest.approx(float(scores.double().mean() + 3 * scores.double().std()), rel=1e-5)
