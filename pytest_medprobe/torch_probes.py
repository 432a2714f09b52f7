"""The torch probe backend: every stage's linear probe fitted at once (metrics.md §2).

This module owns the fast path of the probe protocol: it standardizes each stage's
features like ``StandardScaler`` (fit-split statistics only; constant columns keep scale
1, and their weights stay 0 under L2), groups stages of equal or similar width into
batches (zero-padded: zero columns get zero weight), and fits them with the batched
L-BFGS of ``lbfgs``, which minimizes exactly the objective of scikit-learn's
``LogisticRegression(C=c)`` (the reference backend, ``sklearn_probes``).

With a grid of C, each stage's C is chosen by stratified k-fold cross-validation on the
fit split (``cv``): every stage x fold of a batch is one row of a single batched solve,
each row walking the grid of C with warm starts as ``LogisticRegressionCV`` does (chunked
by stages only where memory requires); the fold probes score their held-out samples, and
each stage is refit on the whole fit split with its chosen C, starting from the mean of
its fold probes at that C (as ``LogisticRegressionCV`` does).

Everything runs on ``device`` (a CPU or a GPU, the same code). On a CPU: one torch thread,
several products at once. torch is imported inside functions so that importing this
module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pytest_medprobe import cv
from pytest_medprobe.config import DEVICE, PROBE_DEVICE
from pytest_medprobe.errors import MedprobeUsageError
from pytest_medprobe.lbfgs import Problems, solve
from pytest_medprobe.naming import mention
from pytest_medprobe.row_space import factorize
from pytest_medprobe.stage_features import Features, Runner, full_logits, logits

if TYPE_CHECKING:
    import torch

# At or above this many feature values per stage (n_fit x d), products are spread over
# the worker threads; below it, a thread hand-off costs more than the product.
THREADED_PRODUCTS = 1 << 20
# Stages of different widths share a batch, zero-padded to the widest (zero columns get
# zero weight under L2, exactly), when the padding adds at most this share of the
# batch's feature values, or at most SMALL_PADDING values: a batch costs a fixed
# overhead per iteration, which padding that small costs less than.
MAX_PADDING = 0.25
SMALL_PADDING = 1 << 19
# The solver's state per row (weights, gradients, ten float32 correction pairs, logits,
# and each C's solution) is about 30 floats per weight; a cross-validated batch is solved
# in chunks of stages whose rows hold at most this many bytes of it.
SOLVER_MEMORY = 1 << 30
STATE_BYTES_PER_WEIGHT = 8 * 8 + 20 * 4  # plus 8 per C of the grid
STATE_BYTES_PER_LOGIT = 8 * 8  # plus 8 per C of the grid


def resolve_probe_device(probe_device: str, audit_device: str) -> str:
    """Where the torch backend fits: ``probe_device`` ("cpu", "cuda", "cuda:1"), or for
    "auto" the device the audit runs the model on (``audit_device``, the ``--medprobe-device``
    setting: its "auto" is a GPU when there is one; a model spread over GPUs, the first)."""
    import torch

    if probe_device == "auto":
        from pytest_medprobe.models.loader import resolve_device

        return str(resolve_device(audit_device))
    if probe_device.startswith("cuda") and not torch.cuda.is_available():
        raise MedprobeUsageError(
            f"{mention(PROBE_DEVICE.dest)} {probe_device}: CUDA is not available on this machine; use "
            f"{mention(PROBE_DEVICE.dest)} cpu, or auto to fit where {mention(DEVICE.dest)} runs the model."
        )
    return probe_device


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the previous setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def full_float32_products() -> Iterator[None]:
    """Run the block with float32 products in full float32 (no TF32 or bfloat16 shortcuts), then restore."""
    import torch

    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # a user's "high" would cost the agreement with scikit-learn
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def _batches(widths: Mapping[str, int], n_fit: int) -> list[list[str]]:
    """Stages grouped into batches of equal or, where padding is cheap, similar width."""
    batches: list[list[str]] = []
    for name in sorted(widths, key=lambda name: -widths[name]):  # widest first; sorted() is stable
        if batches:
            batch = batches[-1]
            widest = widths[batch[0]]
            used = sum(widths[other] for other in batch) + widths[name]
            padded = widest * (len(batch) + 1)
            if padded - used <= MAX_PADDING * padded or (padded - used) * n_fit <= SMALL_PADDING:
                batch.append(name)
                continue
        batches.append([name])
    return batches


def _standardize_batch(
    arrays: Sequence[tuple[np.ndarray, np.ndarray]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """StandardScaler's transform of each stage's splits, fit-split statistics only.

    Returns ``fit: [S, n_fit, d]`` and ``test: [S, n_test, d]`` float32, d the widest
    stage's width; narrower stages are zero-padded. Arithmetic in float64, as
    scikit-learn's; scratch buffers are reused, since fresh large buffers for every stage
    cost more in page faults here than the arithmetic.
    """
    import torch

    n_fit, n_test = len(arrays[0][0]), len(arrays[0][1])
    width = max(np.shape(fit_x)[1] for fit_x, _ in arrays)
    padded = any(np.shape(fit_x)[1] < width for fit_x, _ in arrays)
    make = torch.zeros if padded else torch.empty
    fit_out = make((len(arrays), n_fit, width), dtype=torch.float32, device=device)
    test_out = make((len(arrays), n_test, width), dtype=torch.float32, device=device)
    fit64 = torch.empty((n_fit, width), dtype=torch.float64, device=device)
    squares = torch.empty_like(fit64)
    test64 = torch.empty((n_test, width), dtype=torch.float64, device=device)
    # Column sums as products with a row of ones: exact float64 sums, 3x faster here than
    # reductions over the first axis.
    ones = torch.ones((1, n_fit), dtype=torch.float64, device=device)
    eps = float(np.finfo(np.float64).eps)
    for index, (fit_x, test_x) in enumerate(arrays):
        d = np.shape(fit_x)[1]
        fit, test = fit64[:, :d], test64[:, :d]
        fit.copy_(torch.as_tensor(np.asarray(fit_x), device=device))
        mean = (ones @ fit)[0] / n_fit
        fit.sub_(mean)  # two passes, as scikit-learn computes the variance
        var = (ones @ torch.square(fit, out=squares[:, :d]))[0] / n_fit
        constant = var <= n_fit * eps * var + (n_fit * mean * eps) ** 2  # scikit-learn's _is_constant_feature
        scale = torch.where(constant, torch.ones_like(var), var.sqrt())  # and its _handle_zeros_in_scale
        fit_out[index, :, :d].copy_(fit.div_(scale))
        test.copy_(torch.as_tensor(np.asarray(test_x), device=device))
        test_out[index, :, :d].copy_(test.sub_(mean).div_(scale))
    return fit_out, test_out


@dataclass(frozen=True)
class StageFit:
    """One stage's probe: its test predictions and its model on the standardized scale."""

    predictions: np.ndarray  # [n_test] int64, class labels
    converged: bool
    n_iter: int
    coef: np.ndarray  # [K', d] float64, as LogisticRegression.coef_ (K' = 1 for two classes)
    intercept: np.ndarray  # [K'] float64, as LogisticRegression.intercept_
    c: float = 1.0  # the C of this probe: the fixed one, or the one cross-validation chose
    cv_scores: tuple[float, ...] = ()  # mean held-out balanced accuracy of each C of the grid


