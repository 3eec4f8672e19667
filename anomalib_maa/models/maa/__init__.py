"""MAA: Memory-augmented Adversarial Autoencoder for surface-defect detection."""

from .lightning_model import Maa
from .torch_model import MaaModel

__all__ = ["Maa", "MaaModel"]
