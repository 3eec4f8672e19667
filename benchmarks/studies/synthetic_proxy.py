"""Can the defect-free training images alone tell which score suits a line? (issue 13)

For each checkpoint: every training image is scored clean and with synthetic defects painted on one random tile
(``anomalib_maa.models.maa.synthetic``, the generic blobs of healing, fixed seed). Each score variant is read as
the recipe reads the map (each tile over its q95 on the clean training images, the image by its worst tile), and
the *proxy AUROC* (clean against painted training images) is set beside the variant's real test AUROC. If the
proxy ranks the variants as the test does on every dataset, the score can be chosen from the training images.

    python benchmarks/studies/synthetic_proxy.py --output results/studies/proxy.jsonl \
        --run ksdd:../shared/data/KolektorSDD:CKPT --run pcb:../shared/data/DeepPCB/77000:CKPT
"""

from __future__ import annotations

from pathlib import Path

import torch
from score_study import checkpoint_study_main, resized_splits
from score_variants import tile_table
from torch.utils.data import DataLoader

from anomalib_maa import Maa
from anomalib_maa.benchmark.metrics import image_metrics
from anomalib_maa.metrics.fmd import frechet_markov_distance
from anomalib_maa.models.maa.anomaly_map import AnomalyMapGenerator
from anomalib_maa.models.maa.synthetic import synthetic_defects

VARIANTS = ("map_w5", "map_w7", "feat_l1", "feat_l2", "feat_l3", "fmd")


@torch.inference_mode()
def tile_values(model: Maa, tiles: torch.Tensor) -> dict[str, torch.Tensor]:
    torch_model = model.model
    rebuilt = torch_model.generator(tiles)
    values = {f"map_w{w}": AnomalyMapGenerator(w)(tiles, rebuilt).flatten(1).amax(1) for w in (5, 7)}
    x, r = tiles, rebuilt
    for index, layer in enumerate(torch_model.discriminator.features[: torch_model.discriminator.feature_layer], 1):
        x, r = layer(x), layer(r)
        values[f"feat_l{index}"] = (x - r).square().mean(1).flatten(1).amax(1)
    values["fmd"] = frechet_markov_distance(x, r)
    return values


@torch.inference_mode()
def proxy_tables(model: Maa, dataset, seed: int = 0) -> tuple[dict, dict]:
    """Per-tile values ``(N, T)`` of the clean and the painted training images."""
    torch_model = model.model
    generator = torch.Generator().manual_seed(seed)
    clean: dict[str, list] = {k: [] for k in VARIANTS}
    painted: dict[str, list] = {k: [] for k in VARIANTS}
    for batch in DataLoader(dataset, batch_size=8, collate_fn=dataset.collate_fn):
        image = torch_model.match_channels(model.pre_processor.transform(batch.image))
        n = image.shape[0]
        tiles = torch_model.tiler.tile(image) if torch_model.tiler is not None else image
        n_tiles = tiles.shape[0] // n
        corrupted, _ = synthetic_defects(tiles, prob=1.0, generator=generator)
        chosen = torch.randint(n_tiles, (n,), generator=generator)
        pick = torch.zeros(n, n_tiles, dtype=torch.bool)
        pick[torch.arange(n), chosen] = True
        mixed = torch.where(pick.reshape(-1, 1, 1, 1), corrupted, tiles)
        for table, source in ((clean, tiles), (painted, mixed)):
            for key, value in tile_values(model, source).items():
                table[key].append(value.double().reshape(n, -1))
    return {k: torch.cat(v) for k, v in clean.items()}, {k: torch.cat(v) for k, v in painted.items()}


def study(spec: str) -> dict:
    kind, root, ckpt = spec.split(":", 2)
    model = Maa.load_from_checkpoint(ckpt, map_location="cpu").eval()
    train_data, test_data = resized_splits(f"{kind}:{root}", model)
    clean, painted = proxy_tables(model, train_data)
    test = tile_table(model, test_data)
    labels = torch.cat([torch.zeros(len(clean["map_w7"])), torch.ones(len(painted["map_w7"]))]).long()
    row: dict = {"run": f"{Path(root).name}__{Path(ckpt).parents[5].name}"}
    for key in VARIANTS:
        q95 = torch.quantile(clean[key], 0.95, dim=0)
        proxy = torch.cat([(clean[key] / q95).amax(1), (painted[key] / q95).amax(1)])
        row[f"{key} proxy"] = image_metrics(proxy.float(), labels, None)["image_auroc"]
        row[f"{key} test"] = image_metrics((test[key] / q95).amax(1).float(), test["labels"], None)["image_auroc"]
    return row


def main() -> None:
    checkpoint_study_main(__doc__, "results/studies/proxy.jsonl", lambda spec, _: study(spec))


if __name__ == "__main__":
    main()
