"""Lightning callbacks that make MAA training safe to leave unattended; :class:`~anomalib_maa.Maa` adds them all.

- :class:`DivergenceGuard`: a NaN/inf loss, weight, score or checkpoint stops the run with a message naming the
  epoch and step, before anything is written (:class:`DivergenceError`).
- :class:`ResumeState`: RNG states and MAA's last-seen images in the checkpoint, so ``fit(ckpt_path=...)``
  continues exactly as an uninterrupted run.
- :class:`NewRunGuard`: a second ``fit`` on a trainer (or anomalib ``Engine``) that already trained is refused
  instead of silently not training and overwriting the first run (:class:`ReusedTrainerError`).

See ``docs/reliability.md``.
"""

from anomalib_maa.callbacks.divergence import DivergenceError, DivergenceGuard, check_finite_losses
from anomalib_maa.callbacks.resume import ResumeState
from anomalib_maa.callbacks.run_guard import NewRunGuard, ReusedTrainerError

__all__ = [
    "DivergenceError",
    "DivergenceGuard",
    "NewRunGuard",
    "ResumeState",
    "ReusedTrainerError",
    "check_finite_losses",
]
