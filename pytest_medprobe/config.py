"""Every setting of pytest-medprobe: its flag, its ini key, its default, its parser.

Settings resolve in one place, ``resolve_settings``: command line, else ini, else default.
Values are converted and checked when read; a bad value raises ``MedprobeUsageError``
naming the setting, the value and what is allowed. The result is frozen in
``MedprobeSettings``. This module imports nothing heavy, so ``pytest --help`` stays fast.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_medprobe.errors import MedprobeUsageError
from pytest_medprobe.thresholds import DECISIONS, Decision, Thresholds

DEFAULT_MODEL = "medprobe-tiny"
DEFAULT_DATASET = "synthetic-lesions"
DEFAULT_CACHE_DIR = ".medprobe-cache"
# The official MedMNIST files (Zenodo record 10519652); the MD5s are in data/medmnist_files.py.
MEDMNIST_OFFICIAL_URL = "https://zenodo.org/records/10519652/files"
MEDMNIST_URL_ENV = "MEDPROBE_MEDMNIST_URL"  # a mirror for every run of a machine or CI job

DTYPES = ("auto", "float32", "bfloat16", "float16")
PROBE_BACKENDS = ("torch", "sklearn")


@dataclass(frozen=True)
class Setting:
    """One user-facing setting: a command-line flag with an ini twin."""

    dest: str  # attribute name on MedprobeSettings
    flag: str  # canonical command-line flag, always registered, e.g. "--medprobe-max-connector-loss"
    ini: str  # ini key, e.g. "medprobe_max_connector_loss"
    help: str
    default: object  # already parsed
    ini_type: str = "string"  # pytest addini type
    repeatable: bool = False
    is_switch: bool = False  # a flag without a value
    # A short spelling (e.g. "--model"), registered only when no other plugin or conftest owns
    # it: every pytest run of the environment sees our options, and a clash must not crash it.
    short: str | None = None

    @property
    def option_dest(self) -> str:
        """The attribute on pytest's option namespace: prefixed, so that a conftest's own
        ``--seed`` (dest ``seed``) never collides with ours."""
        return "medprobe_" + self.dest.removeprefix("medprobe_")

    @property
    def flags(self) -> tuple[str, ...]:
        """Every spelling, canonical first."""
        return (self.flag,) if self.short is None else (self.flag, self.short)


def _setting(dest: str, flag: str, help: str, default: object, **kwargs: object) -> Setting:
    """A setting from its flag; a flag without the ``--medprobe-`` prefix becomes the short
    spelling of the prefixed canonical one (``--seed`` -> ``--medprobe-seed`` + ``--seed``)."""
    name = flag.removeprefix("--").removeprefix("medprobe-")
    if not flag.startswith("--medprobe-"):
        kwargs.setdefault("short", flag)
    canonical = "--medprobe-" + name
    ini = "medprobe_" + name.replace("-", "_")
    return Setting(dest=dest, flag=canonical, ini=ini, help=help, default=default, **kwargs)  # type: ignore[arg-type]


MODEL = _setting(
    "model",
    "--model",
    f"model to audit: a registry name, NAME=DIR, or a checkpoint directory (repeatable); default: {DEFAULT_MODEL}",
    (DEFAULT_MODEL,),
    ini_type="linelist",
    repeatable=True,
)
DATASET = _setting(
    "dataset",
    "--dataset",
    "labelled image set: synthetic-lesions, medmnist:<flag>[_<size>], folder:<dir>, csv:<file>, "
    "hf:<name or dir>[:<config>] "
    f"(repeatable); default: {DEFAULT_DATASET}",
    (DEFAULT_DATASET,),
    ini_type="linelist",
    repeatable=True,
)
IMAGE_COLUMN = _setting(
    "image_column",
    "--medprobe-image-column",
    "the column holding the images or image paths (csv:, hf: datasets); default: detected",
    None,
)
LABEL_COLUMN = _setting(
    "label_column",
    "--medprobe-label-column",
    "the column holding the class labels (csv:, hf: datasets); default: detected",
    None,
)
FINDING = _setting(
    "findings",
    "--medprobe-finding",
    "audit one finding of a multi-label dataset (chestmnist; a CSV with one 0/1 column per finding) "
    "as the binary task 'NAME present / absent' (repeatable: one dataset per finding)",
    (),
    ini_type="linelist",
    repeatable=True,
)
SUBGROUP = _setting(
    "subgroups",
    "--medprobe-subgroup",
    "a column whose values split the test images into subgroups (sex, age band, site, scanner); every "
    "score is also computed per subgroup and test_subgroups gates the gap (repeatable)",
    (),
    ini_type="linelist",
    repeatable=True,
)
DATA_ROOT = _setting("data_root", "--data-root", "folder holding dataset files (MedMNIST: ~/.medmnist)", None)
MEDMNIST_URL = _setting(
    "medmnist_url",
    "--medprobe-medmnist-url",
    "where a missing MedMNIST file is downloaded from (the official Zenodo record, or a mirror "
    f"serving the same file names); 'off' never downloads; env {MEDMNIST_URL_ENV} sets it too",
    MEDMNIST_OFFICIAL_URL,
)
DEVICE = _setting(
    "device",
    "--device",
    "auto, cpu, cuda, cuda:<i> or balanced (spread the model over every visible GPU with "
    "accelerate's device map; auto does that when there are several GPUs); default auto",
    "auto",
)
DTYPE = _setting("dtype", "--dtype", "auto, float32, bfloat16 or float16; default auto", "auto")
BATCH_SIZE = _setting("batch_size", "--batch-size", "images per forward pass; default 16", 16)
MAX_SAMPLES = _setting(
    "max_samples",
    "--max-samples",
    "cap on each split's size, stratified and seed-fixed; 'none' for no cap (default)",
    None,
)
SEED = _setting("seed", "--seed", "seed of splits, sampling, probes and bootstrap; default 0", 0)
CACHE = _setting(
    "cache_dir",
    "--medprobe-cache",
    f"feature cache folder, relative to the rootdir unless absolute; default {DEFAULT_CACHE_DIR}",
    DEFAULT_CACHE_DIR,
)
REFRESH = _setting(
    "refresh",
    "--medprobe-refresh",
    "ignore cached features and extract them again",
    False,
    ini_type="bool",
    is_switch=True,
)
TRUST_REMOTE_CODE = _setting(
    "trust_remote_code",
    "--medprobe-trust-remote-code",
    "let transformers run the checkpoint's own Python code (only for checkpoints you trust); the report says so",
    False,
    ini_type="bool",
    is_switch=True,
)
OFFLINE = _setting(
    "offline",
    "--medprobe-offline",
    "never download: a catalogue model missing from the local Hugging Face cache is an error (as with "
    "HF_HUB_OFFLINE=1), and so are a missing MedMNIST file and an uncached hf: hub dataset; without it, "
    "such a model is downloaded "
    "once, its size printed first",
    False,
    ini_type="bool",
    is_switch=True,
)
JSON = _setting("json_path", "--medprobe-json", "write the results file (JSON) to this path", None)
CSV = _setting(
    "csv_path",
    "--medprobe-csv",
    "write the models × datasets table (health with interval, each failure-mode statistic, root cause) as CSV",
    None,
)
ANSWER_MODES = ("letter-logits", "generate")
ANSWER_MODE = _setting(
    "answer_mode",
    "--medprobe-answer-mode",
    "how the model's own answer is read: letter-logits (the option letters' logits at the answer "
    "position of the feature pass) or generate (free generation, then the letter or class name is "
    "parsed; for reasoning models that think before answering); default: the model's preferred mode "
    "(generate for the reasoning models of --medprobe-models), else letter-logits",
    None,  # unset: each model's preferred mode decides (see AuditSession.answer_mode)
)
MAX_NEW_TOKENS = _setting(
    "max_new_tokens",
    "--medprobe-max-new-tokens",
    "tokens a model may generate per answer in the generate answer mode; default 512",
    512,
)
DECISION = _setting(
    "decision",
    "--medprobe-decision",
    "how intervals decide verdicts: point (default), confident-fail, confident-pass",
    "point",
)
BOOTSTRAP = _setting("n_bootstrap", "--medprobe-bootstrap", "bootstrap resamples per interval; default 1000", 1000)
PROBE_C = _setting("probe_c", "--medprobe-probe-c", "inverse L2 strength C of the linear probes; default 1.0", 1.0)
PROBE_BACKEND = _setting(
    "probe_backend",
    "--medprobe-probe-backend",
    "how probes are fit: torch (default; all stages at once) or sklearn (reference, one stage at a time)",
    "torch",
)
PROBE_C_GRID = _setting(
    "probe_c_grid",
    "--medprobe-probe-c-grid",
    "C values (comma-separated, e.g. 0.01,0.1,1,10) among which each stage's probe C is chosen by "
    "stratified k-fold cross-validation on the fit split; 'none' (default): every probe uses "
    "--medprobe-probe-c",
    None,  # a tuple of C here (e.g. (0.01, 0.1, 1.0, 10.0)) makes cross-validated C the default protocol
)
PROBE_CV_FOLDS = _setting(
    "probe_cv_folds",
    "--medprobe-probe-cv-folds",
    "folds of the cross-validation that chooses C (with --medprobe-probe-c-grid); default 5",
    5,
)
PROBE_DEVICE = _setting(
    "probe_device",
    "--medprobe-probe-device",
    "where the torch backend fits the probes: auto (default: where the audit runs, --medprobe-device), "
    "cpu, cuda or cuda:<i>",
    "auto",
)
BASELINE = _setting(
    "baseline_path",
    "--medprobe-baseline",
    "compare every pair with this baseline file (adds the regression audits)",
    None,
)
SAVE_BASELINE = _setting(
    "save_baseline_path",
    "--medprobe-save-baseline",
    "write (or update) this baseline file with every pair of the run",
    None,
)
BASELINE_REQUIRED = _setting(
    "baseline_required",
    "--medprobe-baseline-required",
    "a pair without a baseline entry fails the regression audits instead of skipping them",
    False,
    ini_type="bool",
    is_switch=True,
)
LABEL = _setting(
    "label",
    "--medprobe-label",
    "release line of the model(s) in baselines; default: the registry name or folder name",
    None,
)
TOLERANCE = _setting(
    "tolerance",
    "--medprobe-tolerance",
    "how much worse than the baseline a statistic may get (balanced-accuracy points); default 0.02",
    0.02,
)
MIN_VISION_GAIN = _setting(
    "min_vision_gain",
    "--min-vision-gain",
    "audit 1 fails when score(vision) - score(pixels) is below this; from -1 to 1 (negative: accept an "
    "encoder that scores below raw pixels by up to that much); default 0.0",
    0.0,
)
MIN_VISION_SCORE = _setting(
    "min_vision_score",
    "--min-vision-score",
    "audit 1 also fails when score(vision) is below this (e.g. a CNN's accuracy); default none",
    None,
)
MAX_CONNECTOR_LOSS = _setting(
    "max_connector_loss",
    "--max-connector-loss",
    "audit 2 fails when score(vision) - score(connector) exceeds this; default 0.03",
    0.03,
)
MAX_LAYER_DROP = _setting(
    "max_layer_drop",
    "--max-layer-drop",
    "audit 3 fails when a decoder layer loses more than this (image view); default 0.05",
    0.05,
)
MAX_LLM_LOSS = _setting(
    "max_llm_loss",
    "--max-llm-loss",
    "audit 3 fails when score(connector) - score(last layer @answer) exceeds this; default 0.10",
    0.10,
)
MAX_SEMANTIC_GAP = _setting(
    "max_semantic_gap",
    "--max-semantic-gap",
    "audit 4 fails when score(last layer @answer) - score(answer) exceeds this; default 0.10",
    0.10,
)
MIN_HEALTH = _setting("min_health", "--min-health", "the health audit fails below this health; default 0.6", 0.6)
MAX_SUBGROUP_GAP = _setting(
    "max_subgroup_gap",
    "--max-subgroup-gap",
    "test_subgroups fails when the worst subgroup's health or failure-mode statistic is worse than "
    "the overall one by more than this; default 0.10",
    0.10,
)

SETTINGS: tuple[Setting, ...] = (
    MODEL,
    DATASET,
    IMAGE_COLUMN,
    LABEL_COLUMN,
    FINDING,
    SUBGROUP,
    DATA_ROOT,
    MEDMNIST_URL,
    DEVICE,
    DTYPE,
    BATCH_SIZE,
    MAX_SAMPLES,
    SEED,
    CACHE,
    REFRESH,
    TRUST_REMOTE_CODE,
    OFFLINE,
    JSON,
    CSV,
    ANSWER_MODE,
    MAX_NEW_TOKENS,
    DECISION,
    BOOTSTRAP,
    PROBE_C,
    PROBE_BACKEND,
    PROBE_C_GRID,
    PROBE_CV_FOLDS,
    PROBE_DEVICE,
    BASELINE,
    SAVE_BASELINE,
    BASELINE_REQUIRED,
    LABEL,
    TOLERANCE,
    MIN_VISION_GAIN,
    MIN_VISION_SCORE,
    MAX_CONNECTOR_LOSS,
    MAX_LAYER_DROP,
    MAX_LLM_LOSS,
    MAX_SEMANTIC_GAP,
    MIN_HEALTH,
    MAX_SUBGROUP_GAP,
)
THRESHOLD_SETTINGS: tuple[Setting, ...] = (
    MIN_VISION_GAIN,
    MIN_VISION_SCORE,
    MAX_CONNECTOR_LOSS,
    MAX_LAYER_DROP,
    MAX_LLM_LOSS,
    MAX_SEMANTIC_GAP,
    MIN_HEALTH,
    MAX_SUBGROUP_GAP,
)


def setting_names(setting: Setting) -> str:
    """How messages name a setting: its canonical flag (which always works) and its ini key."""
    return f"{setting.flag} / ini {setting.ini}"


SETTINGS_BY_KEY: dict[str, Setting] = {setting.dest: setting for setting in SETTINGS}


def flag_names(key: str, short: bool = False) -> str:
    """How the plugin names the setting ``key`` in a library message (``Verdict.render``):
    flag and ini key, or the flag alone (``short``); a key no option sets stays as it is."""
    setting = SETTINGS_BY_KEY.get(key)
    if setting is None:
        return key
    return setting.flag if short else setting_names(setting)


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


def _usage(setting: Setting, value: object, allowed: str) -> MedprobeUsageError:
    return MedprobeUsageError(f"{setting_names(setting)}: got {value!r}; allowed: {allowed}.")


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
            f"{setting_names(PROBE_DEVICE)}: got {value!r}, but the sklearn probe backend "
            f"({setting_names(PROBE_BACKEND)}) fits on the CPU only. Use {PROBE_BACKEND.flag}=torch "
            f"to fit on {value}, or {PROBE_DEVICE.flag}=cpu."
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
            f"contradictory thresholds: {setting_names(MAX_LAYER_DROP)} is {thresholds.max_layer_drop:g} but "
            f"{setting_names(MAX_LLM_LOSS)} is {thresholds.max_llm_loss:g}; a single decoder layer may not lose "
            f"more than the whole decoder is allowed to. Lower {MAX_LAYER_DROP.flag} to at most "
            f"{thresholds.max_llm_loss:g}, or raise {MAX_LLM_LOSS.flag}."
        )


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
