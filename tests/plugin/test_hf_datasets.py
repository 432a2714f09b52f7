"""A Hugging Face dataset saved to disk, audited end to end by the shipped audits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")


def _digits_dataset(root: Path) -> Path:
    """Handwritten 0s and 1s (scikit-learn's digits), 32 px RGB, saved with save_to_disk."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits(n_class=2)
    images = [
        Image.fromarray(np.repeat((pixels * 15).astype(np.uint8)[:, :, None], 3, axis=2)).resize((32, 32))
        for pixels in digits.images
    ]
    features = datasets.Features({"scan": datasets.Image(), "finding": datasets.ClassLabel(names=["zero", "one"])})
    table = datasets.Dataset.from_dict({"scan": images[:90], "finding": digits.target[:90].tolist()}, features=features)
    held_out = datasets.Dataset.from_dict(
        {"scan": images[90:130], "finding": digits.target[90:130].tolist()}, features=features
    )
    datasets.DatasetDict({"train": table, "test": held_out}).save_to_disk(str(root))
    return root


def test_a_saved_hf_dataset_is_audited_end_to_end(shipped_audits: pytest.Pytester, fast_options: list[str]) -> None:
    root = _digits_dataset(shipped_audits.path / "digits")
    result = shipped_audits.runpytest(
        f"--dataset=hf:{root}", "--medprobe-json=r.json", "-v", "-W", "error", *fast_options
    )  # a hostile user: every warning is an error
    outcomes = result.parseoutcomes()
    assert "errors" not in outcomes and "error" not in outcomes, result.stdout.str()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 5
    result.stdout.fnmatch_lines(["*test_health.py::test_health[[]medprobe-tiny-digits[]]*"])
    run = json.loads((shipped_audits.path / "r.json").read_text())["runs"][0]
    assert run["dataset"]["classes"] == ["zero", "one"]
    assert (run["dataset"]["n_fit"], run["dataset"]["n_test"]) == (90, 40)


def test_a_hf_dataset_without_an_image_column_stops_the_run_in_one_line(pytester: pytest.Pytester) -> None:
    root = pytester.path / "notes"
    datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}).save_to_disk(str(root))
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest(f"--dataset=hf:{root}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: dataset 'hf:{root}': no image column; the columns are: text*"])
    assert "Traceback" not in result.stderr.str()
