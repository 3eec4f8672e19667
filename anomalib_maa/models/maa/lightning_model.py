"""MAA as an anomalib model: A/B adversarial training of the memory-augmented autoencoder.

Example:
    >>> from anomalib.data import MVTecAD
    >>> from anomalib.engine import Engine
    >>> from anomalib_maa import Maa
    >>> model = Maa(image_size=(256, 256), max_epochs=50)
    >>> engine = Engine()
    >>> engine.fit(model, datamodule=MVTecAD(category="carpet"))  # doctest: +SKIP
    >>> engine.test(model, datamodule=MVTecAD(category="carpet"))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch import Callback
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch import optim
from torchvision.transforms.v2 import Compose, Normalize, Resize

from anomalib_maa.callbacks import (
    DivergenceGuard,
    NewRunGuard,
    ResumeState,
    TrainingImageCache,
    data_callbacks,
)
from anomalib_maa.distributed import enable_unused_parameter_detection
from anomalib_maa.errors import InputError
from anomalib_maa.metrics.evaluation import table2_evaluator
from anomalib_maa.metrics.fmd import FmdMethod
from anomalib_maa.post_processing import PautaPostProcessor

from .ab_split import ABBatches, training_image_paths
from .checkpoint import legacy_threshold_kwargs
from .data_sized import DataSizedMixin
from .export import exportable_fmd, write_onnx_metadata
from .loss import DiscriminatorLoss, GeneratorLoss
from .memory import MemoryMode
from .sizing import DEFAULT_TILE, as_size
from .torch_model import ScoreMode
from .training import adversarial_step, training_pair


class Maa(DataSizedMixin, AnomalibModule):
    """Memory-augmented Adversarial Autoencoder for surface-defect detection.

    Trains only on defect-free images, split at random (seeded) into sets A and B: the generator
    reconstructs ``x_a``; the Markov discriminator learns real ``x_b`` against fake ``G(x_a)``;
    the generator minimises ``|f(x_b) - f(G(x_a))|_1 + lambda_adv * adversarial`` plus, by
    default, the paired term ``lambda_rec * |G(x_a) - x_a|_1``. The image score is the Fréchet
    Markov Distance between the discriminator features of an image and of its reconstruction;
    the anomaly map is the squared local variance of the residual.

    Args:
        image_size: Model input ``(height, width)`` (or one int), multiples of 8; ``None`` derives it from the
            training images when fitting starts (aspect kept, at most 640 x 256 pixels, a whole number of
            ``tile_size`` tiles, 128 x 128 by default; see :mod:`~anomalib_maa.models.maa.sizing`).
        in_channels: 3, or 1 for a grayscale model (the model averages the RGB channels anomalib loads);
            ``None`` derives it: 1 when every training image is single-channel (or RGB with equal channels).
        n_features: First encoder width (16 in Table I); every other width scales with it.
        max_epochs: Training epochs, passed to the trainer through ``trainer_arguments`` (they override
            the trainer's). ``None``: the trainer's epoch count as given (``Engine(max_epochs=...)``,
            ``--trainer.max_epochs``), or, when none was given, about ``train_steps`` steps.
        lr: Adam learning rate of both networks.
        beta1: Adam beta1.
        beta2: Adam beta2.
        lambda_adv: Weight of the adversarial term.
        lambda_rec: Weight of the paired pixel reconstruction term (0 = the paper's objective).
        memory: ``"persistent"`` (state buffers updated across training batches), ``"zero"`` or ``"none"``
            (no memory cell, for the ablation).
        feature_layer: Discriminator layer (1-4) that feeds the Markov encoder; 4 = 512 channels.
        fmd_method: ``"eigh"`` (exact) or ``"polar"`` (matmul-only, float32-safe: the form exports compute).
        map_window: Window of the local-variance anomaly map.
        score: ``"fmd"`` (the paper's whole-image Fréchet Markov Distance), ``"local_fmd"`` (the
            largest FMD over windows of ``score_window x score_window`` Markov patches) or ``"map_max"``
            (the largest value of the anomaly map; see ``docs/results.md`` for when each wins).
        score_window: Window side of ``"local_fmd"``, in Markov patches.
        lr_schedule: ``"constant"`` (the paper's) or ``"cosine"`` (both learning rates decay to 0 over
            the trainer's epochs, so the last epochs settle instead of swinging).
        augment_flips: Flip each training image left-right and top-bottom at random (p = 1/2 each).
        tile_size: Train on random crops of this size (one per image and step) and score an image
            by its worst non-overlapping tile, with the anomaly map put back together; ``None``
            (default) works on whole images. ``image_size`` must be a whole number of tiles.
        tile_norm: Score each tile against the defect-free training images' scores of the same tile and an image
            by its largest, fitted by the Pauta post-processor from the training images
            (:mod:`~anomalib_maa.models.maa.score_norm`): ``"quantile"`` divides each tile by its training q95
            (positive scores, any threshold method); ``"zscore"`` (or ``True``) takes the robust z-score of the log
            score, which can be negative: use the post-processor's ``method="normal"`` or ``"empirical"`` with it.
            ``False``/``"none"``: raw tile scores.
        ab_seed: Seed of the A/B split.
        heal_prob: Share of set-A images given small synthetic defects before the generator, which
            must return the clean image (paired term): teaches it to rebuild defects as normal surface
            (:mod:`~anomalib_maa.models.maa.synthetic`). 0 = off (the paper).
        train_steps: Optimiser steps to train for when no epoch count is given anywhere.
        gamma: Shorthand for the default post-processor's γ (``T = μ + γσ`` over the scores of the defect-free
            training images; 0 favours recall of defects, 2-3 few false alarms); ``None``: 3, the Pauta rule
            (:data:`~anomalib_maa.post_processing.DEFAULT_GAMMA`). Every other threshold option (``false_alarm_rate``,
            ``method``) is the post-processor's: ``post_processor=PautaPostProcessor(method="lognormal")``.
        pre_processor: Pre-processor, or ``True`` for resize + mapping to [-1, 1].
        post_processor: Post-processor, or ``True`` for :meth:`configure_post_processor`'s (with ``gamma``).
        evaluator: Evaluator, or ``True`` for the paper's Table II metrics.
        visualizer: Visualizer, or ``True`` for anomalib's image visualizer.

    Example:
        >>> model = Maa(image_size=(64, 64), n_features=4, max_epochs=1)
        >>> model.trainer_arguments["max_epochs"]
        1
    """

    def __init__(
        self,
        image_size: int | Sequence[int] | None = None,
        in_channels: int | None = None,
        n_features: int = 16,
        max_epochs: int | None = None,
        lr: float = 1e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        lambda_adv: float = 1.0,
        lambda_rec: float = 50.0,
        memory: MemoryMode = "persistent",
        feature_layer: int = 4,
        fmd_method: FmdMethod = "eigh",
        map_window: int = 7,
        score: ScoreMode = "fmd",
        score_window: int = 3,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        augment_flips: bool = False,
        tile_size: int | Sequence[int] | None = None,
        tile_norm: bool | Literal["none", "zscore", "quantile"] = False,
        ab_seed: int = 0,
        heal_prob: float = 0.0,
        train_steps: int = 3000,
        gamma: float | None = None,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        if gamma is not None and post_processor is not True:
            msg = (
                f"gamma ({gamma}) is the shorthand of the default post-processor: give it to the post-processor "
                "passed (post_processor=PautaPostProcessor(gamma=...), or post_processor.init_args.gamma in a config)"
            )
            raise InputError(msg)
        if in_channels is not None and in_channels not in {1, 3}:
            msg = f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}"
            raise ValueError(msg)
        if not 0.0 <= heal_prob <= 1.0:
            msg = f"heal_prob must lie in [0, 1], got {heal_prob}"
            raise ValueError(msg)
        if train_steps < 1:
            msg = f"train_steps must be a positive number of optimiser steps, got {train_steps}"
            raise ValueError(msg)
        # What is not given is derived from the training images when fitting starts (sizing.py).
        self._derive = {"image_size": image_size is None, "in_channels": in_channels is None}
        if image_size is None:
            tile = as_size(tile_size) if tile_size is not None else DEFAULT_TILE
            image_size = tile
        else:
            image_size = as_size(image_size)
            tile = as_size(tile_size) if tile_size is not None else None
        self._default_pre_processor = pre_processor is True
        if pre_processor is True:
            pre_processor = self.configure_pre_processor(image_size)
        if post_processor is True:
            post_processor = self.configure_post_processor(gamma)
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.max_epochs = max_epochs
        self.train_steps = train_steps
        self.lr = lr
        self.betas = (beta1, beta2)
        self.ab_seed = ab_seed
        if lr_schedule not in {"constant", "cosine"}:
            msg = f"Unknown lr_schedule {lr_schedule!r}: use 'constant' or 'cosine'"
            raise ValueError(msg)
        self.lr_schedule = lr_schedule
        self.augment_flips = augment_flips
        self.heal_prob = heal_prob
        self._model_args = {
            "n_features": n_features,
            "memory": memory,
            "feature_layer": feature_layer,
            "fmd_method": fmd_method,
            "map_window": map_window,
            "score": score,
            "score_window": score_window,
            "tile_norm": tile_norm,
        }
        self._build(image_size, tile, in_channels or 3)
        self.generator_loss = GeneratorLoss(lambda_adv, lambda_rec)
        self.discriminator_loss = DiscriminatorLoss()
        self.automatic_optimization = False
        self.ab_batches = ABBatches()
        self._resumed_last_seen: dict[str, torch.Tensor] | None = None

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path, *args: Any, **kwargs: Any) -> Maa:
        """Load a checkpoint (anomalib's ``load_from_checkpoint``).

        Checkpoints of the time ``Maa`` also took ``false_alarm_rate`` load with the rate they were trained with
        (:func:`~anomalib_maa.models.maa.checkpoint.legacy_threshold_kwargs`).
        """
        kwargs = legacy_threshold_kwargs(
            checkpoint_path, kwargs, cls.CHECKPOINT_HYPER_PARAMS_KEY, cls.checkpoint_safe_globals()
        )
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    @classmethod
    def configure_pre_processor(
        cls,
        image_size: tuple[int, int] | None = None,
    ) -> PreProcessor:
        """Resize and map pixel values from [0, 1] to [-1, 1] (the decoder ends in tanh).

        The images stay RGB (anomalib's batches require three channels); a grayscale model
        (``in_channels=1``) averages them itself.

        Args:
            image_size: Target ``(height, width)``; defaults to ``(256, 256)``.
        """
        image_size = image_size or (256, 256)
        return PreProcessor(
            transform=Compose([Resize(image_size, antialias=True), Normalize(mean=[0.5] * 3, std=[0.5] * 3)])
        )

    @staticmethod
    def configure_post_processor(gamma: float | None = None) -> PautaPostProcessor:
        """The Pauta threshold over the scores of the defect-free training images (normal rule, γ = 3 by default).

        Args:
            gamma: γ of ``T = μ + γσ``; ``None``: :data:`~anomalib_maa.post_processing.DEFAULT_GAMMA`.

        Returns:
            The post-processor.
        """
        return PautaPostProcessor(gamma=gamma)

    @staticmethod
    def configure_evaluator() -> Evaluator:
        """The paper's Table II metrics (image AUROC, F1, accuracy, recall, precision) and pixel AUROC."""
        return table2_evaluator()

    def configure_optimizers(self) -> list[optim.Optimizer] | tuple[list[optim.Optimizer], list[Any]]:
        """Adam for the generator and for the discriminator (paper: lr 1e-4, beta1 0.5).

        With ``lr_schedule="cosine"`` each gets a cosine decay over the trainer's epochs, stepped
        at the end of every training epoch.
        """
        optimizers = [
            optim.Adam(self.model.generator.parameters(), lr=self.lr, betas=self.betas, fused=True),
            optim.Adam(self.model.discriminator.parameters(), lr=self.lr, betas=self.betas, fused=True),
        ]
        if self.lr_schedule == "constant":
            return optimizers
        epochs = self._trainer.max_epochs if self._trainer is not None else None
        epochs = epochs if epochs and epochs > 0 else (self.max_epochs or 1)
        return optimizers, [optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs) for opt in optimizers]

    def on_train_epoch_end(self) -> None:
        """Step the learning-rate schedules (manual optimisation leaves this to the model)."""
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()

    def configure_callbacks(self) -> list[Callback]:
        """The reliability callbacks, then anomalib's component callbacks (``docs/reliability.md``).

        :class:`~anomalib_maa.callbacks.DivergenceGuard` (NaN/inf losses, weights, scores and checkpoints stop the
        run), :class:`~anomalib_maa.callbacks.ResumeState` (exact resume) and
        :class:`~anomalib_maa.callbacks.NewRunGuard` (no second fit on a used trainer). They come first so that
        their epoch-end and batch-end checks run before the post-processor fits or applies the threshold.
        :func:`~anomalib_maa.callbacks.data_callbacks` come before them: every image and mask checked once, 16-bit
        images read scaled, validation skipped when there is none, no empty run folder left by a failed run.
        :class:`~anomalib_maa.callbacks.TrainingImageCache` reads the training images once per fit.
        """
        callbacks = super().configure_callbacks()
        base = [callbacks] if isinstance(callbacks, Callback) else list(callbacks)
        return [*data_callbacks(), TrainingImageCache(), DivergenceGuard(), ResumeState(), NewRunGuard(), *base]

    def setup(self, stage: str) -> None:
        """Under a DDP strategy, wrap with ``find_unused_parameters=True`` (see ``docs/scaling.md``).

        The discriminator's backward pass never reaches the generator's parameters, which plain
        DDP rejects. Lightning wraps the model in DDP after this hook.
        """
        super().setup(stage)
        if stage == "fit":
            self._derive_sizes()
            self._derive_epochs()
        enable_unused_parameter_detection(self.trainer)

    def on_fit_start(self) -> None:
        """Split the defect-free training images into sets A and B (seeded); a resumed fit gets its last-seen images."""
        super().on_fit_start()
        resumed, self._resumed_last_seen = self._resumed_last_seen, None
        if self.trainer.ckpt_path is None:  # a new fit, also from loaded weights, starts empty
            resumed = None
        self.ab_batches.start(training_image_paths(self.trainer), self.ab_seed, resumed, self.device)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Also keep the A and B images last seen, so that a resumed fit continues exactly (:class:`ABBatches`)."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["maa_last_seen"] = self.ab_batches.state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Hold the saved last-seen images until a resumed fit starts (``on_fit_start`` resets them otherwise)."""
        super().on_load_checkpoint(checkpoint)
        self._resumed_last_seen = checkpoint.get("maa_last_seen")

    def training_step(self, batch: Batch, batch_idx: int) -> STEP_OUTPUT:
        """One discriminator and one generator update on a batch split into sets A and B.

        Raises:
            DivergenceError: When a loss is NaN or infinite, before its optimiser step (naming epoch and step).
        """
        x_a, x_b = training_pair(self, batch.image, batch.image_path)
        logs = adversarial_step(self, x_a, x_b, batch_idx)
        self.log_dict(logs, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x_a))
        return {"loss": logs["loss_g"]}

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Score a validation batch (eval mode: FMD and anomaly map)."""
        del args, kwargs
        return batch.update(**self.model(batch.image)._asdict())

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """Manual optimisation needs no clipping; ``max_epochs`` only when given to the model.

        Without it the trainer's epoch count is used as given; when nobody gave one, ``setup``
        derives it from ``train_steps``.
        """
        arguments = {"gradient_clip_val": 0, "num_sanity_val_steps": 0}
        if self.max_epochs is not None:
            arguments["max_epochs"] = self.max_epochs
        return arguments

    @property
    def learning_type(self) -> LearningType:
        """MAA learns from defect-free images only."""
        return LearningType.ONE_CLASS

    def to_onnx(self, *args: Any, **kwargs: Any) -> Path:
        """Export to ONNX (and, through anomalib's ``to_openvino``, to OpenVINO) with a matmul-only FMD.

        ONNX has no eigendecomposition and OpenVINO computes in float32, so the FMD is switched to
        its matmul-only, float32-safe form (``fmd_method="polar"``) for the export and restored
        afterwards; the file also records the model's input size and thresholds as metadata.
        Arguments are those of anomalib's ``ExportMixin.to_onnx``; ``opset_version`` defaults to
        18, the opset torch's exporter writes (anomalib asks for 14, and the down-conversion
        fails on ``Pad`` and logs a traceback). See ``docs/deployment.md``.
        """
        kwargs.setdefault("opset_version", 18)
        with exportable_fmd(self):
            path = super().to_onnx(*args, **kwargs)
        write_onnx_metadata(path, self)
        return path
