"""Measure MAA training speed with ``ddp_spawn`` on N CPU processes against one process.

Not a test (pytest does not collect it). Run from the repository root, on an otherwise idle machine::

    python tests/distributed/speedup.py --devices 2 --repeats 2

Lightning gives each CPU process ``cores // processes`` threads; ``--single-threads 1`` runs the
single-process baseline with one thread too (on a busy machine the default thread count can be
much slower). Prints, per run: the wall time of ``Engine.fit`` (process start-up included), the training
throughput over the epochs after the first (images/s summed over ranks), the time of the Pauta
scoring pass, and the threads per process. See ``docs/scaling.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from ddp_helpers import fit_maa  # noqa: E402

from anomalib_maa.post_processing import PautaPostProcessor  # noqa: E402


class TimedPauta(PautaPostProcessor):
    """The Pauta post-processor, timing its scoring pass (``seconds``)."""

    seconds = 0.0

    def fit_from_model(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        start = time.perf_counter()
        result = super().fit_from_model(*args, **kwargs)
        self.seconds = time.perf_counter() - start
        return result


def measure(data_root: Path, devices: int, epochs: int, batch_size: int, image_size: int) -> dict[str, float]:
    """One fit; returns wall time, throughput and Pauta time."""
    with tempfile.TemporaryDirectory() as folder:
        run = fit_maa(
            data_root,
            Path(folder),
            devices=devices,
            max_epochs=epochs,
            batch_size=batch_size,
            model_args={"image_size": (image_size, image_size), "post_processor": TimedPauta(save_report=False)},
        )
    ranks = run["ranks"]
    images = sum(record["images_seen"] for record in ranks)
    seconds = max(record["epoch_seconds"] for record in ranks)
    return {
        "devices": devices,
        "fit_seconds": round(run["fit_seconds"], 2),
        "train_images_per_s": round(images / seconds, 2),
        "pauta_seconds": round(max(record["pauta_seconds"] for record in ranks), 3),
        "threads_per_process": ranks[0]["num_threads"],
    }


def main() -> None:
    """Alternate single-process and DDP fits and print one JSON line per run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--single-threads",
        type=int,
        default=0,
        help="torch threads of the single-process run (0: torch's default, all cores)",
    )
    args = parser.parse_args()
    if args.single_threads:
        import torch

        torch.set_num_threads(args.single_threads)  # the DDP children set their own (cores / processes)
    from anomalib_maa.utils.sample_data import make_sample_dataset

    with tempfile.TemporaryDirectory() as folder:
        data_root = make_sample_dataset(
            Path(folder) / "data", n_train=args.n_train, n_test_good=2, n_test_defect=2, size=args.image_size
        )
        for _ in range(args.repeats):
            for devices in (1, args.devices):
                result = measure(data_root, devices, args.epochs, args.batch_size, args.image_size)
                print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
