"""Study: how MAA's scores rank KolektorSDD test images as training goes on.

Trains one MAA configuration on KSDD (paper protocol: 70 % of the defect-free images) with
anomalib's Engine, and every ``--probe-every`` epochs scores the test set with the paper's FMD and
with local alternatives built on the same model, printing and appending image AUROCs to
``<output>/probe.jsonl``:

* ``fmd_l{1..4}``: FMD between f(x) and f(G(x)) at each discriminator layer (whole image);
* ``l1``: mean absolute pixel residual (Table III "L1");
* ``markov_l1``: L1 between the Markov feature matrices at ``feature_layer`` (Table III "Markov + L1");
* ``map_max``: maximum of the localisation map;
* ``patch_max``: largest per-patch feature distance |f(x)_p - f(G(x))_p| at ``feature_layer``;
* ``local_fmd``: maximum FMD over windows of ``--window`` x ``--window`` patches (half-overlapping).

Example:
    python benchmarks/studies/ksdd_study.py --output results/ksdd_study/s320 --image-size 320 128 --epochs 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.engine import Engine
from lightning.pytorch import Callback, seed_everything

from anomalib_maa import Maa, frechet_markov_distance
from anomalib_maa.benchmark.metrics import auroc, pixel_auroc
from anomalib_maa.data import Ksdd
from anomalib_maa.metrics.fmd import local_maximum


class ScoreProbe(Callback):
    """Score the test set with several rules every few epochs (the model in eval mode)."""

    def __init__(self, datamodule: Ksdd, output: Path, every: int, window: int, save: bool = False) -> None:
        self.datamodule, self.output, self.every, self.window = datamodule, output, every, window
        self.save = save
        self.cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _test_set(self, pl_module: Maa) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.cache is None:
            images, labels, masks = [], [], []
            for batch in self.datamodule.test_dataloader():
                images.append(pl_module.model.match_channels(pl_module.pre_processor.transform(batch.image)))
                labels.append(batch.gt_label)
                masks.append(F.interpolate(batch.gt_mask[:, None].float(), size=images[-1].shape[-2:]) > 0.5)
            self.cache = torch.cat(images), torch.cat(labels), torch.cat(masks)
        return self.cache

    @torch.no_grad()
    def probe(self, trainer, pl_module: Maa) -> dict[str, float]:
        images, labels, masks = self._test_set(pl_module)
        model = pl_module.model
        was_training = model.training
        model.eval()
        scores: dict[str, list[torch.Tensor]] = {}
        maps = []
        for chunk in images.split(8):
            n_images = len(chunk)
            if model.tiler is not None:  # tiled model: every score is the worst tile's, the map is re-assembled
                chunk = model.tiler.tile(chunk)
            recon = model.generator(chunk)
            fx, fr = chunk, recon
            for layer_index, layer in enumerate(model.discriminator.features, start=1):
                fx, fr = layer(fx), layer(fr)
                scores.setdefault(f"fmd_l{layer_index}", []).append(frechet_markov_distance(fx, fr))
                if layer_index == model.discriminator.feature_layer:
                    diff = (fx - fr).abs()
                    scores.setdefault("markov_l1", []).append(diff.mean(dim=(1, 2, 3)))
                    scores.setdefault("patch_max", []).append(diff.mean(dim=1).flatten(1).amax(dim=1))
                    scores.setdefault("local_fmd", []).append(
                        local_maximum(frechet_markov_distance, fx, fr, self.window, stride=max(1, self.window // 2))
                    )
            amap = model.anomaly_map_generator(chunk, recon)
            scores.setdefault("l1", []).append((chunk - recon).abs().mean(dim=(1, 2, 3)))
            scores.setdefault("map_max", []).append(amap.flatten(1).amax(dim=1))
            maps.append(model.tiler.untile(amap) if model.tiler is not None else amap)
            for values in scores.values():
                values[-1] = values[-1].reshape(n_images, -1).amax(dim=1)
        model.train(was_training)
        result = {"epoch": trainer.current_epoch + 1}
        for name, values in scores.items():
            result[name] = round(auroc(torch.cat(values), labels), 4)
        pixel_maps = torch.cat(maps)[:, 0]
        result["pixel_auroc"] = round(pixel_auroc(pixel_maps, masks[:, 0]), 4)
        return result

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch + 1
        if epoch % self.every and epoch != trainer.max_epochs:
            return
        start = time.perf_counter()
        result = self.probe(trainer, pl_module)
        result["probe_s"] = round(time.perf_counter() - start, 1)
        print(json.dumps(result), flush=True)  # noqa: T201
        with (self.output / "probe.jsonl").open("a") as handle:
            handle.write(json.dumps(result) + "\n")
        if self.save:
            torch.save(pl_module.model.state_dict(), self.output / f"model_epoch{epoch:03d}.pt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--root", default="../shared/data/KolektorSDD")
    parser.add_argument("--image-size", type=int, nargs=2, default=[320, 128], metavar=("H", "W"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--probe-every", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--save", action="store_true", help="save the model's state dict at every probe")
    parser.add_argument("--model", type=json.loads, default={}, help="extra Maa arguments as JSON")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed, workers=True)
    datamodule = Ksdd(root=args.root, seed=args.seed, train_batch_size=args.batch_size, eval_batch_size=16)
    model_args = {"image_size": tuple(args.image_size), "in_channels": 1, "n_features": 4, "lr": 1e-3,
                  "feature_layer": 3, "max_epochs": args.epochs, **args.model}  # fmt: skip
    (args.output / "config.json").write_text(json.dumps({**vars(args), "output": str(args.output), **model_args}))
    model = Maa(**model_args, visualizer=False)
    probe = ScoreProbe(datamodule, args.output, args.probe_every, args.window, args.save)
    engine = Engine(
        accelerator="cpu", default_root_dir=args.output, callbacks=[probe], enable_progress_bar=False, logger=False
    )
    start = time.perf_counter()
    engine.fit(model, datamodule=datamodule)
    fit_s = time.perf_counter() - start
    metrics = engine.test(model, datamodule=datamodule)[0]
    summary = {"fit_s": round(fit_s, 1), "s_per_epoch": round(fit_s / args.epochs, 1), **metrics}
    print(json.dumps(summary), flush=True)  # noqa: T201
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
