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

import logging
from collections.abc import Sequence
from typing import Any

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch import optim
from torchvision.transforms.v2 import Compose, Grayscale, Normalize, Resize

from anomalib_maa.metrics.evaluation import table2_evaluator
from anomalib_maa.metrics.fmd import FmdMethod
from anomalib_maa.post_processing import DEFAULT_GAMMA, PautaPostProcessor

from .ab_split import split_ab
from .loss import DiscriminatorLoss, GeneratorLoss
from .memory import MemoryMode
from .torch_model import MaaModel

logger = logging.getLogger(__name__)


def _as_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return (image_size, image_size)
    size = tuple(int(side) for side in image_size)
    if len(size) != 2:  # noqa: PLR2004
        msg = f"image_size must be an int or (height, width), got {image_size}"
        raise ValueError(msg)
    return size  # type: ignore[return-value]


class Maa(AnomalibModule):
    """Memory-augmented Adversarial Autoencoder for surface-defect detection.

    Trains only on defect-free images, split at random (seeded) into sets A and B: the generator
    reconstructs ``x_a``; the Markov discriminator learns real ``x_b`` against fake ``G(x_a)``;
    the generator minimises ``|f(x_b) - f(G(x_a))|_1 + lambda_adv * adversarial`` plus, by
    default, the paired term ``lambda_rec * |G(x_a) - x_a|_1``. The image score is the Fréchet
    Markov Distance between the discriminator features of an image and of its reconstruction;
    the anomaly map is the squared local variance of the residual.

    Args:
        image_size: Model input ``(height, width)`` (or one int), multiples of 8.
        in_channels: 3, or 1 to convert images to grayscale in the pre-processor.
        n_features: First encoder width (16 in Table I); every other width scales with it.
        max_epochs: Training epochs (passed to the trainer through ``trainer_arguments``).
        lr: Adam learning rate of both networks.
        beta1: Adam beta1.
        beta2: Adam beta2.
        lambda_adv: Weight of the adversarial term.
        lambda_rec: Weight of the paired pixel reconstruction term (0 = the paper's objective).
        lambda_rec_feat: Weight of the paired Markov-feature reconstruction term.
        memory: ``"persistent"`` (state buffers updated across training batches) or ``"zero"``.
        feature_layer: Discriminator layer (1-4) that feeds the Markov encoder; 4 = 512 channels.
        fmd_method: ``"eigh"`` (exact) or ``"newton_schulz"`` (matmul-only, exportable to ONNX).
        map_window: Window of the local-variance anomaly map.
        ab_seed: Seed of the A/B split.
        gamma: γ of the default Pauta threshold ``T = μ + γσ`` over the FMD scores of the
            defect-free training images (0 favours recall of defects, 2-3 few false alarms).
        false_alarm_rate: Alternative to ``gamma``: target rate α, γ = Φ⁻¹(1 − α).
        pre_processor: Pre-processor, or ``True`` for resize + mapping to [-1, 1].
        post_processor: Post-processor, or ``True`` for :class:`PautaPostProcessor` with
            ``gamma`` / ``false_alarm_rate``.
        evaluator: Evaluator, or ``True`` for the paper's Table II metrics.
        visualizer: Visualizer, or ``True`` for anomalib's image visualizer.

    Example:
        >>> model = Maa(image_size=(64, 64), n_features=4, max_epochs=1)
        >>> model.trainer_arguments["max_epochs"]
        1
    """

    def __init__(
        self,
        image_size: int | Sequence[int] = (256, 256),
        in_channels: int = 3,
        n_features: int = 16,
        max_epochs: int = 100,
        lr: float = 1e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        lambda_adv: float = 1.0,
        lambda_rec: float = 10.0,
        lambda_rec_feat: float = 0.0,
        memory: MemoryMode = "persistent",
        feature_layer: int = 4,
        fmd_method: FmdMethod = "eigh",
        map_window: int = 7,
        ab_seed: int = 0,
        gamma: float | None = DEFAULT_GAMMA,
        false_alarm_rate: float | None = None,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        image_size = _as_size(image_size)
        if in_channels not in {1, 3}:
            msg = f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}"
            raise ValueError(msg)
        if pre_processor is True:
            pre_processor = self.configure_pre_processor(image_size, in_channels)
        if post_processor is True:
            if false_alarm_rate is not None:
                gamma = None  # the false-alarm rate sets gamma
            post_processor = PautaPostProcessor(gamma=gamma, false_alarm_rate=false_alarm_rate)
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.image_size = image_size
        self.max_epochs = max_epochs
        self.lr = lr
        self.betas = (beta1, beta2)
        self.ab_seed = ab_seed
        self.model = MaaModel(
            image_size=image_size,
            in_channels=in_channels,
            n_features=n_features,
            memory=memory,
            feature_layer=feature_layer,
            fmd_method=fmd_method,
            map_window=map_window,
        )
        self.generator_loss = GeneratorLoss(lambda_adv, lambda_rec, lambda_rec_feat)
        self.discriminator_loss = DiscriminatorLoss()
        self.automatic_optimization = False
        self._set_a: frozenset[str] | None = None
        self._last_seen: dict[str, torch.Tensor] = {}

    @classmethod
    def configure_pre_processor(
        cls,
        image_size: tuple[int, int] | None = None,
        in_channels: int = 3,
    ) -> PreProcessor:
        """Resize and map pixel values from [0, 1] to [-1, 1] (the decoder ends in tanh).

        Args:
            image_size: Target ``(height, width)``; defaults to ``(256, 256)``.
            in_channels: 1 adds a grayscale conversion.
        """
        image_size = image_size or (256, 256)
        steps: list[Any] = [Resize(image_size, antialias=True)]
        if in_channels == 1:
            steps.append(Grayscale(num_output_channels=1))
        steps.append(Normalize(mean=[0.5] * in_channels, std=[0.5] * in_channels))
        return PreProcessor(transform=Compose(steps))

    @staticmethod
    def configure_evaluator() -> Evaluator:
        """The paper's Table II metrics (image AUROC, F1, accuracy, recall, precision) and pixel AUROC."""
        return table2_evaluator()

    def configure_optimizers(self) -> list[optim.Optimizer]:
        """Adam for the generator and for the discriminator (paper: lr 1e-4, beta1 0.5)."""
        return [
            optim.Adam(self.model.generator.parameters(), lr=self.lr, betas=self.betas, fused=True),
            optim.Adam(self.model.discriminator.parameters(), lr=self.lr, betas=self.betas, fused=True),
        ]

    def on_fit_start(self) -> None:
        """Split the defect-free training images into sets A and B (seeded)."""
        super().on_fit_start()
        self._set_a = split_ab(self._training_image_paths(), self.ab_seed)
        self._last_seen = {}

    def _training_image_paths(self) -> list[str]:
        datamodule = getattr(self.trainer, "datamodule", None)
        dataset = getattr(datamodule, "train_data", None)
        if dataset is None:
            loader = self.trainer.train_dataloader
            dataset = getattr(loader, "dataset", None)
        samples = getattr(dataset, "samples", None)
        if samples is None or "image_path" not in samples:
            msg = "MAA needs an anomalib dataset with image paths to split the training images into sets A and B"
            raise ValueError(msg)
        if "label_index" in samples and (samples["label_index"] != 0).any():
            bad = samples.loc[samples["label_index"] != 0, "image_path"].head(3).tolist()
            msg = f"MAA trains on defect-free images only, but the training set holds defective images, e.g. {bad}"
            raise ValueError(msg)
        return samples["image_path"].astype(str).tolist()

    def _split_batch(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Return ``(x_a, x_b)`` with one set-B image per set-A image.

        Set-B images are cycled when the batch holds fewer B than A images; when the batch holds
        none of one set, that set's images from the previous batch stand in.
        """
        if self._set_a is None:
            msg = "The A/B split is made in on_fit_start; train MAA through a Lightning Trainer or anomalib Engine"
            raise RuntimeError(msg)
        in_a = torch.tensor([str(path) in self._set_a for path in batch.image_path], device=batch.image.device)
        images = {"a": batch.image[in_a], "b": batch.image[~in_a]}
        for key, value in images.items():
            if len(value):
                self._last_seen[key] = value.detach()
            elif key in self._last_seen:
                images[key] = self._last_seen[key]
            else:
                return None
        x_a, x_b = images["a"], images["b"]
        return x_a, x_b[torch.arange(len(x_a), device=x_b.device) % len(x_b)]

    def training_step(self, batch: Batch, batch_idx: int) -> STEP_OUTPUT:
        """One discriminator and one generator update on a batch split into sets A and B."""
        del batch_idx
        pair = self._split_batch(batch)
        if pair is None:  # the very first batch held only one set: nothing to pair yet
            return None
        x_a, x_b = pair
        opt_g, opt_d = self.optimizers()
        generator, discriminator = self.model.generator, self.model.discriminator

        fake = generator(x_a)

        logits_real, f_real_b = discriminator(x_b)
        logits_fake, _ = discriminator(fake.detach())
        loss_d = self.discriminator_loss(logits_real, logits_fake)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()

        logits_fake, f_fake = discriminator(fake)
        f_real_a = None
        if self.generator_loss.lambda_rec_feat > 0:
            with torch.no_grad():
                f_real_a = discriminator.markov_features(x_a)
        loss_g, parts = self.generator_loss(f_real_b.detach(), f_fake, logits_fake, x_a, fake, f_real_a)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()

        logs = {"loss_g": loss_g.detach(), "loss_d": loss_d.detach()}
        logs.update({f"loss_{name}": value.detach() for name, value in parts.items()})
        self.log_dict(logs, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x_a))
        return {"loss": loss_g.detach()}

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Score a validation batch (eval mode: FMD and anomaly map)."""
        del args, kwargs
        return batch.update(**self.model(batch.image)._asdict())

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """Manual optimisation needs no clipping; ``max_epochs`` is a model argument."""
        return {"gradient_clip_val": 0, "max_epochs": self.max_epochs, "num_sanity_val_steps": 0}

    @property
    def learning_type(self) -> LearningType:
        """MAA learns from defect-free images only."""
        return LearningType.ONE_CLASS
