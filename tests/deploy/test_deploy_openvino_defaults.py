"""The exported OpenVINO IR compiled with OpenVINO's defaults (no ``INFERENCE_PRECISION_HINT``), as anomalib's
``OpenVINOInferencer`` and most serving code compile it (issue 16).

On a CPU with bfloat16 units (AVX512-BF16, AMX) OpenVINO's default CPU precision is bf16, and the FMD comes out
several hundred per cent off. The hint stored in the IR's ``runtime_options`` is ignored by the CPU plugin (checked
with OpenVINO 2026.4.1), so these tests ``xfail`` with the measured error where the default is bf16, and must pass
everywhere else (and once OpenVINO honours the stored hint, or the graph is exact in bf16).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_deploy_export import _compare


def _default_precision(compiled) -> str:
    return str(compiled.get_property("INFERENCE_PRECISION_HINT").to_string())


def _compare_or_xfail(tiny_run, precision: str, scores, labels, maps, masks) -> None:
    try:
        _compare(tiny_run.reference, scores, labels, maps, masks)
    except AssertionError as error:
        if precision != "bf16":
            raise
        pytest.xfail(f"OpenVINO compiles to bf16 by default on this CPU; relative score error {error}")


def test_default_compile_matches_lightning(tiny_run, exports):
    import openvino as ov
    from anomalib.data.utils import read_image

    compiled = ov.Core().compile_model(str(exports.openvino), "CPU")
    batch = np.stack([read_image(path, as_tensor=True).numpy() for path in tiny_run.test_images]).astype(np.float32)
    result = compiled({0: batch})
    out = {next(iter(output.names)): value for output, value in zip(compiled.outputs, result.to_tuple(), strict=True)}
    precision = _default_precision(compiled)
    _compare_or_xfail(tiny_run, precision, out["pred_score"], out["pred_label"], out["anomaly_map"], out["pred_mask"])


def test_anomalib_openvino_inferencer_with_its_defaults(tiny_run, exports, monkeypatch, tmp_path):
    import openvino as ov
    from anomalib.deploy import OpenVINOInferencer

    monkeypatch.chdir(tmp_path)  # the inferencer writes ./openvino_cache
    inferencer = OpenVINOInferencer(path=exports.openvino, device="CPU")
    outputs = [inferencer.predict(path) for path in tiny_run.test_images]
    precision = _default_precision(ov.Core().compile_model(str(exports.openvino), "CPU"))
    _compare_or_xfail(
        tiny_run,
        precision,
        [float(np.asarray(out.pred_score).reshape(-1)[0]) for out in outputs],
        [bool(np.asarray(out.pred_label).reshape(-1)[0]) for out in outputs],
        [out.anomaly_map for out in outputs],
        [out.pred_mask for out in outputs],
    )


def test_precision_hint_stored_in_the_ir_is_not_honoured(exports, tmp_path):
    """``model.set_rt_info("f32", ["runtime_options", "INFERENCE_PRECISION_HINT"])`` before ``ov.save_model``."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(exports.openvino))
    model.set_rt_info("f32", ["runtime_options", "INFERENCE_PRECISION_HINT"])
    ov.save_model(model, tmp_path / "hinted.xml", compress_to_fp16=False)
    default = _default_precision(core.compile_model(str(exports.openvino), "CPU"))
    hinted = _default_precision(core.compile_model(str(tmp_path / "hinted.xml"), "CPU"))
    assert hinted == default  # stored hint ignored: bf16 stays bf16 (f32 on CPUs without bf16 units)
    assert (
        _default_precision(core.compile_model(str(exports.openvino), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}))
        == "f32"
    )
