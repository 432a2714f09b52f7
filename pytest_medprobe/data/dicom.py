"""DICOM files as the 8-bit RGB image a radiologist's viewer would show.

The display pipeline of DICOM PS3.4 Annex N, done by pydicom's own functions:

1. decode the stored pixels (``pydicom.pixels.pixel_array``; a multi-frame file decodes only
   its middle frame, and the reader says so once per dataset);
2. grayscale: the modality LUT or Rescale Slope/Intercept (``apply_modality_lut``: stored
   values to Hounsfield units and the like), then the VOI LUT or Window Center/Width
   (``apply_voi_lut``), scaled to 0..255 over the output range the VOI transform defines;
   without a VOI transform, the image's own min..max. MONOCHROME1 (0 = white) is inverted,
   so bright means the same thing in every image;
3. colour: YBR is converted to RGB by the decoder, PALETTE COLOR through its lookup table,
   and samples wider than 8 bits are scaled by their stored bit depth.

Enhanced multi-frame files keep rescale and window per frame in functional groups; the
middle frame's values are used. A compressed transfer syntax needs a decoder package;
when none is installed the message names the packages pydicom itself lists for it.
pydicom is imported here only, on first use.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pytest_medprobe.data.base import to_rgb_uint8
from pytest_medprobe.data.decoded import DecodedImage
from pytest_medprobe.errors import DatasetError, MedprobeUsageError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pydicom.uid import UID

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Attributes of the VOI and modality LUT modules that enhanced multi-frame files keep per
# frame, in these functional-group sequences.
_FRAME_GROUPS = {
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept", "RescaleType"),
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction"),
}


def _missing_decoder(uid: UID) -> str | None:
    """What to install to decode ``uid``, or None when a decoder is available."""
    from pydicom.pixels import get_decoder

    try:
        if not uid.is_compressed:
            return None
    except ValueError:  # not a transfer syntax UID: decoding will say what is wrong
        return None
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"pydicom {_pydicom_version()} has no decoder for it at all; convert the files to an uncompressed syntax"
    if decoder.is_available:
        return None
    options = "; ".join(decoder.missing_dependencies)
    return (
        f"install one of the packages pydicom decodes it with ({options}), "
        "e.g. pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"
    )


def _other_decoders(uid: UID | None) -> str:
    """For a compressed file the installed decoder failed on: the decoders that may read it."""
    from pydicom.pixels import get_decoder

    try:
        missing = get_decoder(uid).missing_dependencies if uid is not None and uid.is_compressed else []
    except (NotImplementedError, ValueError):
        missing = []
    if missing:
        return f" Another decoder may read it: {'; '.join(missing)}; otherwise replace or remove the file."
    return " Replace or remove the file."


def _pydicom_version() -> str:
    import pydicom

    return str(pydicom.__version__)


def _undecodable(where: str, uid: UID, fix: str) -> MedprobeUsageError:
    return MedprobeUsageError(
        f"{where}: DICOM pixel data is compressed as {uid.name} ({uid}), and no installed package decodes it; {fix}."
    )


def check_decoders(paths: Sequence[Path]) -> None:
    """Refuse files whose transfer syntax cannot be decoded here; reads only their file-meta headers."""
    from pydicom.errors import InvalidDicomError
    from pydicom.filereader import read_file_meta_info

    seen: dict[str, str | None] = {}
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a non-conforming header is judged when read
                uid = read_file_meta_info(path).get("TransferSyntaxUID")
        except (OSError, InvalidDicomError, ValueError, EOFError):
            continue  # unreadable: read_dicom names the file when the dataset loads
        if uid is None:
            continue
        if uid not in seen:
            seen[uid] = _missing_decoder(uid)
        if seen[uid] is not None:
            raise _undecodable(str(path), uid, str(seen[uid]))


def _read_dataset(source: Path | io.BytesIO, where: str) -> Dataset:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        # From a file, large values (the pixel data) stay on disk until used: a multi-frame
        # volume is then decoded one frame at a time, straight from the file.
        return pydicom.dcmread(source, defer_size="1 MB" if isinstance(source, Path) else None)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise DatasetError(
            f"{where}: cannot read the DICOM file ({type(exc).__name__}: {exc}); it looks truncated or is not "
            "DICOM. Replace or remove the file."
        ) from None


def _deflated(uid: UID | None) -> bool:
    try:
        return uid is not None and bool(uid.is_deflated)
    except ValueError:  # not a transfer syntax UID
        return False


def _check_complete(ds: Dataset, path: Path, where: str) -> None:
    """Refuse a file cut short: its pixel data must end within the file, though only one frame is read."""
    for keyword in PIXEL_KEYWORDS:
        element = ds.get_item(keyword, keep_deferred=True) if keyword in ds else None
        start, length = getattr(element, "value_tell", None), getattr(element, "length", None)
        if start is None or length is None or length == 0xFFFFFFFF:  # not deferred, or encapsulated
            continue
        size = path.stat().st_size
        if start + length > size:
            raise DatasetError(
                f"{where}: the file is truncated: its pixel data should span bytes {start}..{start + length} but the "
                f"file ends at byte {size}. Copy it again or remove it."
            )


def _frame_view(ds: Dataset, frame: int) -> Dataset:
    """``ds`` with the rescale and window of ``frame`` at top level, where pydicom's LUT functions look.

    Plain files already keep them there; enhanced multi-frame files (CT/MR/XA) keep them in
    the shared or per-frame functional groups.
    """
    from pydicom.dataset import Dataset

    groups: list[Dataset] = []
    for sequence in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        items = ds.get(sequence)
        if items:
            groups.append(items[0] if sequence.startswith("Shared") else items[min(frame, len(items) - 1)])
    if not groups:
        return ds
    view = Dataset()
    view.update(ds)  # shallow: pixel data and other elements are shared, not copied
    for group in groups:  # per-frame values override the shared ones
        for sequence, keywords in _FRAME_GROUPS.items():
            items = group.get(sequence)
            if not items:
                continue
            for keyword in keywords:
                if keyword in items[0] and keyword not in ds:
                    setattr(view, keyword, items[0][keyword].value)
    return view


def _voi_range(ds: Dataset) -> tuple[float, float] | None:
    """The output range of the VOI transform ``apply_voi_lut`` applies to ``ds``, or None without one.

    A VOI LUT maps into 0..2**bits-1 (bits: its descriptor's third value); a window maps into
    the stored range after the modality transform (pydicom's ``apply_windowing`` rule).
    """
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    bits_stored = int(ds.BitsStored)
    if ds.get("ModalityLUTSequence"):
        low, high = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(ds.PixelRepresentation) == 0:
        low, high = 0.0, float(2**bits_stored - 1)
    else:
        low, high = float(-(2 ** (bits_stored - 1))), float(2 ** (bits_stored - 1) - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        low, high = sorted((low * slope + intercept, high * slope + intercept))
    return low, high


def _to_unit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    span = high - low
    if not np.isfinite(span) or span <= 0:
        return np.zeros(values.shape, dtype=np.float64)
    return np.clip((values.astype(np.float64) - low) / span, 0.0, 1.0)


def _grayscale(pixels: np.ndarray, ds: Dataset, where: str) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(pixels, ds)
    voi_range = _voi_range(ds)
    if voi_range is None:
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            raise DatasetError(f"{where}: DICOM pixel data holds no finite value. Replace or remove the file.")
        unit = _to_unit(values, float(finite.min()), float(finite.max()))
    else:
        if ds.get("VOILUTSequence") and not np.issubdtype(values.dtype, np.integer):
            values = np.rint(values).astype(np.int64)  # a VOI LUT is indexed by whole rescaled values
        unit = _to_unit(apply_voi_lut(values, ds), *voi_range)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        unit = 1.0 - unit  # MONOCHROME1: the lowest value is white
    return np.rint(unit * 255.0).astype(np.uint8)


def _colour(pixels: np.ndarray, ds: Dataset, where: str) -> np.ndarray:
    from pydicom.pixels import apply_color_lut

    if str(ds.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)  # uint8 or full-range uint16, as its LUT descriptor says
        return to_rgb_uint8(pixels if pixels.dtype in (np.uint8, np.uint16) else pixels.astype(np.uint16), where)
    bits = int(ds.get("BitsStored", pixels.dtype.itemsize * 8) or 8)
    if pixels.dtype == np.uint8 and bits <= 8:
        return np.ascontiguousarray(pixels)
    return np.rint(_to_unit(pixels, 0.0, float(2**bits - 1)) * 255.0).astype(np.uint8)


def read_dicom(source: Path | io.BytesIO, where: str) -> DecodedImage:
    """One DICOM file (or its bytes) as 8-bit RGB, following the display pipeline above."""
    from pydicom.pixels import pixel_array

    with warnings.catch_warnings():
        # pydicom warns about harmless departures from the standard (odd VRs, padding);
        # under ``-W error`` those would stop an audit that the image itself does not.
        warnings.simplefilter("ignore")
        ds = _read_dataset(source, where)
        if not any(keyword in ds for keyword in PIXEL_KEYWORDS):
            kind = ds.get("SOPClassUID")
            what = f" (a {kind.name})" if kind is not None and hasattr(kind, "name") else ""
            raise DatasetError(
                f"{where}: DICOM file holds no pixel data{what}; only images can be audited. "
                "Remove it from the dataset."
            )
        uid = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
        if uid is not None:
            fix = _missing_decoder(uid)
            if fix is not None:
                raise _undecodable(where, uid, fix)
        if isinstance(source, Path) and not _deflated(uid):  # a deflated file's offsets are not file positions
            _check_complete(ds, source, where)
        try:
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            frame = frames // 2
            if frames > 1 and isinstance(source, Path):
                pixels = pixel_array(source, index=frame)  # reads only that frame's bytes
            else:
                pixels = pixel_array(ds, index=frame) if frames > 1 else pixel_array(ds)
        except (ValueError, RuntimeError, AttributeError, NotImplementedError, KeyError, TypeError, OSError) as exc:
            raise DatasetError(
                f"{where}: cannot decode the DICOM pixel data ({type(exc).__name__}: {exc}).{_other_decoders(uid)}"
            ) from None
        if pixels.dtype.byteorder == ">":
            pixels = pixels.astype(pixels.dtype.newbyteorder("="))
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        view = _frame_view(ds, frame)
        try:
            if samples == 1 and str(ds.get("PhotometricInterpretation", "")).strip() != "PALETTE COLOR":
                rgb = _grayscale(pixels, view, where)
            else:
                rgb = _colour(pixels, view, where)
        except (ValueError, AttributeError, KeyError, NotImplementedError, IndexError, TypeError) as exc:
            raise DatasetError(
                f"{where}: cannot apply the DICOM display transforms ({type(exc).__name__}: {exc}). "
                "Check its rescale, window and LUT attributes."
            ) from None
    return DecodedImage(to_rgb_uint8(rgb, where), frames=frames, frame=frame)
