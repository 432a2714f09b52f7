"""The labelled image set every audit probes, and the helpers all dataset readers share.

``ProbeDataset`` is what a reader hands to the rest of the plugin: RGB uint8 images of a
fit split and a test split, integer labels, class names and the modality word for the
prompt, plus a fingerprint that keys the feature cache. This module also owns the raw-pixel
baseline features and the seed-fixed stratified selection of samples (metrics.md §2).
Only numpy and PIL are imported here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from pytest_medprobe.errors import DatasetError, MedprobeUsageError
from pytest_medprobe.naming import mention

ACCEPTED_IMAGES = (
    "[H, W] grayscale, [H, W, 1], [H, W, 3] RGB or [H, W, 4] RGBA arrays of dtype uint8, "
    "uint16, bool, or float in [0, 1]"
)


@dataclass(frozen=True, eq=False)
class ProbeDataset:
    """A fit split and a test split of labelled RGB images, ready to be probed.

    ``fit_images`` / ``test_images`` hold ``[H, W, 3]`` uint8 arrays (an ``[n, H, W, 3]`` array
    is fine); labels are int64 in ``0 .. K-1``. ``fingerprint`` changes whenever the images or
    the selection of samples could have changed, and only then.
    """

    name: str
    class_names: tuple[str, ...]
    modality: str
    fit_images: Sequence[np.ndarray]
    fit_labels: np.ndarray
    test_images: Sequence[np.ndarray]
    test_labels: np.ndarray
    source: str
    fingerprint: str
    # What a reader did that the user should know about, said once in the report (e.g. the
    # middle frame taken from multi-frame DICOM files).
    notes: tuple[str, ...] = ()
    # A binary "finding present / absent" task cut from a multi-label set: the question
    # names the finding (prompts.closed_question), class_names are FINDING_CLASSES.
    finding: str | None = None
    # Subgroup column -> its value for each test image (``[n_test]`` strings): scores are
    # also computed per value (subgroups.py). Not part of the fingerprint: it never changes
    # which images are read nor what the model sees.
    test_subgroups: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split, images, labels in (
            ("fit", self.fit_images, self.fit_labels),
            ("test", self.test_images, self.test_labels),
        ):
            if len(images) != len(labels):
                raise DatasetError(
                    f"{self.name}: the {split} split has {len(images)} images but {len(labels)} labels; "
                    "every image needs exactly one label."
                )
        validate_labels(self.fit_labels, self.test_labels, self.class_names, self.name)
        for column, values in self.test_subgroups.items():
            if len(values) != len(self.test_labels):
                raise DatasetError(
                    f"{self.name}: subgroup column {column!r} has {len(values)} values for "
                    f"{len(self.test_labels)} test images; every test image needs one value."
                )

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_fit(self) -> int:
        return len(self.fit_labels)

    @property
    def n_test(self) -> int:
        return len(self.test_labels)


@dataclass(frozen=True)
class DatasetOptions:
    """What the user said about reading datasets: their columns (CSV and Hugging Face
    datasets; ``None`` means "detect it"), the columns scores are split by (``subgroups``),
    and whether anything may be downloaded.
    """

    image_column: str | None = None
    label_column: str | None = None
    offline: bool = False  # hf: hub datasets come from the local cache only
    subgroups: tuple[str, ...] = ()


FINDING_CLASSES = ("absent", "present")  # label 0 / 1 of a finding task
FINDING_SEPARATOR = "#"  # medmnist:chestmnist#effusion: the effusion task of ChestMNIST


def finding_task(spec: str, finding: str | None) -> str:
    """The dataset spec of one finding of a multi-label set (``spec`` itself without one)."""
    return spec if finding is None else f"{spec}{FINDING_SEPARATOR}{finding}"


def split_finding(spec: str) -> tuple[str, str | None]:
    """``medmnist:chestmnist#effusion`` -> (``medmnist:chestmnist``, ``effusion``)."""
    base, separator, finding = spec.rpartition(FINDING_SEPARATOR)
    if not separator or not base or "/" in finding:
        return spec, None
    return base, finding.strip() or None


