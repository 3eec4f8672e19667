"""Fixtures of the reliability tests: the four tiny fits that several files compare."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from reliability_helpers import digest, fit_maa, single_thread


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Every reliability test runs on one intra-op thread (see ``single_thread``); restored afterwards."""
    with single_thread():
        yield


@pytest.fixture(scope="session")
def runs(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Four fits on the 8-image tiny tree.

    ``a`` and ``b``: seed 0, 1 epoch, same output root (so ``b`` is the second run there), each tested once;
    ``a_files``: digests of ``a``'s run folder right after its test; ``c``: 2 epochs uninterrupted;
    ``d``: ``a``'s checkpoint resumed to 2 epochs.
    """
    with single_thread():
        return _four_runs(tiny_root, tmp_path_factory)


def _four_runs(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    same_root = tmp_path_factory.mktemp("same_root")
    a = fit_maa(same_root, tiny_root, epochs=1, report=True)
    a.metrics = a.engine.test(a.model, datamodule=a.datamodule, verbose=False)[0]
    a_files = digest(a.run_dir)
    b = fit_maa(same_root, tiny_root, epochs=1, report=True)
    b.metrics = b.engine.test(b.model, datamodule=b.datamodule, verbose=False)[0]
    c = fit_maa(tmp_path_factory.mktemp("straight"), tiny_root, epochs=2)
    d = fit_maa(tmp_path_factory.mktemp("resumed"), tiny_root, epochs=2, ckpt_path=a.ckpt)
    return SimpleNamespace(a=a, b=b, c=c, d=d, a_files=a_files, same_root=same_root)
