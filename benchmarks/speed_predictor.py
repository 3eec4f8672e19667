"""Images per second of ``anomalib-maa predict``'s torch predictor, as trained and optimised (issue 15).

Times :class:`~anomalib_maa.deploy.predictors.TorchPredictor` with ``optimize=False`` (the model as trained) and
``optimize=True`` (batch norm folded, channels-last: the default) on the CPU preset's shape (640x256 in 128x128
tiles, one channel, ``n_features`` 4, the map-maximum score) or the paper's (256x256, ``n_features`` 16, the FMD),
in turns, in one process. Random weights (the default) time the arithmetic but leave the generator's output near
zero, so the two score the same trivially; ``--ckpt`` times a trained checkpoint instead (its own shape) and
reports the largest relative difference of its scores. Prints a table and writes it as JSON.

    python benchmarks/speed_predictor.py --output results/speed_predictor.json \
        --ckpt results/el_b/runs/Maa-cpu__ksdd__seed0/Maa/Ksdd/v0/weights/lightning/model.ckpt
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from anomalib_maa import Maa
from anomalib_maa.deploy.predictors import TorchPredictor

SHAPES = {
    "cpu-preset 640x256": {
        "image_size": (640, 256),
        "tile_size": (128, 128),
        "in_channels": 1,
        "n_features": 4,
        "feature_layer": 3,
        "score": "map_max",
    },
    "paper 256x256": {"image_size": (256, 256), "n_features": 16, "feature_layer": 4, "score": "fmd"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("results/speed_predictor.json"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10, help="Timed batches per predictor and shape")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--ckpt", type=Path, help="Also time this trained MAA checkpoint (real weights and scores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    models = {
        f"random, {name.split()[0]}": lambda name=name: Maa(**SHAPES[name], visualizer=False) for name in args.shapes
    }
    if args.ckpt:
        models["trained checkpoint"] = lambda: Maa.load_from_checkpoint(args.ckpt, map_location="cpu", visualizer=False)
    for name, build in models.items():
        model = build().eval()
        images = torch.rand(args.batch, 3, *model.image_size)
        source = args.ckpt if name == "trained checkpoint" else Path("random weights")
        predictors = {flag: TorchPredictor(model, source, optimize=flag) for flag in (False, True)}
        outputs = {flag: predictor.predict(images) for flag, predictor in predictors.items()}  # warm-up
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeats):
            for flag, predictor in predictors.items():  # in turns: both see the same machine load
                start = time.perf_counter()
                predictor.predict(images)
                times[flag].append(time.perf_counter() - start)
        plain, fast = (args.batch / statistics.median(times[flag]) for flag in (False, True))
        difference = float(np.max(np.abs(outputs[True].score - outputs[False].score) / np.abs(outputs[False].score)))
        rows.append(
            {
                "model": name,
                "image_size": list(model.image_size),
                "batch": args.batch,
                "threads": args.threads,
                "as_trained_images_per_s": plain,
                "optimized_images_per_s": fast,
                "ratio": fast / plain,
                "max_relative_score_difference": difference,
            }
        )
    print("| model | as trained, images/s | optimised, images/s | ratio | max rel. score difference |")
    print("|---|---|---|---|---|")
    for row in rows:
        size = "x".join(str(side) for side in row["image_size"])
        print(
            f"| {row['model']} ({size}) | {row['as_trained_images_per_s']:.2f} | {row['optimized_images_per_s']:.2f} "
            f"| {row['ratio']:.2f}x | {row['max_relative_score_difference']:.1e} |"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
