"""Reading one image file, whatever its format, as the ``[H, W, 3]`` uint8 array a model sees.

The one place every dataset reader (folder, CSV manifest, Hugging Face dataset) decodes
images: PNG/JPEG/TIFF/BMP through PIL, DICOM through ``data.dicom``. A DICOM file is known by
its suffix (``.dcm``, ``.dicom``) or, for the extension-less files hospital PACS exports
write (``IM000001``, ``1.2.840.113619.2...``), by the ``DICM`` marker after the 128-byte
preamble (DICOM PS3.10 §7.1). Readers that read many files use ``read_images``, which also
says, once, what was done to multi-frame files.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pytest_medprobe.data.base import to_rgb_uint8
from pytest_medprobe.data.decoded import DecodedImage
from pytest_medprobe.errors import DatasetError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = PIL_SUFFIXES + DICOM_SUFFIXES
DICOM_PREAMBLE = 128  # bytes before the "DICM" marker of a DICOM Part 10 file
DICOM_MAGIC = b"DICM"
# A DICOMDIR is the index of a DICOM medium: it holds no image and is skipped when scanning.
DICOMDIR = "DICOMDIR"


def has_dicom_marker(head: bytes) -> bool:
    """Whether the first bytes of a file are a DICOM Part 10 preamble followed by ``DICM``."""
    return head[DICOM_PREAMBLE : DICOM_PREAMBLE + len(DICOM_MAGIC)] == DICOM_MAGIC


def is_dicom_file(path: Path) -> bool:
    """A ``.dcm``/``.dicom`` file, or any file whose bytes 128-131 read ``DICM``."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as stream:
            return has_dicom_marker(stream.read(DICOM_PREAMBLE + len(DICOM_MAGIC)))
    except OSError:
        return False


def is_image_file(path: Path) -> bool:
    """Whether a folder scan should take ``path`` as an image: a known suffix, else a DICOM marker.

    Files that are neither (notes, spreadsheets) are left out, as before; hidden files and
    DICOMDIR indexes too.
    """
    if path.name.startswith(".") or path.name.upper() == DICOMDIR or not path.is_file():
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES or is_dicom_file(path)


def pil_to_array(image: PILImage, where: str) -> np.ndarray:
    """A decoded PIL image as ``[H, W, 3]`` uint8; 16-bit, palette, alpha and CMYK are converted."""
    if image.mode in ("1", "L", "RGB", "RGBA", "F") or image.mode.startswith("I;16"):
        array = np.asarray(image)
    elif image.mode == "I":  # 16-bit PNG/TIFF on some Pillow versions: int32 values
        array = np.asarray(image)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise DatasetError(
                f"{where}: 32-bit integer image with values {array.min()}..{array.max()} outside the "
                "16-bit range; save it as 8- or 16-bit."
            )
        array = array.astype(np.uint16)
    else:  # palette, LA, CMYK, YCbCr, ...: let PIL map them to RGB(A)
        array = np.asarray(image.convert("RGBA" if "A" in image.mode or image.mode == "P" else "RGB"))
    if array.dtype.byteorder == ">":  # "I;16B": big-endian words
        array = array.astype(array.dtype.newbyteorder("="))
    return to_rgb_uint8(array, where)


def _read_pil(source: Path | io.BytesIO, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as image:
            image.load()  # decode now, so a truncated file fails here with its name
            return pil_to_array(image, where)
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{where}: cannot read the image ({exc}). Replace or remove the file.") from None


def decode_image(path: Path) -> DecodedImage:
    """One image file (PIL formats or DICOM), decoded, with what was done to multi-frame files."""
    if is_dicom_file(path):
        from pytest_medprobe.data.dicom import read_dicom

        return read_dicom(path, str(path))
    return DecodedImage(_read_pil(path, str(path)))


def decode_image_bytes(data: bytes, where: str) -> DecodedImage:
    """An encoded image held in memory (a Hugging Face ``Image`` cell), as ``decode_image`` reads files."""
    if has_dicom_marker(data[: DICOM_PREAMBLE + len(DICOM_MAGIC)]):
        from pytest_medprobe.data.dicom import read_dicom

        return read_dicom(io.BytesIO(data), where)
    return DecodedImage(_read_pil(io.BytesIO(data), where))


def read_image(path: Path) -> np.ndarray:
    """One image file as ``[H, W, 3]`` uint8: PNG, JPEG, TIFF, BMP or DICOM (see ``data.dicom``)."""
    return decode_image(path).pixels


def multi_frame_note(decoded: Sequence[tuple[str, DecodedImage]]) -> tuple[str, ...]:
    """One sentence saying that multi-frame files were reduced to their middle frame, or nothing."""
    multi = [(where, image) for where, image in decoded if image.frames > 1]
    if not multi:
        return ()
    where, example = multi[0]
    return (
        f"{len(multi)} multi-frame DICOM file{'s' if len(multi) != 1 else ''}: the middle frame of each "
        f"was audited (e.g. {where}: frame {example.frame + 1} of {example.frames}).",
    )


def read_images(paths: Sequence[Path]) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """Every file of ``paths`` as ``[H, W, 3]`` uint8, and the notes a report should show once."""
    decoded = [(str(path), decode_image(path)) for path in paths]
    return [image.pixels for _, image in decoded], multi_frame_note(decoded)


def check_decodable(paths: Sequence[Path]) -> None:
    """Refuse, before anything loads, DICOM files whose compression no installed package decodes."""
    dicom_files = [path for path in paths if is_dicom_file(path)]
    if dicom_files:
        from pytest_medprobe.data.dicom import check_decoders

        check_decoders(dicom_files)
