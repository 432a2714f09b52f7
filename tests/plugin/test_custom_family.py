"""An in-house architecture joins through the ``pytest_medprobe.families`` entry point, and audits end to end.

The user's package (tests/custom_family/acme_medprobe.py) is installed the way pip lays
a distribution out: the module plus a ``*.dist-info`` folder whose ``entry_points.txt``
names its adapter, in a folder on the PYTHONPATH of a pytest subprocess. transformers
does not know its ``acme_vlm`` model type, and pytest-medprobe is not edited.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from pytest_medprobe.errors import MedprobeUsageError

PACKAGE_MODULE = Path(__file__).resolve().parents[1] / "custom_family" / "acme_medprobe.py"
GROUP = "pytest_medprobe.families"
SUBPROCESS_TIMEOUT_S = 300


def _acme_module() -> ModuleType:
    """The user's module, imported here (it registers ``acme_vlm`` with transformers)."""
    spec = importlib.util.spec_from_file_location("acme_medprobe", PACKAGE_MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def acme_checkpoint(tiny_llava_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ``acme_vlm`` checkpoint, saved with save_pretrained (no auto_map, no remote code)."""
    directory = tmp_path_factory.mktemp("acme") / "acme-vlm-tiny"
    _acme_module().build_checkpoint(directory, tiny_llava_dir)
    assert "auto_map" not in json.loads((directory / "config.json").read_text())
    return directory


def _install(site: Path, entry_points: dict[str, str]) -> Path:
    """Install the user's package into ``site`` as pip would: module and dist-info."""
    site.mkdir(parents=True)
    shutil.copy(PACKAGE_MODULE, site / "acme_medprobe.py")
    info = site / "acme_medprobe-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-medprobe\nVersion: 1.0\n")
    lines = [f"[{GROUP}]", *(f"{name} = {target}" for name, target in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site


def _on_path(monkeypatch: pytest.MonkeyPatch, site: Path) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))


def _usage_error_line(result: pytest.RunResult) -> str:
    lines = [line for line in result.stderr.lines if line.startswith("ERROR: ")]
    assert len(lines) == 1, result.stderr.str()
    return lines[0]


@pytest.mark.slow
def test_a_custom_architecture_registered_through_the_entry_point_is_audited_end_to_end(
    shipped_audits: pytest.Pytester,
    acme_checkpoint: Path,
    fast_options: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _on_path(monkeypatch, _install(tmp_path / "site", {"acme": "acme_medprobe:AcmeAdapter"}))
    result = shipped_audits.runpytest_subprocess(
        f"--model={acme_checkpoint}", "--medprobe-json=r.json", *fast_options, timeout=SUBPROCESS_TIMEOUT_S
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) == 0 and outcomes.get("passed", 0) + outcomes.get("failed", 0) == 5
    run = json.loads((shipped_audits.path / "r.json").read_text())["runs"][0]
    assert run["model"]["family"] == "acme"
    assert run["model"]["trust_remote_code"] is False
    names = [record["stage"] for record in run["stages"]]
    config = json.loads((acme_checkpoint / "config.json").read_text())
    n_blocks, n_layers = config["vision_config"]["num_hidden_layers"], config["text_config"]["num_hidden_layers"]
    assert [name for name in names if name.startswith("vision.")] == [f"vision.{i}" for i in range(n_blocks)]
    assert "vision" in names and "connector" in names
    assert len([name for name in names if name.startswith("llm.") and name.endswith("@answer")]) == n_layers
    assert len([name for name in names if name.startswith("llm.") and "@" not in name]) == n_layers
    assert run["answer"]["mode"] == "letter-logits"
    listing = shipped_audits.runpytest_subprocess("--medprobe-models", timeout=SUBPROCESS_TIMEOUT_S)
    listing.stdout.fnmatch_lines(["*acme_vlm *family file acme_medprobe.AcmeAdapter*"])


def test_without_the_entry_point_the_unknown_architecture_is_refused(
    pytester: pytest.Pytester, acme_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _on_path(monkeypatch, _install(tmp_path / "site", {}))
    result = pytester.runpytest_subprocess(f"--model={acme_checkpoint}", timeout=SUBPROCESS_TIMEOUT_S)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "model_type 'acme_vlm'" in _usage_error_line(result)


def test_a_custom_family_claiming_a_model_type_already_taken_is_a_usage_error_naming_both(
    pytester: pytest.Pytester, acme_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    entry_points = {"acme": "acme_medprobe:AcmeAdapter", "clash": "acme_medprobe:ClashingAdapter"}
    _on_path(monkeypatch, _install(tmp_path / "site", entry_points))
    result = pytester.runpytest_subprocess(f"--model={acme_checkpoint}", timeout=SUBPROCESS_TIMEOUT_S)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = _usage_error_line(result)
    assert "entry point 'clash' of acme-medprobe 1.0 (acme_medprobe:ClashingAdapter)" in line
    assert "model_type 'llava_next'" in line and "LlavaNextAdapter" in line
    assert "Traceback" not in result.stderr.str()


def test_an_entry_point_that_does_not_import_is_a_usage_error_naming_the_package(
    pytester: pytest.Pytester, acme_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _on_path(monkeypatch, _install(tmp_path / "site", {"broken": "acme_medprobe_missing:Adapter"}))
    result = pytester.runpytest_subprocess(f"--model={acme_checkpoint}", timeout=SUBPROCESS_TIMEOUT_S)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = _usage_error_line(result)
    assert "entry point 'broken' of acme-medprobe 1.0 (acme_medprobe_missing:Adapter) could not be loaded" in line
    assert "ModuleNotFoundError" in line


def test_a_custom_family_naming_a_module_the_model_lacks_is_refused_before_loading(
    pytester: pytest.Pytester, acme_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _on_path(monkeypatch, _install(tmp_path / "site", {"acme": "acme_medprobe:MisplacedAdapter"}))
    result = pytester.runpytest_subprocess(f"--model={acme_checkpoint}", timeout=SUBPROCESS_TIMEOUT_S)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "has no 'adapter_bridge'" in _usage_error_line(result)
    assert "Traceback" not in result.stderr.str()


class _Registered:
    """register_family on a copy of the registry, so no test leaves a family behind."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from pytest_medprobe.models import families

        monkeypatch.setattr(families, "ADAPTERS", dict(families.ADAPTERS))
        self.families = families


def test_register_family_makes_the_adapter_read_its_model_types_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_medprobe import FamilyAdapter, register_family

    families = _Registered(monkeypatch).families

    @register_family
    class RadiologyAdapter(FamilyAdapter):
        family = "radiology-vlm"
        model_types = ("radiology_vlm", "radiology_vlm_v2")
        language_model_path = "decoder"

    assert families.adapter_class("radiology_vlm") is RadiologyAdapter
    assert families.adapter_class("radiology_vlm_v2") is RadiologyAdapter
    assert register_family(RadiologyAdapter) is RadiologyAdapter  # the same class again: nothing changes


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"family": "mine", "model_types": ("llava_next",)}, "model_type 'llava_next', which"),
        ({"family": "mine", "model_types": ("qwen2_vl",)}, "model_type 'qwen2_vl', which"),
        ({"family": "llava_next", "model_types": ("my_llava",)}, "family name 'llava_next' is taken"),
        ({"family": "mine", "model_types": ()}, "names no model_types"),
        ({"family": "", "model_types": ("mine",)}, "names no family"),
    ],
)
def test_register_family_refuses_a_name_already_taken_or_missing(
    monkeypatch: pytest.MonkeyPatch, attributes: dict[str, object], message: str
) -> None:
    from pytest_medprobe import FamilyAdapter, register_family

    families = _Registered(monkeypatch).families
    before = dict(families.ADAPTERS)
    adapter = type("MistakenAdapter", (FamilyAdapter,), dict(attributes))
    with pytest.raises(MedprobeUsageError, match=message):
        register_family(adapter)
    assert families.ADAPTERS == before  # nothing half-registered


def test_register_family_refuses_what_is_not_an_adapter_class() -> None:
    from pytest_medprobe import register_family

    with pytest.raises(MedprobeUsageError, match="not a subclass of pytest_medprobe.FamilyAdapter"):
        register_family(dict)  # type: ignore[arg-type]
