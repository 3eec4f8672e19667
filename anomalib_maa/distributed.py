"""Small helpers for training under Lightning's distributed strategies (DDP, ``ddp_spawn``, multi-node).

Everything here is a no-op in a single process (``torch.distributed`` not initialised, or a world
of one), so single-device behaviour stays exactly as it was. See ``docs/scaling.md``.

Every function that communicates is a *collective*: all ranks must call it, in the same order,
or the job hangs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "all_gather_objects",
    "broadcast_module_state",
    "contiguous_shard",
    "enable_unused_parameter_detection",
    "is_distributed",
    "rank_and_world_size",
    "weighted_all_reduce_mean",
]

logger = logging.getLogger(__name__)


def is_distributed() -> bool:
    """Whether a default process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if not is_distributed():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def weighted_all_reduce_mean(tensors: Sequence[torch.Tensor], weight: float) -> list[torch.Tensor]:
    """Weighted mean over ranks of per-rank means, in one all-reduce.

    Each rank passes the means of its own samples and their count ``weight``; every rank gets
    back ``sum_r(weight_r * tensor_r) / sum_r(weight_r)`` — the mean over all the samples of
    all ranks. The tensors are packed into one flat buffer (in the dtype of the first tensor)
    so the step costs a single collective. Collective: every rank must call it.

    Args:
        tensors: Per-rank means, on the process's device (CUDA tensors with NCCL).
        weight: Number of samples behind the means on this rank (may be 0).

    Returns:
        The reduced tensors, with the shapes and dtypes of the inputs.
    """
    dtype = tensors[0].dtype
    local = torch.cat([tensor.detach().to(dtype).reshape(-1) for tensor in tensors])
    count = local.new_full((1,), float(weight))  # a fill kernel: no host-to-device copy
    packed = torch.cat([local * float(weight), count])
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    total = packed[-1]
    # No host sync on the total: with no sample on any rank, every rank keeps its own input.
    reduced = torch.where(total > 0, packed[:-1] / total.clamp_min(torch.finfo(dtype).tiny), local)
    parts = reduced.split([tensor.numel() for tensor in tensors])
    return [part.reshape(tensor.shape).to(tensor.dtype) for part, tensor in zip(parts, tensors, strict=True)]


def all_gather_objects(value: Any) -> list[Any]:
    """Every rank's picklable ``value``, in rank order (``[value]`` in a single process). Collective."""
    if not is_distributed():
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


@torch.no_grad()
def broadcast_module_state(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every rank's ``module``, in place. Collective.

    DDP keeps the parameters equal across ranks, but each rank's last training step updates its
    buffers (BatchNorm running statistics, for example) from its own batch, and rank 0's are the
    ones the checkpoint holds. Call this before anything every rank must compute identically from
    the trained model. Tensors whose shape or dtype differs between ranks (e.g. a memory bank
    fitted on each rank's own shard) cannot be broadcast in place; they are left alone and logged.

    Args:
        module: The module to synchronise.
        src: The rank whose state is copied.
    """
    if not is_distributed():
        return
    state = module.state_dict(keep_vars=True)
    signature = {name: (tuple(tensor.shape), str(tensor.dtype)) for name, tensor in state.items()}
    signatures = all_gather_objects(signature)
    skipped = []
    for name, tensor in state.items():
        if any(other.get(name) != signature[name] for other in signatures):
            skipped.append(name)
            continue
        dist.broadcast(tensor.data, src=src)
    if skipped:
        logger.warning("Not synchronised across ranks (shapes differ): %s", ", ".join(skipped))


def contiguous_shard(n_items: int, rank: int, world_size: int) -> range:
    """Indices of ``rank``'s contiguous share of ``n_items`` items (sizes differ by at most one).

    Concatenating the shards in rank order gives ``range(n_items)`` back: each item exactly once,
    no padding (unlike ``DistributedSampler``), original order.

    Example:
        >>> [list(contiguous_shard(5, rank, 2)) for rank in range(2)]
        [[0, 1, 2], [3, 4]]
    """
    base, extra = divmod(n_items, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def enable_unused_parameter_detection(trainer: Any) -> bool:
    """Make a Lightning DDP strategy wrap the model with ``find_unused_parameters=True``.

    MAA optimises manually with two backward passes per step (the discriminator loss does not
    reach the generator), which plain DDP rejects. Call from the module's ``setup`` hook: Lightning
    wraps the model in DDP after it. A value the user set explicitly
    (``strategy="ddp_find_unused_parameters_false"``) is kept.

    Args:
        trainer: The Lightning trainer.

    Returns:
        Whether the strategy is a DDP strategy that now finds unused parameters.
    """
    from lightning.pytorch.strategies import DDPStrategy

    strategy = getattr(trainer, "strategy", None)
    if not isinstance(strategy, DDPStrategy):
        return False
    kwargs = strategy._ddp_kwargs  # Lightning keeps the DDP constructor kwargs here
    kwargs.setdefault("find_unused_parameters", True)
    return bool(kwargs["find_unused_parameters"])
