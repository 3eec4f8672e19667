"""configs/data/*.yaml instantiate the right datamodule through anomalib's own config parser."""

from __future__ import annotations

from pathlib import Path

import pytest
from anomalib.data import AnomalibDataModule

from anomalib_maa.data import Ksdd, Mcsd, Rsdds, default_num_workers

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "data"


@pytest.mark.parametrize(
    ("name", "cls", "attributes"),
    [
        ("ksdd", Ksdd, {}),
        ("rsdds", Rsdds, {"rail_type": "II"}),
        ("mcsd_groove", Mcsd, {"subset": "groove"}),
        ("mcsd_cylinder", Mcsd, {"subset": "cylinder"}),
        ("mcsd_hook", Mcsd, {"subset": "hook"}),
    ],
)
def test_config_instantiates(name: str, cls: type, attributes: dict) -> None:
    datamodule = AnomalibDataModule.from_config(CONFIGS / f"{name}.yaml")
    assert type(datamodule) is cls
    assert datamodule.train_ratio == 0.7
    assert datamodule.seed == 42
    assert datamodule.val_split_mode == "none"
    assert datamodule.num_workers == default_num_workers()
    for key, value in attributes.items():
        assert getattr(datamodule, key) == value


def test_config_root_can_be_overridden(tmp_path) -> None:
    datamodule = AnomalibDataModule.from_config(CONFIGS / "ksdd.yaml", **{"data.init_args.root": str(tmp_path)})
    assert datamodule.root == tmp_path
