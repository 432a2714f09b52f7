"""``synthetic-lesions``: an embedded dermatoscopy-like image set generated on the fly.

Four classes of skin lesion defined by morphology (filled disc, ring, star, elongated
ellipse). Skin tone, texture, noise, lesion darkness and lesion area are drawn from the
same distribution for every class. The pigment's hue leans weakly by class, with wide
overlap (as real lesion types differ in typical colour, never reliably): that weak cue
is all a linear probe on raw pixels can use, so it scores about 0.48 (chance 0.25),
clearly above chance yet far below an encoder that sees shape (about 0.97). A blind
encoder (at chance) therefore falls clearly below the pixel baseline. Two choices keep
every other low-level statistic blind to the class:

* the lesion's "ink" (darkness x area) follows one distribution for all classes, so the
  class-wise mean intensity is the same;
* the lesion's centre is Gaussian (smooth, so class-mean images can differ only through
  the spread of the ink), with a variance chosen per image so that centre variance + the
  shape's own second moment is the same for every class. With a uniform window, or one
  variance for all, rings would leave a pale hole in their class-mean image and long
  ellipses a wider halo than discs, which a linear probe picks up (measured without the
  hue cue: 0.35-0.45 balanced accuracy with a uniform window, about 0.27 with this).

Generation uses numpy only and is deterministic by seed; the fit and test splits come from
independent seed streams (``SeedSequence(seed).spawn``), so changing ``n_fit`` leaves the
test images unchanged.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from pytest_medprobe.data.base import ProbeDataset, as_image_sequence, compute_fingerprint

NAME = "synthetic-lesions"
CLASS_NAMES = ("round lesion", "ring lesion", "stellate lesion", "elongated lesion")
MODALITY = "dermatoscopy"
# Bump when the rendering changes: it is part of the fingerprint that keys the feature cache.
GENERATOR_VERSION = 2

_AREA = (0.015, 0.04)  # lesion area as a fraction of the image
_DARKNESS = (0.35, 0.7)  # mean fractional darkening inside the lesion, before ink matching
_MARGIN = 2.0  # pixels kept between the lesion and the image border
_INK_SPREAD = 0.0146  # target ink variance per axis, in units of image_size**2
_MIN_SPREAD = 0.006  # least centre variance per axis, in units of image_size**2
_HUE_BY_CLASS = (-0.27, -0.09, 0.09, 0.27)  # mean hue lean of each class's pigment
_HUE_SPREAD = 0.2  # per-image hue lean, uniform around the class mean
_HUE_AXIS = np.array([-1.0, 0.25, 0.75])  # sums to zero: hue, not brightness


Outline = tuple[Any, ...]  # (kind, *parameters) of one lesion outline


@functools.lru_cache(maxsize=8)
def _grid(image_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel-centre coordinates and the bilinear upsampling matrix of the coarse texture."""
    coords = np.arange(image_size, dtype=np.float64) + 0.5
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    coarse = 9
    positions = coords / image_size * (coarse - 1)
    low = np.minimum(positions.astype(int), coarse - 2)
    frac = positions - low
    upsample = np.zeros((image_size, coarse))
    upsample[np.arange(image_size), low] = 1 - frac
    upsample[np.arange(image_size), low + 1] = frac
    return yy, xx, upsample


def _shape(label: int, area: float, rng: np.random.Generator) -> tuple[Outline, float, float]:
    """A radial outline ``r(phi)`` or ellipse, its extent (max radius) and per-axis 2nd moment."""
    if label == 0:  # round: filled disc
        radius = np.sqrt(area / np.pi)
        return ("disc", radius), radius, radius**2 / 4
    if label == 1:  # ring: annulus
        inner = rng.uniform(0.5, 0.62)
        outer = np.sqrt(area / (np.pi * (1 - inner**2)))
        return ("ring", outer, inner * outer), outer, outer**2 * (1 + inner**2) / 4
    if label == 2:  # stellate: a core with sharp spikes
        spikes, strength, phase = int(rng.integers(5, 8)), rng.uniform(1.0, 1.4), rng.uniform(0, 2 * np.pi)
        phi = np.linspace(0, 2 * np.pi, 720, endpoint=False)
        profile = 1 + strength * np.maximum(0.0, np.cos(spikes * phi)) ** 6
        core = np.sqrt(area / (0.5 * np.mean(profile**2) * 2 * np.pi))
        moment = core**2 * np.mean(profile**4) / np.mean(profile**2) / 4
        return ("star", core, spikes, strength, phase), core * (1 + strength), moment
    ratio, angle = rng.uniform(2.6, 3.4), rng.uniform(0, np.pi)  # elongated: thin ellipse
    minor = np.sqrt(area / (np.pi * ratio))
    major = minor * ratio
    return ("ellipse", major, minor, angle), major, (major**2 + minor**2) / 8


