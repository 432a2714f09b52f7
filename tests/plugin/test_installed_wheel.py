"""The package as a user installs it: a wheel in a fresh virtual environment, outside the
checkout, runs the audits it ships on the default model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh venv with the wheel built from this checkout, and the environment to run it in."""
    root = tmp_path_factory.mktemp("wheel-install")
    # Nothing may point back into the checkout: no PYTHONPATH, no editable finder.
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1")
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(root), str(REPOSITORY)],
        root,
        env,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = root.glob("pytest_medprobe-*.whl")
    venv = root / "venv"
    created = _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], root, env)
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    # torch, transformers, pytest... come from the environment running these tests (no
    # multi-GB download): its site-packages joins the new venv's path through a .pth
    # line, which adds the folder without running the .pth files in it, so this
    # environment's editable install of the checkout stays out.
    new_site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root, env)
                    .stdout.strip())  # fmt: skip
    (new_site / "outer-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: where this environment holds a regular (not editable) install of the
    # package, as tox's does, pip would otherwise call the wheel "already satisfied".
    installed = _run([str(python), "-m", "pip", "install", "--no-deps", "--ignore-installed", str(wheel)], root, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return python, env


@pytest.mark.slow
def test_the_wheel_ships_the_audits_and_they_pass_on_the_default_model(
    wheel_venv: tuple[Path, dict[str, str]], tmp_path: Path, shared_cache: Path
) -> None:
    python, env = wheel_venv
    where = _run([str(python), "-c", "import pytest_medprobe; print(pytest_medprobe.__file__)"], tmp_path, env)
    location = Path(where.stdout.strip())
    assert python.parent.parent in location.parents, where.stdout + where.stderr
    assert REPOSITORY not in location.parents

    run = _run(
        [
            str(python),
            "-m",
            "pytest",
            "--pyargs",
            "pytest_medprobe.audits",
            "-p",
            "no:cacheprovider",
            f"--medprobe-cache={shared_cache}",
            "--medprobe-max-samples=120",
            "--medprobe-bootstrap=200",
            "--medprobe-json=results.json",
        ],
        tmp_path,
        env,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "5 passed" in run.stdout and " failed" not in run.stdout and " error" not in run.stdout
    document = json.loads((tmp_path / "results.json").read_text())
    assert [audit["outcome"] for audit in document["audits"]].count("passed") == 5
    # Collected from the installed package (pytest's rootdir is then the package's folder).
    assert all(audit["nodeid"].startswith("test_") for audit in document["audits"]), document["audits"]
    assert document["environment"]["versions"]["pytest-medprobe"] == "0.1.0"
    # Nothing was written into the installed package.
    assert not list(location.parent.rglob(".medprobe-cache"))
