"""The computations the suite writes itself for teaching, checked against the standard libraries' (scikit-learn and
SciPy, development dependencies only) on random inputs: ROC and AUC, Spearman's rho, the logistic-regression probe,
the least-squares slope."""

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve

from interp_utils.circuits import discovery
from interp_utils.probing import probes, steering


@pytest.mark.parametrize("seed", range(5))
def test_roc_and_auc_match_scikit_learn(seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(300, generator=g)
    scores[::7] = scores[3]  # ties enter together
    truth = torch.rand(300, generator=g) < 0.3
    fpr, tpr = discovery.roc(scores, truth)
    assert discovery.auc(fpr, tpr) == pytest.approx(roc_auc_score(truth.numpy(), scores.abs().numpy()), abs=1e-9)
    their_fpr, their_tpr, _ = roc_curve(truth.numpy(), scores.abs().numpy(), drop_intermediate=False)
    ours = set(zip(fpr.tolist(), tpr.tolist(), strict=True))
    theirs = zip(their_fpr, their_tpr, strict=True)
    assert all(any(abs(f - a) < 1e-9 and abs(t - b) < 1e-9 for a, b in ours) for f, t in theirs)


@pytest.mark.parametrize("seed", range(5))
def test_spearman_matches_scipy(seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(200, generator=g)
    b = a + torch.randn(200, generator=g)
    a[::5] = a[0]  # ties take their mean rank
    b[::9] = 0.0
    assert discovery.spearman(a, b) == pytest.approx(stats.spearmanr(a.numpy(), b.numpy()).statistic, abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_logistic_probe_matches_scikit_learn(seed):
    """Ours minimises mean cross-entropy + l2·|w|²; scikit-learn minimises ½|w|² + C·Σ cross-entropy, the same
    problem for C = 1 / (2 n l2) (neither penalises the bias)."""
    g = torch.Generator().manual_seed(seed)
    n, d, l2 = 400, 8, 1e-2
    x = torch.randn(n, d, generator=g, dtype=torch.float64).float()
    y = (x @ torch.randn(d, generator=g) + 0.5 * torch.randn(n, generator=g)) > 0.3
    ours = probes.logistic_probe(x, y, l2=l2, steps=500)
    theirs = LogisticRegression(C=1 / (2 * n * l2), tol=1e-10, max_iter=10_000).fit(x.numpy(), y.numpy())
    assert np.allclose(ours.direction.detach().numpy(), theirs.coef_[0], atol=2e-3)
    assert float(ours.bias) == pytest.approx(float(theirs.intercept_[0]), abs=2e-3)


@pytest.mark.parametrize("seed", range(3))
def test_slope_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    alphas = rng.normal(size=12).tolist()
    values = (3 * np.array(alphas) + rng.normal(size=12)).tolist()
    assert steering.slope(alphas, values) == pytest.approx(stats.linregress(alphas, values).slope, abs=1e-9)