def fit_probes(
    inputs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    fit_y: np.ndarray,
    *,
    c: float = 1.0,
    max_iter: int = 1000,
    tol: float = 1e-4,
    device: str = "cpu",
    threads: int | None = None,
) -> dict[str, tuple[np.ndarray, bool]]:
    """Fit one probe per stage, all stages at once, and predict each stage's test split.

    ``inputs[stage]`` is ``(fit_x: [n_fit, d], test_x: [n_test, d])``; widths may differ
    between stages (stages of equal width share a batch); ``fit_y: [n_fit]``.
    Returns ``{stage: (predictions [n_test] int64, converged)}``, as ``fit_probe`` does.
    Arguments as ``fit_stages``.
    """
    fits = fit_stages(inputs, fit_y, c=c, max_iter=max_iter, tol=tol, device=device, threads=threads)
    return {name: (fit.predictions, fit.converged) for name, fit in fits.items()}


@dataclass(frozen=True)
class _Protocol:
    """How every probe of a call is fit: the C (or the grid and its folds) and the solver's limits."""

    c: float
    grid: tuple[float, ...]  # ascending; two or more values: cross-validate
    folds: np.ndarray | None  # [n_fit] fold of each fit sample, when cross-validating
    max_iter: int
    tol: float


def fit_stages(
    inputs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    fit_y: np.ndarray,
    *,
    c: float = 1.0,
    c_grid: Sequence[float] = (),
    cv_folds: int = 5,
    seed: int = 0,
    max_iter: int = 1000,
    tol: float | None = None,
    device: str = "cpu",
    threads: int | None = None,
) -> dict[str, StageFit]:
    """``fit_probes`` with each stage's coefficients, iteration count and C.

    ``c``, ``max_iter`` and ``tol`` mean what they mean to ``LogisticRegression``. With two
    or more values in ``c_grid``, each stage's C is chosen among them by ``cv_folds``-fold
    stratified cross-validation (folds fixed by ``seed``; fewer folds when a class has fewer
    fit samples) and ``c`` is not used. ``tol`` by default: ``cv.tolerance`` (1e-4 for one C,
    1e-6 with a grid). ``device`` is where the features go ("cpu", "cuda",
    "cuda:1"). ``threads``: how many feature products run at once on the CPU (default:
    torch's thread count); everything else runs on one torch thread, and torch's setting is
    restored afterwards.

    Long because it is the backend's one entry point: it checks, batches, places on the
    device and dispatches to the single-C or cross-validated solve, each step a call.
    """
    fit_y = np.asarray(fit_y, dtype=np.int64)
    classes = np.unique(fit_y)
    grid = tuple(sorted(float(value) for value in c_grid))
    if classes.size == 1:
        # scikit-learn refuses a single class; the only sensible probe predicts it. Every C
        # of a grid ties, and a tie goes to the strongest regularization.
        return {
            name: StageFit(
                predictions=np.full(len(test_x), classes[0], dtype=np.int64),
                converged=True,
                n_iter=0,
                coef=np.zeros((1, np.shape(fit_x)[1])),
                intercept=np.zeros(1),
                c=grid[0] if grid else c,
            )
            for name, (fit_x, test_x) in inputs.items()
        }
    folds = None
    if len(grid) > 1:
        folds = cv.stratified_folds(fit_y, cv.fold_count(fit_y, cv_folds), seed)
    if tol is None:
        tol = cv.tolerance(cross_validated=folds is not None)
    protocol = _Protocol(c=grid[0] if len(grid) == 1 else c, grid=grid, folds=folds, max_iter=max_iter, tol=tol)
    import torch

    workers = torch.get_num_threads() if threads is None else threads
    if workers < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    target = torch.device(device)
    if target.type != "cpu":
        workers = 1  # the device parallelizes; host threads would only queue kernels
    # One torch thread, several products at once: torch's own threads wait at a barrier
    # after every small operation, and on two cores shared with other processes those
    # waits made a fit 10x slower; a product is large enough to run whole on one thread.
    with torch_threads(1), full_float32_products(), ThreadPoolExecutor(workers) if workers > 1 else _no_pool() as pool:

        def threaded(job: Callable[[int], None], rows: Sequence[int]) -> None:
            if pool is None or len(rows) < 2:
                inline(job, rows)
            else:  # iterating the results re-raises a job's exception here
                for _ in pool.map(lambda share: inline(job, share), [rows[k::workers] for k in range(workers)]):
                    pass

        return _fit_all(inputs, fit_y, classes, protocol, target, threaded)


