"""Parsers of setting values: convert a raw command-line or ini value, or refuse it.

A refusal is a ``MedprobeUsageError`` naming the setting (by key, or as the reader asked:
see ``naming``), the value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from pytest_medprobe.config.declarations import (
    DEVICE,
    LABEL,
    MAX_LAYER_DROP,
    MAX_LLM_LOSS,
    MAX_SAMPLES,
    MEDMNIST_URL,
    MEDMNIST_URL_ENV,
    PROBE_BACKEND,
    PROBE_C_GRID,
    PROBE_DEVICE,
)
from pytest_medprobe.config.setting import Setting
from pytest_medprobe.errors import MedprobeUsageError
from pytest_medprobe.naming import mention, mention_full
from pytest_medprobe.thresholds import Thresholds


def _usage(setting: Setting, value: object, allowed: str) -> MedprobeUsageError:
    return MedprobeUsageError(f"{mention_full(setting.dest)}: got {value!r}; allowed: {allowed}.")


def _parse_int(setting: Setting, raw: object, minimum: int) -> int:
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise _usage(setting, raw, f"a whole number >= {minimum}") from None
    if value < minimum:
        raise _usage(setting, raw, f"a whole number >= {minimum}")
    return value


def _parse_float(setting: Setting, raw: object, allowed: str, accept: Callable[[float], bool]) -> float:
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise _usage(setting, raw, allowed) from None
    if not math.isfinite(value) or not accept(value):
        raise _usage(setting, raw, allowed)
    return value


def _parse_fraction(setting: Setting, raw: object) -> float:
    allowed = "a number from 0 to 1 (balanced-accuracy points)"
    return _parse_float(setting, raw, allowed, lambda value: 0.0 <= value <= 1.0)


def _parse_margin(setting: Setting, raw: object) -> float:
    """A difference of two scores: from -1 to 1 (a negative margin accepts a loss)."""
    allowed = "a number from -1 to 1 (balanced-accuracy points; negative accepts a loss)"
    return _parse_float(setting, raw, allowed, lambda value: -1.0 <= value <= 1.0)


def _parse_optional_fraction(setting: Setting, raw: object) -> float | None:
    if raw is None or str(raw).strip().lower() in ("", "none"):
        return None
    return _parse_fraction(setting, raw)


def _parse_max_samples(raw: object) -> int | None:
    if raw is None or str(raw).strip().lower() in ("", "none"):
        return None
    return _parse_int(MAX_SAMPLES, raw, 1)


def _parse_device(raw: object) -> str:
    value = str(raw).strip()
    if value in ("auto", "cpu", "cuda", "balanced"):
        return value
    if value.startswith("cuda:") and value.removeprefix("cuda:").isdigit():
        return value
    raise _usage(DEVICE, raw, "auto, cpu, cuda, cuda:<index> or balanced")


def _parse_c_grid(raw: object) -> tuple[float, ...]:
    """C values from "0.01,0.1,1" (commas or spaces) or a list; ascending, repeats dropped."""
    allowed = "positive numbers separated by commas (e.g. 0.01,0.1,1,10), or none"
    if raw is None:
        return ()
    text = " ".join(map(str, raw)) if isinstance(raw, (list, tuple)) else str(raw)
    items = text.translate(str.maketrans("(),[]", "     ")).split()
    words = [str(item).strip() for item in items if str(item).strip()]
    if [word.lower() for word in words] in ([], ["none"]):
        return ()
    values = []
    for word in words:
        try:
            value = float(word)
        except ValueError:
            raise _usage(PROBE_C_GRID, raw, allowed) from None
        if not math.isfinite(value) or value <= 0:
            raise _usage(PROBE_C_GRID, raw, allowed)
        values.append(value)
    return tuple(sorted(set(values)))


def _parse_probe_device(raw: object, backend: str) -> str:
    value = str(raw).strip()
    if not (value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit())):
        raise _usage(PROBE_DEVICE, raw, "auto, cpu, cuda or cuda:<index>")
    if backend == "sklearn" and value not in ("auto", "cpu"):
        raise MedprobeUsageError(
            f"{mention_full(PROBE_DEVICE.dest)}: got {value!r}, but the sklearn probe backend "
            f"({mention_full(PROBE_BACKEND.dest)}) fits on the CPU only. Use {mention(PROBE_BACKEND.dest)}=torch "
            f"to fit on {value}, or {mention(PROBE_DEVICE.dest)}=cpu."
        )
    return value


def _parse_choice(setting: Setting, raw: object, choices: Sequence[str]) -> str:
    value = str(raw).strip()
    if value not in choices:
        raise _usage(setting, raw, ", ".join(choices))
    return value


def _parse_optional_choice(setting: Setting, raw: object, choices: Sequence[str]) -> str | None:
    if raw is None or str(raw).strip() == "":
        return None
    return _parse_choice(setting, raw, choices)


def _parse_positive_float(setting: Setting, raw: object) -> float:
    return _parse_float(setting, raw, "a positive number", lambda value: value > 0)


def _parse_names(setting: Setting, raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    names = tuple(str(item).strip() for item in raw or () if str(item).strip())  # type: ignore[attr-defined]
    if not names:
        raise _usage(setting, raw, "at least one name")
    return tuple(dict.fromkeys(names))  # repeated values audit once


def _parse_optional_names(raw: object) -> tuple[str, ...]:
    """A repeatable setting that may be empty: stripped, de-duplicated, in the order given."""
    if isinstance(raw, str):
        raw = [raw]
    return tuple(dict.fromkeys(str(item).strip() for item in raw or () if str(item).strip()))  # type: ignore[attr-defined]


def _parse_column(raw: object) -> str | None:
    # Column names are kept as written (spaces inside included); only blank means "detect".
    if raw is None or str(raw).strip() == "":
        return None
    return str(raw).strip()


def _parse_bool(setting: Setting, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise _usage(setting, raw, "true or false")


def _parse_label(raw: object) -> str | None:
    if raw is None or str(raw).strip() == "":
        return None
    label = str(raw).strip()
    if "|" in label:  # the separator of baseline keys
        raise _usage(LABEL, raw, "a release-line name without '|'")
    return label


def _parse_medmnist_url(raw: object, environ: Mapping[str, str]) -> str | None:
    """The download base URL: command line, else ini, else the environment, else the official record."""
    value = str(raw).strip()
    if raw == MEDMNIST_URL.default and environ.get(MEDMNIST_URL_ENV, "").strip():
        value = environ[MEDMNIST_URL_ENV].strip()
    if value.lower() in ("off", "none", ""):
        return None
    if not value.startswith(("http://", "https://", "file://")):
        raise _usage(MEDMNIST_URL, raw, f"an http(s):// or file:// URL, or 'off' (env {MEDMNIST_URL_ENV} too)")
    return value.rstrip("/")


def _check_consistent(thresholds: Thresholds) -> None:
    """Refuse thresholds that contradict each other, naming both settings."""
    # Audit 3 bounds the whole decoder's loss by max_llm_loss; allowing one layer to
    # lose more than that would make the per-layer bound meaningless.
    if thresholds.max_layer_drop > thresholds.max_llm_loss:
        raise MedprobeUsageError(
            f"contradictory thresholds: {mention_full(MAX_LAYER_DROP.dest)} is {thresholds.max_layer_drop:g} but "
            f"{mention_full(MAX_LLM_LOSS.dest)} is {thresholds.max_llm_loss:g}; a single decoder layer may not lose "
            f"more than the whole decoder is allowed to. Lower {mention(MAX_LAYER_DROP.dest)} to at most "
            f"{thresholds.max_llm_loss:g}, or raise {mention(MAX_LLM_LOSS.dest)}."
        )
