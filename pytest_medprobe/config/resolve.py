"""Settings resolve in one place: command line, else ini, else default, frozen in ``MedprobeSettings``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_medprobe.config.declarations import (
    ANSWER_MODE,
    ANSWER_MODES,
    BASELINE,
    BASELINE_REQUIRED,
    BATCH_SIZE,
    BOOTSTRAP,
    CACHE,
    CSV,
    DATA_ROOT,
    DATASET,
    DECISION,
    DEVICE,
    DTYPE,
    DTYPES,
    FINDING,
    IMAGE_COLUMN,
    JSON,
    LABEL,
    LABEL_COLUMN,
    MAX_CONNECTOR_LOSS,
    MAX_LAYER_DROP,
    MAX_LLM_LOSS,
    MAX_NEW_TOKENS,
    MAX_SAMPLES,
    MAX_SEMANTIC_GAP,
    MAX_SUBGROUP_GAP,
    MEDMNIST_OFFICIAL_URL,
    MEDMNIST_URL,
    MIN_HEALTH,
    MIN_VISION_GAIN,
    MIN_VISION_SCORE,
    MODEL,
    OFFLINE,
    PROBE_BACKEND,
    PROBE_BACKENDS,
    PROBE_C,
    PROBE_C_GRID,
    PROBE_CV_FOLDS,
    PROBE_DEVICE,
    REFRESH,
    SAVE_BASELINE,
    SEED,
    SUBGROUP,
    TOLERANCE,
    TRUST_REMOTE_CODE,
)
from pytest_medprobe.config.parsing import (
    _check_consistent,
    _parse_bool,
    _parse_c_grid,
    _parse_choice,
    _parse_column,
    _parse_device,
    _parse_fraction,
    _parse_int,
    _parse_label,
    _parse_margin,
    _parse_max_samples,
    _parse_medmnist_url,
    _parse_names,
    _parse_optional_choice,
    _parse_optional_fraction,
    _parse_optional_names,
    _parse_positive_float,
    _parse_probe_device,
)
from pytest_medprobe.config.setting import Setting
from pytest_medprobe.thresholds import DECISIONS, Decision, Thresholds


@dataclass(frozen=True)
class MedprobeSettings:
    """Every setting after CLI > ini > default resolution, converted and checked."""

    models: tuple[str, ...]
    datasets: tuple[str, ...]
    data_root: Path | None
    device: str
    dtype: str
    batch_size: int
    max_samples: int | None
    seed: int
    cache_dir: Path
    refresh: bool
    json_path: Path | None
    decision: Decision
    n_bootstrap: int
    probe_c: float
    thresholds: Thresholds
    trust_remote_code: bool = False
    baseline_path: Path | None = None
    save_baseline_path: Path | None = None
    baseline_required: bool = False
    label: str | None = None
    tolerance: float = 0.02
    probe_backend: str = "torch"
    probe_c_grid: tuple[float, ...] = ()  # two or more: C chosen per stage by cross-validation
    probe_cv_folds: int = 5
    probe_device: str = "auto"  # auto: the audit's device
    answer_mode: str | None = None  # None: the user did not choose; each model's preferred mode applies
    max_new_tokens: int = 512
    medmnist_url: str | None = MEDMNIST_OFFICIAL_URL  # None: never download
    image_column: str | None = None
    label_column: str | None = None
    offline: bool = False
    findings: tuple[str, ...] = ()
    subgroups: tuple[str, ...] = ()
    csv_path: Path | None = None


def pick(setting: Setting, cli: Mapping[str, object], ini: Mapping[str, object]) -> object:
    """The raw value of one setting: command line, else ini, else the default."""
    from_cli = cli.get(setting.dest)
    if from_cli is not None and from_cli != [] and from_cli is not False:
        return from_cli
    from_ini = ini.get(setting.ini)
    if from_ini is not None and from_ini != [] and from_ini != "":
        return from_ini
    return setting.default


def resolve_settings(
    cli: Mapping[str, object],
    ini: Mapping[str, object],
    rootdir: Path,
    environ: Mapping[str, str] | None = None,
) -> MedprobeSettings:
    """Resolve every setting (CLI > ini > default) and check it.

    ``cli`` maps ``Setting.dest`` to the parsed command-line value (None when absent);
    ``ini`` maps ``Setting.ini`` to the ini value (None or empty when absent); ``environ``
    (default ``os.environ``) is read for the settings that have an environment variable.

    Long on purpose: one line per field of ``MedprobeSettings``, each naming its parser,
    so that every setting visibly resolves in this one place.
    """
    get: Callable[[Setting], object] = lambda setting: pick(setting, cli, ini)  # noqa: E731

    def path_or_none(setting: Setting) -> Path | None:
        raw = get(setting)
        if raw is None or str(raw).strip() == "":
            return None
        return Path(str(raw)).expanduser()

    cache_dir = Path(str(get(CACHE))).expanduser()
    if not cache_dir.is_absolute():
        cache_dir = rootdir / cache_dir
    thresholds = Thresholds(
        min_vision_gain=_parse_margin(MIN_VISION_GAIN, get(MIN_VISION_GAIN)),
        min_vision_score=_parse_optional_fraction(MIN_VISION_SCORE, get(MIN_VISION_SCORE)),
        max_connector_loss=_parse_fraction(MAX_CONNECTOR_LOSS, get(MAX_CONNECTOR_LOSS)),
        max_layer_drop=_parse_fraction(MAX_LAYER_DROP, get(MAX_LAYER_DROP)),
        max_llm_loss=_parse_fraction(MAX_LLM_LOSS, get(MAX_LLM_LOSS)),
        max_semantic_gap=_parse_fraction(MAX_SEMANTIC_GAP, get(MAX_SEMANTIC_GAP)),
        min_health=_parse_fraction(MIN_HEALTH, get(MIN_HEALTH)),
        max_subgroup_gap=_parse_fraction(MAX_SUBGROUP_GAP, get(MAX_SUBGROUP_GAP)),
    )
    _check_consistent(thresholds)
    offline = _parse_bool(OFFLINE, get(OFFLINE))
    probe_backend = _parse_choice(PROBE_BACKEND, get(PROBE_BACKEND), PROBE_BACKENDS)
    return MedprobeSettings(
        models=_parse_names(MODEL, get(MODEL)),
        datasets=_parse_names(DATASET, get(DATASET)),
        data_root=path_or_none(DATA_ROOT),
        device=_parse_device(get(DEVICE)),
        dtype=_parse_choice(DTYPE, get(DTYPE), DTYPES),
        batch_size=_parse_int(BATCH_SIZE, get(BATCH_SIZE), 1),
        max_samples=_parse_max_samples(get(MAX_SAMPLES)),
        seed=_parse_int(SEED, get(SEED), 0),
        cache_dir=cache_dir,
        refresh=_parse_bool(REFRESH, get(REFRESH)),
        json_path=path_or_none(JSON),
        decision=_parse_choice(DECISION, get(DECISION), DECISIONS),  # type: ignore[arg-type]
        n_bootstrap=_parse_int(BOOTSTRAP, get(BOOTSTRAP), 1),
        probe_c=_parse_positive_float(PROBE_C, get(PROBE_C)),
        probe_backend=probe_backend,
        probe_c_grid=_parse_c_grid(get(PROBE_C_GRID)),
        probe_cv_folds=_parse_int(PROBE_CV_FOLDS, get(PROBE_CV_FOLDS), 2),
        probe_device=_parse_probe_device(get(PROBE_DEVICE), probe_backend),
        thresholds=thresholds,
        trust_remote_code=_parse_bool(TRUST_REMOTE_CODE, get(TRUST_REMOTE_CODE)),
        baseline_path=path_or_none(BASELINE),
        save_baseline_path=path_or_none(SAVE_BASELINE),
        baseline_required=_parse_bool(BASELINE_REQUIRED, get(BASELINE_REQUIRED)),
        label=_parse_label(get(LABEL)),
        tolerance=_parse_fraction(TOLERANCE, get(TOLERANCE)),
        answer_mode=_parse_optional_choice(ANSWER_MODE, get(ANSWER_MODE), ANSWER_MODES),
        max_new_tokens=_parse_int(MAX_NEW_TOKENS, get(MAX_NEW_TOKENS), 1),
        image_column=_parse_column(get(IMAGE_COLUMN)),
        label_column=_parse_column(get(LABEL_COLUMN)),
        # Offline means no download of any kind: MedMNIST files are not fetched either.
        medmnist_url=None
        if offline
        else _parse_medmnist_url(get(MEDMNIST_URL), os.environ if environ is None else environ),
        offline=offline,
        findings=_parse_optional_names(get(FINDING)),
        subgroups=_parse_optional_names(get(SUBGROUP)),
        csv_path=path_or_none(CSV),
    )