BLANK_GROUP = "(blank)"


def subgroup_values(where: object, column: str, cells: Sequence[object]) -> list[str]:
    """Each row's value of a subgroup column (whitespace-normalized text; blank cells form
    their own group); refuses a column with a single value, which has nothing to compare."""
    values = [" ".join(str("" if cell is None else cell).split()) or BLANK_GROUP for cell in cells]
    if len(set(values)) < 2:
        raise MedprobeUsageError(
            f"{where}: subgroup column {column!r} holds one value only ({values[0] if values else None!r}); there "
            f"is nothing to compare. Drop it from {mention('subgroups')}, or name a column with two or more values."
        )
    return values


def as_image_sequence(images: np.ndarray) -> Sequence[np.ndarray]:
    """An ``[n, H, W, 3]`` array typed as the sequence of images it behaves as.

    ndarray indexes, slices, iterates and has ``len`` like a sequence of ``[H, W, 3]``
    arrays, but numpy's stubs do not declare it a ``Sequence``; keeping one array avoids
    copying every image into a list.
    """
    return cast("Sequence[np.ndarray]", images)


def compute_fingerprint(identity: Mapping[str, object], fit_indices: np.ndarray, test_indices: np.ndarray) -> str:
    """sha256 over a JSON description of the source and the selected indices of each split.

    JSON with sorted keys and little-endian int64 bytes keep the digest equal across
    processes, platforms and runs (``hash()`` is salted per process, so it cannot be used).
    """
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    for indices in (fit_indices, test_indices):
        digest.update(b"|" + np.ascontiguousarray(indices, dtype="<i8").tobytes())
    return digest.hexdigest()


def pixel_features(images: Sequence[np.ndarray] | np.ndarray, size: int = 16) -> np.ndarray:
    """The raw-pixel baseline: ``[n, size*size*3]`` float32 in [0, 1].

    Each image is resized to ``size x size`` with PIL's bilinear filter (which averages over
    the source pixels when shrinking, so small details are not aliased away) and flattened.
    """
    from PIL import Image

    features = np.empty((len(images), size * size * 3), dtype=np.float32)
    for row, image in enumerate(images):
        rgb = to_rgb_uint8(np.asarray(image), f"image {row}")
        small = Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR)
        features[row] = np.asarray(small, dtype=np.float32).reshape(-1) / 255.0
    return features


