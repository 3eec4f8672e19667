"""The quick-start job: generate a sample dataset, train and test a fast MAA preset on it.

Run ``anomalib-maa demo --output results/demo`` (or ``python -m anomalib_maa.demo``). Prints the
test metrics and writes the checkpoint, metrics (``metrics.json``) and visualisations under the
output folder. Works offline; takes about a minute on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from anomalib_maa.utils.sample_data import folder_datamodule, make_sample_dataset

# The fast CPU preset sized for the 64x64 sample data (see configs/maa_cpu.yaml for real data).
DEMO_MODEL_ARGS = {
    "image_size": (64, 64),
    "in_channels": 3,
    "n_features": 4,
    "max_epochs": 30,
    "lr": 1e-3,
    "feature_layer": 2,
}


def run_demo(output: str | Path, seed: int = 0) -> dict[str, float]:
    """Generate the sample data under ``output/data``, train and test MAA, return the test metrics."""
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_maa import Maa

    output = Path(output)
    seed_everything(seed, workers=True)
    root = make_sample_dataset(output / "data", seed=seed)
    datamodule = folder_datamodule(root, batch_size=8)
    model = Maa(**DEMO_MODEL_ARGS)
    engine = Engine(default_root_dir=output, accelerator="cpu", limit_val_batches=0, logger=False)
    engine.fit(model, datamodule=datamodule)
    metrics = engine.test(model, datamodule=datamodule)[0]
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry of the demo."""
    parser = argparse.ArgumentParser(prog="anomalib-maa demo", description=__doc__)
    parser.add_argument("--output", default="results/demo", help="Output folder (default: results/demo)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    metrics = run_demo(args.output, args.seed)
    print(json.dumps(metrics, indent=2))  # noqa: T201
    print(f"Results in {Path(args.output).resolve()}")  # noqa: T201


if __name__ == "__main__":
    main()
