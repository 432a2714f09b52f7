"""The fit features' row space: the solver's coordinates when a stage has fewer fit images than dimensions.

This module owns one exact change of coordinates for the torch probe backend. An
L2-penalized logistic regression's weights lie in the span of its training samples: the
weight gradient is ``Xᵀ·residual + l2·W``, so from a start in that span every L-BFGS step,
and the optimum, stays in it. Every cross-validation fold trains on a subset of the fit
split, so one orthonormal basis ``Q: [d, m]`` of the fit split's row space (m = n_fit < d)
serves every fold, every C and the refit. In it the features are ``X = Z·Qᵀ`` with
``Z = Rᵀ: [n_fit, m]`` (from the QR factorization ``Xᵀ = Q·R``), the logits ``X·W = Z·β``
for ``W = Q·β``, and the penalty ``||W||² = ||β||²``: the same objective, the same L-BFGS
iterates (inner products are kept), with products of width m instead of d. At 1000 fit
images of 2048 dimensions that halves every product and every pass over the solver state
(``benchmarks/bench_cv_grid.py``).

What is not kept is the largest gradient entry, scikit-learn's stopping test: it is taken
in the features' coordinates, ``||Q·g||_∞``. Since ``||g||₂ / √(d·K') ≤ ||Q·g||_∞ ≤ ||g||₂``,
a row is decided by its norm alone unless it lies between those bounds; only those rows pay
for ``Q·g``.

The factorization is LAPACK's Householder QR, in float32 like the products.
torch is imported inside functions so that importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


WITNESSES = 64  # feature coordinates per stage checked before a full check


class RowSpace:
    """An orthonormal basis ``Q: [d, m]`` of each stage's fit rows, and the stopping test in
    the features' coordinates.

    The test remembers, per stage, the coordinates where the last full check found the
    largest entries ("witnesses"): a gradient whose entry at a witness is above the
    tolerance has not converged, found at the cost of a [K', m] x [m, 64] product. Only a
    row that no witness refutes pays for the full ``Q·g``. The witnesses only save work:
    every row declared converged passed the full check.
    """

    def __init__(self, basis: torch.Tensor) -> None:
        self.basis = basis  # [S, d, m] float32, orthonormal columns
        self._witnesses: dict[int, torch.Tensor] = {}  # stage -> [WITNESSES] feature indices

    def stages(self, first: int, stop: int) -> RowSpace:
        """The bases of stages ``first`` .. ``stop - 1`` (their own witnesses)."""
        return RowSpace(self.basis[first:stop])

    @property
    def width(self) -> int:
        """d: the features' own width."""
        return int(self.basis.shape[1])

    def expand(self, stage_of: Sequence[int], coords: torch.Tensor) -> torch.Tensor:
        """Weights ``coords: [R, K', m]`` in row-space coordinates → ``[R, K', d]`` float64 in the
        features' coordinates (``W = Q·β``), each row by its stage's basis."""
        import torch

        n_rows, n_out, m = coords.shape
        out = torch.empty((n_rows, n_out, self.width), dtype=torch.float64, device=coords.device)
        for stage, rows in _by_stage(stage_of, torch.arange(n_rows, device=coords.device)):
            block = coords.index_select(0, rows).to(self.basis.dtype).reshape(-1, m)
            out.index_copy_(0, rows, (block @ self.basis[stage].T).reshape(len(rows), n_out, -1).to(torch.float64))
        return out

    def within(
        self, stage_of: Sequence[int], weight_grad: torch.Tensor, tol: float, asked: torch.Tensor
    ) -> torch.Tensor:
        """``[R]`` bool: whether each ``asked`` row's weight gradient ``[R, K', m]`` (row-space
        coordinates) has no entry above ``tol`` in the features' coordinates; rows not asked: False."""
        import torch

        norms = torch.linalg.vector_norm(weight_grad.flatten(1), dim=1)
        entries = weight_grad.shape[1] * self.width
        verdict = asked & (norms <= tol)  # the largest entry is at most the norm
        undecided = asked & ~verdict & (norms <= tol * entries**0.5)  # and at least norm / √entries
        n_out, m = weight_grad.shape[1], weight_grad.shape[2]
        for stage, rows in _by_stage(stage_of, undecided.nonzero().flatten()):
            grad = weight_grad.index_select(0, rows).to(self.basis.dtype).reshape(-1, m)  # [r·K', m]
            witnesses = self._witnesses.get(stage)
            if witnesses is not None:
                seen = (grad @ self.basis[stage, witnesses].T).abs().reshape(len(rows), -1).amax(dim=1)
                rows, grad = rows[seen <= tol], grad.reshape(len(rows), n_out, m)[seen <= tol].reshape(-1, m)
                if not rows.numel():
                    continue
            entries_of = (grad @ self.basis[stage].T).abs().reshape(len(rows), n_out, -1)  # [r, K', d]
            verdict[rows] = entries_of.amax(dim=(1, 2)) <= tol
            self._witnesses[stage] = entries_of.amax(dim=(0, 1)).topk(min(WITNESSES, self.width)).indices
        return verdict


def _by_stage(stage_of: Sequence[int], rows: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """``rows`` ([r] indices) grouped by the stage each reads: ``[(stage, its rows)]``."""
    groups: dict[int, list[int]] = {}
    for row in rows.tolist():
        groups.setdefault(stage_of[row], []).append(row)
    return [(stage, rows.new_tensor(members)) for stage, members in groups.items()]


def factorize(
    fit_x: torch.Tensor, run: Callable[[Callable[[int], None], Sequence[int]], None]
) -> tuple[torch.Tensor, RowSpace]:
    """The row-space coordinates ``Z: [S, n, n]`` float32 of ``fit_x: [S, n, d]`` (n < d) and
    the basis that maps them back; ``run`` (a ``stage_features.Runner``) spreads the stages'
    factorizations over threads."""
    import torch

    n_stages, n_fit, width = fit_x.shape
    coords = torch.empty((n_stages, n_fit, n_fit), dtype=fit_x.dtype, device=fit_x.device)
    basis = torch.empty((n_stages, width, n_fit), dtype=fit_x.dtype, device=fit_x.device)

    def one(stage: int) -> None:
        q, r = torch.linalg.qr(fit_x[stage].T)  # Xᵀ = Q·R, so X = Rᵀ·Qᵀ
        basis[stage], coords[stage] = q, r.T

    run(one, range(n_stages))
    return coords, RowSpace(basis)
