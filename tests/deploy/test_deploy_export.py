"""Round trips: torch / ONNX / OpenVINO exports give the Lightning model's results (issue 7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomalib_maa.metrics.fmd import frechet_markov_distance

SCORE_RTOL = 1e-3
MAP_ATOL = 1e-3


def _compare(reference: dict[str, torch.Tensor], scores, labels, maps, masks) -> dict[str, float]:
    scores = torch.as_tensor(np.asarray(scores, dtype=np.float64)).reshape(-1)
    labels = torch.as_tensor(np.asarray(labels)).reshape(-1).bool()
    maps = torch.as_tensor(np.asarray(maps, dtype=np.float64)).reshape(reference["anomaly_map"].shape)
    masks = torch.as_tensor(np.asarray(masks)).reshape(reference["pred_mask"].shape).bool()
    score_error = ((scores - reference["pred_score"]).abs() / reference["pred_score"].abs()).max().item()
    map_error = (maps - reference["anomaly_map"]).abs().max().item()
    assert score_error <= SCORE_RTOL, score_error
    assert torch.equal(labels, reference["pred_label"])
    assert map_error <= MAP_ATOL, map_error
    assert (masks == reference["pred_mask"]).float().mean().item() >= 0.999
    return {"score_rel": score_error, "map_abs": map_error}


def test_reference_has_both_labels(tiny_run):
    """The comparison is only meaningful if the tiny model labels some images each way."""
    labels = tiny_run.reference["pred_label"]
    assert labels.any() and not labels.all()
    assert tiny_run.model.model.fmd_method == "eigh"


def test_torch_export_with_torch_inferencer(tiny_run, exports, monkeypatch):
    from anomalib.deploy import TorchInferencer

    monkeypatch.setenv("TRUST_REMOTE_CODE", "1")  # anomalib refuses to unpickle otherwise
    inferencer = TorchInferencer(exports.torch, device="cpu")
    with torch.no_grad():  # the legacy inferencer runs with autograd on
        outputs = [inferencer.predict(path) for path in tiny_run.test_images]
    errors = _compare(
        tiny_run.reference,
        [float(out.pred_score) for out in outputs],
        [bool(out.pred_label) for out in outputs],
        [out.anomaly_map.numpy() for out in outputs],
        [out.pred_mask.numpy() for out in outputs],
    )
    print("torch", errors)  # noqa: T201


@pytest.mark.parametrize("kind", ["onnx", "openvino"])
def test_openvino_inferencer_round_trip(tiny_run, exports, kind, monkeypatch, tmp_path):
    from anomalib_maa.deploy import openvino_inferencer

    monkeypatch.chdir(tmp_path)  # anomalib's OpenVINOInferencer writes ./openvino_cache
    inferencer = openvino_inferencer(getattr(exports, kind))
    outputs = [inferencer.predict(path) for path in tiny_run.test_images]
    errors = _compare(
        tiny_run.reference,
        [float(np.asarray(out.pred_score).reshape(-1)[0]) for out in outputs],
        [bool(np.asarray(out.pred_label).reshape(-1)[0]) for out in outputs],
        [out.anomaly_map for out in outputs],
        [out.pred_mask for out in outputs],
    )
    print(kind, errors)  # noqa: T201


def test_runtime_directly_on_a_batch(tiny_run, exports):
    """OpenVINO's runtime on one batch of all test images, without anomalib's inferencer."""
    import openvino as ov
    from anomalib.data.utils import read_image

    from anomalib_maa.deploy import OPENVINO_CONFIG

    compiled = ov.Core().compile_model(str(exports.openvino), "CPU", OPENVINO_CONFIG)
    batch = np.stack([read_image(path, as_tensor=True).numpy() for path in tiny_run.test_images]).astype(np.float32)
    result = compiled({0: batch})
    out = {next(iter(output.names)): value for output, value in zip(compiled.outputs, result.to_tuple(), strict=True)}
    _compare(tiny_run.reference, out["pred_score"], out["pred_label"], out["anomaly_map"], out["pred_mask"])


def test_export_graph_and_metadata(tiny_run, exports):
    import onnx

    from anomalib_maa.deploy import read_export_metadata

    proto = onnx.load(str(exports.onnx))
    assert [output.name for output in proto.graph.output] == ["pred_score", "pred_label", "anomaly_map", "pred_mask"]
    assert not any("Eig" in node.op_type or "Svd" in node.op_type for node in proto.graph.node)
    post = tiny_run.model.post_processor
    for path in (exports.onnx, exports.openvino):
        meta = read_export_metadata(path)
        assert meta["fmd"] == "polar"
        assert meta["image_size"] == "32,32"
        assert float(meta["image_threshold"]) == pytest.approx(float(post._image_threshold), rel=1e-12)
        assert float(meta["image_scale"]) == pytest.approx(float(post.image_std), rel=1e-12)
    assert tiny_run.model.model.fmd_method == "eigh"  # restored after the export


def test_exportable_fmd_restores_on_error():
    from anomalib_maa import MaaModel
    from anomalib_maa.deploy import exportable_fmd

    model = MaaModel((32, 32), n_features=4)
    with pytest.raises(RuntimeError), exportable_fmd(model):
        assert model.fmd_method == "polar"
        raise RuntimeError
    assert model.fmd_method == "eigh"
    with pytest.raises(TypeError, match="MAA model"), exportable_fmd(torch.nn.Linear(2, 2)):
        pass


@pytest.mark.parametrize("shape", [(3, 16, 4, 4), (3, 4, 5, 5), (2, 64, 8, 8)])
def test_polar_fmd_matches_eigh_in_float32(shape):
    """The exported FMD against the exact float64 one, including near-identical inputs (cancellation)."""
    from anomalib_maa.deploy import polar_frechet_markov_distance

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(shape, generator=generator)
    for b in (torch.randn(shape, generator=generator), a + 0.01 * torch.randn(shape, generator=generator)):
        exact = frechet_markov_distance(a.double(), b.double(), method="eigh")
        approx = polar_frechet_markov_distance(a, b)
        assert approx.dtype == torch.float32 and (approx >= 0).all()
        approx = approx.double()
        assert ((approx - exact).abs() / exact).max().item() < 1e-4


def test_tiled_local_fmd_model_exports_to_onnx(tmp_path):
    """Tiling (anomalib's Tiler) and the windowed FMD export; ONNX Runtime gives the eager results."""
    ort = pytest.importorskip("onnxruntime")
    from anomalib_maa.models.maa.torch_model import MaaModel

    torch.manual_seed(0)
    model = MaaModel((64, 96), n_features=2, feature_layer=2, tile_size=(32, 32), score="local_fmd").eval()
    image = torch.rand(2, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        exact = model(image)
    model.fmd_method = "polar"  # what Maa.to_onnx switches to

    class Outputs(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.inner(x)
            return out.pred_score, out.anomaly_map

    path = tmp_path / "tiled.onnx"
    torch.onnx.export(Outputs(model), (image,), path, opset_version=18, dynamo=True, input_names=["image"])
    score, anomaly_map = ort.InferenceSession(str(path)).run(None, {"image": image.numpy()})
    relative = np.abs(score - exact.pred_score.numpy()).max() / np.abs(exact.pred_score.numpy()).max()
    assert relative <= SCORE_RTOL
    assert np.abs(anomaly_map - exact.anomaly_map.numpy()).max() <= MAP_ATOL
    assert anomaly_map.shape == (2, 1, 64, 96)
