"""Tile-normalised scores (``tile_norm``) of trained MAA checkpoints, against the raw worst-tile score.

Each checkpoint is loaded with ``tile_norm`` set to ``--method`` (``zscore``, the default, or ``quantile``); its
Pauta post-processor is fitted on the defect-free training images through the package's own path
(``fit_from_model``, which fits the per-tile statistics and then the threshold), and the test images are scored.
Prints and writes the image AUROC of the raw score (the largest tile score, what the checkpoint was trained to
give) and of the tile-normalised one, per checkpoint.

    python benchmarks/studies/tile_norm.py --output results/studies/tile_norm.json \
        --run ksdd:../shared/data/KolektorSDD:results/ck/runs/Maa-cpu__ksdd__seed1/.../model.ckpt \
        --run pcb:../shared/data/DeepPCB/77000:results/.../model.ckpt
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


@torch.inference_mode()
def test_scores(model: Maa, dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw worst-tile scores, tile-normalised scores and labels of a dataset's images."""
    raw, normalised, labels = [], [], []
    for batch in DataLoader(dataset, batch_size=8, collate_fn=dataset.collate_fn):
        image = model.pre_processor.transform(batch.image)
        tile_scores, _ = model.model.tile_scores(image)  # one generator pass gives both scores
        raw.append(tile_scores.amax(dim=1))
        normalised.append(model.model.score_norm(tile_scores))
        labels.append(batch.gt_label)
    return torch.cat(raw), torch.cat(normalised), torch.cat(labels)


def study(spec: str, method: str = "zscore") -> dict[str, float | str]:
    """``kind:root:checkpoint`` -> image AUROC of the raw and the tile-normalised score."""
    kind, root, ckpt = spec.split(":", 2)
    rule = "normal" if method == "zscore" else "lognormal"  # z-scores can be negative; q95 shares cannot
    model = Maa.load_from_checkpoint(ckpt, map_location="cpu", tile_norm=method).eval()
    model.post_processor.method = rule
    train_data, test_data = resized_splits(f"{kind}:{root}", model)
    train = DataLoader(train_data, batch_size=8, collate_fn=train_data.collate_fn)
    model.post_processor.fit_from_model(model, dataloader=train)
    raw, normalised, labels = test_scores(model, test_data)
    return {
        "checkpoint": ckpt,
        "method": method,
        "dataset": Path(root).name,
        "raw": image_metrics(raw, labels, None)["image_auroc"],
        "tile_norm": image_metrics(normalised, labels, None)["image_auroc"],
        "n_train": len(train_data),
        "n_test": len(test_data),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="kind:ROOT:CHECKPOINT (kind ksdd or pcb)")
    parser.add_argument("--output", default="results/studies/tile_norm.json")
    parser.add_argument("--method", default="zscore", choices=["zscore", "quantile"], help="tile_norm method")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for spec in args.run:
        row = study(spec, args.method)
        rows.append(row)
        print(
            f"{row['dataset']:12s} raw {row['raw']:.3f}  {args.method} {row['tile_norm']:.3f}  {row['checkpoint']}",
            flush=True,
        )
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
