"""Shared fixtures: small generated datasets, trained once per session where a test only reads them."""

from __future__ import annotations

import warnings

import pytest

warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory):
    """A 64x64 MVTec-style tree: 48 normal training images, 16 normal and 16 defective test images."""
    from anomalib_maa.utils.sample_data import make_sample_dataset

    return make_sample_dataset(tmp_path_factory.mktemp("sample"), size=64, seed=0)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A 32x32 tree for runs that only need to complete (CLI, registration)."""
    from anomalib_maa.utils.sample_data import make_sample_dataset

    return make_sample_dataset(tmp_path_factory.mktemp("tiny"), n_train=8, n_test_good=4, n_test_defect=4, size=32)