def inline(job: Callable[[int], None], rows: Sequence[int]) -> None:
    """Run ``job`` on each row, here."""
    for row in rows:
        job(row)


@contextmanager
def _no_pool() -> Iterator[None]:
    yield None


def _fit_all(
    inputs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    fit_y: np.ndarray,
    classes: np.ndarray,
    protocol: _Protocol,
    device: torch.device,
    threaded: Runner,
) -> dict[str, StageFit]:
    import torch

    encoded = torch.as_tensor(np.searchsorted(classes, fit_y), device=device)
    targets = torch.nn.functional.one_hot(encoded, num_classes=classes.size).T.to(torch.float64).contiguous()
    binary = classes.size == 2
    n_out = 1 if binary else int(classes.size)
    widths = {name: int(np.shape(fit_x)[1]) for name, (fit_x, _) in inputs.items()}
    results: dict[str, StageFit] = {}
    for names in _batches(widths, len(fit_y)):
        fit_x, test_x = _standardize_batch([inputs[name] for name in names], device)
        large = fit_x.shape[1] * fit_x.shape[2] >= THREADED_PRODUCTS
        run, batched = (threaded, False) if large else (inline, True)
        fit = Features(fit_x, run, batched)
        n_fit = len(fit_y)
        if _in_row_space(protocol, n_fit, min(widths[name] for name in names)):
            coords, basis = factorize(fit_x, run)
            fit = Features(coords, run, batched, basis)
        del fit_x  # the solves read ``fit`` only (in the row space, the features are not needed again)
        chosen, cv_scores, start, folds_converged = _cross_validate(fit, targets, binary, n_out, protocol, fit_y)
        whole = Problems(
            targets=targets,
            binary=binary,
            l2=1.0 / (torch.tensor(chosen, dtype=torch.float64, device=device)[:, None] * n_fit),
            sample_weights=torch.full((1, n_fit), 1.0 / n_fit, dtype=torch.float64, device=device).expand(
                len(names), n_fit
            ),
            stage_of=tuple(range(len(names))),
        )
        solution = solve(fit, whole, n_out, protocol.max_iter, protocol.tol, start=start)
        theta = solution.theta[:, 0]
        if fit.row_space is not None:  # back to the features' coordinates: W = Q·β
            weights = fit.row_space.expand(range(len(names)), theta[..., :-1])
            theta = torch.cat([weights, theta[..., -1:]], dim=2)
        del fit
        test = Features(test_x, run, batched)
        scores = full_logits(logits(test, range(len(names)), theta), binary)  # [S, K, n_test]
        # argmax keeps the first of tied classes, as scikit-learn's predict does.
        picked = scores.argmax(dim=1).cpu().numpy()
        solved = theta.cpu().numpy()
        converged, n_iter = solution.converged[:, 0].cpu().numpy(), solution.n_iter[:, 0].cpu().numpy()
        for index, name in enumerate(names):
            results[name] = StageFit(
                predictions=classes[picked[index]].astype(np.int64),
                converged=bool(converged[index] and folds_converged[index]),
                n_iter=int(n_iter[index]),
                coef=solved[index, :, : widths[name]],
                intercept=solved[index, :, -1],
                c=chosen[index],
                cv_scores=tuple(float(score) for score in cv_scores[index]) if len(cv_scores) else (),
            )
    return {name: results[name] for name in inputs}


