"""Deployment of MAA: export with the FMD and the Pauta threshold inside the graph, and prediction on folders.

* :func:`exportable_fmd` switches a model's FMD to its matmul-only, float32-safe form
  (:func:`polar_frechet_markov_distance`) for the time of an export; :class:`~anomalib_maa.Maa`
  uses it in ``to_onnx`` (and so in ``to_openvino``), so ``Engine.export`` needs nothing more.
* :data:`OPENVINO_CONFIG` is the compile configuration that exported models need in OpenVINO
  (float32 inference: CPUs with bfloat16 support otherwise run the graph in bfloat16).
* :func:`predict_folder` scores an image or a folder with a checkpoint or an exported model and
  writes ``predictions.csv`` and overlay PNGs (the ``anomalib-maa predict`` command).

See ``docs/deployment.md``. The names are imported on first use, so that importing the deployment helpers does not
import the prediction code. The FMD of exports lives with the exact one (:mod:`anomalib_maa.metrics.fmd_polar`).

Example:
    >>> from anomalib_maa.deploy import OPENVINO_CONFIG
    >>> OPENVINO_CONFIG
    {'INFERENCE_PRECISION_HINT': 'f32'}
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "OPENVINO_CONFIG": "anomalib_maa.deploy.export",
    "exportable_fmd": "anomalib_maa.deploy.export",
    "export_metadata": "anomalib_maa.deploy.export",
    "openvino_inferencer": "anomalib_maa.deploy.export",
    "read_export_metadata": "anomalib_maa.deploy.export",
    "polar_frechet_markov_distance": "anomalib_maa.metrics.fmd_polar",
    "Predictor": "anomalib_maa.deploy.predictors",
    "PredictionError": "anomalib_maa.deploy.predictors",
    "load_predictor": "anomalib_maa.deploy.predictors",
    "predict_folder": "anomalib_maa.deploy.predict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:  # noqa: ANN401
    """Import the public names lazily."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
