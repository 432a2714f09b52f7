"""``medmnist:<flag>[_<size>]``: MedMNIST ``.npz`` files, on disk or downloaded when missing.

Owns the table of the 2D flags (official class names, ordered by label index, and the
modality word for the prompt; the findings of the multi-label chestmnist), the parsing of
the spec, the up-front check that the file is there (fetching a missing one from the
official record or a mirror, checked against the published MD5 of ``medmnist_files``), and
the reading of a file: train -> fit split, test -> test split (val unused, as in metrics.md
§2); a chestmnist file is read as the binary task of one finding. Files are opened with
``allow_pickle=False``: an ``.npz`` is data, never code.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pytest_medprobe.data.base import (
    FINDING_CLASSES,
    ProbeDataset,
    as_image_sequence,
    compute_fingerprint,
    finding_task,
    stratified_cap,
)
from pytest_medprobe.errors import DatasetError, MedprobeUsageError
from pytest_medprobe.files import content_sha256
from pytest_medprobe.naming import mention

PREFIX = "medmnist:"
SIZES = (28, 64, 128, 224)  # 28 is the file without a suffix
DEFAULT_ROOT = Path("~/.medmnist")
ZENODO = "https://zenodo.org/records/10519652"

_ORGANS = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
           "lung-left", "lung-right", "pancreas", "spleen")  # fmt: skip


@dataclass(frozen=True)
class Flag:
    """One 2D MedMNIST flag: its classes as the official INFO names them, and its modality."""

    class_names: tuple[str, ...]
    modality: str
    python_class: str  # the medmnist package's dataset class, for the download hint
    multi_label: bool = False


FLAGS: dict[str, Flag] = {
    "pathmnist": Flag(("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                       "normal colon mucosa", "cancer-associated stroma",
                       "colorectal adenocarcinoma epithelium"), "histopathology", "PathMNIST"),
    "chestmnist": Flag(("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule",
                        "pneumonia", "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis",
                        "pleural", "hernia"), "chest X-ray", "ChestMNIST", multi_label=True),
    "dermamnist": Flag(("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                        "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
                        "vascular lesions"), "dermatoscopy", "DermaMNIST"),
    "octmnist": Flag(("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
                     "retinal OCT", "OCTMNIST"),
    "pneumoniamnist": Flag(("normal", "pneumonia"), "chest X-ray", "PneumoniaMNIST"),
    # Officially named "0".."4"; "grade k" keeps the prompt's options readable.
    "retinamnist": Flag(tuple(f"grade {k}" for k in range(5)), "fundus photograph", "RetinaMNIST"),
    "breastmnist": Flag(("malignant", "normal, benign"), "breast ultrasound", "BreastMNIST"),
    "bloodmnist": Flag(("basophil", "eosinophil", "erythroblast",
                        "immature granulocytes (myelocytes, metamyelocytes and promyelocytes)",
                        "lymphocyte", "monocyte", "neutrophil", "platelet"),
                       "blood cell microscopy", "BloodMNIST"),
    "tissuemnist": Flag(("collecting duct, connecting tubule", "distal convoluted tubule",
                         "glomerular endothelial cells", "interstitial endothelial cells", "leukocytes",
                         "podocytes", "proximal tubule segments", "thick ascending limb"),
                        "kidney cortex microscopy", "TissueMNIST"),
    "organamnist": Flag(_ORGANS, "abdominal CT", "OrganAMNIST"),
    "organcmnist": Flag(_ORGANS, "abdominal CT", "OrganCMNIST"),
    "organsmnist": Flag(_ORGANS, "abdominal CT", "OrganSMNIST"),
}  # fmt: skip
FLAGS_3D = ("organmnist3d", "nodulemnist3d", "adrenalmnist3d", "fracturemnist3d", "vesselmnist3d", "synapsemnist3d")
# What a damaged file raises somewhere inside numpy, zipfile or zlib.
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)
MULTI_CLASS_FLAGS = tuple(name for name, flag in FLAGS.items() if not flag.multi_label)


@dataclass(frozen=True)
class MedmnistSpec:
    flag: str
    size: int

    @property
    def file_name(self) -> str:
        return f"{self.flag}.npz" if self.size == 28 else f"{self.flag}_{self.size}.npz"

    @property
    def short_name(self) -> str:
        return self.file_name.removesuffix(".npz")


def parse_spec(spec: str) -> MedmnistSpec:
    """``medmnist:breastmnist_64`` -> flag and size; refuses unknown flags, sizes, multi-label."""
    body = spec.removeprefix(PREFIX).strip().lower()
    flag, _, suffix = body.partition("_")
    if flag in FLAGS_3D:
        raise MedprobeUsageError(
            f"dataset {spec!r}: {flag} is a 3D MedMNIST flag; 3D volumes are out of scope for 2D image "
            f"models. Use one of the 2D flags: {', '.join(FLAGS)}."
        )
    if flag not in FLAGS:
        raise MedprobeUsageError(f"dataset {spec!r}: unknown MedMNIST flag {flag!r}; known flags: {', '.join(FLAGS)}.")
    sizes = "28 (no suffix), " + ", ".join(str(size) for size in SIZES[1:])
    if suffix and not (suffix.isdigit() and int(suffix) in SIZES):
        raise MedprobeUsageError(f"dataset {spec!r}: unknown MedMNIST size {suffix!r}; sizes: {sizes}.")
    return MedmnistSpec(flag, int(suffix) if suffix else 28)


def findings_of(spec: str) -> tuple[str, ...] | None:
    """The findings of a multi-label flag (chestmnist), in label-column order; None for the others."""
    flag = FLAGS[parse_spec(spec).flag]
    return flag.class_names if flag.multi_label else None


def file_path(parsed: MedmnistSpec, data_root: Path | None) -> Path:
    return (data_root if data_root is not None else DEFAULT_ROOT).expanduser() / parsed.file_name


def check_spec(spec: str, data_root: Path | None, download_from: str | None = None, progress: bool = True) -> None:
    """Up-front check: a known flag and size, and the file where we will look for it.

    A missing file is downloaded from ``download_from`` (a base URL; None: never) into that
    place; when the server cannot be reached, the message says how to fetch it by hand.
    """
    parsed = parse_spec(spec)
    path = file_path(parsed, data_root)
    if path.is_file():
        return
    tried = ""
    if download_from is not None:
        from pytest_medprobe.data.download import Unreachable, download
        from pytest_medprobe.data.medmnist_files import MD5

        url = f"{download_from}/{parsed.file_name}"
        try:
            download(url, path, MD5[parsed.flag][parsed.size], progress=progress)
            return
        except Unreachable as exc:
            tried = f" Downloading it failed: {exc}; {mention('medmnist_url')}=<mirror> fetches from a mirror."
        except DatasetError as exc:
            raise MedprobeUsageError(f"dataset {spec!r}: downloading {parsed.file_name} failed: {exc}") from None
        except OSError as exc:  # the data folder cannot be written (read-only, full, not ours)
            raise MedprobeUsageError(
                f"dataset {spec!r}: cannot download {parsed.file_name} into {path.parent} ({exc}). Point "
                f"{mention('data_root')} at a writable folder, or put the file there by hand (from {url})."
            ) from None
    flag = FLAGS[parsed.flag]
    root = path.parent
    raise MedprobeUsageError(
        f"dataset {spec!r}: no MedMNIST file at {path} (expected file name: {parsed.file_name}).{tried} "
        f"Point {mention('data_root')} at the folder that holds {parsed.file_name}, or download it there: "
        f'pip install medmnist && python -c "import medmnist; medmnist.{flag.python_class}('
        f"split='test', download=True, size={parsed.size}, root='{root}')\" "
        f"(or fetch {parsed.file_name} from {ZENODO})."
    )


def _check_declared_size(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> None:
    """Refuse an array whose ``.npy`` header claims more bytes than the file holds, before reading it.

    numpy allocates what the header says: a damaged or hostile header claiming 10^11 rows
    would ask for terabytes. An honest member holds its header plus every element.
    """
    assert archive.zip is not None  # open while the ``with np.load`` block runs
    info = archive.zip.getinfo(f"{key}.npy")
    with archive.zip.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in header:
            return  # numpy's own reader decides about other versions
        shape, _, dtype = header[version](stream)
        declared = stream.tell() + math.prod(int(n) for n in shape) * dtype.itemsize
    if declared > info.file_size:
        raise DatasetError(
            f"{path}: {key!r} claims shape {tuple(shape)} ({declared} bytes), but the file holds "
            f"{info.file_size} bytes for it; the file is damaged. Re-download it."
        )


def _labels(archive: np.lib.npyio.NpzFile, key: str, path: Path, flag: str, finding: str | None) -> np.ndarray:
    """Class indices ``[N]``; of a multi-label flag, the 0/1 column of ``finding``."""
    _check_declared_size(archive, key, path)
    labels = np.asarray(archive[key])
    findings = FLAGS[flag].class_names
    if FLAGS[flag].multi_label:
        if labels.ndim != 2 or labels.shape[1] != len(findings) or not np.isin(labels, (0, 1)).all():
            raise DatasetError(
                f"{path}: {key!r} has shape {labels.shape}; expected 0/1 labels of shape (N, {len(findings)}), "
                f"one column per finding, as in the official {flag} file. Re-download the file."
            )
        if finding is None:  # check_spec refuses this first; a notebook caller may not have
            raise DatasetError(f"{path}: {flag} is multi-label; choose one finding of {', '.join(findings)}.")
        return labels[:, findings.index(finding)].astype(np.int64)
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise DatasetError(
            f"{path}: {key!r} has shape {labels.shape}, i.e. several labels per image (multi-label), but "
            f"{flag} has one label per image. Re-download the file."
        )
    if labels.ndim not in (1, 2) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(
            f"{path}: {key!r} has shape {labels.shape} and dtype {labels.dtype}; expected integer class "
            f"indices of shape (N, 1) as in the official {flag} file. Re-download the file."
        )
    return labels.reshape(-1).astype(np.int64)


def _count_mismatch(path: Path, key: str, n_images: int, n_labels: int) -> DatasetError:
    return DatasetError(
        f"{path}: {key!r} holds {n_images} images but the labels count {n_labels}; every image needs "
        "exactly one label. Re-download the file."
    )


def _read_rows(archive: np.lib.npyio.NpzFile, key: str, rows: np.ndarray, n_all: int, path: Path) -> np.ndarray:
    """``archive[key][rows]`` without loading the whole array when only some rows are needed.

    A 224-pixel train split can take several GiB; a capped audit needs a few hundred images.
    Rows are read by seeking in the ``.npy`` member (sorted rows, so only forward seeks).
    """
    assert archive.zip is not None  # open while the ``with np.load`` block runs
    with archive.zip.open(f"{key}.npy") as stream:
        version = np.lib.format.read_magic(stream)
        header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        shape, fortran_order, dtype = header[version](stream) if version in header else ((), True, None)
        if fortran_order or dtype is None or dtype.hasobject or len(shape) < 1:
            whole = np.asarray(archive[key])  # unusual layout: let numpy read it
            if len(whole) != n_all:
                raise _count_mismatch(path, key, len(whole), n_all)
            return whole[rows]
        if shape[0] != n_all:
            raise _count_mismatch(path, key, shape[0], n_all)
        start, row_bytes = stream.tell(), int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        out = np.empty((len(rows), *shape[1:]), dtype=dtype)
        for position, row in enumerate(rows):
            stream.seek(start + int(row) * row_bytes)
            out[position] = np.frombuffer(stream.read(row_bytes), dtype=dtype).reshape(shape[1:])
        while stream.read(1 << 20):  # read to the end: zipfile checks the CRC only there
            pass
        return out


def _images(archive: np.lib.npyio.NpzFile, key: str, rows: np.ndarray, n_all: int, path: Path) -> np.ndarray:
    _check_declared_size(archive, key, path)
    if len(rows) == n_all:
        images = np.asarray(archive[key])
        if len(images) != n_all:
            raise _count_mismatch(path, key, len(images), n_all)
    else:
        images = _read_rows(archive, key, rows, n_all, path)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3)):
        raise DatasetError(
            f"{path}: {key!r} has shape {images.shape} and dtype {images.dtype}; expected uint8 images of "
            "shape (N, H, W) or (N, H, W, 3) as in the official MedMNIST files. Re-download the file."
        )
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise DatasetError(
            f"{path}: {key!r} holds images of {images.shape[1]}×{images.shape[2]} pixels; an image needs at "
            "least one pixel. Re-download the file."
        )
    if images.ndim == 3:
        images = images[..., None]
    return np.ascontiguousarray(np.broadcast_to(images, (*images.shape[:3], 3)))


def _corrupt(path: Path, what: str, exc: BaseException, file_name: str) -> DatasetError:
    return DatasetError(
        f"{path}: cannot read {what} ({type(exc).__name__}: {exc}); the file looks truncated or corrupt. "
        f"Re-download {file_name}."
    )


def _read_split(
    archive: np.lib.npyio.NpzFile,
    split: str,
    path: Path,
    parsed: MedmnistSpec,
    max_samples: int | None,
    seed: int,
    finding: str | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, labels and the selected row indices of one split of the file."""
    for key in (f"{split}_images", f"{split}_labels"):
        if key not in archive.files:
            raise DatasetError(
                f"{path}: no array {key!r} in the file (it holds {sorted(archive.files)}); "
                "expected the official MedMNIST layout. Re-download the file."
            )
    key = f"{split}_labels"
    try:
        labels = _labels(archive, key, path, parsed.flag, finding)
        rows = stratified_cap(labels, max_samples, seed)
        key = f"{split}_images"
        images = _images(archive, key, rows, len(labels), path)
    except _READ_ERRORS as exc:
        raise _corrupt(path, repr(key), exc, parsed.file_name) from None
    return images, labels[rows], rows


