"""DICOM images read as a viewer shows them, on the real files pydicom ships for its own tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.pixels import get_decoder, pixel_array  # noqa: E402

from pytest_medprobe.data import check_dataset_spec, load_dataset  # noqa: E402
from pytest_medprobe.data.images import decode_image, is_image_file, read_image  # noqa: E402
from pytest_medprobe.errors import DatasetError, MedprobeUsageError  # noqa: E402


def shipped(name: str) -> Path:
    """A DICOM file from pydicom's own test data (read-only: copy before changing it)."""
    return Path(get_testdata_file(name))


def _modified_copy(name: str, target: Path, **changes: object) -> Path:
    ds = pydicom.dcmread(shipped(name))
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(target)
    return target


def _gray(image: np.ndarray) -> np.ndarray:
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert (image[:, :, 0] == image[:, :, 1]).all() and (image[:, :, 1] == image[:, :, 2]).all()
    return image[:, :, 0].astype(np.int64)


def test_ct_values_are_rescaled_to_hounsfield_units_before_the_window(tmp_path: Path) -> None:
    # CT_small stores HU + 1024 (intercept -1024). A soft-tissue window (40/400 HU) is only
    # right when the intercept is applied first: on the stored values it would be all white.
    stored = pixel_array(pydicom.dcmread(shipped("CT_small.dcm"))).astype(np.int64)
    hu = stored - 1024
    windowed = _gray(read_image(_modified_copy("CT_small.dcm", tmp_path / "ct.dcm", WindowCenter=40, WindowWidth=400)))
    assert (windowed[hu <= 40 - 0.5 - 399 / 2] == 0).all()  # DICOM's LINEAR window, PS3.3 C.11.2.1.2.1
    assert (windowed[hu > 40 - 0.5 + 399 / 2] == 255).all()
    inside = (hu > -150) & (hu < 230)
    assert inside.any()
    expected = np.rint(((hu[inside] - 39.5) / 399 + 0.5) * 255)
    assert np.abs(windowed[inside] - expected).max() <= 1


def test_without_a_window_the_rescaled_range_is_stretched_to_0_255_in_order() -> None:
    stored = pixel_array(pydicom.dcmread(shipped("CT_small.dcm"))).astype(np.int64)
    gray = _gray(read_image(shipped("CT_small.dcm")))
    assert gray[stored == stored.min()].max() == 0 and gray[stored == stored.max()].min() == 255
    order = np.argsort(stored, axis=None, kind="stable")
    assert (np.diff(gray.reshape(-1)[order]) >= 0).all()  # brighter in the file, brighter here


def test_the_mr_window_centre_and_width_of_the_file_are_applied() -> None:
    ds = pydicom.dcmread(shipped("MR_small.dcm"))
    centre, width = float(ds.WindowCenter), float(ds.WindowWidth)
    stored = pixel_array(ds).astype(np.float64)
    expected = np.rint(np.clip((stored - (centre - 0.5)) / (width - 1) + 0.5, 0, 1) * 255)
    assert np.abs(_gray(read_image(shipped("MR_small.dcm"))) - expected).max() <= 1


def test_every_encoding_of_the_same_mr_image_reads_identically() -> None:
    reference = read_image(shipped("MR_small.dcm"))
    for name in ("MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_jp2klossless.dcm"):
        assert np.array_equal(read_image(shipped(name)), reference), name


def test_a_voi_lut_sequence_is_used_in_place_of_the_window(tmp_path: Path) -> None:
    ds = pydicom.dcmread(shipped("MR_small.dcm"))
    stored = pixel_array(ds).astype(np.int64)
    lut = Dataset()
    lut.add_new(0x00283002, "US", [1024, 0, 16])  # LUT Descriptor: 1024 entries from 0, 16-bit output
    lut.add_new(0x00283006, "US", [min(65535, 3 * value * 64) for value in range(1024)])  # LUT Data: a ramp
    ds.VOILUTSequence = [lut]
    del ds.WindowCenter, ds.WindowWidth
    ds.save_as(tmp_path / "voi.dcm")
    expected = np.rint(np.minimum(65535, 3 * np.minimum(stored, 1023) * 64) / 65535 * 255)
    assert np.abs(_gray(read_image(tmp_path / "voi.dcm")) - expected).max() <= 1


def test_monochrome1_is_inverted_so_bright_means_the_same_in_every_image(tmp_path: Path) -> None:
    normal = _gray(read_image(shipped("CT_small.dcm")))
    inverted = _gray(
        read_image(_modified_copy("CT_small.dcm", tmp_path / "m1.dcm", PhotometricInterpretation="MONOCHROME1"))
    )
    assert np.abs(inverted - (255 - normal)).max() <= 1
    assert inverted.mean() > 128 > normal.mean()


def test_enhanced_files_take_rescale_and_window_from_their_functional_groups(tmp_path: Path) -> None:
    plain = read_image(_modified_copy("CT_small.dcm", tmp_path / "plain.dcm", WindowCenter=40, WindowWidth=400))
    ds = pydicom.dcmread(shipped("CT_small.dcm"))
    transform, window, shared = Dataset(), Dataset(), Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = ds.RescaleSlope, ds.RescaleIntercept
    window.WindowCenter, window.WindowWidth = 40, 400
    shared.PixelValueTransformationSequence = [transform]
    shared.FrameVOILUTSequence = [window]
    ds.SharedFunctionalGroupsSequence = [shared]
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.save_as(tmp_path / "enhanced.dcm")
    assert np.array_equal(read_image(tmp_path / "enhanced.dcm"), plain)


def test_a_multi_frame_file_gives_its_middle_frame_and_says_which() -> None:
    path = shipped("examples_ybr_color.dcm")  # 30 frames, JPEG baseline, YBR
    decoded = decode_image(path)
    assert (decoded.frames, decoded.frame) == (30, 15)
    assert np.array_equal(decoded.pixels, pixel_array(path, index=15))


