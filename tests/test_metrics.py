import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from edgeaffect.tasks.metrics import accuracy, ccc, mean_pearson, pearson_per_column


@settings(max_examples=30, deadline=None)
@given(st.integers(3, 60), st.integers(1, 7), st.integers(0, 10_000))
def test_pearson_matches_scipy(n, k, seed):
    rng = np.random.default_rng(seed)
    p, y = rng.normal(size=(n, k)), rng.normal(size=(n, k))
    ours = pearson_per_column(p, y)
    ref = [stats.pearsonr(p[:, j], y[:, j])[0] for j in range(k)]
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    assert abs(mean_pearson(p, y) - np.mean(ref)) < 1e-6


def test_constant_prediction_scores_zero_not_nan():
    y = np.random.default_rng(0).random((20, 7))
    p = np.full((20, 7), 0.3)
    r = pearson_per_column(p, y)
    assert np.all(np.abs(r) < 1e-6) and np.isfinite(r).all()
    p[:, 0] = y[:, 0]
    assert pearson_per_column(p, y)[0] > 0.999


def test_ccc_matches_its_definition_and_accuracy():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=200), rng.normal(size=200) * 0.5 + 0.2
    ref = 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    assert abs(ccc(x, y) - ref) < 1e-9 and abs(ccc(x, x) - 1) < 1e-9
    assert accuracy(np.eye(3)[[0, 1, 2, 1]], np.array([0, 1, 1, 1])) == 0.75
