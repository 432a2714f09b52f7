"""The torch probe backend: every stage's linear probe fitted at once (metrics.md §2).

This module owns the fast path of the probe protocol. It minimizes exactly the objective
of scikit-learn's ``LogisticRegression(C=c)`` with the lbfgs solver (the reference
backend in ``probes.fit_probe``), for many stages in one batched run:

    mean over fit samples of log-loss  +  ||W||² / (2 · C · n_fit)

with the intercept unpenalized; equivalently ``C · Σ log-loss + ½ ||W||²``. Three or more
classes: the multinomial (softmax) loss with one weight vector per class, all penalized.
Two classes: the binary logistic loss with one weight vector, as scikit-learn fits it
(not the two-vector multinomial, whose optimum is a different, less regularized one).
Features are standardized with fit-split statistics only, like ``StandardScaler``,
constant columns included (their scale is 1, and their weights stay 0 under L2).

The solver is L-BFGS (10 correction pairs, like scipy's) run in lockstep over a batch of
stages of equal width (or of similar width, zero-padded: zero columns get zero weight),
stopped per stage by scipy's rules: the largest gradient entry
of the mean-loss objective at most ``tol`` (scikit-learn's default 1e-4), or a relative
decrease of the objective below 64 machine epsilons. A stage still short of that after
``max_iter`` iterations is reported unconverged, as ``ConvergenceWarning`` reports it on
the scikit-learn path. Its line search is near-exact and costs no matrix product:
logits are affine in the step length, so one product per iteration gives them all.

Features live in float32 (the two products per iteration read them; float32 halves that
traffic); weights, logits, gradients, losses and the line search are float64 (the
correction pairs, which only shape directions, are float32), so the float32 rounding
stays orders of magnitude below ``tol``. No randomness is involved: a fit starts from
zero weights, every product runs on one thread, and two runs on the same machine give
identical predictions whatever the number of product threads. torch is imported inside functions so that
importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

HISTORY = 10  # correction pairs kept by L-BFGS (scipy's default maxcor)
# At or above this many feature values per stage (n_fit x d), products are spread over
# the worker threads; below it, a thread hand-off costs more than the product.
THREADED_PRODUCTS = 1 << 20
# Stages of different widths share a batch, zero-padded to the widest (zero columns get
# zero weight under L2, exactly), when the padding adds at most this share of the
# batch's feature values, or at most SMALL_PADDING values: a batch costs a fixed
# overhead per iteration, which padding that small costs less than.
MAX_PADDING = 0.25
SMALL_PADDING = 1 << 19
FTOL = 64 * float(np.finfo(np.float64).eps)  # scikit-learn's ftol for lbfgs
LINE_SEARCH_STEPS = 30
LINE_SEARCH_RTOL = 1e-3  # stop when the slope along the direction fell 1000-fold


@dataclass(frozen=True)
class _Problem:
    """What every stage of a fit shares: the labels and the penalty."""

    targets: torch.Tensor  # [K, n_fit] float64 one-hot over the full softmax
    binary: bool  # two classes: one logit row, the other class fixed at 0
    l2: float  # 1 / (C * n_fit), scikit-learn's l2_reg_strength


Runner = Callable[[Callable[[int], None], Sequence[int]], None]  # runs a job on each of some rows


@dataclass(frozen=True)
class _Features:
    """Standardized features of a batch of stages, ``x: [S, n, d]`` float32, and their products.

    Products take the rows of the running stages: ``stages[r]`` is the stage of row r.
    """

    x: torch.Tensor
    run: Runner  # runs one product per running stage
    batched: bool  # one batched product while every stage runs (small stages: saves Python overhead)

    def logits(self, stages: Sequence[int], weights: torch.Tensor, needed: Sequence[bool]) -> torch.Tensor:
        """``weights: [R, K', d]`` times each stage's features: ``[R, K', n]`` (rows not ``needed``: 0)."""
        import torch

        # w @ xᵀ rather than x @ wᵀ: with K' this narrow, that order ran 3-4x faster here.
        if self._whole(stages):
            return weights.bmm(self.x.transpose(1, 2))
        out = torch.zeros((len(stages), weights.shape[1], self.x.shape[1]), dtype=self.x.dtype, device=self.x.device)

        def product(row: int) -> None:
            if needed[row]:
                torch.mm(weights[row], self.x[stages[row]].T, out=out[row])

        self.run(product, range(len(stages)))
        return out

    def gradient(self, stages: Sequence[int], residual: torch.Tensor, needed: Sequence[bool]) -> torch.Tensor:
        """``residual: [R, K', n]`` times each stage's features: ``[R, K', d]`` (rows not ``needed``: 0)."""
        import torch

        # residual @ x rather than xᵀ @ residualᵀ: the same product, 7x faster here.
        if self._whole(stages):
            return residual.bmm(self.x)
        out = torch.zeros((len(stages), residual.shape[1], self.x.shape[2]), dtype=self.x.dtype, device=self.x.device)

        def product(row: int) -> None:
            if needed[row]:
                torch.mm(residual[row], self.x[stages[row]], out=out[row])

        self.run(product, range(len(stages)))
        return out

    def _whole(self, stages: Sequence[int]) -> bool:
        return self.batched and list(stages) == list(range(len(self.x)))


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
        fit.copy_(torch.as_tensor(np.asarray(fit_x)))
        mean = (ones @ fit)[0] / n_fit
        fit.sub_(mean)  # two passes, as scikit-learn computes the variance
        var = (ones @ torch.square(fit, out=squares[:, :d]))[0] / n_fit
        constant = var <= n_fit * eps * var + (n_fit * mean * eps) ** 2  # scikit-learn's _is_constant_feature
        scale = torch.where(constant, torch.ones_like(var), var.sqrt())  # and its _handle_zeros_in_scale
        fit_out[index, :, :d].copy_(fit.div_(scale))
        test.copy_(torch.as_tensor(np.asarray(test_x)))
        test_out[index, :, :d].copy_(test.sub_(mean).div_(scale))
    return fit_out, test_out


def _full_logits(z: torch.Tensor, binary: bool) -> torch.Tensor:
    """``z: [S, K', n]`` → ``[S, K, n]``: the binary model's class 0 has logit 0."""
    import torch

    return torch.cat([torch.zeros_like(z[:, :1]), z], dim=1) if binary else z


def _logits(features: _Features, stages: Sequence[int], theta: torch.Tensor) -> torch.Tensor:
    """Logits ``[R, K', n]`` float64 of the stages ``stages`` under ``theta: [R, K', d + 1]``.

    A row of ``theta`` that is all zero (a finished stage's direction) may cost no product.
    Logits are class-major: softmax over a short leading axis ran 10x faster here than
    over a last axis of length K.
    """
    needed = theta.flatten(1).ne(0).any(dim=1).tolist()
    product = features.logits(stages, theta[..., :-1].to(features.x.dtype), needed)
    return product.to(theta.dtype) + theta[..., -1:]


def _objective(
    features: _Features,
    stages: Sequence[int],
    theta: torch.Tensor,
    z: torch.Tensor,
    problem: _Problem,
    active: Sequence[bool],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Objective ``[R]`` at ``theta: [R, K', d + 1]`` whose logits are ``z``, and its gradient.

    Rows that are not ``active`` may get any weight gradient (no product need be spent on them).
    """
    import torch

    full = _full_logits(z, problem.binary)
    log_p = full.log_softmax(dim=1)
    loss = -(log_p * problem.targets).sum(dim=1).mean(dim=1)
    residual = (log_p.exp() - problem.targets) / z.shape[2]  # d loss / d logits, [R, K, n]
    if problem.binary:
        residual = residual[:, 1:]
    weights = theta[..., :-1]
    product = features.gradient(stages, residual.to(features.x.dtype), active)
    grad = torch.cat([product.to(theta.dtype) + problem.l2 * weights, residual.sum(dim=2, keepdim=True)], dim=-1)
    value = loss + 0.5 * problem.l2 * weights.square().sum(dim=(1, 2))  # the intercept is not penalized
    return value, grad


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-stage inner products ``[R]`` of two ``[R, ...]`` tensors."""
    return (a * b).flatten(1).sum(dim=1)


def _two_loop(
    grad: torch.Tensor, history: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], gamma: torch.Tensor
) -> torch.Tensor:
    """L-BFGS direction ``-H grad`` from the correction pairs; a pair with rho = 0 is skipped."""
    q = -grad.to(history[-1][0].dtype) if history else -grad
    alphas = []
    for step, change, rho in reversed(history):
        alpha = rho * _dot(step, q)
        q = q - alpha[:, None, None] * change
        alphas.append(alpha)
    r = gamma.to(q.dtype)[:, None, None] * q
    for (step, change, rho), alpha in zip(history, reversed(alphas)):
        r = r + (alpha - rho * _dot(change, r))[:, None, None] * step
    return r.to(grad.dtype)


def _line_search(
    z: torch.Tensor,
    dz: torch.Tensor,
    theta: torch.Tensor,
    direction: torch.Tensor,
    slope0: torch.Tensor,
    start: torch.Tensor,
    problem: _Problem,
) -> torch.Tensor:
    """Step lengths ``[R]`` that (nearly) minimize the objective along each stage's direction.

    Along a direction the objective is a convex function of the step t whose logits are
    ``z + t·dz``, so each trial costs O(n·K) and no product with the features.
    Safeguarded Newton on the slope, bisection when Newton leaves the bracket.
    """
    import torch

    wd = _dot(theta[..., :-1], direction[..., :-1])
    dd = _dot(direction[..., :-1], direction[..., :-1])
    full_dz = _full_logits(dz, problem.binary)
    target_dz = (problem.targets * full_dz).sum(dim=1).mean(dim=1)
    lo = torch.zeros_like(start)
    hi = torch.full_like(start, float("inf"))
    done = slope0 >= 0  # no descent (a finished stage has a zero direction): stay put
    t = torch.where(done, torch.zeros_like(start), start)
    for _ in range(LINE_SEARCH_STEPS):
        p = _full_logits(z + t[:, None, None] * dz, problem.binary).softmax(dim=1)
        p_dz = (p * full_dz).sum(dim=1)  # [R, n]
        slope = p_dz.mean(dim=1) - target_dz + problem.l2 * (wd + t * dd)
        curvature = ((p * full_dz.square()).sum(dim=1) - p_dz.square()).mean(dim=1) + problem.l2 * dd
        done = done | (slope.abs() <= LINE_SEARCH_RTOL * slope0.abs())
        if bool(done.all()):
            break
        lo = torch.where(slope < 0, torch.maximum(lo, t), lo)
        hi = torch.where(slope > 0, torch.minimum(hi, t), hi)
        newton = t - slope / curvature.clamp_min(1e-300)
        fallback = torch.where(torch.isinf(hi), 2 * t, 0.5 * (lo + hi))
        t = torch.where(done, t, torch.where((newton > lo) & (newton < hi), newton, fallback))
    return t


def _lbfgs(
    features: _Features, problem: _Problem, n_out: int, max_iter: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit every stage of ``features``: ``theta [S, K', d + 1]``, converged and iterations ``[S]``.

    The stages run in lockstep; a finished stage costs no more products, and its state
    leaves the batch once a quarter of the batch has finished.
    """
    import torch

    x = features.x
    n_stages, n_fit, width = x.shape
    f64, device = torch.float64, x.device
    out_theta = torch.zeros((n_stages, n_out, width + 1), dtype=f64, device=device)
    out_converged = torch.zeros(n_stages, dtype=torch.bool, device=device)
    out_iter = torch.zeros(n_stages, dtype=torch.int64, device=device)

    def small(grad: torch.Tensor) -> torch.Tensor:  # scipy's pgtol test, in scikit-learn's scale
        return grad.abs().flatten(1).amax(dim=1) <= tol

    alive = list(range(n_stages))  # the stage of each batch row
    theta = torch.zeros((n_stages, n_out, width + 1), dtype=f64, device=device)
    z = torch.zeros((n_stages, n_out, n_fit), dtype=f64, device=device)
    value, grad = _objective(features, alive, theta, z, problem, [True] * n_stages)
    converged = small(grad)
    n_iter = torch.zeros(n_stages, dtype=torch.int64, device=device)
    gamma = torch.ones(n_stages, dtype=f64, device=device)
    history: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    while True:
        finished = converged | (n_iter >= max_iter)
        n_finished = int(finished.sum())
        if n_finished and 4 * n_finished >= len(alive):  # retire finished stages, not one by one
            gone = [stage for stage, done in zip(alive, finished.tolist()) if done]
            out_theta[gone], out_converged[gone], out_iter[gone] = (
                theta[finished],
                converged[finished],
                n_iter[finished],
            )
            keep = (~finished).nonzero().flatten()
            if keep.numel() == 0:
                break
            alive = [alive[row] for row in keep.tolist()]
            theta, z, value, grad = theta[keep], z[keep], value[keep], grad[keep]
            converged, n_iter, gamma, finished = converged[keep], n_iter[keep], gamma[keep], finished[keep]
            history = [(step[keep], change[keep], rho[keep]) for step, change, rho in history]
        active = ~finished
        active_rows = active.tolist()
        first = n_iter == 0
        n_iter = n_iter + active
        direction = _two_loop(grad, history, gamma) * active[:, None, None]
        slope0 = _dot(grad, direction)
        dz = _logits(features, alive, direction)
        # No curvature yet: start where scipy does, at a step of unit length.
        start = torch.where(first, 1.0 / _dot(direction, direction).sqrt().clamp_min(1e-300), torch.ones_like(slope0))
        t = _line_search(z, dz, theta, direction, slope0, start, problem)
        step = t[:, None, None] * direction
        theta, z = theta + step, z + t[:, None, None] * dz
        new_value, new_grad = _objective(features, alive, theta, z, problem, active_rows)
        new_value = torch.where(active, new_value, value)
        new_grad = torch.where(active[:, None, None], new_grad, grad)
        change = new_grad - grad
        sy, yy = _dot(step, change), _dot(change, change)
        good = active & (sy > float(np.finfo(np.float64).eps) * yy) & (sy > 0)
        rho = torch.where(good, 1.0 / torch.where(good, sy, torch.ones_like(sy)), torch.zeros_like(sy))
        gamma = torch.where(good, sy / torch.where(good, yy, torch.ones_like(yy)), gamma)
        # The pairs only shape the direction (the line search and the stopping tests are
        # float64), so float32 copies do: half the memory traffic of the two-loop.
        history = [*history[-(HISTORY - 1) :], (step.float(), change.float(), rho.float())]
        biggest = torch.maximum(torch.maximum(value.abs(), new_value.abs()), torch.ones_like(value))
        stalled = active & (value - new_value <= FTOL * biggest)  # scipy's ftol test
        converged = converged | (active & small(new_grad)) | stalled
        value, grad = new_value, new_grad
    return out_theta, out_converged, out_iter


@dataclass(frozen=True)
class StageFit:
    """One stage's probe: its test predictions and its model on the standardized scale."""

    predictions: np.ndarray  # [n_test] int64, class labels
    converged: bool
    n_iter: int
    coef: np.ndarray  # [K', d] float64, as LogisticRegression.coef_ (K' = 1 for two classes)
    intercept: np.ndarray  # [K'] float64, as LogisticRegression.intercept_


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


def fit_stages(
    inputs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    fit_y: np.ndarray,
    *,
    c: float = 1.0,
    max_iter: int = 1000,
    tol: float = 1e-4,
    device: str = "cpu",
    threads: int | None = None,
) -> dict[str, StageFit]:
    """``fit_probes`` with each stage's coefficients and iteration count.

    ``c``, ``max_iter`` and ``tol`` mean what they mean to ``LogisticRegression``.
    ``device`` is where the features go ("cpu", "cuda", "cuda:1"). ``threads``: how many
    feature products run at once on the CPU (default: torch's thread count); everything
    else runs on one torch thread, and torch's setting is restored afterwards.
    """
    fit_y = np.asarray(fit_y, dtype=np.int64)
    classes = np.unique(fit_y)
    if classes.size == 1:
        # scikit-learn refuses a single class; the only sensible probe predicts it.
        return {
            name: StageFit(
                predictions=np.full(len(test_x), classes[0], dtype=np.int64),
                converged=True,
                n_iter=0,
                coef=np.zeros((1, np.shape(fit_x)[1])),
                intercept=np.zeros(1),
            )
            for name, (fit_x, test_x) in inputs.items()
        }
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

        return _fit_all(inputs, fit_y, classes, c, max_iter, tol, target, threaded)


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
    c: float,
    max_iter: int,
    tol: float,
    device: torch.device,
    threaded: Runner,
) -> dict[str, StageFit]:
    import torch

    encoded = torch.as_tensor(np.searchsorted(classes, fit_y), device=device)
    targets = torch.nn.functional.one_hot(encoded, num_classes=classes.size).T.to(torch.float64).contiguous()
    binary = classes.size == 2
    problem = _Problem(targets=targets, binary=binary, l2=1.0 / (c * len(fit_y)))
    widths = {name: int(np.shape(fit_x)[1]) for name, (fit_x, _) in inputs.items()}
    results: dict[str, StageFit] = {}
    for names in _batches(widths, len(fit_y)):
        fit_x, test_x = _standardize_batch([inputs[name] for name in names], device)
        large = fit_x.shape[1] * fit_x.shape[2] >= THREADED_PRODUCTS
        run, batched = (threaded, False) if large else (inline, True)
        fit = _Features(fit_x, run, batched)
        theta, converged, n_iter = _lbfgs(fit, problem, 1 if binary else int(classes.size), max_iter, tol)
        del fit, fit_x
        test = _Features(test_x, run, batched)
        scores = _full_logits(_logits(test, range(len(names)), theta), binary)  # [S, K, n_test]
        # argmax keeps the first of tied classes, as scikit-learn's predict does.
        picked = scores.argmax(dim=1).cpu().numpy()
        theta_np, converged_np, n_iter_np = theta.cpu().numpy(), converged.cpu().numpy(), n_iter.cpu().numpy()
        for index, name in enumerate(names):
            results[name] = StageFit(
                predictions=classes[picked[index]].astype(np.int64),
                converged=bool(converged_np[index]),
                n_iter=int(n_iter_np[index]),
                coef=theta_np[index, :, : widths[name]],
                intercept=theta_np[index, :, -1],
            )
    return {name: results[name] for name in inputs}
