"""A reduced smoke leaderboard, run once for the benchmark tests."""

from __future__ import annotations

import pytest

REDUCED_SMOKE = {
    "name": "reduced-smoke",
    "seeds": [0],
    "threads": 1,
    "trainer": {"accelerator": "cpu", "max_epochs": 1, "limit_val_batches": 0},
    "models": [
        {
            "name": "Maa",
            "preset": "tiny",
            "model": "anomalib_maa.Maa",
            "init_args": {
                "image_size": [32, 32],
                "n_features": 2,
                "max_epochs": 1,
                "lr": 0.001,
                "feature_layer": 3,
                "ab_seed": "${seed}",
                "post_processor": {
                    "class_path": "anomalib_maa.post_processing.PautaPostProcessor",
                    "init_args": {"gamma": 3.0, "save_report": False},
                },
            },
            "score_variants": ["pixel_l1", "markov_l1", "fmd"],
        },
        {
            "name": "Padim",
            "preset": "random-r18",
            "model": "padim",
            "weights": "random",
            "init_args": {"backbone": "resnet18", "layers": ["layer1", "layer2"], "n_features": 20},
        },
        {"name": "Broken", "model": "padim", "weights": "random", "init_args": {"not_an_argument": 1}},
    ],
    "datamodules": [
        {
            "name": "tiny",
            "kind": "sample",
            "cache": True,
            "init_args": {"n_train": 8, "n_test_good": 4, "n_test_defect": 4, "size": 32, "batch_size": 4},
        }
    ],
}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """Run the reduced smoke leaderboard once; return (config, output folder, rows)."""
    from anomalib_maa.benchmark import parse_config, run_leaderboard

    config = parse_config(REDUCED_SMOKE)
    output = tmp_path_factory.mktemp("leaderboard")
    rows = run_leaderboard(config, output, progress=False)
    return config, output, rows
