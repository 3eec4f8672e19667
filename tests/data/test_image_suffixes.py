"""One list of image suffixes: what a datamodule trains on is what ``anomalib-maa predict`` reads."""

from __future__ import annotations

import numpy as np
from PIL import Image

from anomalib_maa.data.checks import list_images as dataset_images
from anomalib_maa.deploy.predict import list_images as predict_images
from anomalib_maa.io import read_image


def test_datamodules_and_predict_read_the_same_files(tmp_path):
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8)
    for name in ("a.pgm", "b.PPM", "c.png", "d.webp"):
        Image.fromarray(gray).convert("RGB" if name.lower().endswith(".ppm") else "L").save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    listed = [path.name for path in dataset_images(tmp_path)]
    assert listed == ["a.pgm", "b.PPM", "c.png", "d.webp"]
    _, predicted = predict_images(tmp_path)
    assert sorted(path.name for path in predicted) == listed
    assert tuple(read_image(tmp_path / "a.pgm").shape) == (3, 6, 8)
