"""One MAA training step: a discriminator update, then a generator update, on sets A and B.

The Lightning module (:class:`~anomalib_maa.models.maa.Maa`) owns the optimisers and the loop; this module
holds what a step does with them, so that the paper's objective reads in one place.
"""

from __future__ import annotations

import torch
from anomalib.models.components import AnomalibModule

from anomalib_maa.callbacks import check_finite_losses

from .augment import random_crops, random_flips
from .synthetic import synthetic_defects

__all__ = ["adversarial_step", "training_pair"]


def training_pair(module: AnomalibModule, image: torch.Tensor, paths: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sets A and B of a batch as the networks see them: channels matched, cropped to tiles, flipped.

    Args:
        module: The MAA module (:class:`~anomalib_maa.models.maa.Maa`: its model, A/B split and ``augment_flips``).
        image: The batch's pre-processed images ``(B, 3, H, W)``.
        paths: Their file paths (the A/B split is by image).

    Returns:
        ``x_a`` and ``x_b``.
    """
    x_a, x_b = module.ab_batches.split(module.model.match_channels(image), paths)
    if module.model.tiler is not None:
        x_a, x_b = random_crops(x_a, module.model.tile_size), random_crops(x_b, module.model.tile_size)
    if module.augment_flips:
        x_a, x_b = random_flips(x_a), random_flips(x_b)
    return x_a, x_b


def adversarial_step(
    module: AnomalibModule, x_a: torch.Tensor, x_b: torch.Tensor, batch_idx: int
) -> dict[str, torch.Tensor]:
    """One discriminator and one generator update (manual optimisation).

    The generator rebuilds ``x_a`` (given synthetic defects to heal with probability ``heal_prob``); the
    discriminator learns real ``x_b`` against fake ``G(x_a)``; the generator then minimises the Markov feature
    term against ``x_b``, the adversarial term and the paired reconstruction term against the clean ``x_a``.

    Raises:
        DivergenceError: When a loss is NaN or infinite, before its optimiser step (naming epoch and step).

    Returns:
        The detached losses to log: ``loss_g``, ``loss_d`` and each part of the generator loss.
    """
    opt_g, opt_d = module.optimizers()
    generator, discriminator = module.model.generator, module.model.discriminator

    source = synthetic_defects(x_a, module.heal_prob)[0] if module.heal_prob > 0 else x_a
    fake = generator(source)

    logits_real, f_real_b = discriminator(x_b)
    logits_fake, _ = discriminator(fake.detach())
    loss_d = module.discriminator_loss(logits_real, logits_fake)
    check_finite_losses(module, {"discriminator loss": loss_d}, batch_idx)
    opt_d.zero_grad(set_to_none=True)
    module.manual_backward(loss_d)
    opt_d.step()

    logits_fake, f_fake = discriminator(fake)
    loss_g, parts = module.generator_loss(f_real_b.detach(), f_fake, logits_fake, x_a, fake)
    check_finite_losses(module, {"generator loss": loss_g}, batch_idx)
    opt_g.zero_grad(set_to_none=True)
    module.manual_backward(loss_g)
    opt_g.step()

    logs = {"loss_g": loss_g.detach(), "loss_d": loss_d.detach()}
    logs.update({f"loss_{name}": value.detach() for name, value in parts.items()})
    return logs
