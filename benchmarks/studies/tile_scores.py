"""Per-tile scores of trained MAA checkpoints, and the image AUROC of ways to read them (issue 13).

For each checkpoint: the raw tile scores (anomaly-map maximum and FMD) of the training and test images, and the
input-only and reconstruction-only statistics of the Markov features (largest tile's mean feature norm and
covariance trace). Prints the image AUROC of the raw worst tile, of ``TileScoreNorm`` (the package's
``tile_norm``), of each tile divided by its training q90/q95/q98, and of the feature statistics.

    python benchmarks/studies/tile_scores.py --output results/studies/tile_scores.json \
        --run ksdd:../shared/data/KolektorSDD:CKPT --run pcb:../shared/data/DeepPCB/77000:CKPT
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from score_study import resized_splits
from torch.utils.data import DataLoader

from anomalib_maa import Maa
from anomalib_maa.benchmark.metrics import image_metrics
from anomalib_maa.metrics.fmd import frechet_markov_distance
from anomalib_maa.models.maa.score_norm import TileScoreNorm


def _feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = features.flatten(2).double()
    mean = flat.mean(2)
    centred = flat - mean[..., None]
    return (mean * mean).sum(1), (centred * centred).sum((1, 2)) / (flat.shape[2] - 1)


@torch.inference_mode()
def tile_table(model: Maa, dataset) -> dict[str, torch.Tensor]:
    """Per-tile values ``(N, T)`` of one dataset, and its labels."""
    torch_model = model.model
    columns: dict[str, list[torch.Tensor]] = {k: [] for k in ("map_max", "fmd", "in_mean", "in_trace", "rec_trace")}
    labels = []
    for batch in DataLoader(dataset, batch_size=8, collate_fn=dataset.collate_fn):
        image = torch_model.match_channels(model.pre_processor.transform(batch.image))
        n = image.shape[0]
        tiles = torch_model.tiler.tile(image) if torch_model.tiler is not None else image
        rebuilt = torch_model.generator(tiles)
        markov = torch_model.discriminator.markov_features
        f_in, f_rec = markov(tiles), markov(rebuilt)
        in_mean, in_trace = _feature_statistics(f_in)
        _, rec_trace = _feature_statistics(f_rec)
        values = {
            "map_max": torch_model.anomaly_map_generator(tiles, rebuilt).flatten(1).amax(1),
            "fmd": frechet_markov_distance(f_in, f_rec),
            "in_mean": in_mean,
            "in_trace": in_trace,
            "rec_trace": rec_trace,
        }
        for key, value in values.items():
            columns[key].append(value.double().reshape(n, -1))
        labels.append(batch.gt_label)
    return {**{k: torch.cat(v) for k, v in columns.items()}, "labels": torch.cat(labels)}


def study(spec: str) -> dict[str, float | str]:
    kind, root, ckpt = spec.split(":", 2)
    model = Maa.load_from_checkpoint(ckpt, map_location="cpu").eval()
    train_data, test_data = resized_splits(f"{kind}:{root}", model)
    train, test = tile_table(model, train_data), tile_table(model, test_data)
    labels = test["labels"]

    def auroc(score: torch.Tensor) -> float:
        return image_metrics(score.float(), labels, None)["image_auroc"]

    norm = TileScoreNorm(train["map_max"].shape[1])
    norm.fit(train["map_max"])
    row: dict[str, float | str] = {"checkpoint": ckpt, "dataset": Path(root).name}
    row["map_max raw"] = auroc(test["map_max"].amax(1))
    row["map_max tile_norm"] = auroc(norm(test["map_max"]))
    for q in (0.9, 0.95, 0.98):
        quantile = torch.quantile(train["map_max"], q, dim=0)
        row[f"map_max / training q{round(q * 100)}"] = auroc((test["map_max"] / quantile).amax(1))
    for key in ("fmd", "in_mean", "in_trace", "rec_trace"):
        row[f"{key} worst tile"] = auroc(test[key].amax(1))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="kind:ROOT:CHECKPOINT (kind ksdd or pcb)")
    parser.add_argument("--output", default="results/studies/tile_scores.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for spec in args.run:
        row = study(spec)
        rows.append(row)
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
