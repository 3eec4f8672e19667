"""Throughput of exported MAA models beside PyTorch's, same run: ``python benchmarks/speed_export.py --output DIR``.

For each model size (random weights, Pauta statistics set from random scores so that the
post-processor runs as in a trained model) at 256x256, batch 4:

* ``pytorch-eigh``: the Lightning model's forward (pre-processor, model with the exact ``eigh`` FMD,
  post-processor) under ``torch.inference_mode``: what ``Engine.predict`` and a torch export run;
* ``pytorch-polar``: the same with the matmul-only FMD that the exports contain;
* ``onnx-openvino``: the ``.onnx`` export read by OpenVINO (as anomalib's ``OpenVINOInferencer`` does);
* ``onnx-onnxruntime``: the ``.onnx`` export in ONNX Runtime (only when ``onnxruntime`` is installed);
* ``openvino-ir``: the OpenVINO IR converted from that ONNX file (what ``to_openvino`` writes).

OpenVINO runs on CPU with ``INFERENCE_PRECISION_HINT=f32`` (``anomalib_maa.deploy.OPENVINO_CONFIG``).
Each backend runs ``--warmup`` batches, then ``--repeats`` timed batches, the backends taking
turns batch by batch (a shared machine's changing load then hits all of them alike); the median
is reported, with the largest relative difference of its normalised scores from ``pytorch-eigh``. Writes
``speed_export.csv`` and ``speed_export.md``. The ``paper`` size (``n_features`` 16, feature layer 4:
961 patches x 512 features) and the ``cpu`` preset (``n_features`` 4, feature layer 3: 1024 x 64)
are the defaults; ``--sizes cpu`` runs the small one only.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

SIZES = {
    "paper": {"n_features": 16, "feature_layer": 4},
    "cpu": {"n_features": 4, "feature_layer": 3},
}
IMAGE_SIZE = 256
COLUMNS = ("size", "backend", "batch", "median_ms", "images_per_s", "max_rel_score_diff", "repeats")


def _build(size: str) -> torch.nn.Module:
    from anomalib_maa import Maa

    torch.manual_seed(0)
    model = Maa(image_size=IMAGE_SIZE, **SIZES[size]).eval()
    post = model.post_processor
    post.save_report = False
    with torch.inference_mode():
        raw = model.model(model.pre_processor(torch.rand(4, 3, IMAGE_SIZE, IMAGE_SIZE)))
    # Plausible statistics around the random model's own scores, so that thresholds are finite.
    scores = raw.pred_score.double().numpy()
    post.fit_scores(np.concatenate([scores * 0.9, scores * 1.1]), raw.anomaly_map)
    return model


def _time_interleaved(
    runners: dict[str, Callable[[], np.ndarray]], warmup: int, repeats: int
) -> dict[str, tuple[float, np.ndarray]]:
    """Median seconds per batch of each runner, timed round-robin so that load changes hit all alike."""
    outputs = {}
    for name, run in runners.items():
        for _ in range(warmup):
            outputs[name] = run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            outputs[name] = run()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), outputs[name]) for name in runners}


def _torch_runner(model: torch.nn.Module, method: str, batch: torch.Tensor) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        model.model.fmd_method = method
        try:
            with torch.inference_mode():
                return model(batch).pred_score.double().numpy()
        finally:
            model.model.fmd_method = "eigh"

    return run


def _openvino_runner(path: Path, batch: np.ndarray) -> Callable[[], np.ndarray]:
    import openvino as ov

    from anomalib_maa.deploy import OPENVINO_CONFIG

    compiled = ov.Core().compile_model(str(path), "CPU", OPENVINO_CONFIG)
    request = compiled.create_infer_request()
    output = next(out for out in compiled.outputs if "pred_score" in out.names)

    def run() -> np.ndarray:
        request.infer({0: batch})
        return np.asarray(request.get_tensor(output).data, dtype=np.float64).copy()

    return run


def _onnxruntime_runner(path: Path, batch: np.ndarray) -> Callable[[], np.ndarray] | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run() -> np.ndarray:
        return np.asarray(session.run(["pred_score"], {name: batch})[0], dtype=np.float64)

    return run


def bench_size(size: str, batch_size: int, warmup: int, repeats: int, workdir: Path) -> list[dict]:
    """Export one model size and time every backend on the same batch."""
    import openvino as ov

    model = _build(size)
    images = torch.rand(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    onnx_path = model.to_onnx(workdir / size, input_size=(IMAGE_SIZE, IMAGE_SIZE))
    export_s = time.perf_counter() - start
    ir_path = workdir / size / "openvino" / "model.xml"
    ov.save_model(ov.convert_model(onnx_path), ir_path, compress_to_fp16=False)
    logging.info("%s: exported in %.1f s", size, export_s)

    array = images.numpy()
    runners: dict[str, Callable[[], np.ndarray] | None] = {
        "pytorch-eigh": _torch_runner(model, "eigh", images),
        "pytorch-polar": _torch_runner(model, "polar", images),
        "onnx-openvino": _openvino_runner(onnx_path, array),
        "onnx-onnxruntime": _onnxruntime_runner(onnx_path, array),
        "openvino-ir": _openvino_runner(ir_path, array),
    }
    for backend in [name for name, run in runners.items() if run is None]:
        logging.info("%s: %s skipped (not installed)", size, backend)
        del runners[backend]
    timed = _time_interleaved(runners, warmup, repeats)
    reference = timed["pytorch-eigh"][1]
    rows = []
    for backend, (median, scores) in timed.items():
        diff = float(np.max(np.abs(scores - reference) / np.abs(reference)))
        rows.append(
            {
                "size": size,
                "backend": backend,
                "batch": batch_size,
                "median_ms": round(1000 * median, 1),
                "images_per_s": round(batch_size / median, 2),
                "max_rel_score_diff": f"{diff:.1e}",
                "repeats": repeats,
            }
        )
        logging.info("%s %-17s %8.1f ms/batch  %6.2f images/s", size, backend, 1000 * median, batch_size / median)
    return rows


def _environment() -> list[str]:
    import openvino

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return [
        f"- CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, "
        f"torch threads {torch.get_num_threads()}; load average at the end {load[0]:.1f}",
        f"- torch {torch.__version__}, openvino {openvino.__version__}, Python {platform.python_version()}",
    ]


def write_report(rows: list[dict], output: Path, settings: str) -> None:
    """Write ``speed_export.csv`` and ``speed_export.md``."""
    output.mkdir(parents=True, exist_ok=True)
    with (output / "speed_export.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "# Throughput of exported MAA models",
        "",
        f"256x256 RGB, {settings}. Random weights; median after warm-up, backends timed in turn. "
        "`max_rel_score_diff`: largest relative difference of the normalised scores from `pytorch-eigh`.",
        "",
        *_environment(),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(str(row[column]) for column in COLUMNS) + " |" for row in rows),
        "",
    ]
    (output / "speed_export.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="Folder for speed_export.csv and speed_export.md")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.filterwarnings("ignore")
    for name in ("torch.onnx", "onnxscript", "onnx_ir", "anomalib"):
        logging.getLogger(name).setLevel(logging.WARNING)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as workdir:
        for size in args.sizes:
            rows.extend(bench_size(size, args.batch_size, args.warmup, args.repeats, Path(workdir)))
    settings = f"batch {args.batch_size}, {args.warmup} warm-up + {args.repeats} timed batches"
    write_report(rows, Path(args.output), settings)
    print((Path(args.output) / "speed_export.md").read_text())  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
