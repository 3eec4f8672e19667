"""Leaderboard markdown, metrics and configuration parsing (no training)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from anomalib_maa.benchmark import ConfigError, parse_config, parse_leaderboard, render_leaderboard
from anomalib_maa.benchmark.metrics import auroc, label_metrics, roc_points
from anomalib_maa.benchmark.report import parse_mean_sd


def _row(model, dataset, seed, value, status="ok", score="model", preset=""):
    return {
        "job_id": f"{model}__{dataset}__seed{seed}",
        "model": model,
        "preset": preset,
        "score": score,
        "dataset": dataset,
        "seed": seed,
        "weights": "w",
        "status": status,
        "image_auroc": value,
        "error": "boom" if status != "ok" else "",
    }


def test_ranking_by_mean_auroc_with_sd():
    rows = [
        _row("A", "d1", 0, 0.70),
        _row("A", "d1", 1, 0.80),
        _row("B", "d1", 0, 0.90),
        _row("B", "d1", 1, 0.86),
        _row("C", "d1", 0, 0.95),
        _row("C", "d1", 1, float("nan"), status="failed"),
        _row("A", "d2", 0, 0.99),
        _row("B", "d2", 0, 0.50),
        _row("Maa", "d1", 0, 0.60, score="pixel_l1"),  # Table III row: not ranked
    ]
    tables = parse_leaderboard(render_leaderboard(rows))
    assert [entry["Model"] for entry in tables["d1"]] == ["C", "B", "A"]
    assert [entry["Model"] for entry in tables["d2"]] == ["A", "B"]
    mean, sd = parse_mean_sd(tables["d1"][1]["Image AUROC"])
    assert mean == pytest.approx(0.88, abs=1e-3) and sd == pytest.approx(np.std([0.9, 0.86], ddof=1), abs=1e-3)
    assert tables["d1"][0]["Seeds"] == "1/2"
    mean, sd = parse_mean_sd(tables["d2"][0]["Image AUROC"])
    assert mean == pytest.approx(0.99) and math.isnan(sd)


def test_auroc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 60).astype(float) * 1000  # large raw scores, many ties
    labels = rng.integers(0, 2, 60)
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert auroc(scores, labels) == pytest.approx(pairwise)
    fpr, tpr = roc_points(scores, labels)
    assert np.trapezoid(tpr, fpr) == pytest.approx(pairwise)
    assert math.isnan(auroc(scores, np.zeros(60)))


def test_label_metrics():
    metrics = label_metrics(torch.tensor([1, 1, 0, 0]), torch.tensor([1, 0, 1, 0]))
    assert metrics == {"image_accuracy": 0.5, "image_f1": 0.5, "image_recall": 0.5, "image_precision": 0.5}
    assert math.isnan(label_metrics(None, torch.tensor([1, 0]))["image_f1"])


def test_config_validation_and_seed_substitution():
    config = parse_config(
        {
            "models": [{"model": "maa", "init_args": {"ab_seed": "${seed}"}}],
            "datamodules": [{"kind": "sample"}],
            "seeds": [3, 4],
            "_anchors": {"ignored": True},
        }
    )
    assert [job.job_id for job in config.jobs()] == ["maa__sample__seed3", "maa__sample__seed4"]
    with pytest.raises(ConfigError, match="Duplicate model"):
        parse_config({"models": ["padim", "padim"], "datamodules": [{"kind": "sample"}]})
    with pytest.raises(ConfigError, match="unknown keys"):
        parse_config({"models": [{"model": "padim", "weigths": "lite0"}], "datamodules": [{"kind": "sample"}]})
    with pytest.raises(ConfigError, match="weights"):
        parse_config({"models": [{"model": "padim", "weights": "imagenet21k"}], "datamodules": [{"kind": "sample"}]})


def test_fold_batchnorm_keeps_maa_outputs():
    from anomalib_maa import MaaModel
    from anomalib_maa.deploy.optimize import fold_batchnorm

    torch.manual_seed(0)
    model = MaaModel((32, 32), n_features=2, feature_layer=3).eval()
    for module in model.modules():  # non-trivial statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.inference_mode():
        before = model(images)
        after = fold_batchnorm(model)(images)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert torch.allclose(before.anomaly_map, after.anomaly_map, rtol=1e-3, atol=1e-6)
    assert torch.allclose(before.pred_score, after.pred_score, rtol=1e-3, atol=1e-6)


def test_speed_report_tables_without_verdicts(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from speedbench.report import render_speed

    fmd = {"section": "fmd", "feature map": "paper", "batch": 1, "device": "cpu", "rel_diff_vs_scipy": 0.0}
    rows = [
        {**fmd, "method": "exact (eigh)", "s_per_call": 0.02, "s_per_image": 0.02, "speedup_vs_scipy": 20.0},
        {**fmd, "method": "scipy sqrtm", "s_per_call": 0.4, "s_per_image": 0.4, "speedup_vs_scipy": 1.0},
    ]
    share = {"section": "map_share", "model": "MAA cpu", "device": "cpu"}
    rows += [
        {**share, "stage": "anomaly_map", "s_per_batch": 0.004, "share_of_forward": 0.02},
        {**share, "stage": "fmd", "s_per_batch": 0.006, "share_of_forward": 0.03},
    ]
    rows.append({"section": "training", "preset": "MAA tiny", "device": "cpu", "s_per_epoch_per_100_images": 12.5})
    text = render_speed(rows, {"cpu": "test"})
    assert "| MAA tiny | cpu | 12.500 |" in text
    assert "20.000" in text and "400.000" in text  # speed-up and scipy's ms per call
    assert "| MAA cpu | anomaly_map | cpu |" in text and "2.000" in text
    assert "MISSED" not in text and "-> met" not in text and "issue" not in text.lower()


def test_dataset_cache_serves_items_once(tmp_path):
    from types import SimpleNamespace

    from torchvision.transforms.v2 import Resize

    from anomalib_maa.benchmark.cache import CachedDataset, DatasetCache, cache_size, clear_cache
    from anomalib_maa.utils.sample_data import folder_datamodule, make_sample_dataset

    root = make_sample_dataset(tmp_path, n_train=2, n_test_good=1, n_test_defect=1, size=16)
    datamodule = folder_datamodule(root, num_workers=2)
    datamodule.setup()
    plain = datamodule.train_data
    clear_cache()
    callback = DatasetCache()
    callback.setup(SimpleNamespace(datamodule=datamodule), None, "fit")  # wraps and warms every split
    dataset = datamodule.train_data
    assert isinstance(dataset, CachedDataset) and dataset.dataset is plain and datamodule.num_workers == 0
    assert cache_size() == len(plain) + len(datamodule.test_data) and callback.seconds > 0
    first = dataset[0]
    assert dataset[0] is first and plain[0] is not first  # the wrapped dataset decodes afresh: the wrapper caches
    assert len(dataset) == len(plain) and dataset.samples is plain.samples and dataset.collate_fn == plain.collate_fn
    callback.setup(SimpleNamespace(datamodule=datamodule), None, "test")  # a second setup: no second wrapper
    assert datamodule.train_data is dataset and cache_size() == len(plain) + len(datamodule.test_data)
    resize = Resize((8, 8))
    dataset.augmentations = resize  # anomalib sets augmentations at setup: they reach the wrapped dataset
    assert plain.augmentations is resize and dataset[0] is not first  # and are part of the key
    assert tuple(dataset[0].image.shape[-2:]) == (8, 8)
    clear_cache()


def test_model_recipe_and_datasets_keys(tmp_path):
    import pytest

    from anomalib_maa.benchmark.config import ConfigError, parse_config

    recipe = tmp_path / "preset.yaml"
    recipe.write_text("model:\n  class_path: maa\n  init_args: {n_features: 4, heal_prob: 0.5}\n")
    raw = {
        "models": [
            {
                "name": "Maa",
                "preset": "cpu",
                "recipe": str(recipe),
                "init_args": {"ab_seed": "${seed}", "n_features": 2},
            },  # noqa: E501
            {"name": "Padim", "model": "padim", "datasets": ["b"]},
        ],
        "datamodules": [{"name": "a", "kind": "sample"}, {"name": "b", "kind": "sample"}],
        "seeds": [0, 1],
    }
    config = parse_config(raw)
    maa = config.models[0]
    assert maa.model == "maa" and maa.init_args == {"n_features": 2, "heal_prob": 0.5, "ab_seed": "${seed}"}
    assert sorted((job.model.name, job.data.name) for job in config.jobs() if job.seed == 0) == [
        ("Maa", "a"), ("Maa", "b"), ("Padim", "b"),
    ]  # fmt: skip
    raw["models"][1]["datasets"] = ["c"]
    with pytest.raises(ConfigError, match="unknown datasets"):
        parse_config(raw)
    raw["models"][1]["datasets"] = ["b"]
    raw["models"][0]["recipe"] = str(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="no config file"):
        parse_config(raw)
