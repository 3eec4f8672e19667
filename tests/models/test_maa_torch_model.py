import pytest
import torch
from anomalib.data import InferenceBatch

from anomalib_maa import frechet_markov_distance
from anomalib_maa.models.maa.ab_split import split_ab
from anomalib_maa.models.maa.anomaly_map import AnomalyMapGenerator
from anomalib_maa.models.maa.discriminator import MarkovDiscriminator
from anomalib_maa.models.maa.memory import AutoMemory
from anomalib_maa.models.maa.torch_model import Generator, MaaModel


def test_table1_shapes_and_widths():
    generator = Generator((256, 256), in_channels=3, n_features=16)
    z = generator.encoder(torch.zeros(1, 3, 256, 256))
    assert z.shape == (1, 256, 32, 32)  # 256 latent channels, 32x32 latent for 256x256 input
    assert generator.memory.gates.in_channels == 512 and generator.memory.gates.out_channels == 1024
    assert generator(torch.zeros(1, 3, 256, 256)).shape == (1, 3, 256, 256)
    widths = [m.out_channels for m in generator.encoder.modules() if isinstance(m, torch.nn.Conv2d)][:5]
    assert widths == [16, 32, 64, 128, 256]


def test_grayscale_and_narrow_generator():
    generator = Generator((32, 48), in_channels=1, n_features=4)
    out = generator(torch.zeros(2, 1, 32, 48))
    assert out.shape == (2, 1, 32, 48)
    assert out.abs().max() <= 1  # tanh


def test_size_not_multiple_of_8_is_refused():
    with pytest.raises(ValueError, match="multiple of 8"):
        Generator((30, 32))


def test_discriminator_layers_and_feature_choice():
    disc = MarkovDiscriminator(3, 64)
    logits, features = disc(torch.zeros(2, 3, 256, 256))
    assert features.shape == (2, 512, 31, 31)  # the paper's Markov encoder: 512 x 31x31 patches
    assert logits.shape == (2, 1, 29, 29)
    assert MarkovDiscriminator(3, 64, feature_layer=2).markov_features(torch.zeros(1, 3, 256, 256)).shape == (
        1,
        128,
        64,
        64,
    )
    with pytest.raises(ValueError, match="feature_layer"):
        MarkovDiscriminator(3, 64, feature_layer=5)


def test_memory_changes_in_training_and_is_fixed_in_eval():
    memory = AutoMemory(8, (4, 4))
    z = torch.randn(3, 8, 4, 4)
    assert memory.h.abs().sum() == 0
    memory.train()
    memory(z)
    h_after, c_after = memory.h.clone(), memory.c.clone()
    assert h_after.abs().sum() > 0 and c_after.abs().sum() > 0
    memory.eval()
    out1 = memory(z)
    out2 = memory(z)
    torch.testing.assert_close(memory.h, h_after)
    torch.testing.assert_close(out1, out2)
    assert set(dict(memory.named_buffers())) == {"h", "c"}


def test_zero_memory_keeps_no_state():
    memory = AutoMemory(8, (4, 4), mode="zero").train()
    memory(torch.randn(2, 8, 4, 4))
    assert memory.h.abs().sum() == 0
    with pytest.raises(ValueError, match="memory mode"):
        AutoMemory(8, (4, 4), mode="lstm")


def test_eval_returns_inference_batch():
    model = MaaModel((32, 32), n_features=4).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 3, 32, 32) * 2 - 1)
    assert isinstance(out, InferenceBatch)
    assert out.pred_score.shape == (3,)
    assert out.anomaly_map.shape == (3, 1, 32, 32)
    assert torch.isfinite(out.pred_score).all()


def test_local_fmd_score_is_the_worst_window_of_the_same_features():
    torch.manual_seed(0)
    model = MaaModel((64, 64), n_features=4, feature_layer=3, score="local_fmd", score_window=3).eval()
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        out = model(image)
        f_in = model.discriminator.markov_features(image)
        f_rec = model.discriminator.markov_features(model.generator(image))
    h, w = f_in.shape[-2:]
    direct = torch.stack(
        [
            frechet_markov_distance(f_in[..., i : i + 3, j : j + 3], f_rec[..., i : i + 3, j : j + 3])
            for i in range(h - 2)
            for j in range(w - 2)
        ],
        dim=1,
    ).amax(dim=1)
    torch.testing.assert_close(out.pred_score, direct, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Unknown MAA score"):
        MaaModel((32, 32), n_features=4, score="patch")


def test_no_memory_ablation_has_no_cell():
    model = MaaModel((32, 32), n_features=2, memory="none").eval()
    assert isinstance(model.generator.memory, torch.nn.Identity)
    assert not any("memory" in name for name, _ in model.named_parameters())
    with torch.no_grad():
        out = model(torch.rand(1, 3, 32, 32) * 2 - 1)
    assert torch.isfinite(out.pred_score).all()


def test_tiled_model_scores_an_image_by_its_worst_tile():
    torch.manual_seed(0)
    model = MaaModel((64, 96), n_features=2, feature_layer=2, tile_size=(32, 32), score="local_fmd").eval()
    assert model.generator.memory.h.shape[-2:] == (4, 4)  # the memory is sized for one tile
    image = torch.rand(2, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        out = model(image)
        model.tiler = None  # the same network on each 32x32 tile by hand
        tiles = [
            [[model(image[b : b + 1, :, i : i + 32, j : j + 32]) for j in (0, 32, 64)] for i in (0, 32)]
            for b in range(2)
        ]
    per_tile = torch.stack([torch.stack([t.pred_score[0] for row in rows for t in row]) for rows in tiles])
    maps = [torch.cat([torch.cat([t.anomaly_map[0] for t in row], -1) for row in rows], -2) for rows in tiles]
    torch.testing.assert_close(out.pred_score, per_tile.amax(dim=1))
    torch.testing.assert_close(out.anomaly_map, torch.stack(maps))
    with pytest.raises(ValueError, match="whole number of tiles"):
        MaaModel((64, 100), n_features=2, tile_size=(32, 32))


def test_weights_initialised_as_in_paper():
    model = MaaModel((32, 32), n_features=8)
    conv = model.discriminator.features[1][0]
    assert abs(conv.weight.std().item() - 0.02) < 0.003
    assert model.discriminator.features[0][0].bias.abs().max() == 0


def test_anomaly_map_is_local_variance_squared():
    image = torch.zeros(1, 3, 16, 16)
    reconstruction = torch.zeros(1, 3, 16, 16)
    assert AnomalyMapGenerator(3)(image, reconstruction).abs().max() == 0
    image[..., 8, 8] = 1.0  # one-pixel residual: variance 1/9 - 1/81 in every 3x3 window around it
    amap = AnomalyMapGenerator(3)(image, reconstruction)
    expected = (1 / 9 - 1 / 81) ** 2
    torch.testing.assert_close(amap[0, 0, 7:10, 7:10], torch.full((3, 3), expected))
    assert amap[0, 0, 0, 0] == 0
    with pytest.raises(ValueError, match="odd"):
        AnomalyMapGenerator(4)


def test_ab_split_is_seeded_halved_and_order_free():
    paths = [f"/data/{i:03d}.png" for i in range(11)]
    a = split_ab(paths, seed=3)
    assert len(a) == 6
    assert split_ab(reversed(paths), seed=3) == a
    assert split_ab(paths, seed=4) != a
    with pytest.raises(ValueError, match="at least two"):
        split_ab(["/only/one.png"], seed=0)
