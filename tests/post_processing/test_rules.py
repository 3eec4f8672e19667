"""One implementation of each Pauta rule: the post-processor, the ablation and the γ table give the same threshold."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from anomalib_maa.benchmark.ablation import threshold_rule_of
from anomalib_maa.post_processing import DEFAULT_GAMMA, PautaPostProcessor, threshold_from_scores
from anomalib_maa.post_processing.rules import normal_threshold

RULES = [
    {"method": "normal", "gamma": 2.0},
    {"method": "lognormal", "gamma": 2.5},
    {"method": "empirical", "gamma": 1.5},
    {"method": "empirical", "false_alarm_rate": 0.1},
    {"method": "normal", "gamma": 0.0},
]


def _gamma_table():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "gamma_table.py"
    spec = importlib.util.spec_from_file_location("gamma_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fitted(rule: dict, scores: np.ndarray) -> PautaPostProcessor:
    post = PautaPostProcessor(**rule, save_report=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post.fit_scores(torch.as_tensor(scores, dtype=torch.float32))
    return post


@pytest.mark.parametrize("rule", RULES)
def test_post_processor_ablation_and_gamma_table_share_the_rule(rule: dict) -> None:
    scores = np.exp(np.random.default_rng(0).normal(-3.0, 0.8, 60)).astype(np.float32)
    post = _fitted(rule, scores)
    expected = float(post._image_threshold)
    # The ablation thresholds each variant with the rule of the model's post-processor.
    ablation_rule = threshold_rule_of(post)
    assert ablation_rule["method"] == rule["method"]
    assert threshold_from_scores(scores.astype(np.float64), **ablation_rule) == pytest.approx(expected, rel=1e-6)
    # The γ table re-evaluates a finished run from its report (normal) or the kept training scores.
    table = _gamma_table()
    report = post.build_report()
    gamma = post.gamma
    assert table.threshold(rule["method"], gamma, report, scores.astype(np.float64)) == pytest.approx(
        expected, rel=1e-6
    )


def test_rules_differ_so_the_test_above_can_fail() -> None:
    scores = np.exp(np.random.default_rng(1).normal(-3.0, 0.8, 60))
    values = {method: threshold_from_scores(scores, method, 2.0) for method in ("normal", "lognormal", "empirical")}
    assert len({round(value, 6) for value in values.values()}) == 3


def test_ablation_falls_back_to_the_normal_rule_for_other_post_processors() -> None:
    assert threshold_rule_of(None) == {"method": "normal", "gamma": DEFAULT_GAMMA, "false_alarm_rate": None}


def test_normal_rule_and_unknown_method() -> None:
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    assert threshold_from_scores(scores, "normal", 3.0) == pytest.approx(2.5 + 3.0 * np.std(scores, ddof=1), rel=1e-6)
    assert np.isnan(normal_threshold(float("nan"), 1.0, 3.0))
    with pytest.raises(ValueError, match="method must be one of"):
        threshold_from_scores(scores, "gumbel", 3.0)
