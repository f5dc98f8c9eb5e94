"""The tracer's bounded robust least squares against SciPy's on problems with a known answer."""

import numpy as np
from scipy import optimize

from sdfcar.methods.tubes.solver import robust_least_squares

X = np.linspace(0.0, 4.0, 60)


def _curve(z: np.ndarray) -> np.ndarray:
    """Rows of ``a exp(-b x) + c`` for parameter rows ``z`` ``(K, 3)``."""
    return z[:, 0:1] * np.exp(-z[:, 1:2] * X) + z[:, 2:3]


def _data(outliers: bool) -> np.ndarray:
    rng = np.random.default_rng(3)
    y = _curve(np.array([[2.0, 0.7, 0.3]]))[0] + rng.normal(0.0, 0.01, X.size)
    if outliers:
        y[::9] += 1.5  # every ninth sample is far off
    return y


def test_it_finds_the_robust_fit_scipy_finds():
    y = _data(outliers=True)
    calls = []

    def residuals(z):
        calls.append(len(z))
        return (_curve(z) - y) / 0.01

    low, high = np.array([0.0, 0.0, -1.0]), np.array([5.0, 3.0, 1.0])
    start = np.array([1.0, 0.3, 0.0])
    ours = robust_least_squares(residuals, start, low, high, 3.0, 1e-3, 1e-8, 40)
    theirs = optimize.least_squares(lambda z: residuals(z[None])[0], start, bounds=(low, high),
                                    loss="soft_l1", f_scale=3.0).x
    np.testing.assert_allclose(ours, theirs, atol=2e-3)
    np.testing.assert_allclose(ours, [2.0, 0.7, 0.3], atol=0.02)  # the outliers do not pull
    assert calls[0] == 4  # the point and its three differences in one call


def test_bounds_hold_and_the_call_budget_is_kept():
    y = _data(outliers=False)
    calls = []

    def residuals(z):
        calls.append(1)
        return (_curve(z) - y) / 0.01

    low, high = np.array([0.0, 0.0, -1.0]), np.array([5.0, 3.0, 0.1])  # c = 0.3 is outside
    fitted = robust_least_squares(residuals, np.array([1.0, 0.3, 0.0]), low, high, 3.0, 1e-3,
                                  1e-8, 40)
    assert fitted[2] == 0.1 and np.all(fitted >= low) and np.all(fitted <= high)
    calls.clear()
    robust_least_squares(residuals, np.array([1.0, 0.3, 0.0]), low, high, 3.0, 1e-3, 0.0, 5)
    assert len(calls) == 5
