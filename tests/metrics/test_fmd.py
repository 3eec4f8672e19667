import numpy as np
import pytest
import scipy.linalg
import torch

from anomalib_maa import frechet_markov_distance
from anomalib_maa.metrics.fmd import feature_windows, local_maximum


def scipy_fmd(f_input: torch.Tensor, f_reconstruction: torch.Tensor) -> np.ndarray:
    """Reference: per image, patches as samples, scipy sqrtm of the covariance product."""
    out = []
    for a, b in zip(f_input, f_reconstruction, strict=True):
        x = a.reshape(a.shape[0], -1).T.double().numpy()
        y = b.reshape(b.shape[0], -1).T.double().numpy()
        s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
        cross = scipy.linalg.sqrtm(s1 @ s2).real
        out.append(((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * cross))
    return np.array(out)


SHAPES = [(3, 16, 8, 8), (2, 32, 6, 7), (2, 64, 4, 4), (2, 16, 4, 4), (2, 160, 15, 15)]
# (2, 64, 4, 4): H*W < C; (2, 16, 4, 4): H*W = C; (2, 160, 15, 15) and (1, 300, 18, 18) below: one and two blocks


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("method", "rtol"), [("eigh", 1e-6), ("polar", 1e-3)])
def test_matches_scipy_sqrtm(shape, method, rtol):
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(shape, generator=generator)
    b = 0.7 * a + 0.5 * torch.randn(shape, generator=generator) + 0.1
    expected = scipy_fmd(a, b)
    got = frechet_markov_distance(a, b, method=method).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=rtol)


def _relu_pair(shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(shape, generator=generator).relu()
    b = (0.8 * a + 0.2 * torch.randn(shape, generator=generator)).relu()
    return a, b


@pytest.mark.parametrize("shape", [(3, 16, 8, 8), (2, 64, 16, 16), (2, 160, 15, 15), (1, 300, 18, 18), (2, 64, 4, 4)])
@pytest.mark.parametrize("case", ["relu", "dead_everywhere", "dead_in_one_image", "dead_in_one_map", "duplicated"])
def test_rank_deficient_covariances_match_scipy(shape, case):
    """Dead ReLU channels (zero in both maps, in one image, in one map only) and duplicated features."""
    a, b = _relu_pair(shape)
    if case == "dead_everywhere":
        a[:, ::4], b[:, ::4] = 0, 0
    elif case == "dead_in_one_image":
        a[0, 1::4], b[0, 1::4] = 0, 0
    elif case == "dead_in_one_map":
        a[:, 2::8] = 0  # dead in the input only
        b[-1, 3::8] = 0  # dead in the reconstruction of the last image only
    elif case == "duplicated":  # singular covariance that no dead feature explains: the eigh fallback
        a[:, 3:-3:8] = a[:, 5:-1:8]
    expected = scipy_fmd(a, b)
    got = frechet_markov_distance(a, b).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("method", ["eigh", "polar"])
def test_zero_for_identical_and_symmetric(method):
    a = torch.randn(2, 16, 6, 6, generator=torch.Generator().manual_seed(1))
    b = torch.randn(2, 16, 6, 6, generator=torch.Generator().manual_seed(2))
    assert frechet_markov_distance(a, a, method=method).abs().max() < 1e-4
    torch.testing.assert_close(
        frechet_markov_distance(a, b, method=method), frechet_markov_distance(b, a, method=method), rtol=1e-4, atol=0
    )


@pytest.mark.parametrize("method", ["eigh", "polar"])
def test_finite_for_constant_features(method):
    constant = torch.full((2, 8, 5, 5), 3.0)
    other = torch.randn(2, 8, 5, 5)
    for a, b in [(constant, constant), (constant, other), (torch.zeros(1, 8, 5, 5), constant[:1])]:
        score = frechet_markov_distance(a, b, method=method)
        assert torch.isfinite(score).all()
        assert (score >= 0).all()
    # constant maps differ only in their means: FMD = |mu_i - mu_r|^2 = 8 * 3^2
    torch.testing.assert_close(
        frechet_markov_distance(torch.zeros(1, 8, 5, 5), constant[:1], method=method), torch.tensor([72.0])
    )


def test_per_image_and_batched():
    a, b = torch.randn(4, 8, 5, 5), torch.randn(4, 8, 5, 5)
    batched = frechet_markov_distance(a, b)
    singles = torch.cat([frechet_markov_distance(a[i : i + 1], b[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, singles)
    assert batched.shape == (4,)


def test_bad_arguments():
    with pytest.raises(ValueError, match="equal shape"):
        frechet_markov_distance(torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 2))
    with pytest.raises(ValueError, match="Unknown FMD method"):
        frechet_markov_distance(torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3), method="svd")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        frechet_markov_distance(torch.randn(4, 3, 3), torch.randn(4, 3, 3))


def test_feature_windows_cut_in_order():
    features = torch.arange(2 * 3 * 5 * 4, dtype=torch.float32).reshape(2, 3, 5, 4)
    windows = feature_windows(features, window=3)
    assert windows.shape == (2 * 3 * 2, 3, 9, 1)  # 3 x 2 windows per image
    # window (row 1, col 1) of image 1
    expected = features[1, :, 1:4, 1:4].reshape(3, 9, 1)
    torch.testing.assert_close(windows[6 + 1 * 2 + 1], expected)
    with pytest.raises(ValueError, match="does not fit"):
        feature_windows(features, window=6)


def test_local_fmd_finds_a_small_difference_that_the_whole_image_fmd_dilutes():
    """One differing patch in 16x16: the whole-image FMD barely moves, the local FMD sees it fully."""
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(1, 8, 16, 16, generator=generator)
    changed = base.clone()
    changed[0, :, 7, 7] += 3.0
    small_defect = torch.cat([base, base])
    recon = torch.cat([base, changed])  # image 0: perfect reconstruction; image 1: one patch differs
    whole = frechet_markov_distance(small_defect, recon)
    local = local_maximum(frechet_markov_distance, small_defect, recon, window=3)
    assert whole[0] == pytest.approx(0.0, abs=1e-6)
    assert local[0] == pytest.approx(0.0, abs=1e-6)
    # the local score equals the FMD of the worst 3x3 window, computed directly
    direct = max(
        float(frechet_markov_distance(small_defect[1:, :, i : i + 3, j : j + 3], recon[1:, :, i : i + 3, j : j + 3]))
        for i in range(14)
        for j in range(14)
    )
    assert float(local[1]) == pytest.approx(direct, rel=1e-6)
    assert float(local[1]) > 20 * float(whole[1])
