"""The shared 70/30 protocol split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from anomalib_maa.data import DatasetError, n_train_images, protocol_split


def _samples(n_good: int, n_bad: int) -> pd.DataFrame:
    keys = [f"good/{i:04d}.png" for i in range(n_good)] + [f"defect/{i:04d}.png" for i in range(n_bad)]
    return pd.DataFrame({"key": keys, "label_index": [0] * n_good + [1] * n_bad})


def _expected_train(samples: pd.DataFrame, ratio: float, seed: int) -> set[str]:
    """The documented algorithm, written out again: sort good keys, permute with default_rng(seed), take n."""
    good = sorted(samples.loc[samples.label_index == 0, "key"])
    n_train = int(np.floor(ratio * len(good) + 0.5 + 1e-9))
    order = np.random.default_rng(seed).permutation(len(good))
    return {good[i] for i in order[:n_train]}


@pytest.mark.parametrize(
    ("n_good", "ratio", "expected"),
    [(347, 0.7, 243), (2538, 0.7, 1777), (10, 0.7, 7), (5, 0.7, 4), (2, 0.1, 1), (2, 0.99, 1), (100, 0.5, 50)],
)
def test_n_train_rounds_to_nearest_and_keeps_both_sides(n_good: int, ratio: float, expected: int) -> None:
    assert n_train_images(n_good, ratio) == expected


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5])
def test_ratio_out_of_range_is_refused(ratio: float) -> None:
    with pytest.raises(ValueError, match="train_ratio"):
        n_train_images(10, ratio)


def test_too_few_good_images_is_refused() -> None:
    with pytest.raises(DatasetError, match="at least 2 defect-free"):
        protocol_split(_samples(1, 3))


@pytest.mark.parametrize("seed", [0, 42, 7])
def test_split_matches_independent_computation(seed: int) -> None:
    samples = _samples(23, 5)
    split = protocol_split(samples, 0.7, seed)
    train = set(split.loc[split.split == "train", "key"])
    assert train == _expected_train(samples, 0.7, seed)
    assert len(train) == 16  # round(0.7 * 23 = 16.1)
    test = set(split.loc[split.split == "test", "key"])
    assert not train & test
    assert train | test == set(samples.key)
    assert set(split.loc[split.label_index == 1, "split"]) == {"test"}


def test_split_ignores_row_order() -> None:
    samples = _samples(40, 6)
    shuffled = samples.sample(frac=1.0, random_state=3).reset_index(drop=True)
    train_a = set(protocol_split(samples, 0.7, 5).query("split == 'train'").key)
    train_b = set(protocol_split(shuffled, 0.7, 5).query("split == 'train'").key)
    assert train_a == train_b


def test_seed_changes_split_and_keeps_row_order() -> None:
    samples = _samples(40, 6)
    first, second = protocol_split(samples, 0.7, 1), protocol_split(samples, 0.7, 2)
    assert list(first.key) == list(samples.key)
    assert set(first.query("split == 'train'").key) != set(second.query("split == 'train'").key)
    assert set(protocol_split(samples, 0.7, 1).query("split == 'train'").key) == set(
        first.query("split == 'train'").key
    )


def test_repeated_key_is_refused() -> None:
    samples = pd.DataFrame({"key": ["a", "a", "b"], "label_index": [0, 0, 1]})
    with pytest.raises(DatasetError, match="'a'"):
        protocol_split(samples)
