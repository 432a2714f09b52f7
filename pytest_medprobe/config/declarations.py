"""Every setting of pytest-medprobe, declared once: flag, ini key, help, default and scope.

The order of ``SETTINGS`` is the order of ``pytest --help``.
"""

from __future__ import annotations

from pytest_medprobe.config.setting import AUDIT, EXTRACTION, FEATURES, Setting, declare, setting_names

DEFAULT_MODEL = "medprobe-tiny"
DEFAULT_DATASET = "synthetic-lesions"
DEFAULT_CACHE_DIR = ".medprobe-cache"
# The official MedMNIST files (Zenodo record 10519652); the MD5s are in data/medmnist_files.py.
MEDMNIST_OFFICIAL_URL = "https://zenodo.org/records/10519652/files"
MEDMNIST_URL_ENV = "MEDPROBE_MEDMNIST_URL"  # a mirror for every run of a machine or CI job

DTYPES = ("auto", "float32", "bfloat16", "float16")
PROBE_BACKENDS = ("torch", "sklearn")


MODEL = declare(
    "model",
    "--model",
    f"model to audit: a registry name, NAME=DIR, or a checkpoint directory (repeatable); default: {DEFAULT_MODEL}",
    (DEFAULT_MODEL,),
    ini_type="linelist",
    repeatable=True,
    scope=FEATURES,
)
DATASET = declare(
    "dataset",
    "--dataset",
    "labelled image set: synthetic-lesions, medmnist:<flag>[_<size>], folder:<dir>, csv:<file>, "
    "hf:<name or dir>[:<config>] "
    f"(repeatable); default: {DEFAULT_DATASET}",
    (DEFAULT_DATASET,),
    ini_type="linelist",
    repeatable=True,
    scope=FEATURES,
)
IMAGE_COLUMN = declare(
    "image_column",
    "--medprobe-image-column",
    "the column holding the images or image paths (csv:, hf: datasets); default: detected",
    None,
    scope=FEATURES,
)
LABEL_COLUMN = declare(
    "label_column",
    "--medprobe-label-column",
    "the column holding the class labels (csv:, hf: datasets); default: detected",
    None,
    scope=FEATURES,
)
FINDING = declare(
    "findings",
    "--medprobe-finding",
    "audit one finding of a multi-label dataset (chestmnist; a CSV with one 0/1 column per finding) "
    "as the binary task 'NAME present / absent' (repeatable: one dataset per finding)",
    (),
    ini_type="linelist",
    repeatable=True,
    scope=FEATURES,
)
SUBGROUP = declare(
    "subgroups",
    "--medprobe-subgroup",
    "a column whose values split the test images into subgroups (sex, age band, site, scanner); every "
    "score is also computed per subgroup and test_subgroups gates the gap (repeatable)",
    (),
    ini_type="linelist",
    repeatable=True,
    scope=AUDIT,
)
DATA_ROOT = declare(
    "data_root", "--data-root", "folder holding dataset files (MedMNIST: ~/.medmnist)", None, scope=FEATURES
)
MEDMNIST_URL = declare(
    "medmnist_url",
    "--medprobe-medmnist-url",
    "where a missing MedMNIST file is downloaded from (the official Zenodo record, or a mirror "
    f"serving the same file names); 'off' never downloads; env {MEDMNIST_URL_ENV} sets it too",
    MEDMNIST_OFFICIAL_URL,
    scope=EXTRACTION,
)
DEVICE = declare(
    "device",
    "--device",
    "auto, cpu, cuda, cuda:<i> or balanced (spread the model over every visible GPU with "
    "accelerate's device map; auto does that when there are several GPUs); default auto",
    "auto",
    scope=FEATURES,
)
DTYPE = declare("dtype", "--dtype", "auto, float32, bfloat16 or float16; default auto", "auto", scope=FEATURES)
BATCH_SIZE = declare("batch_size", "--batch-size", "images per forward pass; default 16", 16, scope=EXTRACTION)
MAX_SAMPLES = declare(
    "max_samples",
    "--max-samples",
    "cap on each split's size, stratified and seed-fixed; 'none' for no cap (default)",
    None,
    scope=FEATURES,
)
SEED = declare("seed", "--seed", "seed of splits, sampling, probes and bootstrap; default 0", 0, scope=FEATURES)
CACHE = declare(
    "cache_dir",
    "--medprobe-cache",
    f"feature cache folder, relative to the rootdir unless absolute; default {DEFAULT_CACHE_DIR}",
    DEFAULT_CACHE_DIR,
    scope=EXTRACTION,
)
REFRESH = declare(
    "refresh",
    "--medprobe-refresh",
    "ignore cached features and extract them again",
    False,
    ini_type="bool",
    is_switch=True,
    scope=EXTRACTION,
)
TRUST_REMOTE_CODE = declare(
    "trust_remote_code",
    "--medprobe-trust-remote-code",
    "let transformers run the checkpoint's own Python code (only for checkpoints you trust); the report says so",
    False,
    ini_type="bool",
    is_switch=True,
    scope=EXTRACTION,
)
OFFLINE = declare(
    "offline",
    "--medprobe-offline",
    "never download: a catalogue model missing from the local Hugging Face cache is an error (as with "
    "HF_HUB_OFFLINE=1), and so are a missing MedMNIST file and an uncached hf: hub dataset; without it, "
    "such a model is downloaded "
    "once, its size printed first",
    False,
    ini_type="bool",
    is_switch=True,
    scope=EXTRACTION,
)
JSON = declare("json_path", "--medprobe-json", "write the results file (JSON) to this path", None, scope=AUDIT)
CSV = declare(
    "csv_path",
    "--medprobe-csv",
    "write the models × datasets table (health with interval, each failure-mode statistic, root cause) as CSV",
    None,
    scope=AUDIT,
)
ANSWER_MODES = ("letter-logits", "generate")
ANSWER_MODE = declare(
    "answer_mode",
    "--medprobe-answer-mode",
    "how the model's own answer is read: letter-logits (the option letters' logits at the answer "
    "position of the feature pass) or generate (free generation, then the letter or class name is "
    "parsed; for reasoning models that think before answering); default: the model's preferred mode "
    "(generate for the reasoning models of --medprobe-models), else letter-logits",
    None,  # unset: each model's preferred mode decides (see AuditSession.answer_mode)
    scope=FEATURES,
)
MAX_NEW_TOKENS = declare(
    "max_new_tokens",
    "--medprobe-max-new-tokens",
    "tokens a model may generate per answer in the generate answer mode; default 512",
    512,
    scope=FEATURES,
)
DECISION = declare(
    "decision",
    "--medprobe-decision",
    "how intervals decide verdicts: point (default), confident-fail, confident-pass",
    "point",
    scope=AUDIT,
)
BOOTSTRAP = declare(
    "n_bootstrap", "--medprobe-bootstrap", "bootstrap resamples per interval; default 1000", 1000, scope=AUDIT
)
PROBE_C = declare(
    "probe_c", "--medprobe-probe-c", "inverse L2 strength C of the linear probes; default 1.0", 1.0, scope=AUDIT
)
PROBE_BACKEND = declare(
    "probe_backend",
    "--medprobe-probe-backend",
    "how probes are fit: torch (default; all stages at once) or sklearn (reference, one stage at a time)",
    "torch",
    scope=AUDIT,
)
PROBE_C_GRID = declare(
    "probe_c_grid",
    "--medprobe-probe-c-grid",
    "C values (comma-separated, e.g. 0.01,0.1,1,10) among which each stage's probe C is chosen by "
    "stratified k-fold cross-validation on the fit split; 'none' (default): every probe uses "
    "--medprobe-probe-c",
    None,  # a tuple of C here (e.g. (0.01, 0.1, 1.0, 10.0)) makes cross-validated C the default protocol
    scope=AUDIT,
)
PROBE_CV_FOLDS = declare(
    "probe_cv_folds",
    "--medprobe-probe-cv-folds",
    "folds of the cross-validation that chooses C (with --medprobe-probe-c-grid); default 5",
    5,
    scope=AUDIT,
)
PROBE_DEVICE = declare(
    "probe_device",
    "--medprobe-probe-device",
    "where the torch backend fits the probes: auto (default: where the audit runs, --medprobe-device), "
    "cpu, cuda or cuda:<i>",
    "auto",
    scope=AUDIT,
)
BASELINE = declare(
    "baseline_path",
    "--medprobe-baseline",
    "compare every pair with this baseline file (adds the regression audits)",
    None,
    scope=AUDIT,
)
SAVE_BASELINE = declare(
    "save_baseline_path",
    "--medprobe-save-baseline",
    "write (or update) this baseline file with every pair of the run",
    None,
    scope=AUDIT,
)
BASELINE_REQUIRED = declare(
    "baseline_required",
    "--medprobe-baseline-required",
    "a pair without a baseline entry fails the regression audits instead of skipping them",
    False,
    ini_type="bool",
    is_switch=True,
    scope=AUDIT,
)
LABEL = declare(
    "label",
    "--medprobe-label",
    "release line of the model(s) in baselines; default: the registry name or folder name",
    None,
    scope=AUDIT,
)
TOLERANCE = declare(
    "tolerance",
    "--medprobe-tolerance",
    "how much worse than the baseline a statistic may get (balanced-accuracy points); default 0.02",
    0.02,
    scope=AUDIT,
)
MIN_VISION_GAIN = declare(
    "min_vision_gain",
    "--min-vision-gain",
    "audit 1 fails when score(vision) - score(pixels) is below this; from -1 to 1 (negative: accept an "
    "encoder that scores below raw pixels by up to that much); default 0.0",
    0.0,
    scope=AUDIT,
)
MIN_VISION_SCORE = declare(
    "min_vision_score",
    "--min-vision-score",
    "audit 1 also fails when score(vision) is below this (e.g. a CNN's accuracy); default none",
    None,
    scope=AUDIT,
)
MAX_CONNECTOR_LOSS = declare(
    "max_connector_loss",
    "--max-connector-loss",
    "audit 2 fails when score(vision) - score(connector) exceeds this; default 0.03",
    0.03,
    scope=AUDIT,
)
MAX_LAYER_DROP = declare(
    "max_layer_drop",
    "--max-layer-drop",
    "audit 3 fails when a decoder layer loses more than this (image view); default 0.05",
    0.05,
    scope=AUDIT,
)
MAX_LLM_LOSS = declare(
    "max_llm_loss",
    "--max-llm-loss",
    "audit 3 fails when score(connector) - score(last layer @answer) exceeds this; default 0.10",
    0.10,
    scope=AUDIT,
)
MAX_SEMANTIC_GAP = declare(
    "max_semantic_gap",
    "--max-semantic-gap",
    "audit 4 fails when score(last layer @answer) - score(answer) exceeds this; default 0.10",
    0.10,
    scope=AUDIT,
)
MIN_HEALTH = declare(
    "min_health", "--min-health", "the health audit fails below this health; default 0.6", 0.6, scope=AUDIT
)
MAX_SUBGROUP_GAP = declare(
    "max_subgroup_gap",
    "--max-subgroup-gap",
    "test_subgroups fails when the worst subgroup's health or failure-mode statistic is worse than "
    "the overall one by more than this; default 0.10",
    0.10,
    scope=AUDIT,
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
    *THRESHOLD_SETTINGS,
)


# Derived from each setting's declared scope, never listed by hand:
# the settings that change the features (the cache key follows each of them, tests/unit/test_feature_settings.py)
FEATURE_SETTINGS: tuple[Setting, ...] = tuple(setting for setting in SETTINGS if setting.scope == FEATURES)
# the settings ``python -m pytest_medprobe extract`` takes: all that decide which features it writes and where
EXTRACT_SETTINGS: tuple[Setting, ...] = tuple(
    setting for setting in SETTINGS if setting.scope in (FEATURES, EXTRACTION)
)

SETTINGS_BY_KEY: dict[str, Setting] = {setting.dest: setting for setting in SETTINGS}


def flag_names(key: str, short: bool = False) -> str:
    """How the plugin names the setting ``key`` in a library message (``Verdict.render``):
    flag and ini key, or the flag alone (``short``); a key no option sets stays as it is."""
    setting = SETTINGS_BY_KEY.get(key)
    if setting is None:
        return key
    return setting.flag if short else setting_names(setting)
