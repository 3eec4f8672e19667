"""Per-tile score normalisation (``tile_norm``): statistics, the fit through the Pauta post-processor, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from anomalib.engine import Engine
from lightning.pytorch import seed_everything
from torch.utils.data import DataLoader

from anomalib_maa import Maa, PautaPostProcessor
from anomalib_maa.models.maa.score_norm import TileScoreNorm
from anomalib_maa.models.maa.torch_model import MaaModel
from anomalib_maa.post_processing.rules import threshold_from_scores
from anomalib_maa.utils.sample_data import folder_datamodule

TINY = {"image_size": (64, 64), "tile_size": 32, "n_features": 2, "feature_layer": 2, "lr": 1e-3, "visualizer": False}


def test_a_busy_tile_is_read_against_its_own_spread():
    """Tile 1 spreads 10x wider on normal images: a 1.5-sd excursion there ranks below a 5-sd one on tile 0."""
    generator = torch.Generator().manual_seed(0)
    normal = torch.stack(
        [torch.randn(2000, generator=generator) * 0.1, torch.randn(2000, generator=generator) * 1.0], dim=1
    ).exp()
    norm = TileScoreNorm(2)
    norm.fit(normal)
    quiet_defect = torch.tensor([[np.exp(0.5), 1.0]])  # tile 0, 5 of its sd above its median
    busy_normal = torch.tensor([[1.0, np.exp(1.5)]])  # tile 1, 1.5 of its sd above its median
    assert busy_normal.amax() > quiet_defect.amax()  # the raw worst tile ranks them the wrong way
    z_defect, z_normal = norm(quiet_defect).item(), norm(busy_normal).item()
    assert z_defect > z_normal
    assert z_defect == pytest.approx(5.0, rel=0.1)
    assert z_normal == pytest.approx(1.5, rel=0.1)
    # The fitted statistics are the per-tile median and MAD (x 1.4826) of the log scores.
    assert norm.center.abs().max() < 0.05
    assert norm.scale.tolist() == pytest.approx([0.1, 1.0], rel=0.1)
    assert bool(norm.fitted)


def test_empty_tiles_and_constant_tiles_give_finite_scores():
    """A tile whose map is 0 on every normal image (blank board region) neither gives -inf nor divides by 0."""
    normal = torch.tensor([[0.0, 1.0], [0.0, 2.0], [0.0, 4.0], [0.0, 8.0]])
    norm = TileScoreNorm(2)
    norm.fit(normal)
    scores = norm(torch.tensor([[0.0, 2.0], [5.0, 2.0]]))
    assert torch.isfinite(scores).all()
    assert scores[1] > scores[0]  # something appearing on the blank tile stands out


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        (torch.empty(0, 2), "at least one defect-free image"),
        (torch.tensor([[1.0, float("nan")]]), "NaN, infinite or negative"),
        (torch.tensor([[1.0, -1.0]]), "NaN, infinite or negative"),
        (torch.ones(3, 4), r"shape \(images, 2\)"),
    ],
)
def test_bad_training_scores_are_refused_with_the_reason(scores, message):
    norm = TileScoreNorm(2)
    with pytest.raises(ValueError, match=message):
        norm.fit(scores)
    assert not bool(norm.fitted)  # nothing half-written


def test_unfitted_normaliser_keeps_the_raw_order():
    model = MaaModel((64, 64), n_features=2, feature_layer=2, tile_size=(32, 32), score="map_max", tile_norm=True)
    model.eval()
    image = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        tiles, _ = model.tile_scores(image)
        scores = model(image).pred_score
    assert tiles.shape == (3, 4)
    assert torch.argsort(scores).tolist() == torch.argsort(tiles.amax(dim=1)).tolist()


@pytest.fixture(scope="module")
def tile_norm_run(sample_root, tmp_path_factory):
    seed_everything(0)
    tmp_path = tmp_path_factory.mktemp("tile_norm")
    model = Maa(**TINY, score="map_max", tile_norm=True, max_epochs=1)
    engine = Engine(
        accelerator="cpu", default_root_dir=tmp_path, limit_val_batches=0, enable_progress_bar=False, logger=False
    )
    datamodule = folder_datamodule(sample_root, batch_size=8)
    engine.fit(model, datamodule=datamodule)
    return model, engine, datamodule


def _training_tile_scores(model: Maa, datamodule) -> torch.Tensor:
    dataset = datamodule.train_data
    saved = dataset.augmentations
    dataset.augmentations = datamodule.test_data.augmentations
    try:
        rows = []
        with torch.no_grad():
            for batch in DataLoader(dataset, batch_size=8, collate_fn=dataset.collate_fn):
                rows.append(model.model.tile_scores(model.pre_processor.transform(batch.image))[0])
    finally:
        dataset.augmentations = saved
    return torch.cat(rows)


def test_fit_sets_tile_statistics_then_the_threshold_on_normalised_scores(tile_norm_run):
    model, _, datamodule = tile_norm_run
    norm = model.model.score_norm
    assert bool(norm.fitted)
    model.eval()
    raw = _training_tile_scores(model, datamodule).double()
    logs = (raw + norm.floor.double()).log()
    assert torch.allclose(norm.center.double(), logs.median(dim=0).values, atol=1e-5)
    z = norm.tile_z(raw.float())
    assert z.median(dim=0).values.abs().max() < 1e-4  # every tile is centred on its own normal images
    image_scores = norm(raw.float()).double().numpy()
    threshold = float(model.post_processor.image_threshold)
    assert threshold == pytest.approx(threshold_from_scores(image_scores, "normal", 3.0), rel=1e-4)


def test_checkpoint_keeps_the_statistics_and_the_scores(tile_norm_run, tmp_path):
    model, engine, datamodule = tile_norm_run
    path = tmp_path / "tile_norm.ckpt"
    engine.trainer.save_checkpoint(path)
    loaded = Maa.load_from_checkpoint(path, map_location="cpu").eval()
    for name in ("center", "scale", "floor", "fitted"):
        assert torch.equal(getattr(loaded.model.score_norm, name), getattr(model.model.score_norm, name))
    image = next(iter(datamodule.test_dataloader())).image
    model.eval()
    with torch.no_grad():
        expected = model.model(model.pre_processor.transform(image)).pred_score
        got = loaded.model(loaded.pre_processor.transform(image)).pred_score
    assert torch.allclose(expected, got)
    assert float(loaded.post_processor.image_threshold) == pytest.approx(float(model.post_processor.image_threshold))


def test_weights_without_statistics_load_unfitted_and_statistics_are_dropped_without_tile_norm(tile_norm_run, tmp_path):
    model, engine, _ = tile_norm_run
    path = tmp_path / "tile_norm.ckpt"
    engine.trainer.save_checkpoint(path)
    plain = Maa.load_from_checkpoint(path, map_location="cpu", tile_norm=False)
    assert plain.model.score_norm is None
    state = {key: value for key, value in model.state_dict().items() if not key.startswith("model.score_norm.")}
    fresh = Maa(**TINY, score="map_max", tile_norm=True)
    fresh.load_state_dict(state)
    assert not bool(fresh.model.score_norm.fitted)
    assert torch.equal(fresh.model.score_norm.center, torch.zeros(4))


def test_tile_normalised_model_exports_to_onnx(tmp_path):
    """The statistics are buffers of the torch model: ONNX Runtime gives the eager scores."""
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = MaaModel((64, 96), n_features=2, feature_layer=2, tile_size=(32, 32), score="map_max", tile_norm=True)
    model.eval()
    image = torch.rand(2, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        model.fit_tile_norm(model.tile_scores(torch.rand(8, 3, 64, 96) * 2 - 1)[0])
        exact = model(image).pred_score

    class Score(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x).pred_score

    path = tmp_path / "tile_norm.onnx"
    torch.onnx.export(Score(model), (image,), path, opset_version=18, dynamo=True, input_names=["image"])
    (score,) = ort.InferenceSession(str(path)).run(None, {"image": image.numpy()})
    assert np.abs(score - exact.numpy()).max() <= 1e-3 * max(1.0, float(np.abs(exact.numpy()).max()))


def test_quantile_method_divides_each_tile_by_its_training_q95():
    """A busy tile (10x the scores) no longer outranks a quiet tile that is far above its own normal range."""
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(200, generator=generator) + 0.5
    normal = torch.stack([base, 10 * base.flip(0), torch.zeros(200)], dim=1)
    norm = TileScoreNorm(3, method="quantile")
    norm.fit(normal)
    q95 = torch.quantile(normal[:, :2].double(), 0.95, dim=0).float()
    assert torch.allclose(norm.scale[:2], q95) and norm.scale[2] == pytest.approx(float(q95.median()))
    quiet_defect = torch.tensor([[3.0, 10.0, 0.0]])  # tile 0 at 2x its q95
    busy_normal = torch.tensor([[1.0, 14.0, 0.0]])  # tile 1 at its q95
    assert norm(quiet_defect).item() > norm(busy_normal).item()
    assert norm(busy_normal).item() == pytest.approx(14.0 / float(q95[1]), rel=1e-5)
    assert (norm(normal) > 0).all()  # positive: the lognormal Pauta rule applies


def test_unknown_tile_norm_is_refused_by_name():
    with pytest.raises(ValueError, match="Unknown tile_norm 'q95'"):
        MaaModel((64, 64), n_features=2, feature_layer=2, tile_size=(32, 32), tile_norm="q95")
    with pytest.raises(ValueError, match="Unknown tile normalisation 'median'"):
        TileScoreNorm(2, method="median")


def test_quantile_tile_norm_is_fitted_by_the_pauta_pass_with_the_lognormal_rule(sample_root, tmp_path):
    seed_everything(0)
    model = Maa(
        **TINY,
        score="map_max",
        tile_norm="quantile",
        post_processor=PautaPostProcessor(method="lognormal"),
        max_epochs=1,
    )
    engine = Engine(
        accelerator="cpu", default_root_dir=tmp_path, limit_val_batches=0, enable_progress_bar=False, logger=False
    )
    datamodule = folder_datamodule(sample_root, batch_size=8)
    engine.fit(model, datamodule=datamodule)
    norm = model.model.score_norm
    assert norm.method == "quantile" and bool(norm.fitted)
    model.eval()
    raw = _training_tile_scores(model, datamodule).double()
    assert torch.allclose(norm.scale.double(), torch.quantile(raw, 0.95, dim=0), rtol=1e-4)
    image_scores = norm(raw.float()).double().numpy()
    threshold = float(model.post_processor.image_threshold)
    assert threshold == pytest.approx(threshold_from_scores(image_scores, "lognormal", 3.0), rel=1e-4)
