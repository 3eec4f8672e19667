"""Study: the anomaly map standardised per position against the defect-free training images' own maps.

The CPU recipe scores an image by the largest value of its anomaly map (the residual's local variance).
Where normal images share a layout (aligned boards, strips, objects), some positions are always bright
(edges of printed tracks, image and tile borders); a defect then has to outshine them. Here the maps of
the training images give a mean and a spread per pixel, and each test map is read against them:

* ``map_max``: the recipe's score (raw maximum);
* ``minus_mean``: maximum of ``map - mean_p``;
* ``z``: maximum of ``(map - mean_p) / (sd_p + eps)``, ``eps`` = the median of ``sd_p``;
* ``z_blur``: the same with ``mean_p`` and ``sd_p`` smoothed (Gaussian, sigma 4 px) against misregistration.

Prints and writes the image AUROC of each for one checkpoint; nothing in the package changes.

    python benchmarks/studies/position_norm.py --ckpt CKPT --data pcb:../shared/data/DeepPCB/77000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from score_study import datamodule  # same folder: ksdd:ROOT or pcb:ROOT
from torch.utils.data import DataLoader
from torchmetrics.classification import BinaryAUROC
from torchvision.transforms.v2.functional import gaussian_blur

from anomalib_maa import Maa


@torch.inference_mode()
def raw_maps(model: Maa, dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw anomaly maps (model resolution, before the post-processor) and labels of every image."""
    maps, labels = [], []
    for batch in DataLoader(dataset, batch_size=8, collate_fn=dataset.collate_fn):
        out = model.model(model.pre_processor.transform(batch.image))
        maps.append(out.anomaly_map.reshape(batch.image.shape[0], *out.anomaly_map.shape[-2:]).double())
        labels.append(batch.gt_label.reshape(-1).long())
    return torch.cat(maps), torch.cat(labels)


def scores(train: torch.Tensor, test: torch.Tensor) -> dict[str, torch.Tensor]:
    """Image scores of the test maps, raw and read against the training maps' per-position statistics."""
    mean, sd = train.mean(0), train.std(0)
    blur = [33, 33], [4.0, 4.0]
    mean_b = gaussian_blur(mean[None, None].float(), *blur)[0, 0].double()
    sd_b = gaussian_blur(sd[None, None].float(), *blur)[0, 0].double()
    eps, eps_b = sd.median(), sd_b.median()
    return {
        "map_max": test.flatten(1).amax(1),
        "minus_mean": (test - mean).flatten(1).amax(1),
        "z": ((test - mean) / (sd + eps)).flatten(1).amax(1),
        "z_blur": ((test - mean_b) / (sd_b + eps_b)).flatten(1).amax(1),
    }


def main() -> None:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--data", required=True, help="ksdd:ROOT or pcb:ROOT (MVTec layout)")
    parser.add_argument("--output", default="results/studies")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = Maa.load_from_checkpoint(args.ckpt, map_location="cpu").eval()
    data = datamodule(args.data)
    data.setup("fit")
    data.setup("test")
    train, _ = raw_maps(model, data.train_data)
    test, labels = raw_maps(model, data.test_data)
    result = {name: float(BinaryAUROC()(value, labels)) for name, value in scores(train, test).items()}
    result["n_train"], result["n_test"] = int(train.shape[0]), int(test.shape[0])
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    name = f"position_norm__{Path(args.ckpt).parent.name}__{Path(args.data.split(':', 1)[1]).name}"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    print(name, " ".join(f"{key}={value:.3f}" for key, value in result.items()))  # noqa: T201


if __name__ == "__main__":
    main()