def to_rgb_uint8(image: np.ndarray, where: str) -> np.ndarray:
    """``image`` as an ``[H, W, 3]`` uint8 array; refuses what it cannot convert faithfully."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        array = array[:, :, :3] if array.shape[2] == 4 else array  # RGBA: drop alpha
    elif array.ndim != 2:
        raise DatasetError(f"{where}: image of shape {array.shape} cannot be used; accepted: {ACCEPTED_IMAGES}.")
    if array.dtype == np.uint8:
        converted = array
    elif array.dtype == np.uint16:
        # Scale by the full 16-bit range, not the image's own maximum, so the same
        # intensity gives the same value in every image.
        converted = ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif array.dtype == np.bool_:
        converted = array.astype(np.uint8) * np.uint8(255)
    elif np.issubdtype(array.dtype, np.floating):
        finite = bool(np.isfinite(array).all())
        if array.size and not (finite and array.min() >= 0.0 and array.max() <= 1.0):
            observed = f"{array.min():.4g}..{array.max():.4g}" if finite else "not finite"
            raise DatasetError(
                f"{where}: float image (dtype {array.dtype}, shape {array.shape}) has values outside [0, 1] "
                f"({observed}); accepted: {ACCEPTED_IMAGES}. Rescale it to [0, 1] or convert it to uint8."
            )
        converted = np.rint(array * 255.0).astype(np.uint8)
    else:
        raise DatasetError(
            f"{where}: image dtype {array.dtype} (shape {array.shape}) cannot be used; accepted: {ACCEPTED_IMAGES}."
        )
    if converted.ndim == 2:
        converted = converted[:, :, None]
    if converted.shape[2] == 1:
        converted = np.repeat(converted, 3, axis=2)
    return np.ascontiguousarray(converted)


def _as_label_array(labels: np.ndarray) -> np.ndarray:
    return np.asarray(labels).reshape(-1)


def stratified_cap(labels: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    """Sorted int64 indices of at most ``cap`` samples, drawn per class, seed-fixed.

    Classes keep their share of the split (largest-remainder allocation) and every class
    keeps at least one sample when ``cap`` allows it, so a rare class never vanishes from a
    capped split. With ``cap`` below the number of classes, ``cap`` classes give one each.
    """
    labels = _as_label_array(labels)
    n = len(labels)
    if cap is None or cap >= n:
        return np.arange(n, dtype=np.int64)
    if cap < 1:
        raise ValueError(f"cap must be at least 1, got {cap}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    if cap < len(classes):
        chosen = rng.choice(len(classes), size=cap, replace=False)
        alloc = np.zeros(len(classes), dtype=np.int64)
        alloc[chosen] = 1
    else:
        quota = cap * counts / n
        alloc = np.minimum(np.maximum(np.floor(quota).astype(np.int64), 1), counts)
        while alloc.sum() > cap:  # the floor of 1 per class can overshoot: take from the biggest
            alloc[np.argmax(np.where(alloc > 1, alloc - quota, -np.inf))] -= 1
        while alloc.sum() < cap:
            alloc[np.argmax(np.where(alloc < counts, quota - alloc, -np.inf))] += 1
    picked = [rng.permutation(np.flatnonzero(labels == label))[:take] for label, take in zip(classes, alloc)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted fit and test indices, about ``test_fraction`` of each class in the test split.

    A class with at least two samples keeps one on each side; a single sample goes to fit.
    """
    labels = _as_label_array(labels)
    rng = np.random.default_rng(seed)
    fit: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(len(members) * test_fraction))
        n_test = min(max(n_test, 1), len(members) - 1) if len(members) >= 2 else 0
        test.append(members[:n_test])
        fit.append(members[n_test:])
    empty = np.zeros(0, dtype=np.int64)
    return (
        np.sort(np.concatenate(fit or [empty])).astype(np.int64),
        np.sort(np.concatenate(test or [empty])).astype(np.int64),
    )


def validate_labels(fit_labels: np.ndarray, test_labels: np.ndarray, class_names: Sequence[str], where: str) -> None:
    """Refuse labels a probe cannot be scored on; messages say what, where and how to fix."""
    k = len(class_names)
    if k < 2:
        raise DatasetError(f"{where}: {k} class name(s) {list(class_names)}; a probe needs at least 2 classes.")
    for split, labels in (("fit", fit_labels), ("test", test_labels)):
        labels = np.asarray(labels)
        if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
            raise DatasetError(
                f"{where}: {split} labels must be a 1-D integer array, got shape {labels.shape} "
                f"and dtype {labels.dtype}."
            )
        if labels.size == 0:
            raise DatasetError(
                f"{where}: the {split} split is empty. Add images to it (for MedMNIST, re-download the file)."
            )
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= k:
            raise DatasetError(
                f"{where}: {split} labels range over {low}..{high}, but there are {k} class names "
                f"(labels must lie in 0..{k - 1}). The class-name list does not match the labels."
            )
        present = np.unique(labels)
        if len(present) < 2:
            raise DatasetError(
                f"{where}: the {split} split holds only class {class_names[int(present[0])]!r} "
                f"({labels.size} sample{'s' if labels.size != 1 else ''}); a balanced accuracy needs "
                "at least 2 classes in each split. "
                f"Add images of other classes, or raise {mention('max_samples')}."
            )