def test_colour_files_keep_their_colours_and_wide_samples_are_scaled_to_8_bits() -> None:
    rgb = read_image(shipped("examples_rgb_color.dcm"))
    assert np.array_equal(rgb, pixel_array(shipped("examples_rgb_color.dcm")))
    eight, sixteen = read_image(shipped("SC_rgb_rle.dcm")), read_image(shipped("SC_rgb_rle_16bit.dcm"))
    assert np.abs(eight.astype(int) - sixteen.astype(int)).max() <= 1
    jpeg = read_image(shipped("SC_rgb_jpeg_dcmtk.dcm"))  # the same picture, lossy JPEG in YBR
    assert jpeg.shape == eight.shape and np.abs(jpeg.astype(int) - eight.astype(int)).mean() < 3
    palette = read_image(shipped("examples_palette.dcm"))
    assert palette.shape == (350, 800, 3) and not np.array_equal(palette[:, :, 0], palette[:, :, 2])


def test_extension_less_dicom_is_recognised_by_its_preamble_and_other_files_are_not(tmp_path: Path) -> None:
    shutil.copy(shipped("CT_small.dcm"), tmp_path / "IM000001")
    shutil.copy(shipped("MR_small.dcm"), tmp_path / "1.2.840.113619.2.55.3")  # a UID-named PACS export
    (tmp_path / "notes").write_text("not an image")
    shutil.copy(shipped("CT_small.dcm"), tmp_path / "DICOMDIR")  # an index name is never an image
    assert is_image_file(tmp_path / "IM000001") and is_image_file(tmp_path / "1.2.840.113619.2.55.3")
    assert not is_image_file(tmp_path / "notes") and not is_image_file(tmp_path / "DICOMDIR")
    assert np.array_equal(read_image(tmp_path / "IM000001"), read_image(shipped("CT_small.dcm")))


def test_a_dicom_file_without_pixel_data_is_named_in_one_clear_line() -> None:
    path = shipped("rtplan.dcm")
    with pytest.raises(DatasetError) as caught:
        read_image(path)
    assert str(caught.value) == (
        f"{path}: DICOM file holds no pixel data (a RT Plan Storage); only images can be audited. "
        "Remove it from the dataset."
    )


def test_a_truncated_dicom_file_is_a_dataset_error_naming_it() -> None:
    path = shipped("MR_truncated.dcm")
    with pytest.raises(DatasetError, match=r"the file is truncated: its pixel data should span bytes 1500\.\.9692"):
        read_image(path)


def test_a_compression_without_an_installed_decoder_names_the_packages_to_install() -> None:
    path = shipped("MR_small_jpeg_ls_lossless.dcm")
    uid = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if get_decoder(uid).is_available:
        pytest.skip("a JPEG-LS decoder is installed here; the message is for machines without one")
    with pytest.raises(MedprobeUsageError) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: DICOM pixel data is compressed as JPEG-LS Lossless Image Compression")
    assert "pylibjpeg-libjpeg" in message and "pip install" in message


def _dicom_folder(root: Path) -> None:
    for label, names in {
        "ct": ("CT_small.dcm", "693_J2KI.dcm", "liver_1frame.dcm", "examples_ybr_color.dcm"),
        "mr": ("MR_small.dcm", "MR_small_RLE.dcm", "MR_small_implicit.dcm", "MR_small_jp2klossless.dcm"),
    }.items():
        (root / label).mkdir(parents=True)
        for name in names:
            shutil.copy(shipped(name), root / label / name)


def test_a_folder_of_dicom_files_loads_with_one_note_for_its_multi_frame_file(tmp_path: Path) -> None:
    _dicom_folder(tmp_path)
    shutil.move(tmp_path / "mr" / "MR_small.dcm", tmp_path / "mr" / "IM0001")  # no suffix
    dataset = load_dataset(f"folder:{tmp_path}", data_root=None, max_samples=None, seed=0)
    assert dataset.n_fit + dataset.n_test == 8
    assert all(image.dtype == np.uint8 and image.shape[2] == 3 for image in [*dataset.fit_images, *dataset.test_images])
    assert len(dataset.notes) == 1 and "1 multi-frame DICOM file: the middle frame" in dataset.notes[0]
    assert "examples_ybr_color.dcm: frame 16 of 30" in dataset.notes[0]


def test_a_folder_with_an_undecodable_compression_is_refused_before_the_run(tmp_path: Path) -> None:
    _dicom_folder(tmp_path)
    path = tmp_path / "mr" / "MR_small_jpeg_ls_lossless.dcm"
    shutil.copy(shipped(path.name), path)
    if get_decoder(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    with pytest.raises(MedprobeUsageError) as caught:
        check_dataset_spec(f"folder:{tmp_path}", None)
    assert str(caught.value).startswith(f"dataset 'folder:{tmp_path}': {path}: DICOM pixel data is compressed")


def test_a_truncated_multi_frame_file_is_refused_though_its_middle_frame_is_intact(tmp_path: Path) -> None:
    ds = pydicom.dcmread(shipped("CT_small.dcm"))
    ds.NumberOfFrames, ds.Rows, ds.Columns = 8, 512, 512  # 4 MiB of pixel data: read lazily, frame by frame
    ds.PixelData = np.zeros((8, 512, 512), dtype=np.int16).tobytes()
    path = tmp_path / "volume.dcm"
    ds.save_as(path)
    path.write_bytes(path.read_bytes()[:-100_000])  # the last frame is cut short
    with pytest.raises(DatasetError, match="the file is truncated: its pixel data should span bytes"):
        read_image(path)
