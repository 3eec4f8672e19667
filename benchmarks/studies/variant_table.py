"""The table of score variants and their combinations, from the per-tile tables ``score_variants.py`` saved (issue 13).

Every variant is read as the recipe reads its map: each tile over its q95 on the defect-free training images, an
image by its worst tile. Prints, per dataset, mean ± sd of the image AUROC over the saved runs, the mean over all
runs and the worst change against the recipe (window 7), as a Markdown table; ``--sweep`` adds the exponent sweep of
the feature term in ``max(map, feature^p)``.

    python benchmarks/studies/variant_table.py results/studies/variants [--sweep]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

from anomalib_maa.benchmark.metrics import image_metrics

Tables = dict[str, torch.Tensor]
RECIPE = "map, window 7 (recipe)"


def _q95(train: Tables, test: Tables, key: str) -> torch.Tensor:
    return test[key] / torch.quantile(train[key], 0.95, dim=0)


def variants(sweep: bool) -> dict[str, Callable[[Tables, Tables], torch.Tensor]]:
    """Name -> per-tile score ``(N, T)`` of the test images."""
    out: dict[str, Callable[[Tables, Tables], torch.Tensor]] = {}
    for window in (3, 5, 7, 11, 15):
        name = RECIPE if window == 7 else f"map, window {window}"  # noqa: PLR2004
        out[name] = lambda tr, te, w=window: _q95(tr, te, f"map_w{w}")
    out["max of windows 5 and 7"] = lambda tr, te: torch.maximum(_q95(tr, te, "map_w5"), _q95(tr, te, "map_w7"))
    for key in ("feat_l1", "feat_l2", "feat_l3", "fmd", "contrast_w7"):
        out[key] = lambda tr, te, k=key: _q95(tr, te, k)
    for key in ("feat_l1", "fmd"):
        for power in (0.5, 1, 2, 3) if sweep else (1,):
            out[f"max(map, {key}^{power})"] = lambda tr, te, k=key, p=power: torch.maximum(
                _q95(tr, te, "map_w7"), _q95(tr, te, k) ** p
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the --output folder of score_variants.py")
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()
    runs = {path.stem: torch.load(path) for path in sorted(args.folder.glob("*.pt"))}
    datasets = sorted({name.split("__")[0] for name in runs}, key=lambda d: (d.startswith("Kolektor"), d))
    results: dict[str, dict[str, list[float]]] = {}
    for name, run in runs.items():
        train, test = run["train"], run["test"]
        for variant, score in variants(args.sweep).items():
            auroc = image_metrics(score(train, test).amax(1).float(), test["labels"], None)["image_auroc"]
            results.setdefault(variant, {}).setdefault(name.split("__")[0], []).append(auroc)
    print("| score | " + " | ".join(datasets) + " | mean of all | worst change vs recipe |")  # noqa: T201
    print("|---" * (len(datasets) + 3) + "|")  # noqa: T201
    recipe = [v for d in datasets for v in results[RECIPE][d]]
    for variant, per in results.items():
        values = [v for d in datasets for v in per[d]]
        cells = [
            f"{statistics.mean(per[d]):.3f} ± {statistics.stdev(per[d]) if len(per[d]) > 1 else 0:.3f}"
            for d in datasets
        ]
        worst = min(a - b for a, b in zip(values, recipe, strict=True))
        print(f"| {variant} | " + " | ".join(cells) + f" | {statistics.mean(values):.3f} | {worst:+.3f} |")  # noqa: T201


if __name__ == "__main__":
    main()
