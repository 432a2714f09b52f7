"""The features a batched probe solve reads, and every product with them (for ``lbfgs``).

This module owns the products, the one cost of a solve that reads the features. A batch
holds the standardized fit features of S stages, ``x: [S, n, d]`` float32, or, for a
cross-validated solve with fewer fit images than dimensions, their coordinates in the fit
rows' own row space (``row_space``). The solver's rows are ordered stage by stage, so the
rows of one stage are contiguous and share one product with that stage's features:
``[P·K', d] @ [d, n]`` for the P problems of a stage (a grid of C × CV folds) reads the
features once, where P separate fits would read them P times. On two CPU cores that turns
a memory-bound product into a compute-bound one.

Outside the products the rows are independent; ``Features.in_parts`` spreads that work
over the same threads. torch is imported inside functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from pytest_medprobe.row_space import RowSpace

Runner = Callable[[Callable[[int], None], Sequence[int]], None]  # runs a job on each of some items
# Outside the products the rows are independent: large batches do that work (the
# direction, the line search, the losses) in this many parts at once, on the product threads.
ROW_PARTS = 4


@dataclass(frozen=True)
class Features:
    """Standardized features ``x: [S, n, d]`` float32 of a batch of stages, and their products.

    ``run`` runs one product per stage (a thread pool for large stages on a CPU);
    ``batched``: while every stage has the same number of rows, one batched product
    (small stages: saves the Python overhead of one call per stage).
    """

    x: torch.Tensor
    run: Runner
    batched: bool
    # When ``x`` holds the fit rows' coordinates in their own row space (``row_space``):
    # the basis, which the stopping test needs.
    row_space: RowSpace | None = None

    def in_parts(self, n_rows: int, job: Callable[[int, int], None]) -> None:
        """Run ``job(first, stop)`` on parts of ``n_rows`` rows: ``ROW_PARTS`` at once on the
        product threads for large stages, one part for small ones (a hand-off would cost more)."""
        parts = 1 if self.batched else max(1, min(ROW_PARTS, n_rows))
        self.run(lambda part: job(part * n_rows // parts, (part + 1) * n_rows // parts), range(parts))

    def stages(self, first: int, stop: int) -> Features:
        """The features of stages ``first`` .. ``stop - 1``."""
        basis = None if self.row_space is None else self.row_space.stages(first, stop)
        return Features(self.x[first:stop], self.run, self.batched, basis)

    def within(self, stage_of: Sequence[int], grad: torch.Tensor, tol: float, asked: torch.Tensor) -> torch.Tensor:
        """``[R]`` bool: whether each ``asked`` row's gradient ``[R, K', d + 1]`` has no entry
        above ``tol`` in the features' own coordinates (scipy's pgtol test, in scikit-learn's
        scale); rows not asked: False."""
        import torch

        if self.row_space is None:
            return asked & (torch.linalg.vector_norm(grad.flatten(1), ord=float("inf"), dim=1) <= tol)
        intercepts = asked & (torch.linalg.vector_norm(grad[..., -1], ord=float("inf"), dim=1) <= tol)
        return self.row_space.within(stage_of, grad[..., :-1], tol, intercepts)

    def logits(self, stage_of: Sequence[int], weights: torch.Tensor, needed: Sequence[bool]) -> torch.Tensor:
        """``weights: [R, K', d]`` times each row's stage features: ``[R, K', n]`` (rows not ``needed``: 0)."""
        # w @ xᵀ rather than x @ wᵀ: with K' this narrow, that order ran 3-4x faster here.
        return self._per_stage(stage_of, weights, needed, self.x.shape[1], lambda x: x.transpose(-1, -2))

    def gradient(self, stage_of: Sequence[int], residual: torch.Tensor, needed: Sequence[bool]) -> torch.Tensor:
        """``residual: [R, K', n]`` times each row's stage features: ``[R, K', d]`` (rows not ``needed``: 0)."""
        # residual @ x rather than xᵀ @ residualᵀ: the same product, 7x faster here.
        return self._per_stage(stage_of, residual, needed, self.x.shape[2], lambda x: x)

    def _per_stage(
        self,
        stage_of: Sequence[int],
        left: torch.Tensor,
        needed: Sequence[bool],
        width: int,
        right: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        import torch

        n_rows, n_out = left.shape[0], left.shape[1]
        groups = _stage_groups(stage_of)
        n_stages = self.x.shape[0]
        sizes = {stop - start for _, start, stop in groups}
        if self.batched and len(groups) == n_stages and len(sizes) == 1:
            per = sizes.pop()
            return left.reshape(n_stages, per * n_out, -1).bmm(right(self.x)).reshape(n_rows, n_out, width)
        out = torch.zeros((n_rows, n_out, width), dtype=self.x.dtype, device=self.x.device)

        def product(group: int) -> None:
            stage, start, stop = groups[group]
            rows = [row for row in range(start, stop) if needed[row]]
            if not rows:
                return
            if len(rows) == stop - start:
                block = left[start:stop].reshape(-1, left.shape[2])
                torch.mm(block, right(self.x[stage]), out=out[start:stop].view(-1, width))
            else:
                index = torch.tensor(rows, device=self.x.device)
                block = left.index_select(0, index).reshape(-1, left.shape[2])
                out.index_copy_(0, index, torch.mm(block, right(self.x[stage])).reshape(len(rows), n_out, width))

        self.run(product, range(len(groups)))
        return out


def _stage_groups(stage_of: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(stage, first row, end row)`` of each run of rows reading one stage."""
    groups: list[tuple[int, int, int]] = []
    for row, stage in enumerate(stage_of):
        if groups and groups[-1][0] == stage:
            groups[-1] = (stage, groups[-1][1], row + 1)
        else:
            groups.append((stage, row, row + 1))
    return groups


def full_logits(z: torch.Tensor, binary: bool) -> torch.Tensor:
    """``z: [R, K', n]`` → ``[R, K, n]``: the binary model's class 0 has logit 0."""
    import torch

    return torch.cat([torch.zeros_like(z[:, :1]), z], dim=1) if binary else z


def logits(
    features: Features, stage_of: Sequence[int], theta: torch.Tensor, needed: Sequence[bool] | None = None
) -> torch.Tensor:
    """Logits ``[R, K', n]`` float64 of the rows under ``theta: [R, K', d + 1]``.

    Rows not ``needed`` (default: rows of ``theta`` that are all zero, such as a finished
    row's direction) cost no product. Logits are class-major: softmax over a short leading
    axis ran 10x faster here than over a last axis of length K.
    """
    if needed is None:
        needed = theta.flatten(1).ne(0).any(dim=1).tolist()
    product = features.logits(stage_of, theta[..., :-1].to(features.x.dtype), needed)
    return product.to(theta.dtype).add_(theta[..., -1:])
