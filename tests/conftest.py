"""Shared fixtures: small generated datasets, trained once per session where a test only reads them."""

from __future__ import annotations

import warnings

import pytest

warnings.filterwarnings("ignore", category=FutureWarning)


def pytest_collection_modifyitems(config, items):
    """Run the tests marked ``forks`` first, before any test has loaded OpenVINO, ONNX Runtime or gloo.

    ``fork()`` copies a process with whatever threads and thread pools earlier tests left in it; in CI
    (a CPU with bfloat16/AMX units, where OpenVINO compiles to bf16 by default) the one test that forks
    DataLoader workers segfaulted the whole pytest process when it ran after the export tests, while it
    passes alone and on this machine. Forking first keeps the parent small; the rest of the order is kept.
    """
    items.sort(key=lambda item: 0 if item.get_closest_marker("forks") else 1)


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
