"""DICOM: the memory it takes to read the middle frame of a large multi-frame file.

A 200-frame 512 x 512 16-bit volume (105 MB, written from pydicom's CT_small.dcm header) is
read two ways, each measured with ``tracemalloc`` (numpy reports its buffers to it):
``read_dicom`` as the plugin does it (pixel data left on disk until used, then only the
middle frame's bytes read), and the naive way (``dcmread`` the whole file, then decode one
frame of it). Printed side by side with their ratio.

Target: the plugin's peak under a quarter of the file's size, so a folder of CT volumes is
read with the memory of single images.
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

FRAMES, SIDE = 200, 512
TARGET = 0.25


def _peak_mb(read: Callable[[], object]) -> tuple[float, float]:
    tracemalloc.start()
    start = time.perf_counter()
    read()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 1e6, seconds


def measure() -> list[dict[str, Any]]:
    import numpy as np
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.pixels import pixel_array

    from pytest_medprobe.data.dicom import read_dicom

    with tempfile.TemporaryDirectory(prefix="medprobe-bench-dicom-") as tmp:
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        volume = np.random.default_rng(0).integers(0, 4000, (FRAMES, SIDE, SIDE), dtype=np.int16)
        ds.NumberOfFrames, ds.Rows, ds.Columns = FRAMES, SIDE, SIDE
        ds.PixelData = volume.tobytes()
        path = Path(tmp) / "volume.dcm"
        ds.save_as(path)
        del ds, volume
        size_mb = path.stat().st_size / 1e6
        ours, ours_s = _peak_mb(lambda: read_dicom(path, str(path)))
        naive, naive_s = _peak_mb(lambda: pixel_array(pydicom.dcmread(path), index=FRAMES // 2))
    ratio = ours / size_mb
    return [
        {
            "name": f"peak memory reading the middle frame of a {FRAMES}-frame {SIDE}x{SIDE} volume / file size",
            "measured": round(ratio, 3),
            "target": f"<= {TARGET}",
            "met": ratio <= TARGET,
            "details": (
                f"file {size_mb:.0f} MB; read_dicom peak {ours:.1f} MB in {ours_s:.2f} s; whole-file dcmread + "
                f"decode one frame peak {naive:.1f} MB in {naive_s:.2f} s ({naive / ours:.1f}x more memory)"
            ),
        }
    ]


if __name__ == "__main__":
    for row in measure():
        print(row)
