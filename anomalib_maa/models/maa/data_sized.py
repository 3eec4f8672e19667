"""The hooks that fit MAA's sizes to the data: the model is (re)built for the sizes the training images imply.

:class:`~anomalib_maa.Maa` takes what the user did not give (input size, tiles, channels, epoch count) from the
training images when fitting starts (the rule is :mod:`~anomalib_maa.models.maa.sizing`'s), and stores the sizes
with the weights (``model_sizes``), so that every way of loading them rebuilds the same model.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from .ab_split import training_image_paths
from .checkpoint import with_unfitted_tile_norm
from .sizing import DEFAULT_TILE, derive_epochs, derive_sizes
from .torch_model import MaaModel

logger = logging.getLogger(__name__)


class DataSizedMixin:
    """Hooks of an anomalib module whose torch model is built for sizes that may come from the training images.

    A mixin, like anomalib's ``MemoryBankMixin``: the model class lists it before ``AnomalibModule``, which stays a
    direct base (anomalib's ``get_model("maa")`` looks only at ``AnomalibModule``'s direct subclasses). The class
    sets ``_model_args`` (the torch model's other arguments), ``_default_pre_processor`` and ``_derive`` (which
    sizes are still to derive), then calls :meth:`_build`; its ``setup("fit")`` calls :meth:`_derive_sizes` and
    :meth:`_derive_epochs`, and it has ``max_epochs`` and ``train_steps``.
    """

    _model_args: dict[str, Any]
    _default_pre_processor: bool
    _derive: dict[str, bool]
    max_epochs: int | None
    train_steps: int

    def _build(self, image_size: tuple[int, int], tile_size: tuple[int, int] | None, in_channels: int) -> None:
        """(Re)build the torch model for these sizes and point the default pre-processor's resize at them."""
        self.image_size = tuple(image_size)
        self.tile_size = tuple(tile_size) if tile_size is not None else None
        self.in_channels = in_channels
        self.model = MaaModel(
            image_size=self.image_size, in_channels=in_channels, tile_size=self.tile_size, **self._model_args
        )
        if self._default_pre_processor:
            fresh = self.configure_pre_processor(self.image_size)
            self.pre_processor.transform = fresh.transform
            self.pre_processor.export_transform = fresh.export_transform
        tile = self.tile_size or (0, 0)
        # In the state dict, so that every way of loading weights (checkpoints, DDP spawn) rebuilds the same model.
        self.register_buffer("model_sizes", torch.tensor([*self.image_size, *tile, in_channels], dtype=torch.long))

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Rebuild the model for the sizes stored with the weights, then load them.

        State dicts written before the sizes were stored load into the model as it is built; those written
        before tile statistics existed load with unfitted ones (the Pauta fit sets them).
        """
        sizes = state_dict.get("model_sizes")
        if sizes is None:
            state_dict = with_unfitted_tile_norm(state_dict, self.model.score_norm)
            return super().load_state_dict({**state_dict, "model_sizes": self.model_sizes}, strict, assign)
        self._derive = {"image_size": False, "in_channels": False}  # trained weights: nothing left to derive
        if [int(v) for v in sizes] != [int(v) for v in self.model_sizes]:
            height, width, tile_h, tile_w, channels = (int(v) for v in sizes)
            self._build((height, width), (tile_h, tile_w) if tile_h else None, channels)
        state_dict = with_unfitted_tile_norm(state_dict, self.model.score_norm)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @property
    def sizes(self) -> dict[str, Any]:
        """The input size, tile size and channels the model works with (stored in checkpoints)."""
        return {
            "image_size": list(self.image_size),
            "tile_size": self.tile_size and list(self.tile_size),
            "in_channels": self.in_channels,
        }

    def _derive_sizes(self) -> None:
        """Derive what was not given (input size, tiles, channels) from the training images, once."""
        if not any(self._derive.values()):
            return
        paths = training_image_paths(self.trainer)
        tile = self.tile_size or DEFAULT_TILE
        derived = derive_sizes(paths, tile=tile)
        image_size = derived.image_size if self._derive["image_size"] else self.image_size
        tile_size = tile if self._derive["image_size"] else self.tile_size
        in_channels = derived.in_channels if self._derive["in_channels"] else self.in_channels
        self._derive = {"image_size": False, "in_channels": False}
        self._build(image_size, tile_size, in_channels)
        logger.info(
            "MAA sizes from %d training images (median %dx%d): image_size=%s, tile_size=%s, in_channels=%d",
            len(paths),
            *derived.native_size,
            list(image_size),
            tile_size and list(tile_size),
            in_channels,
        )
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and self._default_pre_processor:
            datamodule.setup("fit")  # re-apply the model's (new) resize to the datasets' augmentations

    def _derive_epochs(self) -> None:
        """Without an epoch count from the user or the model, train for about ``train_steps`` steps."""
        trainer = self.trainer
        if self.max_epochs is not None or trainer.max_steps != -1 or trainer.fit_loop.max_epochs not in {None, 1000}:
            return  # 1000: Lightning's own default when nobody gave an epoch count
        datamodule = getattr(trainer, "datamodule", None)
        batch_size = getattr(datamodule, "train_batch_size", None)
        n_images = len(training_image_paths(self.trainer))
        if not batch_size:
            return
        epochs = derive_epochs(n_images, int(batch_size), self.train_steps)
        trainer.fit_loop.max_epochs = epochs
        logger.info("MAA trains %d epochs (about %d steps of %d images)", epochs, self.train_steps, batch_size)
