"""A restored cache can never serve features of other weights or images (README, "Gate a release").

A fine-tune of the same architecture has the same file size, and ``cp -p``, ``rsync -a``,
tar and CI cache restores keep modification times: only the bytes tell the models apart.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from pytest_medprobe.zoo import SHIPPED_DIR, export

AUDIT = """
def test_visual_representation(verdicts, check_verdict):
    check_verdict(verdicts.visual_representation)
"""


def _run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict]:
    result = pytester.runpytest(
        "--medprobe-json=r.json", "--max-samples=60", "--medprobe-bootstrap=100", "-p", "no:cacheprovider", *args
    )
    return result, json.loads((pytester.path / "r.json").read_text())["runs"][0]


def _copy_keeping_mtime(source: Path, target: Path) -> None:
    """``cp -p source target`` over an existing file: same inode, new bytes, the old mtime."""
    before = target.stat()
    with source.open("rb") as reading, target.open("r+b") as writing:
        shutil.copyfileobj(reading, writing)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)


def test_other_weights_copied_over_a_checkpoint_with_its_mtime_are_extracted_again_and_fail(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile(AUDIT)
    checkpoint = Path(shutil.copytree(SHIPPED_DIR, tmp_path / "final"))
    options = (f"--model={checkpoint}", f"--medprobe-cache={tmp_path / 'cache'}")
    healthy, first = _run(pytester, *options)
    healthy.assert_outcomes(passed=1)
    assert first["features"]["cache_hit"] is False
    blind = export(tmp_path / "blind", "blind-vision")
    _copy_keeping_mtime(blind / "model.safetensors", checkpoint / "model.safetensors")
    swapped, second = _run(pytester, *options)
    assert second["features"]["cache_hit"] is False and second["features"]["forward_passes"] > 0
    assert second["model"]["fingerprint"] != first["model"]["fingerprint"]
    swapped.assert_outcomes(failed=1)
    swapped.stdout.fnmatch_lines(["*visual representation*"])
