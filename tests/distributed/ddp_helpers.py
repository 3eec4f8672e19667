"""Helpers for the DDP tests: a callback that records each rank's state, and a run of MAA under DDP.

Lives in its own module (not the test file) because ``ddp_spawn`` pickles the callback into the
child processes, which import it by module name.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback

N_TRAIN = 15  # odd: DistributedSampler pads the 2 ranks' shares to 8 + 8 with a duplicate
IMAGE_SIZE = 32
MODEL_ARGS = {"image_size": (IMAGE_SIZE, IMAGE_SIZE), "n_features": 4, "feature_layer": 3, "lr": 1e-3}


class RecordRankState(Callback):
    """Writes ``rank{r}.pt`` in ``folder``: the memory after every step, the A/B split, the final state.

    Also times the epochs after the first (``epoch_seconds``, ``images_seen``) for speed figures.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.steps: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.images_seen = 0
        self.epoch_seconds = 0.0
        self._epoch_start = 0.0

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        del trainer, pl_module
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        del outputs, batch_idx
        memory = pl_module.model.generator.memory
        self.steps.append((memory.h.detach().cpu().clone(), memory.c.detach().cpu().clone()))
        if trainer.current_epoch > 0:
            self.images_seen += len(batch.image)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        del pl_module
        if trainer.current_epoch > 0:
            self.epoch_seconds += time.perf_counter() - self._epoch_start

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "steps": self.steps,
            "set_a": sorted(pl_module.ab_batches.set_a or ()),
            "state_dict": {name: value.detach().cpu().clone() for name, value in pl_module.state_dict().items()},
            "images_seen": self.images_seen,
            "epoch_seconds": self.epoch_seconds,
            "num_threads": torch.get_num_threads(),
            "pauta_seconds": getattr(pl_module.post_processor, "seconds", None),
        }
        torch.save(record, self.folder / f"rank{trainer.global_rank}.pt")


def ddp_spawn_strategy(timeout_s: int = 120) -> Any:
    """``strategy="ddp_spawn"`` as Lightning registers it, plus a collective timeout (a mismatch fails, not hangs)."""
    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(start_method="spawn", timeout=timedelta(seconds=timeout_s))


def fit_maa(
    data_root: Path,
    run_root: Path,
    devices: int,
    max_epochs: int = 2,
    batch_size: int = 4,
    strategy: Any = None,
    model_args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit MAA with ``Engine`` on the CPU (``devices`` processes under DDP), return what the test reads."""
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_maa import Maa
    from anomalib_maa.utils.sample_data import folder_datamodule

    seed_everything(0)
    model = Maa(**{**MODEL_ARGS, **(model_args or {}), "max_epochs": max_epochs})
    datamodule = folder_datamodule(data_root, batch_size=batch_size)
    record = RecordRankState(run_root / "ranks")
    options: dict[str, Any] = {"devices": devices}
    if devices > 1:
        options["strategy"] = strategy if strategy is not None else ddp_spawn_strategy()
    engine = Engine(
        accelerator="cpu",
        default_root_dir=run_root,
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        callbacks=[record],
        **options,
    )
    start = time.perf_counter()
    engine.fit(model, datamodule=datamodule)
    seconds = time.perf_counter() - start
    checkpoints = sorted(run_root.rglob("*.ckpt"))
    ranks = [torch.load(path, weights_only=False) for path in sorted((run_root / "ranks").glob("rank*.pt"))]
    return {
        "model": model,
        "engine": engine,
        "checkpoint": checkpoints[-1] if checkpoints else None,
        "ranks": ranks,
        "fit_seconds": seconds,
    }


@torch.no_grad()
def score_in_one_process(model: Any, dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw FMD scores and anomaly maps of a whole dataset, in order, model in eval mode, one process."""
    from torch.utils.data import DataLoader

    model.eval()
    scores, maps = [], []
    for batch in DataLoader(dataset, batch_size=8, shuffle=False, collate_fn=dataset.collate_fn):
        output = model.model(model.pre_processor.transform(batch.image))
        scores.append(output.pred_score.reshape(-1))
        maps.append(output.anomaly_map)
    return torch.cat(scores).double(), torch.cat(maps).double()
