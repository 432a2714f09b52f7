"""A decoded image, as every image reader (``images`` for PIL formats, ``dicom``) returns it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DecodedImage:
    """One decoded image, and the frame taken when the file held several (``frames`` > 1)."""

    pixels: np.ndarray  # [H, W, 3] uint8
    frames: int = 1
    frame: int = 0
