"""Pooling padded vision rows over their real patches, and mapping rows to images by token count."""

from __future__ import annotations

import pytest
import torch

from pytest_medprobe.errors import ExtractionError
from pytest_medprobe.models.padded_patches import pool_padded_rows, rows_by_token_count


def test_filler_patches_never_reach_the_mean_and_tiles_weigh_by_their_real_patches() -> None:
    hidden = torch.full((3, 4, 2), 1e6)  # filler everywhere, then the real patches
    hidden[0, :2] = torch.tensor([[1.0, 0.0], [3.0, 0.0]])  # image 0, tile 1: 2 real patches
    hidden[1, :1] = torch.tensor([[7.0, 2.0]])  # image 0, tile 2: 1 real patch
    hidden[2, :4] = torch.tensor([[0.0, 1.0]] * 4)  # image 1: 4 real patches
    real = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    pooled = pool_padded_rows(hidden, real, torch.tensor([0, 0, 1]), 2, "test")
    torch.testing.assert_close(pooled, torch.tensor([[11.0 / 3, 2.0 / 3], [0.0, 1.0]]))


def test_a_mask_of_another_shape_is_a_clear_error() -> None:
    with pytest.raises(ExtractionError, match="patch mask of shape"):
        pool_padded_rows(torch.zeros(2, 4, 3), torch.ones(2, 5, dtype=torch.bool), torch.tensor([0, 1]), 2, "test")


def test_rows_fill_each_images_tokens_in_order() -> None:
    rows = rows_by_token_count(torch.tensor([4, 4, 4, 4, 2, 3]), torch.tensor([18, 3]), "test")
    assert rows.tolist() == [0, 0, 0, 0, 0, 1]
    assert rows_by_token_count(torch.tensor([2, 5]), torch.tensor([2, 5]), "test").tolist() == [0, 1]


@pytest.mark.parametrize(
    ("row_tokens", "image_tokens"),
    [([4, 4], [3, 5]), ([4, 4], [4, 5]), ([], [4])],
    ids=["boundary inside a row", "totals differ", "no rows"],
)
def test_token_counts_that_do_not_line_up_are_a_clear_error(row_tokens: list[int], image_tokens: list[int]) -> None:
    with pytest.raises(ExtractionError, match="disagree on how many tokens"):
        rows_by_token_count(torch.tensor(row_tokens, dtype=torch.long), torch.tensor(image_tokens), "test")
