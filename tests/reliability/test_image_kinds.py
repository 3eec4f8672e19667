"""Every kind of image a line camera writes loads, scaled to [0, 1]; what cannot be scaled fails naming the file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from anomalib.data.utils import read_image as anomalib_read_image
from PIL import Image
from reliability_helpers import MODEL_ARGS, fit_maa

from anomalib_maa import Maa
from anomalib_maa.data import DatasetError, Mcsd, Rsdds
from anomalib_maa.io import read_image

HEIGHT, WIDTH = 30, 45  # neither a multiple of 8


def _ramp(high: int, dtype) -> np.ndarray:
    return np.linspace(0, high, HEIGHT * WIDTH).reshape(HEIGHT, WIDTH).round().astype(dtype)


def _gray(values: np.ndarray, scale: float) -> torch.Tensor:
    return torch.from_numpy(values.astype(np.float32) / scale)[None].expand(3, -1, -1)


def _write(kind: str, folder: Path) -> tuple[Path, torch.Tensor]:
    """Write one image of ``kind``; return its path and the tensor it must load as (None: only check range)."""
    gray8, gray16 = _ramp(255, np.uint8), _ramp(65535, np.uint16)
    rgb = np.stack([gray8, gray8[::-1], np.full_like(gray8, 40)], axis=-1)
    if kind == "gray8.png":
        path, expected = folder / "a.png", _gray(gray8, 255)
        Image.fromarray(gray8).save(path)
    elif kind == "rgb.PNG":
        path, expected = folder / "b.PNG", torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) / 255)
        Image.fromarray(rgb).save(path, format="PNG")
    elif kind == "rgba.png":
        alpha = np.full_like(gray8, 7)
        path = folder / "c.png"
        expected = torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) / 255)
        Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
    elif kind == "gray16.png":
        path, expected = folder / "d.png", _gray(gray16, 65535)
        cv2.imwrite(str(path), gray16)
    elif kind == "gray16.TIF":
        path, expected = folder / "e.TIF", _gray(gray16, 65535)
        cv2.imwrite(str(path), gray16)
    elif kind == "gray16-bigendian.tiff":
        path, expected = folder / "f.tiff", _gray(gray16, 65535)
        Image.frombytes("I;16B", (WIDTH, HEIGHT), gray16.astype(">u2").tobytes()).save(path)
    elif kind == "rgb16.png":  # Pillow decodes 16-bit colour at 8-bit precision: the high byte
        rgb16 = np.stack([gray16, gray16[::-1], np.full_like(gray16, 40000)], axis=-1)
        path = folder / "g.png"
        expected = torch.from_numpy((rgb16 >> 8).astype(np.float32).transpose(2, 0, 1) / 255)
        cv2.imwrite(str(path), rgb16[..., ::-1])  # OpenCV writes BGR
    elif kind == "float32.tif":
        values = gray16.astype(np.float32) / 65535
        path, expected = folder / "h.tif", torch.from_numpy(values)[None].expand(3, -1, -1)
        Image.fromarray(values, "F").save(path)
    elif kind == "gray8.BMP":
        path, expected = folder / "i.BMP", _gray(gray8, 255)
        Image.fromarray(gray8).save(path, format="BMP")
    elif kind == "rgb.Jpg":
        path, expected = folder / "j.Jpg", None
        Image.fromarray(rgb).save(path, format="JPEG", quality=95)
    else:
        raise AssertionError(kind)
    return path, expected


KINDS = [
    "gray8.png",
    "rgb.PNG",
    "rgba.png",
    "gray16.png",
    "gray16.TIF",
    "gray16-bigendian.tiff",
    "rgb16.png",
    "float32.tif",
    "gray8.BMP",
    "rgb.Jpg",
]


@pytest.mark.parametrize("kind", KINDS)
def test_image_kind_loads_scaled(kind, tmp_path):
    path, expected = _write(kind, tmp_path)
    image = read_image(path)
    assert image.dtype == torch.float32 and tuple(image.shape) == (3, HEIGHT, WIDTH)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    if expected is not None:
        torch.testing.assert_close(image, expected, rtol=0, atol=1e-6)
    else:  # JPEG: lossy, but the ramp survives
        assert float(image.max()) > 0.9 and float(image.min()) < 0.1


def test_anomalib_reader_clips_16bit(tmp_path):
    """anomalib 2.7 trap (its Folder, MVTecAD, ... datamodules): 16-bit grayscale is clipped at 255, not scaled."""
    path, expected = _write("gray16.png", tmp_path)
    clipped = anomalib_read_image(path, as_tensor=True)
    assert float((clipped == 1.0).float().mean()) > 0.99  # almost every pixel white
    assert not torch.allclose(clipped, expected, atol=0.01)
    torch.testing.assert_close(read_image(path), expected, rtol=0, atol=1e-6)


def _mcsd_tree(root: Path, good: list[Path], defects: int = 2) -> Path:
    folder = root / "line"
    (folder / "good").mkdir(parents=True)
    (folder / "defect").mkdir()
    for source in good:
        source.rename(folder / "good" / source.name)
    rng = np.random.default_rng(0)
    for index in range(defects):
        image = rng.integers(100, 140, (HEIGHT, WIDTH), dtype=np.uint8)
        image[10:20, 10:20] = 0
        Image.fromarray(image).save(folder / "defect" / f"d{index}.png")
    return root


def test_mcsd_trains_and_tests_on_mixed_kinds_and_odd_sizes(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    good = [_write(kind, scratch)[0] for kind in KINDS]
    root = _mcsd_tree(tmp_path / "data", good)
    datamodule = Mcsd(root=root, subset="line", train_batch_size=4, eval_batch_size=4, num_workers=0, seed=0)
    datamodule.setup()
    for dataset in (datamodule.train_data, datamodule.test_data):  # raw items, before the trainer adds the resize
        for index, path in enumerate(dataset.samples["image_path"]):
            if Path(path).name in {"d.png", "e.TIF"}:  # the 16-bit ramps: mean 0.5 when scaled, ~1 when clipped
                assert abs(float(dataset[index].image.mean()) - 0.5) < 0.01, path
    model = Maa(**MODEL_ARGS, max_epochs=1)
    run = fit_maa(tmp_path / "out", root, model=model, datamodule=datamodule)
    metrics = run.engine.test(model, datamodule=datamodule, verbose=False)[0]
    assert np.isfinite(metrics["image_AUROC"])
    assert model.post_processor.is_fitted


def test_float_image_outside_unit_range_names_the_file(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    good = [_write(kind, scratch)[0] for kind in ("gray8.png", "gray16.png", "rgb.PNG")]
    bad = scratch / "hot.tif"
    Image.fromarray(np.full((HEIGHT, WIDTH), 4095.0, np.float32), "F").save(bad)
    root = _mcsd_tree(tmp_path / "data", [*good, bad])
    with pytest.raises(DatasetError, match=r"hot\.tif.*\[0, 1\]"):
        Mcsd(root=root, subset="line", num_workers=0).setup()


def test_truncated_image_names_the_file(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    good = [_write(kind, scratch)[0] for kind in ("gray8.png", "gray16.png", "rgb.PNG")]
    broken = scratch / "broken.png"
    broken.write_bytes(good[0].read_bytes()[:60])
    root = _mcsd_tree(tmp_path / "data", [*good, broken])
    with pytest.raises(DatasetError, match=r"broken\.png"):
        Mcsd(root=root, subset="line", num_workers=0).setup()


def test_rsdds_keeps_16bit_strips_16bit_in_its_block_cache(tmp_path):
    folder = tmp_path / "RSDDs" / "Type-II RSDDs dataset"
    (folder / "Rail surface images").mkdir(parents=True)
    (folder / "GroundTruth").mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):  # 20 x 200 strips: 10 blocks of 20 x 20 each, one defective
        strip = rng.integers(30000, 35000, (200, 20), dtype=np.uint16)  # mean ~0.5 scaled, 1.0 if clipped
        cv2.imwrite(str(folder / "Rail surface images" / f"rail_{index}.png"), strip)
        mask = np.zeros((200, 20), np.uint8)
        mask[25:35, 5:15] = 255
        cv2.imwrite(str(folder / "GroundTruth" / f"rail_{index}.png"), mask)
    datamodule = Rsdds(root=tmp_path / "RSDDs", rail_type="II", cache_dir=tmp_path / "cache", num_workers=0)
    datamodule.setup()
    item = datamodule.train_data[0]
    assert Image.open(datamodule.train_data.samples["image_path"].iloc[0]).mode == "I;16"
    assert abs(float(item.image.mean()) - 32500 / 65535) < 0.01
