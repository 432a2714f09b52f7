"""Command lines of ``python -m pytest_medprobe extract`` that messages tell the user to run.

This module renders command-line text (as ``plugin`` and ``__main__`` do): it names flags.
The settings a command repeats are ``EXTRACT_SETTINGS``, derived from each setting's
declared scope, so a command always reproduces the cache key of the run that printed it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

from pytest_medprobe.config import CACHE, DATASET, EXTRACT_SETTINGS, MODEL, MedprobeSettings

SHARD_FLAG = "--shard"
ALL_PAIRS_FLAG = "--all-pairs"


def _setting_words(settings: MedprobeSettings, overrides: Mapping[str, object]) -> list[str]:
    """The flags that give an extract command ``settings`` (``overrides``: values by key instead).

    Defaults are left out, except the cache folder, which a command run elsewhere must name.
    """
    words = []
    for setting in EXTRACT_SETTINGS:
        if setting in (MODEL, DATASET):
            continue
        value = overrides[setting.dest] if setting.dest in overrides else getattr(settings, setting.dest, None)
        if setting.is_switch:
            if value:
                words.append(setting.flag)
        elif setting is CACHE or (value is not None and str(value) != str(setting.default)):
            words.append(f"{setting.flag}={value}")
    return words


def extract_command(settings: MedprobeSettings, model: str, dataset: str, shard: str | None, batch_size: int) -> str:
    """The command that writes one pair's features (or one shard of them, ``shard`` = ``"i/n"``)."""
    words = ["python", "-m", "pytest_medprobe", "extract", f"{MODEL.flag}={model}", f"{DATASET.flag}={dataset}"]
    words += _setting_words(settings, {"batch_size": batch_size})
    if shard is not None:
        words.append(f"{SHARD_FLAG}={shard}")
    return shlex.join(words)


def all_pairs_command(settings: MedprobeSettings, models: Sequence[str], datasets: Sequence[str]) -> str:
    """The ``extract --all-pairs`` command for ``models`` × ``datasets``."""
    words = ["python", "-m", "pytest_medprobe", "extract", ALL_PAIRS_FLAG]
    words += [f"{MODEL.flag}={model}" for model in models]
    words += [f"{DATASET.flag}={dataset}" for dataset in datasets]
    return shlex.join(words + _setting_words(settings, {}))
