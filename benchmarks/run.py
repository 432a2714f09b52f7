"""Run every benchmark: ``python benchmarks/run.py [NAME ...]``.

Prints the hardware, then one table row per figure: what was measured, the target, and
whether it is met. A figure comes from a module ``bench_<name>.py`` in this folder that
exposes ``measure() -> list[dict]`` with keys ``name``, ``measured``, ``target``, ``met``,
``details``. Names on the command line (``extraction``, ``cache``, ...) run only those.
Exit status: 0 when every figure was measured (met or not), 1 when a benchmark failed to run.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# A name runs bench_<name>.py, when present.
BENCHMARKS = ("extraction", "cache", "memory", "matrix", "probes", "cv_grid", "dicom")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _load() -> str:
    try:
        return ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def hardware() -> list[str]:
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    device = f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"
    return [
        f"CPU: {_cpu_model()}, {os.cpu_count()} cores ({usable} usable), {torch.get_num_threads()} torch threads",
        f"RAM: {_memory()}",
        f"Python {platform.python_version()}, torch {torch.__version__}, {platform.system()} {platform.release()}",
        f"device: {device}",
        f"load average at start: {_load()} (other processes share these cores; timings vary with it)",
    ]


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def main(argv: list[str]) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.path.insert(0, str(HERE))
    names = argv or [name for name in BENCHMARKS if (HERE / f"bench_{name}.py").is_file()]
    for line in hardware():
        print(line)
    rows: list[dict[str, Any]] = []
    failed = False
    for name in names:
        started = time.perf_counter()
        print(f"running bench_{name} ...", flush=True)
        try:
            rows.extend(importlib.import_module(f"bench_{name}").measure())
        except Exception:  # one broken benchmark must not hide the others' figures
            failed = True
            traceback.print_exc()
            rows.append({"name": f"bench_{name}", "measured": "error", "target": "-", "met": False, "details": ""})
        print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
    header = ("figure", "measured", "target", "met")
    table = [
        header,
        *((row["name"], _format(row["measured"]), _format(row["target"]), _format(row["met"])) for row in rows),
    ]
    widths = [max(len(cells[i]) for cells in table) for i in range(len(header))]
    print()
    for cells in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip())
    print()
    for row in rows:
        if row.get("details"):
            print(f"- {row['name']}: {row['details']}")
    print(f"\nload average at the end: {_load()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
