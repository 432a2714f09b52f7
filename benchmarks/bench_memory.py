"""Memory: the peak resident set of an extraction over 500 images against one over 2000.

Each size runs in a fresh process (``python bench_memory.py --child N``) that loads the
default model through the plugin's loader, renders ``synthetic-lesions`` with N/2 images
per split, and extracts both splits through ``AuditSession.extract`` (the code path of an
audit run; one torch thread); it reports the kernel's high-water mark of its resident set (``VmHWM``, or
``ru_maxrss`` where /proc is missing) and its resident set just before extracting.

Target: peak(2000) within 10% of peak(500): pooled features are ``[n, d]`` per stage and
nothing else grows with the number of images.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SIZES = (500, 2000)
TARGET = 1.10


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _peak_kib() -> int:
    peak = _status_kib("VmHWM")
    if peak is not None:
        return peak
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss // 1024 if sys.platform == "darwin" else maxrss  # bytes on macOS, KiB elsewhere


def child(n_images: int) -> dict[str, Any]:
    import tempfile
    import time

    import torch

    # One thread: memory does not depend on it, and on a shared machine two threads that
    # wait for each other at every operation make the 2000-image run take minutes.
    torch.set_num_threads(1)
    from pytest_medprobe.config import resolve_settings
    from pytest_medprobe.data.synthetic import make_synthetic_lesions
    from pytest_medprobe.session import AuditSession, Pair

    with tempfile.TemporaryDirectory() as tmp:
        session = AuditSession(resolve_settings({}, {}, Path(tmp)))
        pair = Pair(session.settings.models[0], session.settings.datasets[0])
        session.model(pair.model)
        dataset = make_synthetic_lesions(seed=0, n_fit=n_images // 2, n_test=n_images - n_images // 2)
        before = _status_kib("VmRSS") or 0
        started = time.perf_counter()
        bank, forward_passes = session.extract(pair, dataset)
        seconds = time.perf_counter() - started
    feature_bytes = sum(
        values.nbytes for split in (bank.fit, bank.test) for values in (*split.stages.values(), split.letter_logits)
    )
    return {
        "images": n_images,
        "peak_kib": _peak_kib(),
        "before_kib": before,
        "feature_kib": feature_bytes // 1024,
        "image_kib": (dataset.fit_images.nbytes + dataset.test_images.nbytes) // 1024,  # type: ignore[attr-defined]
        "forward_passes": forward_passes,
        "seconds": seconds,
        "model": pair.model,
    }


def _run_child(n_images: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(n_images)],
        capture_output=True,
        text=True,
        timeout=1800,
        env=_environ(),
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory child ({n_images} images) exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _environ() -> dict[str, str]:
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def measure() -> list[dict[str, Any]]:
    small, large = (_run_child(n) for n in SIZES)
    ratio = large["peak_kib"] / small["peak_kib"]

    def describe(run: dict[str, Any]) -> str:
        growth = (run["peak_kib"] - run["before_kib"]) / 1024
        return (
            f"{run['images']} images: peak {run['peak_kib'] / 1024:.0f} MiB (before extracting "
            f"{run['before_kib'] / 1024:.0f} MiB, +{growth:.0f} MiB during it; images "
            f"{run['image_kib'] / 1024:.1f} MiB, features {run['feature_kib'] / 1024:.1f} MiB; "
            f"{run['forward_passes']} forward passes in {run['seconds']:.1f} s)"
        )

    return [
        {
            "name": f"peak RSS of extraction, {SIZES[1]} / {SIZES[0]} images ({small['model']})",
            "measured": round(ratio, 3),
            "target": f"<= {TARGET}",
            "met": ratio <= TARGET,
            "details": f"{describe(small)}; {describe(large)}; each in a fresh process",
        }
    ]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(int(sys.argv[2]))))
    else:
        for row in measure():
            print(row)
