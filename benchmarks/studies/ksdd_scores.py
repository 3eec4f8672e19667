"""Study: rank KolektorSDD test images with many scores from one trained MAA model.

Loads a model saved by ``ksdd_study.py --save`` (a state dict) or a Lightning checkpoint, runs
it once over the defect-free training images and the test images, and prints the image AUROC
of each score (and the pixel AUROC of each map). Scores that need statistics of normal images
take them from the training images only.

Example:
    python benchmarks/studies/ksdd_scores.py --model-file results/ksdd_study/s320/model_epoch030.pt \
        --config results/ksdd_study/s320/config.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
import torchvision.transforms.v2.functional as TF  # noqa: N812

from anomalib_maa import Maa, frechet_markov_distance
from anomalib_maa.benchmark.metrics import auroc as package_auroc
from anomalib_maa.benchmark.metrics import pixel_auroc
from anomalib_maa.data import Ksdd
from anomalib_maa.metrics.fmd import local_maximum
from anomalib_maa.models.maa.anomaly_map import AnomalyMapGenerator


def load_model(model_file: Path, config: dict | None) -> Maa:
    """Load a Lightning checkpoint, or build Maa from a study config and load a saved state dict."""
    if config is None:
        return Maa.load_from_checkpoint(model_file, map_location="cpu").eval()
    keys = ("image_size", "in_channels", "n_features", "feature_layer", "memory", "map_window")
    model = Maa(**{key: config[key] for key in keys if key in config}, visualizer=False)
    state = torch.load(model_file, map_location="cpu", weights_only=False)
    if "state_dict" in state:  # Lightning checkpoint
        state = {k.removeprefix("model."): v for k, v in state["state_dict"].items() if k.startswith("model.")}
    model.model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def collect(model: Maa, loader) -> dict[str, torch.Tensor]:
    """Images, reconstructions, features at every discriminator layer, labels and masks."""
    net = model.model
    out: dict[str, list[torch.Tensor]] = {}
    for batch in loader:
        image = net.match_channels(model.pre_processor.transform(batch.image))
        recon = net.generator(image)
        fx, fr = image, recon
        for index, layer in enumerate(net.discriminator.features, start=1):
            fx, fr = layer(fx), layer(fr)
            out.setdefault(f"f{index}_in", []).append(fx)
            out.setdefault(f"f{index}_rec", []).append(fr)
        out.setdefault("image", []).append(image)
        out.setdefault("recon", []).append(recon)
        out.setdefault("label", []).append(batch.gt_label)
        mask = batch.gt_mask[:, None].float() if batch.gt_mask is not None else torch.zeros_like(image)
        out.setdefault("mask", []).append(F.interpolate(mask, size=image.shape[-2:]) > 0.5)
    return {key: torch.cat(values) for key, values in out.items()}


@torch.no_grad()
def recalibrate_batch_norm(model: Maa, loader) -> None:
    """Recompute the discriminator's BN running statistics from real training images only.

    During training the running statistics average batches of real images and of
    reconstructions; this replaces them with the cumulative statistics of the real images.
    """
    disc = model.model.discriminator
    norms = [m for m in disc.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    disc.train()
    for batch in loader:
        x = model.model.match_channels(model.pre_processor.transform(batch.image))
        for layer in disc.features:
            x = layer(x)
    disc.eval()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (B, 1, H, W) maps over +-3 sigma (torchvision, reflected borders)."""
    return TF.gaussian_blur(x, kernel_size=2 * max(1, int(3 * sigma)) + 1, sigma=sigma)


def local_variance(image: torch.Tensor, reconstruction: torch.Tensor, window: int) -> torch.Tensor:
    """Local variance of the residual: the square root of the model's own anomaly map."""
    return AnomalyMapGenerator(window)(image, reconstruction).sqrt()


