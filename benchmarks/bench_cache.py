"""The feature cache: a warm ``pytest audits/`` against a cold one.

Each run is a fresh ``python -m pytest audits/`` process from the repository root, as a
user starts it; cold runs get a fresh, empty ``--medprobe-cache`` (so they extract),
warm runs reuse the cache the cold run just filled (so they do no forward pass). Cold and
warm alternate, three of each, and the medians are compared.

Target: warm <= 0.15x cold, on the default model (``medprobe-tiny``, the full default
dataset). A second row does the same on the benchmarks' LLaVA (``_llava``) with 128
images per split, where the forward pass is most of a cold run, as with real models.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _llava  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
ROUNDS = 3
TARGET = 0.15
LLAVA_SAMPLES = 128  # per split


def _run(cache: Path, results: Path, *options: str) -> tuple[float, dict[str, Any]]:
    command = [
        sys.executable, "-m", "pytest", "audits/", f"--medprobe-cache={cache}", f"--medprobe-json={results}",
        "-p", "no:cacheprovider", "-q", *options,
    ]  # fmt: skip
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=REPOSITORY, env={**_environ(), **env}, capture_output=True, text=True, timeout=1800
    )
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):  # 1: an audit failed, which is no concern of this benchmark
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    runs = json.loads(results.read_text(encoding="utf-8"))["runs"]
    return seconds, runs[0]["features"]


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")}


def _compare(name: str, *options: str) -> dict[str, Any]:
    cold: list[float] = []
    warm: list[float] = []
    with tempfile.TemporaryDirectory(prefix="medprobe-bench-cache-") as tmp:
        for round_ in range(ROUNDS):
            cache = Path(tmp) / f"cache-{round_}"
            seconds, features = _run(cache, Path(tmp) / "cold.json", *options)
            assert not features["cache_hit"] and features["forward_passes"] > 0, features
            cold.append(seconds)
            seconds, features = _run(cache, Path(tmp) / "warm.json", *options)
            assert features["cache_hit"] and features["forward_passes"] == 0, features
            warm.append(seconds)
    ratio = statistics.median(warm) / statistics.median(cold)
    return {
        "name": name,
        "measured": round(ratio, 3),
        "target": f"<= {TARGET}",
        "met": ratio <= TARGET,
        "details": (
            f"median of {ROUNDS}: cold {statistics.median(cold):.1f} s (runs {', '.join(f'{s:.1f}' for s in cold)}), "
            f"warm {statistics.median(warm):.1f} s (runs {', '.join(f'{s:.1f}' for s in warm)}); "
            "wall clock of whole `python -m pytest audits/` processes"
        ),
    }


def measure() -> list[dict[str, Any]]:
    rows = [_compare("warm / cold `pytest audits/`, default model (medprobe-tiny, 480+240 images)")]
    with tempfile.TemporaryDirectory(prefix="medprobe-bench-llava-") as tmp:
        checkpoint = _llava.build_checkpoint(Path(tmp) / "llava-224")
        row = _compare(
            f"warm / cold `pytest audits/`, LLaVA-224 ({LLAVA_SAMPLES}+{LLAVA_SAMPLES} images)",
            f"--model={checkpoint}",
            f"--max-samples={LLAVA_SAMPLES}",
        )
    row["details"] = f"{_llava.DESCRIPTION}; {row['details']}"
    return [*rows, row]


if __name__ == "__main__":
    for row in measure():
        print(row)
