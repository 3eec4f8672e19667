"""Check that a refactoring leaves MAA's numbers unchanged: tiny seeded runs, raw scores and thresholds as JSON.

Trains three small MAA configurations (the CPU preset's options at 64x64, the export FMD with a false-alarm rate,
the local FMD with γ = 2) on generated data for two epochs, tests them, and prints one JSON line with the raw test
scores, both thresholds, μ, σ, γ and the evaluator's metrics. Run it on two checkouts and compare the lines::

    git archive <before> anomalib_maa | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before python benchmarks/studies/equivalence.py > before.json
    python benchmarks/studies/equivalence.py > after.json
    diff <(tail -1 before.json) <(tail -1 after.json) && echo identical

About two minutes on one core.
"""

from __future__ import annotations

import json
import tempfile
import warnings

import torch
from anomalib.engine import Engine
from lightning.pytorch import seed_everything

from anomalib_maa import Maa
from anomalib_maa.post_processing import PautaPostProcessor
from anomalib_maa.utils.sample_data import folder_datamodule, make_sample_dataset

CONFIGS = {
    "cpu_preset_like": {
        "tile_size": (32, 32),
        "lr_schedule": "cosine",
        "augment_flips": True,
        "heal_prob": 0.5,
        "feature_layer": 3,
        "score": "map_max",
        "post_processor": PautaPostProcessor(method="lognormal"),
    },
    "fmd_polar": {
        "feature_layer": 2,
        "score": "fmd",
        "fmd_method": "polar",
        "post_processor": PautaPostProcessor(false_alarm_rate=0.05),
    },
    "local_fmd": {"feature_layer": 2, "score": "local_fmd", "gamma": 2.0},
}


def run(name: str, root: str) -> dict:
    """Train and test one configuration; its raw scores, thresholds and metrics."""
    seed_everything(0)
    model = Maa(image_size=(64, 64), n_features=2, lr=1e-3, max_epochs=2, visualizer=False, **CONFIGS[name])
    engine = Engine(
        accelerator="cpu",
        default_root_dir=tempfile.mkdtemp(),
        limit_val_batches=0,
        enable_progress_bar=False,
        logger=False,
    )
    datamodule = folder_datamodule(root, batch_size=8)
    engine.fit(model, datamodule=datamodule)
    metrics = engine.test(model, datamodule=datamodule, verbose=False)[0]
    model.eval()
    with torch.no_grad():
        raw = [model.model(model.pre_processor.transform(b.image)).pred_score for b in datamodule.test_dataloader()]
    post = model.post_processor
    return {
        "metrics": {key: round(float(value), 10) for key, value in metrics.items()},
        "raw_scores": [float(value) for value in torch.cat(raw)],
        "image_threshold": float(post.image_threshold),
        "pixel_threshold": float(post.pixel_threshold),
        "mu": float(post.image_mean),
        "sigma": float(post.image_std),
        "gamma": post.gamma,
    }


def main() -> None:
    """Print the results of every configuration as one JSON line."""
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    root = make_sample_dataset(tempfile.mkdtemp(), size=64, seed=0)
    print(json.dumps({name: run(name, str(root)) for name in CONFIGS}))  # noqa: T201


if __name__ == "__main__":
    main()
