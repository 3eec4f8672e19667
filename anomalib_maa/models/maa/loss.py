"""Losses of MAA (paper, eq. 5-6) and the paired reconstruction term added by this plugin."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class DiscriminatorLoss(nn.Module):
    """PatchGAN loss: patches of real images (set B) labelled 1, of reconstructions 0."""

    def forward(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
        """Mean of the binary cross-entropies on real and fake patch logits."""
        real = F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
        fake = F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
        return (real + fake) / 2


class GeneratorLoss(nn.Module):
    """Generator objective.

    ``L = |f(x_b) - f(G(x_a))|_1 + lambda_adv * adv + lambda_rec * |G(x_a) - x_a|_1``.

    The first two terms are the paper's objective (Markov feature consistency between a
    reconstruction of set A and a real image of set B, plus the adversarial term). Taken alone
    they never tie ``G(x_a)`` to ``x_a``; the paired term (off with ``lambda_rec=0``) does.

    Args:
        lambda_adv: Weight of the adversarial term.
        lambda_rec: Weight of the paired pixel L1 term.
    """

    def __init__(self, lambda_adv: float = 1.0, lambda_rec: float = 50.0) -> None:
        super().__init__()
        self.lambda_adv = lambda_adv
        self.lambda_rec = lambda_rec

    def forward(
        self,
        f_real_b: torch.Tensor,
        f_fake: torch.Tensor,
        logits_fake: torch.Tensor,
        x_a: torch.Tensor,
        fake: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the total loss and its parts (for logging).

        Args:
            f_real_b: Markov features of the set-B images paired with each reconstruction.
            f_fake: Markov features of the reconstructions ``G(x_a)``.
            logits_fake: Discriminator patch logits of the reconstructions.
            x_a: The set-A inputs.
            fake: Their reconstructions.
        """
        parts = {
            "feature": F.l1_loss(f_fake, f_real_b),
            "adversarial": F.binary_cross_entropy_with_logits(logits_fake, torch.ones_like(logits_fake)),
        }
        total = parts["feature"] + self.lambda_adv * parts["adversarial"]
        if self.lambda_rec > 0:
            parts["reconstruction"] = F.l1_loss(fake, x_a)
            total = total + self.lambda_rec * parts["reconstruction"]
        return total, parts
