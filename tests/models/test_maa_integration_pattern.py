"""anomalib's model integration pattern against Maa: Engine(max_epochs=1), fit/test/validate/predict/export."""

from __future__ import annotations

import time

from anomalib.deploy import ExportType
from anomalib.engine import Engine

from anomalib_maa import Maa
from anomalib_maa.utils.sample_data import folder_datamodule


def test_one_epoch_fit_test_validate_predict_export_well_under_a_minute(sample_root, tmp_path):
    start = time.perf_counter()
    datamodule = folder_datamodule(sample_root, batch_size=8, val_split_mode="same_as_test")
    model = Maa(image_size=32, n_features=2, feature_layer=2)  # no max_epochs: the Engine's count is used
    engine = Engine(max_epochs=1, accelerator="cpu", default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    engine.fit(model, datamodule=datamodule)
    assert engine.trainer.current_epoch == 1, "Engine(max_epochs=1) trains one epoch"
    assert engine.test(model, datamodule=datamodule, verbose=False)[0]["image_AUROC"] >= 0.0
    assert len(engine.validate(model, datamodule=datamodule, verbose=False)) == 1
    predictions = engine.predict(model, datamodule=datamodule)
    assert sum(len(batch.pred_score) for batch in predictions) == len(datamodule.test_data)
    exported = engine.export(model, ExportType.TORCH, export_root=tmp_path / "export")
    assert exported is not None and exported.is_file()
    assert time.perf_counter() - start < 60