def _distance(shape: Outline, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Approximate signed distance to the outline in pixels (negative inside)."""
    rho = np.hypot(dy, dx)
    kind = shape[0]
    if kind == "disc":
        return rho - shape[1]
    if kind == "ring":
        return np.maximum(rho - shape[1], shape[2] - rho)
    if kind == "star":
        _, core, spikes, strength, phase = shape
        phi = np.arctan2(dy, dx) - phase
        return rho - core * (1 + strength * np.maximum(0.0, np.cos(spikes * phi)) ** 6)
    _, major, minor, angle = shape
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    q = np.sqrt((u / major) ** 2 + (v / minor) ** 2)
    gradient = np.hypot(u / major**2, v / minor**2) / np.maximum(q, 1e-9)
    return (q - 1) / np.maximum(gradient, 1e-9)


def render_lesion(label: int, rng: np.random.Generator, image_size: int = 64) -> np.ndarray:
    """One ``[image_size, image_size, 3]`` uint8 image of class ``label`` (0..3), drawn from ``rng``."""
    if label not in range(len(CLASS_NAMES)):
        raise ValueError(f"label must be in 0..{len(CLASS_NAMES) - 1}, got {label}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    yy, xx, upsample = _grid(image_size)
    size = float(image_size)
    skin = np.array([0.86, 0.67, 0.56]) * rng.uniform(0.82, 1.08) + rng.normal(0.0, 0.02, 3)
    texture = upsample @ rng.normal(0.0, 0.05, (upsample.shape[1], upsample.shape[1])) @ upsample.T
    background = skin[None, None, :] * (1 + texture[:, :, None])

    area = rng.uniform(*_AREA) * size * size
    shape, extent, moment = _shape(label, area, rng)
    # Gaussian centre whose variance tops the shape's own spread up to one target for all classes
    # (see the module docstring); redrawn while the lesion would cross the border.
    sigma = np.sqrt(max(_INK_SPREAD * size * size - moment, _MIN_SPREAD * size * size))
    limit = max(size / 2 - extent - _MARGIN, 0.0)
    offset = rng.normal(0.0, sigma, 2)
    while np.abs(offset).max() > limit:  # ends quickly: limit > 1.5 sigma at any image size >= 16
        offset = rng.normal(0.0, sigma, 2)
    centre = size / 2 + offset
    mask = np.clip(0.5 - _distance(shape, yy - centre[0], xx - centre[1]), 0.0, 1.0)
    # Same ink (darkness x area) distribution for every class, whatever the rendered area.
    darkness = rng.uniform(*_DARKNESS) * area / max(float(mask.sum()), 1.0)
    # Pigment hue leans by class but overlaps widely (as lesion types differ in typical
    # colour, never reliably): a weak cue that lets the raw-pixel baseline sit clearly
    # above chance, well below a shape-aware encoder. The channel weights sum to zero,
    # so the hue shift leaves the mean intensity unchanged.
    hue = _HUE_BY_CLASS[label] + rng.uniform(-_HUE_SPREAD, _HUE_SPREAD)
    tint = np.array([0.85, 1.0, 1.12]) * rng.uniform(0.95, 1.05, 3) * (1 + hue * _HUE_AXIS)
    mottling = 1 + 0.15 * texture[:, :, None]
    image = background * (1 - np.minimum(mask[:, :, None] * darkness * tint * mottling, 0.95))
    image += rng.normal(0.0, 0.02, image.shape)
    return (np.clip(image, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def _split(seed_sequence: np.random.SeedSequence, n: int, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed_sequence)
    labels = rng.permutation(np.arange(n) % len(CLASS_NAMES)).astype(np.int64)
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    for row, label in enumerate(labels):
        images[row] = render_lesion(int(label), rng, image_size)
    return images, labels


def make_synthetic_lesions(seed: int, n_fit: int = 480, n_test: int = 240, image_size: int = 64) -> ProbeDataset:
    """The ``synthetic-lesions`` dataset: balanced classes, fit and test from independent streams."""
    fit_stream, test_stream = np.random.SeedSequence(seed).spawn(2)
    fit_images, fit_labels = _split(fit_stream, n_fit, image_size)
    test_images, test_labels = _split(test_stream, n_test, image_size)
    identity = {
        "dataset": NAME,
        "generator": GENERATOR_VERSION,
        "seed": seed,
        "n_fit": n_fit,
        "n_test": n_test,
        "image_size": image_size,
    }
    return ProbeDataset(
        name=NAME,
        class_names=CLASS_NAMES,
        modality=MODALITY,
        fit_images=as_image_sequence(fit_images),
        fit_labels=fit_labels,
        test_images=as_image_sequence(test_images),
        test_labels=test_labels,
        source="embedded",
        fingerprint=compute_fingerprint(identity, np.arange(n_fit), np.arange(n_test)),
    )
