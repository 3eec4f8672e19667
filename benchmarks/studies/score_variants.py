"""Per-tile score variants of trained MAA checkpoints, read in one pass (issue 13).

For each checkpoint, each training and test image is cut into the model's tiles and rebuilt once; from the
input tiles and their reconstructions every variant's tile score is computed:

- ``map_w{3,5,7,11,15}``: the recipe's anomaly map (residual local variance, squared) with that window, its maximum;
- ``contrast_w7``: the residual's local variance over the input's own local variance (plus a floor), squared, its
  maximum: edges of the printed pattern have a large input variance, a pin-hole inside copper does not;
- ``feat_l{1,2,3}``: the squared distance between the Markov features of the input and of the reconstruction at
  discriminator layer 1-3, averaged over channels, its largest patch;
- ``tol{1,2}_w7``: the recipe's map of a shift-tolerant residual: at each pixel the residual against the
  reconstruction shifted by up to 1 or 2 pixels that is smallest in size (a copper edge rebuilt a pixel off no
  longer reads as a defect, a pin-hole inside copper still does);
- ``fmd``: the paper's FMD of the tile.

Prints the image AUROC of each variant read as the recipe reads the map (raw worst tile, and each tile over its
training q95), and saves the per-tile tables (``.pt``) for combinations.

    python benchmarks/studies/score_variants.py --output results/studies/variants \
        --run ksdd:../shared/data/KolektorSDD:CKPT --run pcb:../shared/data/DeepPCB/77000:CKPT
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from score_study import checkpoint_study_main, resized_splits
from torch.utils.data import DataLoader

from anomalib_maa import Maa
from anomalib_maa.benchmark.metrics import image_metrics
from anomalib_maa.metrics.fmd import frechet_markov_distance
from anomalib_maa.models.maa.anomaly_map import AnomalyMapGenerator

WINDOWS = (3, 5, 7, 11, 15)
CONTRAST_FLOOR = 0.01


def _local_variance(x: torch.Tensor, window: int) -> torch.Tensor:
    pad = window // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    mean = F.avg_pool2d(padded, window, stride=1)
    mean_sq = F.avg_pool2d(padded * padded, window, stride=1)
    return (mean_sq - mean * mean).clamp_min(0)


def tolerant_residual(image: torch.Tensor, rebuilt: torch.Tensor, shift: int) -> torch.Tensor:
    """Per pixel, the signed residual ``x - G(x)`` of smallest size over reconstructions shifted by <= ``shift``."""
    image, rebuilt = image.mean(1, keepdim=True), rebuilt.mean(1, keepdim=True)
    height, width = image.shape[-2:]
    padded = F.pad(rebuilt, (shift, shift, shift, shift), mode="replicate")
    best = image - rebuilt
    for dy in range(2 * shift + 1):
        for dx in range(2 * shift + 1):
            residual = image - padded[..., dy : dy + height, dx : dx + width]
            best = torch.where(residual.abs() < best.abs(), residual, best)
    return best


@torch.inference_mode()
def tile_table(model: Maa, dataset) -> dict[str, torch.Tensor]:
    """Per-tile values ``(N, T)`` of every variant on one dataset, and its labels."""
    torch_model = model.model
    maps = {w: AnomalyMapGenerator(w) for w in WINDOWS}
    columns: dict[str, list[torch.Tensor]] = {}
    labels = []

    def add(key: str, value: torch.Tensor, n: int) -> None:
        columns.setdefault(key, []).append(value.double().reshape(n, -1))

    for batch in DataLoader(dataset, batch_size=8, collate_fn=dataset.collate_fn):
        image = torch_model.match_channels(model.pre_processor.transform(batch.image))
        n = image.shape[0]
        tiles = torch_model.tiler.tile(image) if torch_model.tiler is not None else image
        rebuilt = torch_model.generator(tiles)
        for window, generator in maps.items():
            add(f"map_w{window}", generator(tiles, rebuilt).flatten(1).amax(1), n)
        for shift in (1, 2):
            tolerant = tolerant_residual(tiles, rebuilt, shift)
            add(f"tol{shift}_w7", maps[7](tolerant, torch.zeros_like(tolerant)).flatten(1).amax(1), n)
        residual = (tiles - rebuilt).mean(1, keepdim=True)
        contrast = _local_variance(residual, 7) / (_local_variance(tiles.mean(1, keepdim=True), 7) + CONTRAST_FLOOR)
        add("contrast_w7", contrast.square().flatten(1).amax(1), n)
        x, r = tiles, rebuilt
        for index, layer in enumerate(torch_model.discriminator.features[: torch_model.discriminator.feature_layer], 1):
            x, r = layer(x), layer(r)
            add(f"feat_l{index}", (x - r).square().mean(1).flatten(1).amax(1), n)
        add("fmd", frechet_markov_distance(x, r), n)
        labels.append(batch.gt_label)
    return {**{k: torch.cat(v) for k, v in columns.items()}, "labels": torch.cat(labels)}


def study(spec: str, output: Path) -> dict[str, float | str]:
    kind, root, ckpt = spec.split(":", 2)
    model = Maa.load_from_checkpoint(ckpt, map_location="cpu").eval()
    train_data, test_data = resized_splits(f"{kind}:{root}", model)
    train, test = tile_table(model, train_data), tile_table(model, test_data)
    name = f"{Path(root).name}__{Path(ckpt).parents[5].name}"
    output.mkdir(parents=True, exist_ok=True)
    torch.save({"train": train, "test": test, "checkpoint": ckpt}, output / f"{name}.pt")
    labels = test["labels"]
    row: dict[str, float | str] = {"run": name}
    for key in train:
        if key == "labels":
            continue
        quantile = torch.quantile(train[key], 0.95, dim=0)
        row[f"{key} raw"] = image_metrics(test[key].amax(1).float(), labels, None)["image_auroc"]
        row[f"{key} q95"] = image_metrics((test[key] / quantile).amax(1).float(), labels, None)["image_auroc"]
    return row


def main() -> None:
    checkpoint_study_main(__doc__, "results/studies/variants", study, rows="rows.jsonl")


if __name__ == "__main__":
    main()
