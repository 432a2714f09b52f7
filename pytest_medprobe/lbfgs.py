"""Batched L-BFGS for many L2 logistic regressions at once (the solver of ``torch_probes``).

This module owns the solver. One call fits R independent problems ("rows") in lockstep.
Row r reads the standardized features of one stage, ``x[stage_of[r]]: [n, d]``, weighs the
fit samples with its own ``sample_weights[r]: [n]`` (they sum to 1; a cross-validation
fold's held-out samples weigh 0) and has its own penalty ``l2[r] = 1 / (C_r · n_r)``:

    Σ_i w_ri · log-loss_i  +  l2_r · ||W_r||² / 2          (intercept unpenalized)

which is scikit-learn's ``LogisticRegression(C=C_r)`` objective on the rows' n_r samples.
Three or more classes: the multinomial loss, one weight vector per class. Two classes:
the binary loss with one weight vector, as scikit-learn fits it.

Rows are ordered stage by stage, so that the rows of one stage share one product with
its features (``stage_features``).

L-BFGS with 10 correction pairs (scipy's maxcor), stopped per row by scipy's rules as
scikit-learn runs them: the largest gradient entry at most ``tol`` (1e-4; 1e-6 under a C
grid), read in the features' own coordinates also when the rows solve in their row space
(``Features.within``), or a relative decrease of the objective below 64 machine
epsilons; a row still short of that after ``max_iter`` iterations is reported
unconverged. The line search is near-exact and costs no product: logits are affine in the
step length, so one product per iteration gives every trial step's logits.

Precision: features float32 (the products read them; float32 halves that traffic, and on
a GPU float32 is the fast path on every card, where float64 runs 2x (H100) to 64x (consumer
cards) slower); weights, logits, gradients, losses and the line search float64, so the
float32 rounding of the products stays orders of magnitude below ``tol``; the correction
pairs, which only shape directions, float32. No randomness: rows start from zero (or the
given start), so two runs on one machine give identical results. Every tensor is created
on the features' device, so the same code runs on a CPU or a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pytest_medprobe.stage_features import Features, full_logits, logits

if TYPE_CHECKING:
    import torch

HISTORY = 10  # correction pairs kept by L-BFGS (scipy's default maxcor)
FTOL = 64 * float(np.finfo(np.float64).eps)  # scikit-learn's ftol for lbfgs
LINE_SEARCH_STEPS = 30
LINE_SEARCH_RTOL = 1e-3  # stop when the slope along the direction fell 1000-fold
# Finished rows leave the batch once this share of it has finished: not one by one, since
# compacting the state costs a copy of it.
RETIRE_SHARE = 0.25


@dataclass(frozen=True)
class Problems:
    """What the rows of a solve are: their labels, penalties, sample weights and stages."""

    targets: torch.Tensor  # [K, n] float64 one-hot over the full softmax, shared by every row
    binary: bool  # two classes: one logit row, the other class fixed at 0
    # [R, G] float64: 1 / (C * n_r), scikit-learn's l2_reg_strength, for each C of the row's
    # path (G = 1: one C). A row solves its C in turn, each from the last one's solution.
    l2: torch.Tensor
    sample_weights: torch.Tensor  # [R, n] float64, each row summing to 1 (may be an expanded view)
    stage_of: tuple[int, ...]  # [R] the stage each row reads, non-decreasing

    def span(self, first: int, stop: int) -> Problems:
        """The problems of rows ``first`` .. ``stop - 1`` (views, no copy)."""
        return Problems(
            targets=self.targets,
            binary=self.binary,
            l2=self.l2[first:stop],
            sample_weights=self.sample_weights[first:stop],
            stage_of=self.stage_of[first:stop],
        )

    def rows(self, keep: torch.Tensor) -> Problems:
        """The problems of the rows ``keep`` (a [R'] index tensor), in order."""
        kept = keep.tolist()
        return Problems(
            targets=self.targets,
            binary=self.binary,
            l2=self.l2[keep],
            sample_weights=self.sample_weights[keep],
            stage_of=tuple(self.stage_of[row] for row in kept),
        )


@dataclass(frozen=True)
class Solution:
    """Every row's fit at each C of its path: ``theta [R, G, K', d + 1]`` (weights, then
    intercept), its logits on the fit samples ``z [R, G, K', n]``, and ``converged``,
    ``n_iter`` ``[R, G]``."""

    theta: torch.Tensor
    z: torch.Tensor
    converged: torch.Tensor
    n_iter: torch.Tensor


def _objective(
    features: Features,
    problems: Problems,
    l2: torch.Tensor,
    theta: torch.Tensor,
    z: torch.Tensor,
    active: Sequence[bool],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Objective ``[R]`` at ``theta: [R, K', d + 1]`` whose logits are ``z``, and its gradient,
    under the penalties ``l2: [R]``.

    Rows that are not ``active`` may get any weight gradient (no product is spent on them).
    """
    import torch

    loss = torch.empty(len(z), dtype=z.dtype, device=z.device)
    residual = torch.empty_like(z)  # d loss / d logits, [R, K', n]

    def part(first: int, stop: int) -> None:
        weights = problems.sample_weights[first:stop, None, :]  # [r, 1, n]
        log_p = full_logits(z[first:stop], problems.binary).log_softmax(dim=1)
        loss[first:stop] = -(log_p * problems.targets * weights).sum(dim=(1, 2))
        share = log_p.exp_().sub_(problems.targets).mul_(weights)
        residual[first:stop] = share[:, 1:] if problems.binary else share

    features.in_parts(len(z), part)
    coef = theta[..., :-1]
    product = features.gradient(problems.stage_of, residual.to(features.x.dtype), active)
    # In place, into one buffer: these passes over [R, K', d] cost as much as the products
    # once a stage's rows share its product.
    grad = torch.empty_like(theta)
    grad[..., :-1].copy_(product).addcmul_(coef, l2[:, None, None])
    torch.sum(residual, dim=2, out=grad[..., -1])
    value = loss + 0.5 * l2 * torch.linalg.vector_norm(coef, dim=(1, 2)).square()  # intercept: no penalty
    return value, grad


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row inner products ``[R]`` of two contiguous ``[R, ...]`` tensors."""
    import torch

    return torch.linalg.vecdot(a.flatten(1), b.flatten(1))


def _weight_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``_dot`` of the weights of two ``[R, K', d + 1]`` tensors (the intercepts left out)."""
    return _dot(a, b) - (a[..., -1] * b[..., -1]).sum(dim=1)


def _two_loop(
    grad: torch.Tensor, history: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], gamma: torch.Tensor
) -> torch.Tensor:
    """L-BFGS direction ``-H grad`` from the correction pairs; a pair with rho = 0 is skipped."""
    q = -grad.to(history[-1][0].dtype) if history else -grad
    alphas = []
    for step, change, rho in reversed(history):  # in place: 4x faster here than q - alpha * change
        alpha = rho * _dot(step, q)
        q.addcmul_(alpha[:, None, None], change, value=-1)
        alphas.append(alpha)
    r = q.mul_(gamma.to(q.dtype)[:, None, None])
    for (step, change, rho), alpha in zip(history, reversed(alphas)):
        r.addcmul_((alpha - rho * _dot(change, r))[:, None, None], step)
    return r.to(grad.dtype)


def _line_search(
    z: torch.Tensor,
    dz: torch.Tensor,
    theta: torch.Tensor,
    direction: torch.Tensor,
    slope0: torch.Tensor,
    start: torch.Tensor,
    problems: Problems,
    l2: torch.Tensor,
) -> torch.Tensor:
    """Step lengths ``[R]`` that (nearly) minimize the objective along each row's direction.

    Along a direction the objective is a convex function of the step t whose logits are
    ``z + t·dz``, so each trial costs O(n·K) and no product with the features.
    Safeguarded Newton on the slope, bisection when Newton leaves the bracket.
    """
    import torch

    weights = problems.sample_weights  # [R, n]
    wd = _weight_dot(theta, direction)
    dd = _weight_dot(direction, direction)
    full_dz = full_logits(dz, problems.binary)
    # Each trial's slope and curvature are inner products of its probabilities with these,
    # computed once: [R, K·n] each.
    weighted_dz = (full_dz * weights[:, None, :]).flatten(1)
    weighted_dz2 = weighted_dz * full_dz.flatten(1)
    target_dz = torch.linalg.vecdot(problems.targets.flatten()[None, :], weighted_dz)
    lo = torch.zeros_like(start)
    hi = torch.full_like(start, float("inf"))
    done = slope0 >= 0  # no descent (a finished row has a zero direction): stay put
    t = torch.where(done, torch.zeros_like(start), start)
    for _ in range(LINE_SEARCH_STEPS):
        p = full_logits(torch.addcmul(z, t[:, None, None], dz), problems.binary).softmax(dim=1)
        p_dz = torch.linalg.vecdot(p, full_dz, dim=1)  # [R, n]
        slope = torch.linalg.vecdot(p.flatten(1), weighted_dz) - target_dz + l2 * (wd + t * dd)
        spread = torch.linalg.vecdot(p.flatten(1), weighted_dz2) - torch.linalg.vecdot(p_dz * p_dz, weights)
        curvature = spread + l2 * dd
        done = done | (slope.abs() <= LINE_SEARCH_RTOL * slope0.abs())
        if bool(done.all()):
            break
        lo = torch.where(slope < 0, torch.maximum(lo, t), lo)
        hi = torch.where(slope > 0, torch.minimum(hi, t), hi)
        newton = t - slope / curvature.clamp_min(1e-300)
        fallback = torch.where(torch.isinf(hi), 2 * t, 0.5 * (lo + hi))
        t = torch.where(done, t, torch.where((newton > lo) & (newton < hi), newton, fallback))
    return t


def solve(
    features: Features,
    problems: Problems,
    n_out: int,
    max_iter: int,
    tol: float,
    start: torch.Tensor | None = None,
) -> Solution:
    """Fit every row of ``problems`` along its path of C; ``start: [R, K', d + 1]`` is where
    rows begin (default 0). Returns each row's fit at each C: ``[R, G, ...]``.

    A row that meets the stopping rule at one C goes on to the next from that solution, a
    fresh L-BFGS (no correction pairs, iterations counted anew), as scikit-learn walks the
    C of ``LogisticRegressionCV``: the logits are those of the last solution and the
    gradient changes only by the penalty's share, so a switch costs no product. The rows
    run in lockstep; a row done with its whole path costs no more products, and its state
    leaves the batch once a share ``RETIRE_SHARE`` of the batch is done.
    """
    import torch

    x = features.x
    n_rows, n_steps = problems.l2.shape
    n_fit, width = x.shape[1], x.shape[2]
    f64, device = torch.float64, x.device
    out_theta = torch.zeros((n_rows, n_steps, n_out, width + 1), dtype=f64, device=device)
    out_z = torch.zeros((n_rows, n_steps, n_out, n_fit), dtype=f64, device=device)
    out_converged = torch.zeros((n_rows, n_steps), dtype=torch.bool, device=device)
    out_iter = torch.zeros((n_rows, n_steps), dtype=torch.int64, device=device)

    def small(grad: torch.Tensor, asked: torch.Tensor) -> torch.Tensor:
        return features.within(problems.stage_of, grad, tol, asked)

    alive = torch.arange(n_rows, device=device)  # the original row of each batch row
    step_of = torch.zeros(n_rows, dtype=torch.int64, device=device)  # where each row is on its path
    l2 = problems.l2[:, 0].clone()
    if start is None:
        theta = torch.zeros((n_rows, n_out, width + 1), dtype=f64, device=device)
        z = torch.zeros((n_rows, n_out, n_fit), dtype=f64, device=device)
    else:
        theta = start.to(device=device, dtype=f64).clone()
        z = logits(features, problems.stage_of, theta)
    value, grad = _objective(features, problems, l2, theta, z, [True] * n_rows)
    converged = small(grad, torch.ones(n_rows, dtype=torch.bool, device=device))
    done = torch.zeros(n_rows, dtype=torch.bool, device=device)  # the whole path solved
    n_iter = torch.zeros(n_rows, dtype=torch.int64, device=device)
    gamma = torch.ones(n_rows, dtype=f64, device=device)
    history: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    while True:
        solved = ~done & (converged | (n_iter >= max_iter))
        if bool(solved.any()):  # record each solved C; a row with more C goes on to the next
            rows = solved.nonzero().flatten()
            where = (alive[rows], step_of[rows])
            out_theta[where], out_z[where], out_converged[where], out_iter[where] = (
                theta[rows],
                z[rows],
                converged[rows],
                n_iter[rows],
            )
            last = step_of == n_steps - 1
            done = done | (solved & last)
            moving = solved & ~last
            if bool(moving.any()):
                step_of = step_of + moving
                new_l2 = torch.where(moving, problems.l2.gather(1, step_of[:, None].clamp_max(n_steps - 1))[:, 0], l2)
                change = (new_l2 - l2)[:, None, None]
                grad[..., :-1].addcmul_(change, theta[..., :-1])
                value = value + 0.5 * (new_l2 - l2) * torch.linalg.vector_norm(theta[..., :-1], dim=(1, 2)).square()
                l2 = new_l2
                n_iter = torch.where(moving, 0, n_iter)
                gamma = torch.where(moving, 1.0, gamma)
                history = [(step, change_, rho.masked_fill(moving, 0.0)) for step, change_, rho in history]
                converged = torch.where(moving, small(grad, moving), converged)
                continue  # a row may meet the rule at its next C at once
        n_done = int(done.sum())
        if n_done and n_done >= RETIRE_SHARE * len(alive):  # retire finished rows, not one by one
            keep = (~done).nonzero().flatten()
            if keep.numel() == 0:
                break
            alive, problems, l2, step_of = alive[keep], problems.rows(keep), l2[keep], step_of[keep]
            theta, z, value, grad = theta[keep], z[keep], value[keep], grad[keep]
            converged, n_iter, gamma, done = converged[keep], n_iter[keep], gamma[keep], done[keep]
            history = [(step[keep], change[keep], rho[keep]) for step, change, rho in history]
        active = ~done
        active_rows = active.tolist()
        first = n_iter == 0
        n_iter = n_iter + active
        direction = torch.empty_like(grad)

        def directions(first: int, stop: int) -> None:
            pairs = [(step[first:stop], change[first:stop], rho[first:stop]) for step, change, rho in history]
            direction[first:stop] = _two_loop(grad[first:stop], pairs, gamma[first:stop])

        features.in_parts(len(grad), directions)
        direction.mul_(active[:, None, None])
        slope0 = _dot(grad, direction)
        dz = logits(features, problems.stage_of, direction, active_rows)
        # No curvature yet: start where scipy does, at a step of unit length.
        step0 = torch.where(first, 1.0 / _dot(direction, direction).sqrt().clamp_min(1e-300), torch.ones_like(slope0))
        t = torch.empty_like(step0)

        def search(first: int, stop: int) -> None:
            t[first:stop] = _line_search(
                z[first:stop], dz[first:stop], theta[first:stop], direction[first:stop], slope0[first:stop],
                step0[first:stop], problems.span(first, stop), l2[first:stop],
            )  # fmt: skip

        features.in_parts(len(t), search)
        step = direction.mul_(t[:, None, None])
        theta, z = theta + step, z.addcmul_(t[:, None, None], dz)
        new_value, new_grad = _objective(features, problems, l2, theta, z, active_rows)
        if not all(active_rows):
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
        converged = converged | small(new_grad, active) | stalled
        value, grad = new_value, new_grad
    return Solution(theta=out_theta, z=out_z, converged=out_converged, n_iter=out_iter)
