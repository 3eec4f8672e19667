"""Lightning callbacks that make MAA training safe to leave unattended; :class:`~anomalib_maa.Maa` adds them all.

- :class:`DivergenceGuard`: a NaN/inf loss, weight, score or checkpoint stops the run with a message naming the
  epoch and step, before anything is written (:class:`DivergenceError`).
- :class:`ResumeState`: RNG states and MAA's last-seen images in the checkpoint, so ``fit(ckpt_path=...)``
  continues exactly as an uninterrupted run.
- :class:`NewRunGuard`: a second ``fit`` on a trainer (or anomalib ``Engine``) that already trained is refused
  instead of silently not training and overwriting the first run (:class:`ReusedTrainerError`).
- :class:`DataGuard`: every image and mask checked once before the first batch, 16-bit images read scaled,
  validation skipped when the datamodule has none.
- :class:`TrainingImageCache`: MAA's training images decoded and resized once per fit, not once per step.
- :class:`FailedRunCleanup`: a run that fails before its first checkpoint leaves no empty version folder and
  does not move ``latest``.

:func:`data_callbacks` gives the last two, which guard any model; the ``anomalib-maa`` command adds them to every
run.

See ``docs/reliability.md``.
"""

from lightning.pytorch import Callback

from anomalib_maa.callbacks.data_guard import DataGuard
from anomalib_maa.callbacks.divergence import DivergenceError, DivergenceGuard, check_finite_losses
from anomalib_maa.callbacks.resume import ResumeState
from anomalib_maa.callbacks.run_guard import FailedRunCleanup, NewRunGuard, ReusedTrainerError, discard_failed_run
from anomalib_maa.callbacks.training_cache import TrainingImageCache

__all__ = [
    "DataGuard",
    "DivergenceError",
    "DivergenceGuard",
    "FailedRunCleanup",
    "NewRunGuard",
    "ResumeState",
    "ReusedTrainerError",
    "TrainingImageCache",
    "check_finite_losses",
    "data_callbacks",
    "discard_failed_run",
]


def data_callbacks() -> list[Callback]:
    """The callbacks that guard any model's run: :class:`DataGuard` and :class:`FailedRunCleanup`."""
    return [DataGuard(), FailedRunCleanup()]
