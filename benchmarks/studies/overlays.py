"""Overlays of a trained MAA checkpoint on defective test images: image, anomaly map, ground-truth mask.

    python benchmarks/studies/overlays.py --out docs/images/every_line_overlays.png \
        --run pcb44000=results/every_line_s0/runs/Maa-cpu__pcb44000__seed0:pcb:../shared/data/DeepPCB/44000 \
        --run ksdd=results/every_line_s0/runs/Maa-cpu__ksdd__seed0:ksdd:../shared/data/KolektorSDD
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from score_study import datamodule  # noqa: E402

from anomalib_maa import Maa  # noqa: E402


@torch.no_grad()
def _rows(name: str, run: str, spec: str, per_dataset: int):
    checkpoint = next(Path(run).rglob("*.ckpt"))
    model = Maa.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    data = datamodule(spec)
    data.setup("test")
    samples = data.test_data.samples
    defective = samples[samples.label_index == 1].sort_values("image_path").head(per_dataset)
    rows = []
    for _, sample in defective.iterrows():
        item = data.test_data[int(sample.name)]
        image = model.pre_processor.transform(item.image[None])
        output = model.model(image)
        shown = (image[0].mean(0) + 1) / 2
        mask = torch.nn.functional.interpolate(item.gt_mask[None, None].float(), size=shown.shape)[0, 0]
        rows.append((f"{name}: {Path(sample.image_path).name}", shown, output.anomaly_map[0, 0], mask))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR:KIND:DATA_ROOT")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-dataset", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for item in args.run:
        name, rest = item.split("=", 1)
        run, spec = rest.split(":", 1)
        rows += _rows(name, run, spec, args.per_dataset)
    figure, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.6 * len(rows)), squeeze=False)
    for (title, image, anomaly, mask), row in zip(rows, axes, strict=True):
        row[0].imshow(image, cmap="gray")
        row[0].set_title(title, fontsize=7)
        row[1].imshow(anomaly.clamp_min(0).sqrt(), cmap="jet")
        row[1].set_title("anomaly map (sqrt)", fontsize=7)
        row[2].imshow(image, cmap="gray")
        row[2].imshow(mask, cmap="Reds", alpha=0.45)
        row[2].set_title("ground truth", fontsize=7)
        for axis in row:
            axis.axis("off")
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=80)
    Image.open(args.out).convert("P", palette=Image.ADAPTIVE, colors=256).save(args.out, optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