def load_medmnist(
    spec: str,
    data_root: Path | None,
    max_samples: int | None,
    seed: int,
    finding: str | None = None,
    hash_memo: Path | None = None,
) -> ProbeDataset:
    """Read the file of ``spec``; each split capped to ``max_samples`` (stratified, seed-fixed).

    A multi-label flag (chestmnist) is read as the binary task of one ``finding``.
    """
    check_spec(spec, data_root)
    parsed = parse_spec(spec)
    flag = FLAGS[parsed.flag]
    path = file_path(parsed, data_root).resolve()
    try:
        # Our own handle: np.load leaks the one it opens when the zip directory is unreadable.
        handle = path.open("rb")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot open the file ({exc}). Check its permissions.") from None
    with handle:
        try:
            loaded = np.load(handle, allow_pickle=False)
        except _READ_ERRORS as exc:
            raise _corrupt(path, "the archive", exc, parsed.file_name) from None
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DatasetError(f"{path}: holds a single array, not an .npz archive. Re-download {parsed.file_name}.")
        with loaded as archive:
            fit = _read_split(archive, "train", path, parsed, max_samples, seed, finding)
            test = _read_split(archive, "test", path, parsed, max_samples, seed, finding)
    # Content only: the same file under another path or time is the same data.
    identity = {"dataset": "medmnist", "flag": parsed.flag, "size": parsed.size,
                "sha256": content_sha256(path, hash_memo)}  # fmt: skip
    if finding is not None:
        identity["finding"] = finding
    return ProbeDataset(
        name=finding_task(spec, finding),
        class_names=FINDING_CLASSES if flag.multi_label else flag.class_names,
        modality=flag.modality,
        fit_images=as_image_sequence(fit[0]),
        fit_labels=fit[1],
        test_images=as_image_sequence(test[0]),
        test_labels=test[1],
        source=str(path),
        fingerprint=compute_fingerprint(identity, fit[2], test[2]),
        finding=finding if flag.multi_label else None,
    )
