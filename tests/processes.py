"""Finishing a child process a test started, bounded so that a hang fails the test instead of CI."""

from __future__ import annotations

import subprocess

import pytest

TIMEOUT_S = 300.0  # far above any run here (seconds): reached only when something hangs


def finish(process: subprocess.Popen[str], timeout_s: float = TIMEOUT_S) -> tuple[int, str]:
    """Wait for ``process`` (stdout piped, text) and return its exit code and output; kill it and
    fail the test, showing the output's tail, if it runs past ``timeout_s``."""
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"{process.args!r} did not finish within {timeout_s:g} s:\n{output[-3000:]}", pytrace=False)
    return process.returncode, output