def _in_row_space(protocol: _Protocol, n_fit: int, narrowest: int) -> bool:
    """Whether a batch is solved in its fit rows' row space (``row_space``): cross-validated,
    with fewer fit images than its narrowest stage has dimensions (zero padding then never
    reaches the basis). The change is exact; it pays for its QR factorization when the
    solve takes hundreds of iterations, as a walk over a C grid at ``cv.TOLERANCE`` does
    (benchmarks/bench_cv_grid.py), not for one C at 1e-4."""
    return protocol.folds is not None and n_fit < narrowest


def _cross_validate(
    fit: Features, targets: torch.Tensor, binary: bool, n_out: int, protocol: _Protocol, fit_y: np.ndarray
) -> tuple[list[float], np.ndarray, torch.Tensor | None, list[bool]]:
    """Each stage's C; the mean fold scores ``[S, G]`` (empty without a grid); where each
    stage's refit starts (``[S, K', d + 1]``: the mean of its fold probes at that C; None: 0);
    whether every fold probe of each stage converged (as ``LogisticRegressionCV`` warns
    when one did not).

    One batched solve: a row per stage x fold, each walking the grid from the smallest C
    (the strongest penalty) up, every C from the last one's solution, as
    ``LogisticRegressionCV`` walks it. Cold starts at every C reach other stopping points at
    the default tolerance, where held-out scores at large C differ by up to 0.01 and the
    chosen C with them; the walk also takes fewer iterations. Stages go in chunks of at most
    ``SOLVER_MEMORY`` bytes of solver state.
    """
    import torch

    n_stages, n_fit, width = fit.x.shape
    labels = np.searchsorted(np.unique(fit_y), fit_y)  # class indices, as the logits' rows
    if protocol.folds is None:
        return [protocol.c] * n_stages, np.empty((0, 0)), None, [True] * n_stages
    device = fit.x.device
    grid, folds = protocol.grid, protocol.folds
    n_grid, n_folds = len(grid), int(folds.max()) + 1
    held_out = torch.as_tensor(folds, device=device)[None, :] == torch.arange(n_folds, device=device)[:, None]
    kept = (~held_out).to(torch.float64)  # [F, n]
    fold_weights = kept / kept.sum(dim=1, keepdim=True)
    fold_l2 = 1.0 / (kept.sum(dim=1)[:, None] * torch.tensor(grid, dtype=torch.float64, device=device)[None, :])
    row_bytes = n_out * (
        (width + 1) * (STATE_BYTES_PER_WEIGHT + 8 * n_grid) + n_fit * (STATE_BYTES_PER_LOGIT + 8 * n_grid)
    )
    chunk = max(1, SOLVER_MEMORY // (n_folds * row_bytes))
    start = torch.zeros((n_stages, n_out, width + 1), dtype=torch.float64, device=device)
    scores = np.empty((n_stages, n_grid, n_folds))
    chosen: list[float] = []
    converged: list[bool] = []
    for first in range(0, n_stages, chunk):
        stages = range(first, min(first + chunk, n_stages))
        part = fit.stages(stages.start, stages.stop)
        problems = Problems(
            targets=targets,
            binary=binary,
            l2=fold_l2.repeat(len(stages), 1),  # [S * F, G], rows stage-major
            sample_weights=fold_weights.repeat(len(stages), 1),
            stage_of=tuple(stage for stage in range(len(stages)) for _ in range(n_folds)),
        )
        solution = solve(part, problems, n_out, protocol.max_iter, protocol.tol)
        # Every fold probe's prediction for every fit sample; each fold scores its own.
        picked = full_logits(solution.z.flatten(0, 1), binary).argmax(dim=1)  # class indices
        predicted = picked.reshape(len(stages), n_folds, n_grid, n_fit).transpose(1, 2).cpu().numpy()
        scores[stages.start : stages.stop] = cv.fold_scores(predicted, labels, folds)
        theta = solution.theta.reshape(len(stages), n_folds, n_grid, n_out, width + 1)
        converged += solution.converged.reshape(len(stages), -1).all(dim=1).tolist()
        for offset, stage in enumerate(stages):
            best = cv.pick_c(scores[stage], grid)
            chosen.append(grid[best])
            start[stage] = theta[offset, :, best].mean(dim=0)
    return chosen, scores.mean(axis=2), start, converged
