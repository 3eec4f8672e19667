"""Score study for issue 13: image scores of one trained MAA checkpoint, on its training and test images.

Computes the model's score variants (FMD, local FMD, map maximum, ...) on the defect-free training images
and on the test images, then each variant and combinations of them standardised against the training
images' own spread (z-scores of log scores), and prints the image AUROC of each.

    python benchmarks/studies/score_study.py --ckpt results/dev_ckpts/Maa-heal__pcb44000__seed0.ckpt \
        --data pcb:../shared/data/DeepPCB/44000 --output results/studies
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch
from anomalib.data import Folder

from anomalib_maa import Maa
from anomalib_maa.benchmark.ablation import variant_scores
from anomalib_maa.benchmark.metrics import image_metrics
from anomalib_maa.data import Ksdd

VARIANTS = ("pixel_l1", "markov_l1", "fmd", "local_fmd", "map_max")


def datamodule(spec: str):
    kind, root = spec.split(":", 1)
    if kind == "ksdd":
        return Ksdd(root=root, num_workers=0)
    return Folder(
        name=Path(root).name,
        root=root,
        normal_dir="train/good",
        abnormal_dir="test/defect",
        normal_test_dir="test/good",
        mask_dir="ground_truth/defect",
        val_split_mode="none",
        num_workers=0,
    )


def resized_splits(spec: str, model: Maa):
    """The training and test sets of ``spec`` (``kind:root``), read at the model's input size (its resize)."""
    data = datamodule(spec)
    data.setup("fit")
    data.setup("test")
    resize = model.pre_processor.transform.transforms[0]
    for dataset in (data.train_data, data.test_data):
        dataset.augmentations = resize
    return data.train_data, data.test_data


