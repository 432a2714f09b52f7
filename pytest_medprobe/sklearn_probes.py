"""The scikit-learn reference backend: one probe per stage (metrics.md §2).

This module owns the reference the torch backend is checked against: a ``StandardScaler``
fit on the fit split, then ``LogisticRegression(C=c)`` (lbfgs, L2, multinomial), or, with a
grid of C, ``LogisticRegressionCV`` on the same grid, the same stratified folds
(``cv.stratified_folds``) and the same score (balanced accuracy); it refits on the whole
fit split with the chosen C. scikit-learn is imported inside the function.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from pytest_medprobe import cv


def fit_one(
    fit_x: np.ndarray,
    fit_y: np.ndarray,
    test_x: np.ndarray,
    *,
    c: float = 1.0,
    c_grid: Sequence[float] = (),
    cv_folds: int = 5,
    seed: int = 0,
    max_iter: int = 1000,
) -> tuple[np.ndarray, bool, float]:
    """Fit one probe on ``fit_x: [n_fit, d]`` and predict ``test_x: [n_test, d]``.

    Returns the test predictions ``[n_test]`` int64, whether the solver converged, and the
    probe's C (``c``, the single value of ``c_grid``, or the one cross-validation chose).

    Long because it is the reference protocol written out step by step (scaler, one fit or
    LogisticRegressionCV, convergence warnings routed to the curve), so it reads like the spec.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    fit_y = np.asarray(fit_y, dtype=np.int64)
    grid = sorted(float(value) for value in c_grid)  # ascending: scikit-learn's ties go to the first
    classes = np.unique(fit_y)
    if classes.size == 1:
        # scikit-learn refuses a single class; the only sensible probe predicts it (every
        # C of a grid ties, and a tie goes to the strongest regularization).
        return np.full(len(test_x), classes[0], dtype=np.int64), True, grid[0] if grid else c
    # float64 so that half-precision features cannot overflow inside the scaler.
    scaler = StandardScaler().fit(np.asarray(fit_x, dtype=np.float64))
    model: LogisticRegression | LogisticRegressionCV
    if len(grid) > 1:
        folds = cv.stratified_folds(fit_y, cv.fold_count(fit_y, cv_folds), seed)
        model = LogisticRegressionCV(
            Cs=grid,
            cv=cv.fold_splits(folds),
            scoring="balanced_accuracy",
            l1_ratios=(0.0,),  # L2 only; naming it keeps scikit-learn 1.9 from warning
            solver="lbfgs",
            max_iter=max_iter,
            tol=cv.tolerance(cross_validated=True),
            random_state=seed,
            use_legacy_attributes=False,  # C_ a float (the legacy default warns in 1.9)
        )
    else:
        # Penalty and multinomial loss are the defaults of every supported scikit-learn
        # (L2, and multinomial for lbfgs); naming them warns in some versions and errors
        # in others, and our suite turns warnings into errors.
        model = LogisticRegression(
            C=grid[0] if grid else c,
            solver="lbfgs",
            max_iter=max_iter,
            tol=cv.tolerance(cross_validated=False),
            random_state=seed,
        )
    # One BLAS thread: these fits are small, and threaded BLAS fighting torch's threads
    # for two cores made a fit 20-60x slower here (0.4 s vs 7-25 s measured).
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(scaler.transform(np.asarray(fit_x, dtype=np.float64)), fit_y)
    converged = True
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            converged = False  # reported through the curve instead of the warnings channel
        else:  # everything else is not ours to swallow
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    predictions = model.predict(scaler.transform(np.asarray(test_x, dtype=np.float64)))
    chosen = float(model.C_) if isinstance(model, LogisticRegressionCV) else float(model.C)
    return np.asarray(predictions, dtype=np.int64), converged, chosen
