"""Fixtures for the Pauta post-processor tests: a tiny MVTec-style dataset and one fitted PaDiM run."""

from __future__ import annotations

from pathlib import Path

import pytest
from pauta_helpers import PadimRun, make_tiny_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dataset, generated once per session."""
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_mvtec"))


@pytest.fixture(scope="session")
def padim_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> PadimRun:
    """PaDiM + PautaPostProcessor(gamma=3) fitted and tested on the tiny dataset, val_split_mode none."""
    return PadimRun(tiny_dataset, tmp_path_factory.mktemp("padim_none"))
