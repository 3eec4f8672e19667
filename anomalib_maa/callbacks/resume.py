"""Save what a Lightning checkpoint leaves out, so that a resumed fit continues exactly like an uninterrupted one.

A checkpoint holds the weights, the buffers (MAA's memory state, the threshold statistics), the optimiser states
and the loop counters. It does not hold the random number generators, which shuffle the training images of the
next epoch. :class:`ResumeState` stores the RNG states (``torch``, ``numpy``, ``random``, CUDA when initialised)
as they were at the end of the epoch, *before* the threshold statistics are fitted (scoring the training images
creates a data loader, which draws from the global RNG); they are restored when ``fit(ckpt_path=...)`` starts,
before the first batch is drawn. (MAA's images of sets A and B kept from the previous batch, used when a batch
holds images of one set only, are the model's own checkpoint entry: ``Maa.on_save_checkpoint``.)

Everything is stored as tensors and plain Python values, so ``weights_only=True`` loading accepts the file.
Checkpoints written in the middle of an epoch store the RNG state at that moment; Lightning does not replay a
partial epoch exactly in any case.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

__all__ = ["ResumeState", "get_rng_state", "set_rng_state"]


def get_rng_state() -> dict[str, Any]:
    """The global RNG states as tensors and plain values (safe for ``weights_only`` loading).

    Returns:
        ``{"torch": ByteTensor, "numpy": (name, keys, pos, has_gauss, cached), "python": state[, "cuda": [...]]}``.
    """
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), cached),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the global RNG states saved by :func:`get_rng_state`.

    Args:
        state: The saved states.
    """
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_as_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    """``random.setstate`` wants tuples; a checkpoint round trip may hand back lists."""
    return tuple(_as_tuples(item) for item in value) if isinstance(value, list | tuple) else value


class ResumeState(Callback):
    """Checkpoint the RNG states for an exact resume (see the module docstring).

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[ResumeState()], logger=False)  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._trainer: Trainer | None = None
        self._snapshot: dict[str, Any] | None = None
        self._snapshot_step: int | None = None
        self._pending: dict[str, Any] | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Remember the trainer, for :meth:`state_dict`."""
        del pl_module, stage
        self._trainer = trainer

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Snapshot the state at the end of the epoch, before other callbacks draw random numbers."""
        del pl_module
        self._snapshot = {"rng": get_rng_state()}
        self._snapshot_step = trainer.global_step

    def state_dict(self) -> dict[str, Any]:
        """The end-of-epoch snapshot when the checkpoint is written at that step, else the current state."""
        trainer = self._trainer
        if self._snapshot is not None and trainer is not None and self._snapshot_step == trainer.global_step:
            return self._snapshot
        return {"rng": get_rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the saved state until the resumed fit starts."""
        self._pending = dict(state_dict) if state_dict else None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Restore the RNG states before the training data loader draws its first shuffle."""
        del trainer, pl_module
        if self._pending and "rng" in self._pending:
            set_rng_state(self._pending["rng"])
        self._pending = None
