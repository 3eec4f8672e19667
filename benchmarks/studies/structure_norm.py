"""The anomaly map read against the training images' own residual at the same local structure (issue 13).

On DeepPCB the recipe's map lights every copper edge a little (the generator rebuilds edges a pixel off), so a
defect has to beat the strongest normal edge anywhere on the board. Here each pixel's map value is divided by what
the defect-free training images show at pixels of the same *local structure*: the input's local standard
deviation (the map's window) is cut into quantile bins over the training pixels, and each bin gets a high quantile
of the training map values in it. A pin-hole in flat copper is then read against flat copper, a bite out of an
edge against edges. The image score is the largest normalised value (optionally each tile over its training q95
as in the recipe).

    python benchmarks/studies/structure_norm.py --output results/studies/structure.jsonl \
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

BINS = (16,)
QUANTILES = (0.999,)
FLOORS = (0.03, 0.1, 0.3, 1.0)
"""Each bin's quantile plus this share of the quantile over all training pixels: flat regions rebuild to a residual
of almost nothing, and dividing by almost nothing would read noise as a defect."""


def _local_std(x: torch.Tensor, window: int) -> torch.Tensor:
    pad = window // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    mean = F.avg_pool2d(padded, window, stride=1)
    return (F.avg_pool2d(padded * padded, window, stride=1) - mean * mean).clamp_min(0).sqrt()


@torch.inference_mode()
def maps(model: Maa, dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tile maps ``(N, T, h, w)``, the inputs' local std at the same pixels, and the labels."""
    torch_model = model.model
    window = torch_model.anomaly_map_generator.window
    values, structure, labels = [], [], []
    for batch in DataLoader(dataset, batch_size=8, collate_fn=dataset.collate_fn):
        image = torch_model.match_channels(model.pre_processor.transform(batch.image))
        n = image.shape[0]
        tiles = torch_model.tiler.tile(image) if torch_model.tiler is not None else image
        rebuilt = torch_model.generator(tiles)
        amap = torch_model.anomaly_map_generator(tiles, rebuilt)
        values.append(amap.reshape(n, -1, *amap.shape[-2:]))
        std = _local_std(tiles.mean(1, keepdim=True), window)
        structure.append(std.reshape(n, -1, *std.shape[-2:]))
        labels.append(batch.gt_label)
    return torch.cat(values), torch.cat(structure), torch.cat(labels)


def lookup(
    train_map: torch.Tensor, train_std: torch.Tensor, bins: int, q: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bin edges of the local std (quantiles over training pixels) and each bin's training-map quantile."""
    generator = torch.Generator().manual_seed(0)
    flat_std, flat_map = train_std.flatten(), train_map.flatten()
    sample = torch.randint(flat_std.numel(), (min(flat_std.numel(), 4_000_000),), generator=generator)
    s, m = flat_std[sample], flat_map[sample]
    edges = torch.quantile(s, torch.linspace(0, 1, bins + 1)[1:-1]).unique()
    index = torch.bucketize(s, edges)
    table = torch.stack(
        [torch.quantile(m[index == b], q) if (index == b).any() else m.max() for b in range(len(edges) + 1)]
    )
    return edges, table, torch.quantile(m, q)


def study(spec: str) -> dict:
    kind, root, ckpt = spec.split(":", 2)
    model = Maa.load_from_checkpoint(ckpt, map_location="cpu").eval()
    train_data, test_data = resized_splits(f"{kind}:{root}", model)
    train_map, train_std, _ = maps(model, train_data)
    test_map, test_std, labels = maps(model, test_data)

    def auroc(score: torch.Tensor) -> float:
        return image_metrics(score.float(), labels, None)["image_auroc"]

    row: dict = {"run": f"{Path(root).name}__{Path(ckpt).parents[5].name}"}
    tile_train, tile_test = train_map.flatten(2).amax(2), test_map.flatten(2).amax(2)
    row["recipe (tile q95)"] = auroc((tile_test / torch.quantile(tile_train, 0.95, dim=0)).amax(1))
    row["raw max"] = auroc(tile_test.amax(1))
    for bins in BINS:
        for q in QUANTILES:
            edges, table, overall = lookup(train_map, train_std, bins, q)
            for floor in FLOORS:
                denominator = table + floor * overall
                norm_train = train_map / denominator[torch.bucketize(train_std, edges)]
                norm_test = test_map / denominator[torch.bucketize(test_std, edges)]
                t_train, t_test = norm_train.flatten(2).amax(2), norm_test.flatten(2).amax(2)
                name = f"struct b{bins} q{q} floor {floor}"
                row[name] = auroc(t_test.amax(1))
                row[f"{name} + tile q95"] = auroc((t_test / torch.quantile(t_train, 0.95, dim=0)).amax(1))
    return row


def main() -> None:
    checkpoint_study_main(__doc__, "results/studies/structure.jsonl", lambda spec, _: study(spec))


if __name__ == "__main__":
    main()
