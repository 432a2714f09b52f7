"""The reference zoo: ``medprobe-tiny`` (a trained tiny LLaVA, shipped in the package) and its
planted-fault variants, which prove that every audit catches its own failure mode; and
``medprobe-tiny-wide`` (its decoder widened exactly to 256, ``zoo/wide.py``) with two planted
connectors, which prove that a lossless widening connector passes audit 2 and a
rank-limited one fails it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

REFERENCE_NAME = "medprobe-tiny"
SHIPPED_DIR = Path(__file__).resolve().parent / "medprobe-tiny"


def fault_names() -> tuple[str, ...]:
    from pytest_medprobe.zoo.faults import FAULTS

    return tuple(FAULTS)


def export(directory: Path, fault: str | None = None) -> Path:
    """Write the healthy reference model, or one variant, as a standard checkpoint directory."""
    from pytest_medprobe.models.tiny_llava import save_checkpoint_atomically

    directory = Path(directory)
    if fault is None:
        staging = directory.with_name(f".{directory.name}.copy")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(SHIPPED_DIR, staging)
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
        return directory
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.utils import logging as hf_logging

    from pytest_medprobe.zoo.faults import apply_fault

    hf_logging.disable_progress_bar()
    processor = AutoProcessor.from_pretrained(SHIPPED_DIR, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(SHIPPED_DIR, local_files_only=True).eval()
    apply_fault(model, processor, fault)
    return save_checkpoint_atomically(model, processor, directory)
