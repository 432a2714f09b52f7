"""Real DICOM files (pydicom's own test data) audited end to end: a folder of them, and a CSV listing them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402

# CT, MR in five encodings (RLE, JPEG 2000, implicit VR, extension-less), a 30-frame
# ultrasound clip in JPEG YBR, RGB and a MONOCHROME1 radiograph written from a CT file.
CLASSES = {
    "ct_or_ultrasound": ("CT_small.dcm", "693_J2KI.dcm", "liver_1frame.dcm", "examples_ybr_color.dcm"),
    "mr": ("MR_small.dcm", "MR_small_RLE.dcm", "MR_small_implicit.dcm", "MR_small_jp2klossless.dcm"),
}
IMAGE_CHECK = """
import numpy as np


def test_every_image_reaches_the_model_as_rgb_uint8(probe_dataset):
    images = [*probe_dataset.fit_images, *probe_dataset.test_images]
    assert len(images) == 10
    assert all(np.asarray(image).dtype == np.uint8 and np.asarray(image).shape[2:] == (3,) for image in images)
"""


def _dicom_folder(root: Path) -> Path:
    for label, names in CLASSES.items():
        (root / label).mkdir(parents=True)
        for name in names:
            shutil.copy(get_testdata_file(name), root / label / name)
    shutil.move(root / "mr" / "MR_small.dcm", root / "mr" / "IM000001")  # a PACS export without a suffix
    monochrome1 = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    monochrome1.PhotometricInterpretation = "MONOCHROME1"
    monochrome1.save_as(root / "ct_or_ultrasound" / "radiograph_m1.dcm")
    shutil.copy(get_testdata_file("SC_rgb_rle.dcm"), root / "mr" / "colour.dcm")
    return root


def test_a_dicom_folder_is_audited_end_to_end_by_the_shipped_audits(
    shipped_audits: pytest.Pytester, fast_options: list[str]
) -> None:
    root = _dicom_folder(shipped_audits.path / "dicom")
    shipped_audits.makepyfile(test_images=IMAGE_CHECK)
    result = shipped_audits.runpytest(
        f"--dataset=folder:{root}", "--medprobe-json=r.json", "-v", "-W", "error", *fast_options
    )  # a hostile user: every warning is an error
    outcomes = result.parseoutcomes()
    assert "errors" not in outcomes and "error" not in outcomes, result.stdout.str()
    result.stdout.fnmatch_lines(["*test_every_image_reaches_the_model_as_rgb_uint8*PASSED*"])
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 6  # 5 verdict audits + the image check
    run = json.loads((shipped_audits.path / "r.json").read_text())["runs"][0]
    assert run["dataset"]["classes"] == ["ct or ultrasound", "mr"]
    assert run["dataset"]["n_fit"] + run["dataset"]["n_test"] == 10
    assert len(run["dataset"]["notes"]) == 1
    assert "examples_ybr_color.dcm: frame 16 of 30" in run["dataset"]["notes"][0]
    text = re.sub(r"\s+", " ", result.stdout.str())
    assert text.count("1 multi-frame DICOM file: the middle frame of each was audited") == 1  # said once


def test_a_dicom_file_without_pixel_data_errors_the_audits_naming_it(
    pytester: pytest.Pytester, fast_options: list[str]
) -> None:
    root = _dicom_folder(pytester.path / "dicom")
    plan = root / "mr" / "plan.dcm"
    shutil.copy(get_testdata_file("rtplan.dcm"), plan)
    pytester.makepyfile("def test_health(verdicts, check_verdict):\n    check_verdict(verdicts.health)\n")
    result = pytester.runpytest(f"--dataset=folder:{root}", *fast_options)
    result.assert_outcomes(errors=1)
    text = re.sub(r"\s+", " ", result.stdout.str())
    assert f"{plan}: DICOM file holds no pixel data (a RT Plan Storage); only images can be audited." in text
    assert "Traceback" not in text


def _dicom_manifest(root: Path) -> Path:
    """The folder's files listed in a CSV (one in a sub-folder, one without a suffix), as a PACS export would."""
    _dicom_folder(root / "images")
    rows = ["image,diagnosis"]
    for label in CLASSES:
        for file in sorted((root / "images" / label).iterdir()):
            rows.append(f"images/{label}/{file.name},{label}")
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def test_a_csv_manifest_of_dicom_files_is_audited_with_the_same_reader(
    pytester: pytest.Pytester, fast_options: list[str]
) -> None:
    manifest = _dicom_manifest(pytester.path / "export")
    pytester.makepyfile(test_images=IMAGE_CHECK)
    result = pytester.runpytest(f"--dataset=csv:{manifest}", "--medprobe-json=r.json", "-W", "error", *fast_options)
    result.assert_outcomes(passed=1)
    run = json.loads((pytester.path / "r.json").read_text())["runs"][0]
    assert run["dataset"]["classes"] == ["ct_or_ultrasound", "mr"]
    assert len(run["dataset"]["notes"]) == 1  # the multi-frame file, said once
    assert "examples_ybr_color.dcm: frame 16 of 30" in run["dataset"]["notes"][0]


def test_a_csv_listing_a_dicom_file_no_installed_package_decodes_is_refused_before_the_run(
    pytester: pytest.Pytester,
) -> None:
    from pydicom import dcmread
    from pydicom.pixels import get_decoder

    manifest = _dicom_manifest(pytester.path / "export")
    jpeg_ls = pytester.path / "export" / "images" / "mr" / "MR_small_jpeg_ls_lossless.dcm"
    shutil.copy(get_testdata_file(jpeg_ls.name), jpeg_ls)
    if get_decoder(dcmread(jpeg_ls, stop_before_pixels=True).file_meta.TransferSyntaxUID).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    manifest.write_text(manifest.read_text() + f"images/mr/{jpeg_ls.name},mr\n")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest(f"--dataset=csv:{manifest}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = re.sub(r"\s+", " ", result.stderr.str())
    assert f"{jpeg_ls}: DICOM pixel data is compressed as JPEG-LS Lossless" in text and "pylibjpeg" in text
