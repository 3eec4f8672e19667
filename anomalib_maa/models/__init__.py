"""Models of the plugin."""

from .maa import Maa, MaaModel

__all__ = ["Maa", "MaaModel"]
