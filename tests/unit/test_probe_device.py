"""The probe device (metrics.md §2): set by --medprobe-probe-device, else where the audit runs;
every tensor of a fit is made there. This machine has no GPU: the plumbing is checked on the
CPU with torch's default device set elsewhere, so a tensor made without the probe device
shows; the CUDA run itself is benchmarks/gpu_check.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils._pytree import tree_flatten

from pytest_medprobe import config
from pytest_medprobe.config import resolve_settings
from pytest_medprobe.errors import MedprobeUsageError, ModelLoadError
from pytest_medprobe.session import AuditSession
from pytest_medprobe.torch_probes import fit_stages, resolve_probe_device
from tests.unit.test_probe_backends import _bank
from tests.unit.test_row_space import _wide_bank

GRID = (0.01, 0.1, 1.0)


class _DevicesSeen(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the device of every tensor every torch operation returns."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        self.seen.update(str(item.device) for item in tree_flatten(out)[0] if isinstance(item, torch.Tensor))
        return out


@pytest.mark.parametrize(
    ("grid", "wide"),
    [((), False), (GRID, False), (GRID, True)],
    ids=["fixed-c", "c-grid", "c-grid-in-the-row-space"],  # the last: more dimensions than fit images
)
def test_every_tensor_of_a_fit_is_made_on_the_probe_device(grid: tuple[float, ...], wide: bool) -> None:
    bank, fit_y, _ = _wide_bank(3) if wide else _bank(3)
    expected = fit_stages(bank, fit_y, c_grid=grid, device="cpu")
    torch.set_default_device("meta")  # a tensor made without the probe device lands here
    try:
        with _DevicesSeen() as devices:
            got = fit_stages(bank, fit_y, c_grid=grid, device="cpu", threads=1)
    finally:
        torch.set_default_device(None)
    assert devices.seen == {"cpu"}
    for name in bank:
        assert np.array_equal(got[name].predictions, expected[name].predictions) and got[name].c == expected[name].c


def test_auto_follows_the_audit_device_and_an_explicit_device_wins() -> None:
    assert resolve_probe_device("auto", "cpu") == "cpu"
    assert resolve_probe_device("auto", "auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_probe_device("cpu", "cuda:1") == "cpu"  # the override
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match=config.DEVICE.flag):  # auto fits where the model runs
            resolve_probe_device("auto", "cuda")
        with pytest.raises(MedprobeUsageError, match=f"{config.PROBE_DEVICE.flag} cuda:1: CUDA is not available"):
            resolve_probe_device("cuda:1", "cpu")


@pytest.mark.parametrize(
    ("cli", "expected"),
    [
        ({config.DEVICE.dest: "cpu"}, "cpu"),
        ({config.DEVICE.dest: "auto"}, "cuda" if torch.cuda.is_available() else "cpu"),
        ({config.DEVICE.dest: "auto", config.PROBE_DEVICE.dest: "cpu"}, "cpu"),
        ({config.PROBE_BACKEND.dest: "sklearn"}, "cpu"),
    ],
)
def test_the_session_hands_the_resolved_probe_device_to_the_probes(
    cli: dict[str, object], expected: str, tmp_path: Path
) -> None:
    grid = {config.PROBE_C_GRID.dest: "0.1,1", config.PROBE_CV_FOLDS.dest: "3"}
    settings = resolve_settings({**cli, **grid}, {}, tmp_path)
    probe_settings = AuditSession(settings).probe_settings()
    assert probe_settings.device == expected
    assert (probe_settings.c_grid, probe_settings.cv_folds) == ((0.1, 1.0), 3)
