"""MAA under Lightning's DDP on the CPU (gloo, 2 spawned processes): state and Pauta statistics agree.

One ``ddp_spawn`` fit (module fixture, ~30 s on 2 cores: most of it is each child importing
anomalib); the tests only read what it wrote.
"""

from __future__ import annotations

import pytest
import torch
from ddp_helpers import IMAGE_SIZE, N_TRAIN, fit_maa, score_in_one_process

from anomalib_maa import Maa
from anomalib_maa.utils.sample_data import folder_datamodule, make_sample_dataset

BATCH_SIZE = 4
MAX_EPOCHS = 2


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    data_root = make_sample_dataset(
        folder / "data", n_train=N_TRAIN, n_test_good=2, n_test_defect=2, size=IMAGE_SIZE, seed=0
    )
    run = fit_maa(data_root, folder / "run", devices=2, max_epochs=MAX_EPOCHS, batch_size=BATCH_SIZE)
    run["data_root"] = data_root
    return run


@pytest.fixture(scope="module")
def reloaded(ddp_run):
    """The checkpoint of the DDP run, loaded in this (single) process, and the training dataset."""
    assert ddp_run["checkpoint"] is not None, "the DDP fit wrote no checkpoint"
    model = Maa.load_from_checkpoint(ddp_run["checkpoint"], map_location="cpu")
    datamodule = folder_datamodule(ddp_run["data_root"], batch_size=BATCH_SIZE)
    datamodule.setup()
    return model, datamodule


def test_training_completes_on_two_ranks(ddp_run):
    ranks = ddp_run["ranks"]
    assert [record["rank"] for record in ranks] == [0, 1]
    assert all(record["world_size"] == 2 for record in ranks)
    # 15 images padded to 8 per rank by the DistributedSampler: 2 batches of 4 per epoch
    steps_per_rank = MAX_EPOCHS * 2
    assert [len(record["steps"]) for record in ranks] == [steps_per_rank, steps_per_rank]
    assert ddp_run["engine"].trainer.state.finished  # the state rank 0 sent back to this process
    assert ddp_run["checkpoint"] is not None and ddp_run["checkpoint"].stat().st_size > 0


def test_memory_state_equal_on_all_ranks_after_every_step(ddp_run):
    first, second = ddp_run["ranks"]
    for step, ((h0, c0), (h1, c1)) in enumerate(zip(first["steps"], second["steps"], strict=True)):
        assert torch.equal(h0, h1), f"h differs between ranks after step {step}"
        assert torch.equal(c0, c1), f"c differs between ranks after step {step}"
    assert first["steps"][-1][0].abs().sum() > 0, "training must write the memory"
    assert not torch.equal(first["steps"][0][0], first["steps"][-1][0]), "the memory must move during training"
    for name in ("model.generator.memory.h", "model.generator.memory.c"):
        assert torch.equal(first["state_dict"][name], second["state_dict"][name])


def test_ab_split_and_whole_state_equal_on_all_ranks(ddp_run):
    first, second = ddp_run["ranks"]
    assert first["set_a"] == second["set_a"] and len(first["set_a"]) == (N_TRAIN + 1) // 2
    # weights (DDP), BatchNorm statistics (broadcast from rank 0 before scoring), memory and Pauta buffers
    different = [
        name for name, value in first["state_dict"].items() if not torch.equal(value, second["state_dict"][name])
    ]
    assert not different, different


def test_checkpoint_holds_rank_zero_state(ddp_run):
    checkpoint = torch.load(ddp_run["checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    rank_zero = ddp_run["ranks"][0]["state_dict"]
    for name in ("model.generator.memory.h", "model.generator.memory.c", "post_processor._image_threshold"):
        assert torch.equal(checkpoint[name], rank_zero[name]), name


def test_pauta_threshold_equals_single_process_over_whole_training_set(ddp_run, reloaded):
    model, datamodule = reloaded
    scores, maps = score_in_one_process(model, datamodule.train_data)
    assert len(scores) == N_TRAIN
    post_processor = model.post_processor
    # each image once: no duplicate from the DistributedSampler's padding, in dataset order
    assert post_processor.train_scores.numel() == N_TRAIN
    torch.testing.assert_close(post_processor.train_scores.double(), scores, rtol=1e-5, atol=0)
    expected = (scores.mean() + 3.0 * scores.std()).item()  # torch.std: ddof=1, as the post-processor
    assert post_processor._image_threshold.item() == pytest.approx(expected, rel=1e-5)
    pixels = maps.flatten()
    expected_pixel = (pixels.mean() + 3.0 * pixels.std()).item()
    assert post_processor._pixel_threshold.item() == pytest.approx(expected_pixel, rel=1e-5)
    for record in ddp_run["ranks"]:
        assert record["state_dict"]["post_processor._image_threshold"].item() == pytest.approx(expected, rel=1e-5)


def test_checkpoint_loads_and_predicts_in_one_process(reloaded):
    model, datamodule = reloaded
    images = torch.stack([datamodule.test_data[index].image for index in range(len(datamodule.test_data))])
    model.eval()
    with torch.no_grad():
        output = model(images)  # pre-processor -> model -> Pauta post-processor, as exported
    assert torch.isfinite(output.pred_score).all()
    assert ((output.pred_score > 0) & (output.pred_score < 1)).all()
    assert output.anomaly_map.shape[-2:] == (IMAGE_SIZE, IMAGE_SIZE)
