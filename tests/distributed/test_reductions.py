"""The distributed reductions without processes: single-process paths unchanged, arithmetic of the merges."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ddp_helpers import IMAGE_SIZE

import anomalib_maa.distributed as distributed
from anomalib_maa.models.maa.memory import AutoMemory
from anomalib_maa.post_processing import scoring
from anomalib_maa.post_processing.scoring import PixelAccumulator, gather_normal_scores
from anomalib_maa.utils.sample_data import folder_datamodule, make_sample_dataset


def test_single_process_memory_update_is_the_plain_batch_mean():
    torch.manual_seed(0)
    memory = AutoMemory(channels=3, latent_size=(4, 4)).train()
    memory.h.normal_()
    memory.c.normal_()
    z = torch.randn(5, 3, 4, 4)
    h, c = memory.h.expand_as(z), memory.c.expand_as(z)
    i, f, o, g = memory.gates(torch.cat([h, z], dim=1)).chunk(4, dim=1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(c_new)
    assert not distributed.is_distributed()
    torch.testing.assert_close(memory(z), h_new, rtol=0, atol=0)
    assert torch.equal(memory.h, h_new.mean(dim=0, keepdim=True))
    assert torch.equal(memory.c, c_new.mean(dim=0, keepdim=True))


@pytest.fixture
def two_fake_ranks(monkeypatch):
    """Pretend to be rank 0 of 2; the all-reduce adds what a fake rank 1 contributes."""
    other: dict[str, torch.Tensor] = {}

    def all_reduce(tensor, op=None):
        del op
        tensor.add_(other["packed"])

    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed.dist, "all_reduce", all_reduce)
    monkeypatch.setattr("anomalib_maa.models.maa.memory.is_distributed", lambda: True)
    return other


def test_weighted_all_reduce_mean_is_the_mean_over_all_samples(two_fake_ranks):
    h0, c0, h1, c1 = (torch.randn(1, 2, 3, 3) for _ in range(4))
    two_fake_ranks["packed"] = torch.cat([h1.reshape(-1) * 3, c1.reshape(-1) * 3, torch.tensor([3.0])])
    h, c = distributed.weighted_all_reduce_mean([h0, c0], weight=1)
    torch.testing.assert_close(h, (h0 + 3 * h1) / 4)
    torch.testing.assert_close(c, (c0 + 3 * c1) / 4)
    assert h.shape == h0.shape


def test_weighted_all_reduce_mean_keeps_local_values_without_samples(two_fake_ranks):
    h0 = torch.randn(1, 2, 3, 3)
    two_fake_ranks["packed"] = torch.zeros(h0.numel() + 1)
    (h,) = distributed.weighted_all_reduce_mean([h0], weight=0)
    assert torch.equal(h, h0)


def test_memory_update_is_reduced_across_ranks(two_fake_ranks):
    memory = AutoMemory(channels=2, latent_size=(3, 3))
    h0, c0, h1, c1 = (torch.randn(1, 2, 3, 3) for _ in range(4))
    two_fake_ranks["packed"] = torch.cat([h1.reshape(-1) * 2, c1.reshape(-1) * 2, torch.tensor([2.0])])
    memory.update_state(h0, c0, weight=2)
    torch.testing.assert_close(memory.h, (h0 + h1) / 2)
    torch.testing.assert_close(memory.c, (c0 + c1) / 2)
    assert not hasattr(memory, "sync_state")  # no opt-out: every rank always holds the same state


@pytest.mark.parametrize(("n_items", "world_size"), [(15, 2), (16, 2), (3, 4), (0, 2), (10, 3)])
def test_contiguous_shards_cover_every_item_once_in_order(n_items, world_size):
    shards = [distributed.contiguous_shard(n_items, rank, world_size) for rank in range(world_size)]
    assert [index for shard in shards for index in shard] == list(range(n_items))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_merged_pixel_statistics_equal_one_pass():
    maps = torch.rand(7, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    whole = PixelAccumulator()
    whole.update(maps[:4])
    whole.update(maps[4:])
    parts = [PixelAccumulator(), PixelAccumulator(), PixelAccumulator()]
    parts[0].update(maps[:3])
    parts[1].update(maps[3:7])  # parts[2] stays empty, as a rank with an empty shard
    merged = PixelAccumulator.merged(part.state() for part in parts)
    mean, std, quantiles, low, high = merged.result()
    expected = whole.result()
    assert mean == pytest.approx(expected[0], rel=1e-12)
    assert std == pytest.approx(expected[1], rel=1e-9)
    np.testing.assert_array_equal(quantiles, expected[2])
    assert (low, high) == (expected[3], expected[4])


def test_gather_is_identity_in_one_process():
    scores, pixel = np.arange(3.0), PixelAccumulator()
    gathered_scores, gathered_pixel = gather_normal_scores(scores, pixel)
    assert gathered_scores is scores and gathered_pixel is pixel


def test_statistics_loader_shards_contiguously(tmp_path, monkeypatch):
    root = make_sample_dataset(tmp_path, n_train=5, n_test_good=1, n_test_defect=1, size=IMAGE_SIZE)
    datamodule = folder_datamodule(root, batch_size=2)
    datamodule.setup()
    trainer, module = SimpleNamespace(datamodule=datamodule), SimpleNamespace()
    paths = []
    for rank in range(2):
        monkeypatch.setattr(scoring, "rank_and_world_size", lambda rank=rank: (rank, 2))
        with scoring.statistics_loader("train", trainer, module, shard=True) as loader:
            paths.append([path for batch in loader for path in batch.image_path])
        with scoring.statistics_loader("train", trainer, module) as loader:  # shard=False: everything
            assert len(loader.dataset) == 5
    assert paths[0] + paths[1] == list(datamodule.train_data.samples["image_path"])
    assert [len(part) for part in paths] == [3, 2]


def test_gather_keeps_tile_scores_per_image(monkeypatch):
    """Tile-normalised models gather raw tile scores (N, T): rank shards stack as rows, in rank order."""
    first, second = np.arange(6.0).reshape(3, 2), np.arange(6.0, 10.0).reshape(2, 2)
    pixel = PixelAccumulator()
    monkeypatch.setattr(scoring, "all_gather_objects", lambda obj: [(first, obj[1]), (second, obj[1])])
    gathered, _ = gather_normal_scores(first, pixel)
    np.testing.assert_array_equal(gathered, np.concatenate([first, second]))
