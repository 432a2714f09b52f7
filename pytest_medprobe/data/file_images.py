"""A split's images kept as files and decoded each time one is read, never held in memory.

A folder of full-resolution scans would otherwise keep every decoded image for the whole
session (a 2000×2000 RGB image is 12 MB as uint8, and a session holds both splits, warm
runs included), though the processor needs one batch at a time and the raw-pixel
baseline a 16×16 thumbnail. Every file is decoded once when the dataset is read, so a
damaged file is still reported then, with its name, and each image's size is measured
for extraction's size-ordered batching without decoding it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import overload

import numpy as np

from pytest_medprobe.data.images import DecodedImage, decode_image


class FileImages(Sequence[np.ndarray]):
    """``[H, W, 3]`` uint8 images read from ``paths`` on access; ``sizes`` are their (height, width)."""

    def __init__(self, paths: Sequence[Path], sizes: Sequence[tuple[int, int]]) -> None:
        if len(paths) != len(sizes):
            raise ValueError(f"{len(paths)} paths but {len(sizes)} sizes")
        self.paths = tuple(paths)
        self.sizes = tuple(sizes)

    def __len__(self) -> int:
        return len(self.paths)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> FileImages: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | FileImages:
        if isinstance(index, slice):
            return FileImages(self.paths[index], self.sizes[index])
        return decode_image(self.paths[index]).pixels


def measure_files(paths: Sequence[Path]) -> tuple[FileImages, list[tuple[str, DecodedImage]]]:
    """Decode each file once (errors name the file), keeping only its size and frame information.

    Returns the images as ``FileImages`` and, for ``images.multi_frame_note``, each file with
    a pixel-less record of the frame taken.
    """
    sizes: list[tuple[int, int]] = []
    frames: list[tuple[str, DecodedImage]] = []
    for path in paths:
        decoded = decode_image(path)
        sizes.append((int(decoded.pixels.shape[0]), int(decoded.pixels.shape[1])))
        frames.append((str(path), DecodedImage(np.empty((0, 0, 3), np.uint8), decoded.frames, decoded.frame)))
    return FileImages(paths, sizes), frames
