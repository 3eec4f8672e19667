"""The paper's train/test protocol, shared by every datamodule of this package.

Of the defect-free images, ``train_ratio`` (70 % in the paper) form the training set; the remaining defect-free
images and all defective images form the test set. No image is in both.

The choice is reproducible from the seed and independent of the order in which the file system lists files: the
defect-free samples are first sorted by their ``key`` (a path relative to the dataset root, so moving the dataset
does not change the split), then a NumPy ``default_rng(seed)`` permutation picks the first ``n_train`` of them.

``n_train`` is ``train_ratio * n_good`` rounded to the *nearest* integer (halves up), computed exactly on the
decimal value of ``train_ratio``: for KolektorSDD, 0.7 x 347 = 242.9 gives 243 training images; for RSDDs
Type-II blocks, 0.7 x 2,538 = 1,776.6 gives 1,777. At least one defect-free image always goes to each side.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from pandas import DataFrame

from anomalib_maa.data.checks import DatasetError

TRAIN = "train"
TEST = "test"


def n_train_images(n_good: int, train_ratio: float) -> int:
    """Count the defect-free images that go to training.

    Args:
        n_good: Number of defect-free images (at least 2).
        train_ratio: Fraction for training, strictly between 0 and 1.

    Returns:
        ``round(train_ratio * n_good)`` (halves up), clamped to ``[1, n_good - 1]``.

    Raises:
        ValueError: When ``train_ratio`` is not in ``(0, 1)`` or ``n_good < 2``.
    """
    check_train_ratio(train_ratio)
    if n_good < 2:
        msg = f"The protocol needs at least 2 defect-free images (one for training, one for testing), found {n_good}"
        raise DatasetError(msg)
    exact = Fraction(str(train_ratio)) * n_good
    return min(max(math.floor(exact + Fraction(1, 2)), 1), n_good - 1)


def check_train_ratio(train_ratio: float) -> float:
    """Return ``train_ratio`` if it lies strictly between 0 and 1, else raise ``ValueError``.

    Args:
        train_ratio: Fraction of defect-free images used for training.

    Returns:
        The same value.

    Raises:
        ValueError: When it is outside ``(0, 1)``.
    """
    if not 0 < train_ratio < 1:
        msg = f"train_ratio must be strictly between 0 and 1, got {train_ratio}"
        raise ValueError(msg)
    return train_ratio


def protocol_split(samples: DataFrame, train_ratio: float = 0.7, seed: int | None = 42) -> DataFrame:
    """Assign every sample to ``"train"`` or ``"test"`` following the paper's protocol.

    Args:
        samples: One row per image, with at least the columns ``key`` (unique, order-independent identifier such
            as the path relative to the dataset root) and ``label_index`` (0 defect-free, 1 defective).
        train_ratio: Fraction of the defect-free images used for training. Defaults to ``0.7``.
        seed: Seed of the permutation. ``None`` draws a fresh split on every call (not reproducible).

    Returns:
        A copy of ``samples`` with a ``split`` column; the row order is kept.

    Raises:
        DatasetError: When keys repeat or there are fewer than two defect-free images.
        ValueError: When ``train_ratio`` is not in ``(0, 1)``.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"key": list("abcdefghij"), "label_index": [0] * 8 + [1] * 2})
        >>> protocol_split(df, 0.7, seed=0).split.value_counts().to_dict()
        {'train': 6, 'test': 4}
    """
    duplicated = samples["key"][samples["key"].duplicated()]
    if not duplicated.empty:
        msg = f"Sample keys must be unique, found repeated key {duplicated.iloc[0]!r}"
        raise DatasetError(msg)
    good = samples.index[samples["label_index"] == 0]
    good = sorted(good, key=lambda index: samples.at[index, "key"])
    n_train = n_train_images(len(good), train_ratio)
    order = np.random.default_rng(seed).permutation(len(good))
    train_index = [good[i] for i in order[:n_train]]

    result = samples.copy()
    result["split"] = TEST
    result.loc[train_index, "split"] = TRAIN
    return result
