"""Which probe protocol lets a lossless widening connector pass audit 2? (docs/metrics.md §2)

Audit 2 compares the probe score of the vision features with that of the connector's
output. ``medprobe-tiny-wide:injective-connector`` (vision 64 → 256 through an exactly
injective, ill-conditioned linear map) loses nothing, so its connector loss should be 0;
``medprobe-tiny-wide:rank-limited-connector`` (the same map reading 2 of the 64 vision
dimensions) loses most of the signal. For each probe protocol this script prints, side
by side, how often audit 2 passes each of them (connector loss ≤ max_connector_loss, the
point rule), over synthetic-lesions seeds at the README's recommended minimum of 500 test
images (and as many fit images), with the median connector loss.

Candidates (each probe: features standardized on the fit split, then multinomial L2
logistic regression, lbfgs; what differs is said):

  C=1         today's protocol.
  CV          C chosen per stage by 5-fold stratified cross-validation on the fit split
              (scikit-learn's LogisticRegressionCV, balanced accuracy), grid CV_GRID.
  reference   the statistic against a computed lossless reference: vision features through
              a random (Gaussian) injective map to the connector's width, probed with C=1;
              loss = score(reference) − score(connector).
  whitened    each stage PCA-whitened on the fit split to its numerical rank (capped at
              n_fit / 4; pytest_medprobe/whitening.py), then C=1: invariant to any injective
              linear map. The protocol audit 2 uses since this comparison (metrics.md §2).

Run ``python benchmarks/connector_protocols.py [--seeds 20] [--n 500]`` (CPU, a few
minutes: features come from the vision tower and the projectors only).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_medprobe.data.synthetic import make_synthetic_lesions  # noqa: E402
from pytest_medprobe.probes import balanced_accuracy  # noqa: E402
from pytest_medprobe.whitening import whiten  # noqa: E402
from pytest_medprobe.zoo.wide import connector_features  # noqa: E402

MAX_CONNECTOR_LOSS = 0.03  # the default threshold (Thresholds.max_connector_loss)
CV_GRID = tuple(float(c) for c in np.logspace(-2, 2, 5))
CV_FOLDS = 5
MODELS = ("medprobe-tiny-wide", "medprobe-tiny-wide:injective-connector", "medprobe-tiny-wide:rank-limited-connector")

Features = tuple[np.ndarray, np.ndarray]  # fit [n_fit, d], test [n_test, d]


def _standardized(fit: np.ndarray, test: np.ndarray) -> Features:
    mean, scale = fit.mean(axis=0), fit.std(axis=0)
    scale[scale == 0] = 1.0  # as StandardScaler: a constant column stays 0
    return (fit - mean) / scale, (test - mean) / scale


def _fit_predict(features: Features, fit_y: np.ndarray, c: float) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    fit, test = _standardized(*features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LogisticRegression(C=c, max_iter=1000).fit(fit, fit_y)
    return np.asarray(model.predict(test))


def _fit_predict_cv(features: Features, fit_y: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    fit, test = _standardized(*features)
    folds = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LogisticRegressionCV(Cs=list(CV_GRID), cv=folds, scoring="balanced_accuracy", max_iter=1000)
        model.fit(fit, fit_y)
    return np.asarray(model.predict(test))


def _whitened(features: Features) -> Features:
    return whiten(*features)  # the plugin's own (pytest_medprobe/whitening.py)


def _score(pred: np.ndarray, y: np.ndarray) -> float:
    return balanced_accuracy(pred, y, int(y.max()) + 1)


Protocol = Callable[[Features, Features, np.ndarray, np.ndarray, int], float]


def _loss_c1(vision: Features, connector: Features, fit_y: np.ndarray, test_y: np.ndarray, seed: int) -> float:
    return _score(_fit_predict(vision, fit_y, 1.0), test_y) - _score(_fit_predict(connector, fit_y, 1.0), test_y)


def _loss_cv(vision: Features, connector: Features, fit_y: np.ndarray, test_y: np.ndarray, seed: int) -> float:
    return _score(_fit_predict_cv(vision, fit_y), test_y) - _score(_fit_predict_cv(connector, fit_y), test_y)


def _loss_reference(vision: Features, connector: Features, fit_y: np.ndarray, test_y: np.ndarray, seed: int) -> float:
    width = connector[0].shape[1]
    mapping = np.random.default_rng([seed, 0x5EF]).standard_normal((vision[0].shape[1], width))
    reference = (vision[0] @ mapping, vision[1] @ mapping)
    return _score(_fit_predict(reference, fit_y, 1.0), test_y) - _score(_fit_predict(connector, fit_y, 1.0), test_y)


def _loss_whitened(vision: Features, connector: Features, fit_y: np.ndarray, test_y: np.ndarray, seed: int) -> float:
    white_vision, white_connector = _whitened(vision), _whitened(connector)
    return _score(_fit_predict(white_vision, fit_y, 1.0), test_y) - _score(
        _fit_predict(white_connector, fit_y, 1.0), test_y
    )


PROTOCOLS: dict[str, Protocol] = {
    "C=1": _loss_c1,
    "CV": _loss_cv,
    "reference": _loss_reference,
    "whitened": _loss_whitened,
}


def _models() -> tuple[dict[str, object], object]:
    from pytest_medprobe.zoo.wide import build_wide

    built = {name: build_wide(name.split(":", 1)[1] if ":" in name else None) for name in MODELS}
    return {name: model for name, (model, _) in built.items()}, next(iter(built.values()))[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--n", type=int, default=500, help="fit and test images per seed")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    arguments = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    protocols = arguments.protocols.split(",")
    models, processor = _models()
    losses = {(name, protocol): [] for name in MODELS for protocol in protocols}  # type: dict[tuple[str, str], list[float]]
    started = time.perf_counter()
    for seed in range(arguments.seeds):
        dataset = make_synthetic_lesions(seed, n_fit=arguments.n, n_test=arguments.n)
        fit = connector_features(models, processor, np.asarray(dataset.fit_images))
        test = connector_features(models, processor, np.asarray(dataset.test_images))
        vision = (fit["vision"], test["vision"])
        for name in MODELS:
            for protocol in protocols:
                connector = (fit[name], test[name])
                losses[name, protocol].append(
                    PROTOCOLS[protocol](vision, connector, dataset.fit_labels, dataset.test_labels, seed)
                )
        print(
            f"seed {seed}: "
            + "  ".join(f"{name.split(':')[-1]}/{p} {losses[name, p][-1]:+.3f}" for name in MODELS for p in protocols),
            flush=True,
        )
    print(
        f"\n{arguments.seeds} seeds × {arguments.n} fit + {arguments.n} test images, "
        f"max_connector_loss {MAX_CONNECTOR_LOSS}, {time.perf_counter() - started:.0f} s"
    )
    print(f"{'model':44s}" + "".join(f"{p:>22s}" for p in protocols))
    for name in MODELS:
        cells = []
        for protocol in protocols:
            values = np.array(losses[name, protocol])
            passed = int(np.sum(values <= MAX_CONNECTOR_LOSS + 1e-9))
            cells.append(f"{passed:>3d}/{len(values)} pass (med {np.median(values):+.3f})")
        print(f"{name:44s}" + "".join(f"{cell:>22s}" for cell in cells))


if __name__ == "__main__":
    main()
