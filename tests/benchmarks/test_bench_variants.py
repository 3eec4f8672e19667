"""MAA score variants (Table III rows) computed as the model computes its own score, also when tiled."""

from __future__ import annotations

import pytest
import torch

from anomalib_maa import Maa
from anomalib_maa.benchmark.ablation import variant_scores
from anomalib_maa.utils.sample_data import folder_datamodule


@pytest.mark.parametrize("tile_size", [None, (16, 16)])
@pytest.mark.parametrize("score", ["fmd", "local_fmd"])
def test_variant_of_the_model_score_equals_the_model_score(tiny_root, tile_size, score):
    torch.manual_seed(0)
    model = Maa(
        image_size=(32, 48),
        in_channels=1,
        n_features=2,
        feature_layer=1,
        tile_size=tile_size,
        score=score,
        visualizer=False,
    )
    datamodule = folder_datamodule(tiny_root, batch_size=4)
    datamodule.setup()
    result = variant_scores(model, datamodule.test_data, ("pixel_l1", "fmd", "local_fmd"), batch_size=4)
    model.eval()
    with torch.no_grad():
        own, l1 = [], []
        for batch in datamodule.test_dataloader():
            image = model.pre_processor.transform(batch.image)
            own.append(model.model(image).pred_score)
            gray = model.model.match_channels(image)
            tiler = model.model.tiler
            tiles = tiler.tile(gray) if tiler is not None else gray
            reconstruction = model.model.generator(tiles)
            reconstruction = tiler.untile(reconstruction) if tiler is not None else reconstruction
            l1.append((gray - reconstruction).abs().mean((1, 2, 3)))  # over the re-assembled image
    torch.testing.assert_close(result["scores"][score], torch.cat(own))
    torch.testing.assert_close(result["scores"]["pixel_l1"], torch.cat(l1))