def checkpoint_study_main(doc: str, default_output: str, study: Callable[[str, Path], dict], rows: str = "") -> None:
    """The command line the checkpoint studies share: ``--run kind:ROOT:CHECKPOINT`` (repeated) and ``--output``.

    Each run's row (``study(spec, output)``) is printed and appended as one JSON line to ``output`` itself, or to
    ``output / rows`` when ``rows`` names a file inside an output folder. One torch thread, as the leaderboard's.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="kind:ROOT:CHECKPOINT (kind ksdd or pcb)")
    parser.add_argument("--output", default=default_output)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.output)
    lines = out / rows if rows else out
    lines.parent.mkdir(parents=True, exist_ok=True)
    for spec in args.run:
        row = study(spec, out)
        print(json.dumps(row), flush=True)  # noqa: T201
        with lines.open("a") as file:
            file.write(json.dumps(row) + "\n")


def standardise(train: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    log_train, log_test = train.double().clamp_min(1e-12).log(), test.double().clamp_min(1e-12).log()
    return (log_test - log_train.mean()) / log_train.std().clamp_min(1e-12)


@torch.inference_mode()
def residual_study(model: Maa, dataset, scores: dict[str, torch.Tensor]) -> dict[str, float]:
    """Does the generator rebuild defects, and does the FMD follow image content rather than defects?

    Returns the mean absolute residual ``|x - G(x)|`` inside and outside the defect masks of the
    defective images, and the Spearman correlation of the normal images' scores with their mean grey
    level (image-level brightness / print density).
    """
    from scipy.stats import spearmanr
    from torch.utils.data import DataLoader

    torch_model = model.model
    transform = model.pre_processor.transform
    inside, outside, grey = [], [], []
    extra: dict[str, list[float]] = {"map_max_blur4": [], "map_top1%": [], "map_max_inner8": [], "map_max_overlap": []}
    from torchvision.transforms.v2.functional import gaussian_blur

    normal_scores: dict[str, list[float]] = {name: [] for name in scores}
    index = 0
    for batch in DataLoader(dataset, batch_size=8, collate_fn=dataset.collate_fn):
        image = torch_model.match_channels(transform(batch.image))
        tiles = torch_model.tiler.tile(image) if torch_model.tiler is not None else image
        rebuilt = torch_model.generator(tiles)
        if torch_model.tiler is not None:
            rebuilt = torch_model.tiler.untile(rebuilt)
        residual = (image - rebuilt).abs().mean(dim=1)
        maps = torch_model.anomaly_map_generator(tiles, torch_model.generator(tiles))
        maps = torch_model.tiler.untile(maps) if torch_model.tiler is not None else maps
        extra["map_max_blur4"] += gaussian_blur(maps, [33, 33], [4.0, 4.0]).flatten(1).amax(1).tolist()
        if torch_model.tiler is not None:
            inner = torch_model.anomaly_map_generator(tiles, torch_model.generator(tiles))
            inner[..., :8, :] = 0
            inner[..., -8:, :] = 0
            inner[..., :, :8] = 0
            inner[..., :, -8:] = 0
            extra["map_max_inner8"] += torch_model.tiler.untile(inner).flatten(1).amax(1).tolist()
            from anomalib.data.utils.tiler import Tiler

            tile = torch_model.tile_size
            overlap = Tiler(tile_size=tile, stride=(tile[0] // 2, tile[1] // 2))
            small = overlap.tile(image)
            extra["map_max_overlap"] += (
                overlap.untile(torch_model.anomaly_map_generator(small, torch_model.generator(small)))
                .flatten(1)
                .amax(1)
                .tolist()
            )
        else:
            extra["map_max_inner8"] += maps.flatten(1).amax(1).tolist()
            extra["map_max_overlap"] += maps.flatten(1).amax(1).tolist()
        flat = maps.flatten(1)
        extra["map_top1%"] += flat.topk(max(1, flat.shape[1] // 100), dim=1).values.mean(1).tolist()
        for k in range(image.shape[0]):
            if int(batch.gt_label[k]) == 1 and batch.gt_mask is not None:
                mask = batch.gt_mask[k][None, None].float()
                mask = torch.nn.functional.interpolate(mask, size=residual.shape[-2:])[0, 0] > 0.5
                if mask.any():
                    inside.append(float(residual[k][mask].mean()))
                    outside.append(float(residual[k][~mask].mean()))
            elif int(batch.gt_label[k]) == 0:
                grey.append(float(image[k].mean()))
                for name, values in scores.items():
                    normal_scores[name].append(float(values[index + k]))
        index += image.shape[0]
    result = {
        "residual_in_defect": sum(inside) / max(1, len(inside)),
        "residual_outside": sum(outside) / max(1, len(outside)),
    }
    result["extra_scores"] = {name: values for name, values in extra.items()}
    for name, values in normal_scores.items():
        result[f"{name}_spearman_vs_grey"] = float(spearmanr(values, grey).statistic) if len(grey) > 2 else float("nan")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--data", required=True, help="ksdd:ROOT or pcb:ROOT (MVTec layout)")
    parser.add_argument("--output", default="results/studies")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = Maa.load_from_checkpoint(args.ckpt, map_location="cpu").eval()
    train_data, test_data = resized_splits(args.data, model)
    train = variant_scores(model, train_data, VARIANTS, 8)
    test = variant_scores(model, test_data, VARIANTS, 8)
    labels = test["labels"]
    z = {name: standardise(train["scores"][name], test["scores"][name]) for name in VARIANTS}
    scores = {name: test["scores"][name] for name in VARIANTS}
    scores["z_mean(fmd,map_max)"] = (z["fmd"] + z["map_max"]) / 2
    scores["z_max(fmd,map_max)"] = torch.maximum(z["fmd"], z["map_max"])
    scores["z_mean(local_fmd,map_max)"] = (z["local_fmd"] + z["map_max"]) / 2
    scores["z_mean(fmd,local_fmd,map_max)"] = (z["fmd"] + z["local_fmd"] + z["map_max"]) / 3
    result = {name: image_metrics(value, labels, (value > 0).long())["image_auroc"] for name, value in scores.items()}
    study = residual_study(model, test_data, {name: test["scores"][name] for name in ("fmd", "map_max")})
    for name, values in study.pop("extra_scores").items():
        result[name] = image_metrics(torch.tensor(values), labels, None)["image_auroc"]
    result.update(study)
    name = Path(args.ckpt).stem
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    print(name, " ".join(f"{key}={value:.3f}" for key, value in result.items()))


if __name__ == "__main__":
    main()
