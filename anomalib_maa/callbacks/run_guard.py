"""Refuse a second ``fit`` on a trainer that already trained, instead of silently not training and overwriting.

anomalib's ``Engine`` creates its Lightning ``Trainer`` once and keeps it. A second ``engine.fit(...)`` on the same
engine reuses that trainer: Lightning keeps its finished epoch count, so with the same ``max_epochs`` the new model
is **not trained at all** (``Trainer.fit stopped: max_epochs=1 reached`` and nothing else), while the run still
writes into the first run's folder (``.../v0``), where ``ModelCheckpoint(filename="model")`` and the threshold
report would replace the first run's files. :class:`NewRunGuard` stops such a fit at setup with a clear message.
A new ``Engine`` per run gets its own versioned folder (``v0``, ``v1``, ...), and nothing is overwritten.

:class:`FailedRunCleanup`: a run that fails before writing a checkpoint (missing data, unreadable image, ...)
leaves no empty ``vN`` folder and does not move ``latest`` away from the last run that produced a model.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

__all__ = ["FailedRunCleanup", "NewRunGuard", "ReusedTrainerError", "discard_failed_run"]

logger = logging.getLogger(__name__)


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


_VERSION = re.compile(r"v\d+")
_KEPT_IN_EMPTY_RUN = frozenset({"config.yaml"})
"""Files a run that failed before training may hold without being worth keeping (the CLI's saved config)."""


def _has_model(folder: Path) -> bool:
    return any(folder.rglob("*.ckpt"))


def _version(folder: Path) -> int:
    return int(folder.name[1:])


def discard_failed_run(run_dir: str | Path) -> str | None:
    """After a run failed, remove its version folder if it holds no model, and point ``latest`` back.

    anomalib's ``Engine`` creates ``<root>/.../vN`` and points ``<root>/.../latest`` at it before training starts,
    so a run that fails early leaves an empty ``vN`` and a ``latest`` that no longer leads to a model. Here a
    version folder without any ``*.ckpt`` file is removed when it holds nothing but empty folders and the
    CLI's ``config.yaml``, and ``latest`` goes back to the newest version that holds a checkpoint (or is removed
    when none does and the folder is gone). Folders that are not anomalib version folders, that ``latest`` does
    not point to, or that hold a checkpoint are left alone.

    Args:
        run_dir: The failed run's folder (the trainer's ``default_root_dir``).

    Returns:
        What was done, for the log, or ``None`` when nothing was changed.
    """
    run_dir = Path(run_dir).resolve()
    latest = run_dir.parent / "latest"
    if not _VERSION.fullmatch(run_dir.name) or not latest.is_symlink() or latest.resolve() != run_dir:
        return None
    if not run_dir.is_dir() or _has_model(run_dir):
        return None
    done = []
    if all(path.is_dir() or path.name in _KEPT_IN_EMPTY_RUN for path in run_dir.rglob("*")):
        shutil.rmtree(run_dir)
        done.append(f"removed its empty folder {run_dir}")
    versions = sorted(
        (path for path in run_dir.parent.iterdir() if _VERSION.fullmatch(path.name) and path.is_dir()),
        key=_version,
    )
    with_model = [path for path in versions if _has_model(path)]
    if with_model:
        latest.unlink()
        latest.symlink_to(with_model[-1], target_is_directory=True)
        done.append(f"{latest} points again to {with_model[-1].name}, the last run with a model")
    elif not run_dir.exists():
        latest.unlink()
        done.append(f"removed {latest}")
    return "; ".join(done) or None


class FailedRunCleanup(Callback):
    """When a run fails before it wrote a checkpoint, remove its empty version folder and restore ``latest``.

    See :func:`discard_failed_run`. An interrupted run (Ctrl-C) is left as it is.

    Example:
        >>> from anomalib.engine import Engine
        >>> engine = Engine(callbacks=[FailedRunCleanup()])  # doctest: +SKIP
    """

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Clean up the run folder on rank 0 after an error (not after ``KeyboardInterrupt``)."""
        del pl_module
        if isinstance(exception, KeyboardInterrupt) or trainer.global_rank != 0:
            return
        done = discard_failed_run(trainer.default_root_dir)
        if done:
            logger.info("The failed run wrote no model: %s", done)
