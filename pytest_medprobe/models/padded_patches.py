"""Pooling vision rows padded to a common length, whose real patches a mask marks.

NaFlex-style towers (SigLIP2 in LFM2-VL, the Gemma 4 encoder) keep each image (or tile)
at its own resolution: the rows of a batch are padded with filler patches up to the
longest one and a mask says which patches are real. A mean over a whole row would mix
in the filler, and how much of it depends on the batch-mates; so rows are averaged over
their real patches only, and the rows of one image (tiles) are combined weighted by how
many real patches each has, which is the mean over every real patch of the image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_medprobe.errors import ExtractionError
from pytest_medprobe.models.base import segment_mean

if TYPE_CHECKING:
    import torch


def pool_padded_rows(
    hidden: torch.Tensor, real: torch.Tensor, rows: torch.Tensor, n_images: int, family: str
) -> torch.Tensor:
    """``hidden: [R, P, d]``, ``real: [R, P]`` bool, ``rows: [R]`` image per row -> ``[n_images, d]`` float32."""
    if hidden.dim() != 3 or tuple(real.shape) != tuple(hidden.shape[:2]):
        raise ExtractionError(
            f"the {family} adapter cannot pool a vision tensor of shape {tuple(hidden.shape)} with a "
            f"patch mask of shape {tuple(real.shape)}; the processor and the model disagree on padding."
        )
    weights = real.to(hidden.device).float()  # [R, P]
    counts = weights.sum(dim=1)  # [R] real patches per row
    sums = weights.unsqueeze(1).bmm(hidden.float()).squeeze(1)  # [R, d]
    row_means = sums / counts.clamp(min=1.0)[:, None]
    return segment_mean(row_means, rows.to(hidden.device), n_images, weights=counts)


def rows_by_token_count(row_tokens: torch.Tensor, image_tokens: torch.Tensor, family: str) -> torch.Tensor:
    """``[R]``: the image of each row, when rows fill the images' tokens in order.

    ``row_tokens: [R]`` is how many image tokens each row (tile, view) becomes in the
    prompt and ``image_tokens: [n_images]`` how many each prompt holds; the model places
    rows into image positions in order, so the rows of image ``i`` are those whose tokens
    fill image ``i``'s. A boundary that falls inside a row means the two counts disagree.
    """
    import torch

    row_ends = row_tokens.cpu().long().cumsum(0)  # [R]
    image_ends = image_tokens.cpu().long().cumsum(0)  # [n_images]
    if (
        len(row_ends) == 0
        or int(row_ends[-1]) != int(image_ends[-1])
        or not bool(torch.isin(image_ends, row_ends).all())
    ):
        raise ExtractionError(
            f"the {family} vision rows give {row_tokens.tolist()} image tokens but the prompts hold "
            f"{image_tokens.tolist()}; the processor and the model disagree on how many tokens an "
            "image becomes."
        )
    # Row r belongs to the first image whose token range ends at or after the row's end.
    return torch.searchsorted(image_ends, row_ends)
