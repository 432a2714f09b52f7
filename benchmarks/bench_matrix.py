"""Matrix memory: the peak resident set of a 4-model matrix against that of one model.

Four randomly initialized LLaVA checkpoints of the benchmarks' shape (``_llava.py``:
24.9 M parameters, about 100 MB of float32 weights each; seeds 1-4, so four different
models) are written once. Each run is a fresh process (``python bench_matrix.py
--child MODE N``) that audits the first N of them on ``synthetic-lesions`` through
``AuditSession`` (the code path of ``pytest audits/ --model=… --model=…``), asking for
features pair by pair as pytest does, and reports the kernel's high-water mark of its
resident set (``VmHWM``).

- ``release`` N=1 and N=4: the plugin as it is (model-major, each model released before
  the next loads), three fresh processes each, since one process's peak varies by about
  ±4% from run to run (where the allocator places a batch's activations); the figure is
  median(peak(4)) / median(peak(1)). Target: <= 1.05.
- ``keep`` N=4: the same run with every loaded model kept (what the plugin did before
  models were released), to show what the figure would be if a reference survived.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

N_MODELS = 4
REPEATS = 3
SAMPLES = 8  # images per split: memory does not grow with them (bench_memory.py)
TARGET = 1.05


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(mode: str, n_models: int, checkpoints: list[Path]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from pytest_medprobe.config import resolve_settings
    from pytest_medprobe.models.base import LoadedModel
    from pytest_medprobe.session import AuditSession

    kept: list[LoadedModel] = []

    class KeepingSession(AuditSession):
        """Every loaded model stays referenced, as before models were released."""

        def release_model(self) -> None:
            if self._loaded is not None:
                kept.append(self._loaded)
            self._loaded = None

    models = [f"bench-{index}={path}" for index, path in enumerate(checkpoints[:n_models])]
    with tempfile.TemporaryDirectory() as tmp:
        cli = {"model": models, "max_samples": str(SAMPLES), "batch_size": "8", "cache_dir": tmp, "device": "cpu"}
        settings = resolve_settings(cli, {}, Path(tmp))
        session = (KeepingSession if mode == "keep" else AuditSession)(settings)
        for pair in session.pairs:
            session.features(pair)
        forward_passes = session.forward_passes_total
    return {"mode": mode, "models": n_models, "peak_kib": _status_kib("VmHWM"), "forward_passes": forward_passes}


def _build(directory: Path) -> list[Path]:
    from _llava import SPEC_KWARGS

    from pytest_medprobe.models.tiny_llava import TinyLlavaSpec, make_tiny_llava, save_checkpoint_atomically

    paths = []
    for seed in range(1, N_MODELS + 1):
        path = directory / f"llava-{seed}"
        model, processor = make_tiny_llava(TinyLlavaSpec(**{**SPEC_KWARGS, "seed": seed}))
        save_checkpoint_atomically(model, processor, path)
        paths.append(path)
    return paths


def _run_child(mode: str, n_models: int, checkpoints: list[Path]) -> dict[str, Any]:
    import os

    command = [sys.executable, __file__, "--child", mode, str(n_models), *map(str, checkpoints)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"matrix child {mode} {n_models} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def measure() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        checkpoints = _build(Path(tmp))
        weights_mib = sum(p.stat().st_size for c in checkpoints for p in c.glob("*.safetensors")) / 2**20
        ones, fours = [], []
        for _ in range(REPEATS):  # interleaved, so a change in the machine's load touches both alike
            ones.append(_run_child("release", 1, checkpoints))
            fours.append(_run_child("release", N_MODELS, checkpoints))
        kept = _run_child("keep", N_MODELS, checkpoints)
    one = sorted(ones, key=lambda run: run["peak_kib"])[REPEATS // 2]
    four = sorted(fours, key=lambda run: run["peak_kib"])[REPEATS // 2]
    ratio = four["peak_kib"] / one["peak_kib"]
    kept_ratio = kept["peak_kib"] / one["peak_kib"]

    def mib(run: dict[str, Any]) -> str:
        return f"{run['peak_kib'] / 1024:.0f} MiB"

    def spread(runs: list[dict[str, Any]]) -> str:
        return ", ".join(mib(run) for run in runs)

    return [
        {
            "name": f"peak RSS, {N_MODELS}-model matrix / 1 model "
            f"(random-init LLaVA, {weights_mib / N_MODELS:.0f} MiB each)",
            "measured": round(ratio, 3),
            "target": f"<= {TARGET}",
            "met": ratio <= TARGET,
            "details": (
                f"1 model: peak {mib(one)} (median of {spread(ones)}); {N_MODELS} models, each released "
                f"before the next loads: peak {mib(four)} (median of {spread(fours)}; x{ratio:.3f}); "
                f"{N_MODELS} models all kept (the old behaviour): "
                f"peak {mib(kept)} (x{kept_ratio:.3f}); {SAMPLES} + {SAMPLES} images per pair, "
                f"{four['forward_passes']} forward passes in the {N_MODELS}-model run; each run a fresh process"
            ),
        }
    ]


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]), [Path(p) for p in sys.argv[4:]])))
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        for row in measure():
            print(row)
