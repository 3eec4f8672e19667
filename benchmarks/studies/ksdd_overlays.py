"""Localisation overlays of a trained MAA model on KolektorSDD test images (for ``docs/results.md``).

Picks the defective test images with the largest defects and the defect-free test images with the
lowest and highest scores, runs the checkpoint on them exactly as ``anomalib-maa predict`` does, and
draws one figure: for each image the photograph with its ground-truth outline (green), the
normalised anomaly map (0.5 = pixel threshold), and the predicted mask (red) with the image score.

Example:
    python benchmarks/studies/ksdd_overlays.py \
        --ckpt_path results/ksdd_results/runs/<job>/Maa/Ksdd/v0/weights/lightning/model.ckpt \
        --output docs/images/ksdd_overlays.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from anomalib_maa.data import Ksdd
from anomalib_maa.deploy import load_predictor
from anomalib_maa.deploy.predict import read_rgb


def pick_images(root: str, seed: int, n_defect: int, n_good: int) -> list[tuple[Path, Path | None, int]]:
    """Test images of the seeded split: the largest defects first, then defect-free ones."""
    datamodule = Ksdd(root=root, seed=seed)
    datamodule.setup()
    samples = datamodule.test_data.samples
    defective = samples[samples.label_index == 1].copy()
    defective["area"] = [int((np.asarray(Image.open(m)) > 0).sum()) for m in defective.mask_path]
    chosen = defective.sort_values("area", ascending=False).head(n_defect)
    good = samples[samples.label_index == 0].head(n_good)
    rows = [(Path(p), Path(m), 1) for p, m in zip(chosen.image_path, chosen.mask_path, strict=True)]
    rows += [(Path(p), None, 0) for p in good.image_path]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--root", default="../shared/data/KolektorSDD")
    parser.add_argument("--seed", type=int, default=42, help="seed of the split (42: the datamodule default)")
    parser.add_argument("--n-defect", type=int, default=4)
    parser.add_argument("--n-good", type=int, default=2)
    args = parser.parse_args()
    predictor = load_predictor(args.ckpt_path)
    rows = pick_images(args.root, args.seed, args.n_defect, args.n_good)
    fig, axes = plt.subplots(3, len(rows), figsize=(2.1 * len(rows), 12), squeeze=False)
    for column, (path, mask_path, label) in enumerate(rows):
        image = read_rgb(path)
        size = predictor.image_size
        resized = torch.nn.functional.interpolate(image[None], size=size, mode="bilinear", antialias=True)
        out = predictor.predict(resized)
        gray = resized[0].mean(0).numpy()
        truth = np.zeros(size, dtype=bool)
        if mask_path is not None:
            mask = Image.open(mask_path).convert("L").resize((size[1], size[0]), Image.NEAREST)
            truth = np.asarray(mask) > 0
        kind = "defective" if label else "good"
        for row, ax in enumerate(axes[:, column]):
            ax.imshow(gray, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0 and truth.any():
                ax.contour(truth, levels=[0.5], colors="lime", linewidths=0.8)
            if row == 1:
                ax.imshow(out.anomaly_map[0], cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if row == 2:  # noqa: PLR2004
                ax.imshow(np.ma.masked_where(~out.mask[0], out.mask[0]), cmap="autumn", alpha=0.6)
                if truth.any():
                    ax.contour(truth, levels=[0.5], colors="lime", linewidths=0.8)
        axes[0, column].set_title(f"{path.parent.name}/{path.stem}\n{kind}", fontsize=8)
        verdict = "defect" if out.label[0] else "ok"
        axes[2, column].set_xlabel(f"score {out.normalized_score[0]:.2f} -> {verdict}", fontsize=8)
    axes[0, 0].set_ylabel("image + truth", fontsize=9)
    axes[1, 0].set_ylabel("anomaly map", fontsize=9)
    axes[2, 0].set_ylabel("predicted mask", fontsize=9)
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")  # noqa: T201


if __name__ == "__main__":
    main()
