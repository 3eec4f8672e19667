"""Stop a diverging GAN before it writes NaN weights, and refuse NaN anomaly scores.

A GAN that diverges usually shows it first as a non-finite loss; the weights follow one optimiser step later, then
every anomaly score. Lightning saves a checkpoint at the end of each epoch whatever the weights hold, and
anomalib's post-processors compare a NaN score with the threshold (``NaN > T`` is ``False``), so a diverged model
silently labels every image *normal*. :class:`DivergenceGuard` turns each of those points into a
:class:`DivergenceError` that names the epoch, the step and the offending tensor or image:

- a non-finite training loss (checked in :meth:`Maa.training_step` before the optimiser steps, through
  :func:`check_finite_losses`, and here on the returned loss for any other model);
- non-finite parameters or buffers at the end of a training epoch, before the threshold is fitted and before
  ``ModelCheckpoint`` saves (Lightning runs ``ModelCheckpoint`` after every other callback);
- a checkpoint about to be written with non-finite weights, or threshold statistics fitted on fewer images than
  the training set holds (some training images scored NaN): the file is not written, the previous one is kept;
- a non-finite image score or anomaly map in validation, test or predict batches (checked before the
  post-processor normalises and labels them);
- testing or predicting with a threshold that was never fitted (every label would be *normal*).

:class:`~anomalib_maa.Maa` adds the guard through ``configure_callbacks``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from anomalib_maa.post_processing import PautaPostProcessor

__all__ = ["DivergenceError", "DivergenceGuard", "check_finite_losses", "first_non_finite"]

_HINT = (
    "Training stopped before this update; the last checkpoint written before it is kept. "
    "Lower the learning rate or the adversarial weight (lambda_adv), or check the training images."
)


class DivergenceError(RuntimeError):
    """Training or scoring produced NaN or infinite values; the message says where."""


def _position(trainer: Trainer | None, batch_idx: int | None = None) -> str:
    if trainer is None:
        return "outside a trainer"
    batch = f", batch {batch_idx}" if batch_idx is not None else ""
    return f"epoch {trainer.current_epoch}{batch} (global step {trainer.global_step})"


def _all_ranks(trainer: Trainer | None, finite: bool) -> bool:
    """Agree on one decision across DDP ranks, so that all raise together instead of one hanging the others."""
    strategy = getattr(trainer, "strategy", None)
    if strategy is None or getattr(trainer, "world_size", 1) <= 1:
        return finite
    return bool(strategy.reduce_boolean_decision(finite, all=True))


def _describe(value: torch.Tensor) -> str:
    value = value.detach()
    if value.numel() == 1:
        return str(float(value.float().cpu()))
    bad = (~torch.isfinite(value)).sum().item()
    return f"non-finite in {bad} of {value.numel()} values"


def check_finite_losses(
    pl_module: LightningModule,
    losses: Mapping[str, torch.Tensor],
    batch_idx: int | None = None,
    hint: str = _HINT,
) -> None:
    """Raise :class:`DivergenceError` when a loss is NaN or infinite (call it before ``optimizer.step()``).

    Args:
        pl_module: The module being trained (for the epoch and step in the message).
        losses: ``{name: loss}``, e.g. ``{"discriminator loss": loss_d}``.
        batch_idx: Index of the batch in the epoch.
        hint: What the user can do about it.

    Raises:
        DivergenceError: Naming the loss, its value, the epoch, the batch and the global step.
    """
    trainer = getattr(pl_module, "_trainer", None)
    bad = [(name, loss) for name, loss in losses.items() if not bool(torch.isfinite(loss.detach()).all())]
    if _all_ranks(trainer, not bad):
        return
    what = ", ".join(f"the {name} is {_describe(loss)}" for name, loss in bad) or "a loss on another rank is not finite"
    msg = f"{type(pl_module).__name__} training diverged at {_position(trainer, batch_idx)}: {what}. {hint}"
    raise DivergenceError(msg)


def first_non_finite(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """Name of the first floating-point tensor holding NaN or inf, or ``None`` when all are finite.

    Args:
        named_tensors: ``(name, tensor)`` pairs, e.g. ``module.named_parameters()`` or a state dict's items.

    Returns:
        The name, or ``None``.
    """
    for name, tensor in named_tensors:
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.numel():
            if not bool(torch.isfinite(tensor.detach()).all()):
                return name
    return None


def _model_tensors(pl_module: LightningModule) -> list[tuple[str, torch.Tensor]]:
    """Parameters and buffers of the network (``pl_module.model``), which must always be finite."""
    module = getattr(pl_module, "model", None)
    if not isinstance(module, torch.nn.Module):
        module = pl_module
    return [*module.named_parameters(), *module.named_buffers()]


class DivergenceGuard(Callback):
    """Stop training and scoring at the first NaN/inf, with a message naming where (see the module docstring).

    It checks every returned training loss (cheap; Maa checks its losses itself), and refuses to test or predict
    when the post-processor has no fitted statistics (``is_fitted`` is false) instead of labelling every image normal.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[DivergenceGuard()], logger=False)  # doctest: +SKIP
    """

    # ------------------------------------------------------------------ training

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Check the loss the training step returned."""
        del batch
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):
            check_finite_losses(pl_module, {"training loss": loss}, batch_idx)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Check the weights before the threshold is fitted on them and before ``ModelCheckpoint`` saves them."""
        name = first_non_finite(_model_tensors(pl_module))
        if _all_ranks(trainer, name is None):
            return
        msg = (
            f"{type(pl_module).__name__} weights are not finite at the end of {_position(trainer)}: "
            f"{name or 'a tensor on another rank'} holds NaN or inf. Training stopped before the threshold is fitted "
            "and before this epoch's checkpoint is written; the previous checkpoint is kept. Lower the learning rate "
            "or the adversarial weight (lambda_adv), or check the training images."
        )
        raise DivergenceError(msg)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Refuse to write a checkpoint with non-finite weights or incomplete threshold statistics.

        Raising here stops ``trainer.save_checkpoint`` before the file is opened, so the previous file of the same
        name stays as it was.
        """
        state = checkpoint.get("state_dict", {})
        prefix = "model." if any(key.startswith("model.") for key in state) else ""
        name = first_non_finite((key, value) for key, value in state.items() if key.startswith(prefix))
        problem = f"{name} holds NaN or inf" if name else _threshold_problem(trainer, pl_module)
        if problem is None:
            return
        msg = (
            f"Refusing to write a checkpoint of {type(pl_module).__name__} at {_position(trainer)}: {problem}. "
            "The previous checkpoint file is kept unchanged."
        )
        raise DivergenceError(msg)

    # ------------------------------------------------------------------ scoring

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Raise on a non-finite validation score or map (before any threshold or metric sees it)."""
        del pl_module, dataloader_idx
        if not trainer.sanity_checking:
            _check_scores(trainer, outputs if outputs is not None else batch, batch_idx, "validation")

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Refuse to label test images with a threshold that was never fitted."""
        self._require_threshold(pl_module, "test")

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Refuse to label images with a threshold that was never fitted."""
        self._require_threshold(pl_module, "predict")

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Raise on a non-finite test score or map instead of letting it become a *normal* label."""
        del pl_module, dataloader_idx
        _check_scores(trainer, outputs if outputs is not None else batch, batch_idx, "test")

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Raise on a non-finite predicted score or map."""
        del pl_module, dataloader_idx
        _check_scores(trainer, outputs if outputs is not None else batch, batch_idx, "predict")

    def _require_threshold(self, pl_module: LightningModule, stage: str) -> None:
        post_processor = getattr(pl_module, "post_processor", None)
        if post_processor is None or not hasattr(post_processor, "is_fitted"):
            return
        if not getattr(post_processor, "enable_thresholding", True) or post_processor.is_fitted:
            return
        msg = (
            f"Cannot {stage} {type(pl_module).__name__}: its {type(post_processor).__name__} has no threshold "
            "statistics, so every image would be labelled normal. Train to the last epoch (the statistics are "
            "fitted there), load a checkpoint of a finished training, or call "
            "model.post_processor.fit_from_model(model, dataloader=<normal images>) first."
        )
        raise DivergenceError(msg)


def _check_scores(trainer: Trainer, batch: Any, batch_idx: int, stage: str) -> None:
    """Raise when a batch's raw ``pred_score`` or ``anomaly_map`` holds NaN or inf, naming the images."""
    bad = None
    for field in ("pred_score", "anomaly_map"):
        value = getattr(batch, field, None)
        if not isinstance(value, torch.Tensor) or not value.numel():
            continue
        finite = torch.isfinite(value.detach().reshape(value.shape[0], -1) if value.dim() else value.reshape(1, 1))
        rows = (~finite.all(dim=1)).nonzero().flatten().tolist()
        if rows:
            bad = (field, rows)
            break
    if _all_ranks(trainer, bad is None):
        return
    if bad is None:
        msg = f"Non-finite anomaly scores on another rank in {stage} batch {batch_idx} at {_position(trainer)}"
        raise DivergenceError(msg)
    field, rows = bad
    paths = getattr(batch, "image_path", None)
    names = [str(paths[row]) for row in rows[:3]] if paths is not None else [f"#{row}" for row in rows[:3]]
    more = f" and {len(rows) - 3} more" if len(rows) > 3 else ""
    when = _position(trainer) if trainer.state.fn == TrainerFn.FITTING else f"{stage} batch {batch_idx}"
    msg = (
        f"The model produced a non-finite {field} (NaN or inf) for {', '.join(names)}{more} in {when}. "
        "A NaN score cannot be compared with the threshold (it would be labelled normal); the weights may have "
        "diverged, or the image holds values the model cannot handle."
    )
    raise DivergenceError(msg)


def _threshold_problem(trainer: Trainer, pl_module: LightningModule) -> str | None:
    """Describe fitted threshold statistics that are non-finite or miss training images, else ``None``."""
    post_processor = getattr(pl_module, "post_processor", None)
    if post_processor is None or not getattr(post_processor, "is_fitted", False):
        return None
    for name in ("image_mean", "image_std", "image_threshold"):
        value = getattr(post_processor, name, None)
        if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value).all()):
            return f"the threshold statistic post_processor.{name} is {float(value)}"
    if not isinstance(post_processor, PautaPostProcessor) or post_processor.stats_source != "train":
        return None
    dropped, finite = post_processor.n_non_finite_scores, post_processor.train_scores.numel()
    if trainer.state.fn == TrainerFn.FITTING and dropped and finite:
        return (
            f"the threshold was fitted on {finite} finite scores, but the training set holds {finite + dropped} "
            f"images: {dropped} scored NaN or inf"
        )
    return None
