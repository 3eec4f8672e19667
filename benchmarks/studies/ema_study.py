"""Does an exponential moving average of the generator's weights help MAA (issue 13)?

Trains leaderboard jobs exactly as the leaderboard does (same config, seed, datamodule and recipe), while a
callback keeps moving averages of the generator's weights (torch's ``AveragedModel`` with an EMA rule, one per
decay; the training itself is untouched). After the fit, the live generator and each average are read by the
per-tile tables of ``score_variants.py``, so every comparison is paired: one training trajectory, several
final weights.

    python benchmarks/studies/ema_study.py --config benchmarks/configs/every_line.yaml \
        --job Maa-cpu__pcb77000__seed1 --job Maa-cpu__ksdd__seed0 --output results/studies/ema
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, seed_everything
from score_study import resized_splits
from score_variants import tile_table
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from anomalib_maa.benchmark.config import load_config
from anomalib_maa.benchmark.factory import build_datamodule, build_model
from anomalib_maa.benchmark.metrics import image_metrics
from anomalib_maa.benchmark.runner import DEFAULT_TRAINER

DECAYS = (0.99, 0.995, 0.999)


class GeneratorAverages(Callback):
    """EMAs of the generator's weights and buffers, one per decay, updated after every training batch."""

    def __init__(self, decays: tuple[float, ...]) -> None:
        self.decays = decays
        self.averages: dict[float, AveragedModel] = {}

    def on_fit_start(self, trainer, pl_module) -> None:  # after Maa.setup rebuilt the model for its sizes
        del trainer
        generator = pl_module.model.generator
        self.averages = {
            d: AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(d), use_buffers=True) for d in self.decays
        }

    def on_train_batch_end(self, trainer, pl_module, *args: Any) -> None:
        del trainer, args
        for average in self.averages.values():
            average.update_parameters(pl_module.model.generator)


def _auroc(train: dict[str, torch.Tensor], test: dict[str, torch.Tensor], key: str) -> float:
    quantile = torch.quantile(train[key], 0.95, dim=0)
    return image_metrics((test[key] / quantile).amax(1).float(), test["labels"], None)["image_auroc"]


def study(config_path: str, job_id: str, output: Path, max_steps: int = -1) -> dict[str, Any]:
    from anomalib.engine import Engine

    config = load_config(config_path)
    job = next(j for j in config.jobs() if j.job_id == job_id)
    torch.set_num_threads(config.threads or torch.get_num_threads())
    seed_everything(job.seed, workers=True)
    datamodule = build_datamodule(job.data, job.seed, output / "data")
    model, _ = build_model(job.model, job.seed)
    averages = GeneratorAverages(DECAYS)
    trainer_args = {**DEFAULT_TRAINER, **config.trainer, **job.model.trainer}
    if max_steps > 0:  # a smoke run of the script
        trainer_args.update(max_steps=max_steps, max_epochs=1)
    engine = Engine(default_root_dir=output / "runs" / job_id, callbacks=[averages], **trainer_args)
    engine.fit(model, datamodule=datamodule)
    model.eval()
    kind = "ksdd" if "ksdd" in job.data.name else "pcb"
    root = str(datamodule.root)
    train_data, test_data = resized_splits(f"{kind}:{root}", model)
    live = {k: v.detach().clone() for k, v in model.model.generator.state_dict().items()}
    weights = {"live": live, **{f"ema{d}": a.module.state_dict() for d, a in averages.averages.items()}}
    row: dict[str, Any] = {"job": job_id}
    tables = {}
    for name, state in weights.items():
        model.model.generator.load_state_dict(state)
        train, test = tile_table(model, train_data), tile_table(model, test_data)
        tables[name] = {"train": train, "test": test}
        row[name] = {key: _auroc(train, test, key) for key in ("map_w5", "map_w7", "feat_l1", "fmd")}
    output.mkdir(parents=True, exist_ok=True)
    torch.save({"tables": tables, "weights": weights}, output / f"{job_id}.pt")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument(
        "--job", action="append", required=True, help="a job id of the config, e.g. Maa-cpu__ksdd__seed0"
    )
    parser.add_argument("--output", default="results/studies/ema")
    parser.add_argument("--max-steps", type=int, default=-1, help="cut training short (smoke run of the script)")
    args = parser.parse_args()
    out = Path(args.output)
    for job_id in args.job:
        row = study(args.config, job_id, out, args.max_steps)
        print(json.dumps(row), flush=True)
        with (out / "rows.jsonl").open("a") as file:
            file.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