def local_fmd(f_in: torch.Tensor, f_rec: torch.Tensor, window: int) -> torch.Tensor:
    """Maximum FMD over half-overlapping windows of window x window patches, 8 images at a time."""
    chunks = zip(f_in.split(8), f_rec.split(8), strict=True)
    stride = max(1, window // 2)
    return torch.cat([local_maximum(frechet_markov_distance, a, b, window, stride) for a, b in chunks])


def mahalanobis_map(diff: torch.Tensor, train_diff: torch.Tensor) -> torch.Tensor:
    """Per-patch Mahalanobis distance of feature differences to their training distribution."""
    c = diff.shape[1]
    vectors = train_diff.permute(0, 2, 3, 1).reshape(-1, c).double()
    mean = vectors.mean(0)
    cov = torch.cov(vectors.T) + 1e-3 * torch.eye(c, dtype=torch.float64)
    inv = torch.linalg.inv(cov)
    d = diff.permute(0, 2, 3, 1).double() - mean
    return torch.einsum("bhwc,cd,bhwd->bhw", d, inv, d).sqrt().float()


@torch.no_grad()
def normality(model: Maa, train_loader, test_loader) -> dict[str, float]:
    """Mean absolute residual |x - G(x)| on normal and defective pixels (does G rebuild defects as normal?).

    Works for whole-image and tiled models (tiles are reconstructed and put back together).
    """
    net = model.model

    def residuals(loader):  # noqa: ANN001, ANN202
        for batch in loader:
            image = net.match_channels(model.pre_processor.transform(batch.image))
            tiles = net.tiler.tile(image) if net.tiler is not None else image
            recon = net.generator(tiles)
            recon = net.tiler.untile(recon) if net.tiler is not None else recon
            mask = batch.gt_mask[:, None].float() if batch.gt_mask is not None else torch.zeros_like(image)
            yield (image - recon).abs().mean(1, keepdim=True), F.interpolate(mask, size=image.shape[-2:]) > 0.5, batch

    sums = dict.fromkeys(("train_good", "test_good", "defective_image_normal_pixels", "defect_pixels"), 0.0)
    counts = dict.fromkeys(sums, 0)
    for residual, _, _ in residuals(train_loader):
        sums["train_good"] += float(residual.sum())
        counts["train_good"] += residual.numel()
    for residual, mask, batch in residuals(test_loader):
        defective = batch.gt_label.bool()
        good = residual[~defective]
        sums["test_good"] += float(good.sum())
        counts["test_good"] += good.numel()
        sums["defect_pixels"] += float(residual[mask].sum())
        counts["defect_pixels"] += int(mask.sum())
        normal = residual[defective][~mask[defective]]
        sums["defective_image_normal_pixels"] += float(normal.sum())
        counts["defective_image_normal_pixels"] += normal.numel()
    return {f"residual_{key}": round(sums[key] / max(counts[key], 1), 5) for key in sums}


def auroc(labels: torch.Tensor, scores: torch.Tensor) -> float:
    """Image AUROC rounded to 4 digits."""
    return round(package_auroc(scores, labels), 4)


def evaluate(train: dict, test: dict, feature_layer: int) -> dict[str, float]:
    """AUROC of every score variant (image level) and of a few maps (pixel level)."""
    labels = test["label"]
    result: dict[str, float] = {}
    for layer in range(1, 5):
        fi, fr = test[f"f{layer}_in"], test[f"f{layer}_rec"]
        result[f"fmd_l{layer}"] = auroc(labels, frechet_markov_distance(fi, fr))
        diff = (fi - fr).abs().mean(1)
        result[f"patch_max_l{layer}"] = auroc(labels, diff.flatten(1).amax(1))
        maha = mahalanobis_map(fi - fr, train[f"f{layer}_in"] - train[f"f{layer}_rec"])
        result[f"maha_max_l{layer}"] = auroc(labels, maha.flatten(1).amax(1))
        maha_in = mahalanobis_map(fi, train[f"f{layer}_in"])
        result[f"maha_in_max_l{layer}"] = auroc(labels, maha_in.flatten(1).amax(1))
    for window in (3, 4, 6):
        fi, fr = test[f"f{feature_layer}_in"], test[f"f{feature_layer}_rec"]
        result[f"local_fmd_w{window}_l{feature_layer}"] = auroc(labels, local_fmd(fi, fr, window))
    residual = (test["image"] - test["recon"]).mean(1, keepdim=True)
    train_residual = (train["image"] - train["recon"]).mean(1, keepdim=True)
    variance = {window: local_variance(test["image"], test["recon"], window) for window in (3, 7, 11)}
    result["l1"] = auroc(labels, residual.abs().flatten(1).mean(1))
    pixel_masks = test["mask"][:, 0]
    maps = {}
    for window in (3, 7, 11):  # the paper's map squares the variance: same ranking, same AUROCs
        maps[f"var{window}"] = variance[window]
    for sigma in (1.0, 2.0, 4.0):
        maps[f"absblur{sigma:g}"] = gaussian_blur(residual.abs(), sigma)
        maps[f"sqblur{sigma:g}"] = gaussian_blur(residual.pow(2), sigma)
    for name, amap in maps.items():
        result[f"map_max_{name}"] = auroc(labels, amap.flatten(1).amax(1))
        result[f"pixel_{name}"] = round(pixel_auroc(amap[:, 0], pixel_masks), 4)
    # per-position standardisation by the training images' maps
    for name in ("var7", "absblur2", "sqblur2"):
        if name.startswith("var"):
            train_map = local_variance(train["image"], train["recon"], 7)
        elif name.startswith("abs"):
            train_map = gaussian_blur(train_residual.abs(), 2.0)
        else:
            train_map = gaussian_blur(train_residual.pow(2), 2.0)
        mean, std = train_map.mean(0, keepdim=True), train_map.std(0, keepdim=True)
        z = (maps[name] - mean) / (std + 1e-6)
        result[f"zmap_max_{name}"] = auroc(labels, z.flatten(1).amax(1))
        top = maps[name].flatten(1).topk(max(1, maps[name][0].numel() // 1000), dim=1).values.mean(1)
        result[f"map_top01_{name}"] = auroc(labels, top)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-file", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=None, help="config.json of ksdd_study.py (state dicts only)")
    parser.add_argument("--seed", type=int, default=None, help="split seed (default: the config's, else 42)")
    parser.add_argument("--normality-only", action="store_true", help="only the residual statistics")
    parser.add_argument("--root", default="../shared/data/KolektorSDD")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--bn-recalibrate", action="store_true", help="BN statistics from real images only")
    parser.add_argument("--output", type=Path, default=None, help="JSON file for the results")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = json.loads(args.config.read_text()) if args.config else None
    model = load_model(args.model_file, config)
    seed = args.seed if args.seed is not None else (config or {}).get("seed", 42)
    datamodule = Ksdd(root=args.root, seed=seed, train_batch_size=16, eval_batch_size=16)
    datamodule.setup()
    train_loader = torch.utils.data.DataLoader(
        datamodule.train_data, batch_size=16, shuffle=False, collate_fn=datamodule.train_data.collate_fn
    )
    if args.bn_recalibrate:
        recalibrate_batch_norm(model, train_loader)
    result = normality(model, train_loader, datamodule.test_dataloader())
    if not args.normality_only:
        train = collect(model, train_loader)
        test = collect(model, datamodule.test_dataloader())
        result.update(evaluate(train, test, model.model.discriminator.feature_layer))
    result["model_file"] = str(args.model_file)
    for key, value in sorted(result.items()):
        print(f"{key:28s} {value}")  # noqa: T201
    if args.output:
        args.output.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
