"""Refuse a second ``fit`` on a trainer that already trained, instead of silently not training and overwriting.

anomalib's ``Engine`` creates its Lightning ``Trainer`` once and keeps it. A second ``engine.fit(...)`` on the same
engine reuses that trainer: Lightning keeps its finished epoch count, so with the same ``max_epochs`` the new model
is **not trained at all** (``Trainer.fit stopped: max_epochs=1 reached`` and nothing else), while the run still
writes into the first run's folder (``.../v0``), where ``ModelCheckpoint(filename="model")`` and the threshold
report would replace the first run's files. :class:`NewRunGuard` stops such a fit at setup with a clear message.
A new ``Engine`` per run gets its own versioned folder (``v0``, ``v1``, ...), and nothing is overwritten.
"""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

__all__ = ["NewRunGuard", "ReusedTrainerError"]


class ReusedTrainerError(RuntimeError):
    """A fit was started on a trainer (or anomalib ``Engine``) that already trained."""


class NewRunGuard(Callback):
    """Raise :class:`ReusedTrainerError` when ``fit`` starts on a trainer that has already trained.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[NewRunGuard()], logger=False)  # doctest: +SKIP
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Check, before any checkpoint is restored, that this trainer has not trained before."""
        if stage != TrainerFn.FITTING:
            return
        epochs = trainer.fit_loop.epoch_progress.current.completed
        if trainer.global_step == 0 and epochs == 0:
            return
        msg = (
            f"This trainer already trained a model (up to epoch {epochs}, global step {trainer.global_step}) and "
            f"writes to {trainer.default_root_dir}. A second fit of {type(pl_module).__name__} on it would not "
            "train (Lightning keeps the finished epoch count) and would overwrite the first run's checkpoint and "
            "results. Create a new anomalib Engine (or Lightning Trainer) for each training run; to continue a "
            "run, pass ckpt_path=<its checkpoint> to a new Engine's fit."
        )
        raise ReusedTrainerError(msg)
