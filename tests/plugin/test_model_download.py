"""``--model NAME`` downloads a catalogue model that is not cached, from a stand-in hub on 127.0.0.1.

Each test runs pytest in a subprocess whose hub client is online (HF_HUB_OFFLINE unset
only for that test) and reads its endpoint from HF_ENDPOINT, the way a user's machine
with internet reaches huggingface.co.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_medprobe.config import MODEL
from tests.hub_stand_in import StandInHub, StandInRepo, stand_in_hub

# llava-med's catalogue entry; the stand-in serves the tiny LLaVA under its name.
NAME = "llava-med"
HUB_ID = "chaoyinshe/llava-med-v1.5-mistral-7b-hf"
COMMIT = "c0ffee00" * 5
HUB_CLIENT_CHUNK = 10 * 1024 * 1024  # huggingface_hub writes what it receives in chunks of this size
SUBPROCESS_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def served_checkpoint(tiny_llava_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny LLaVA, its weight file padded past the hub client's chunk size.

    The padding is safetensors header metadata, so the model loads exactly as before; the
    file is large enough that a connection dropped three quarters in has delivered whole
    chunks, which the client keeps and resumes after with a Range request.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("served") / "tiny-llava"
    shutil.copytree(tiny_llava_dir, folder)
    weights = folder / "model.safetensors"
    with safe_open(str(weights), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
        metadata = dict(handle.metadata() or {})
    metadata["padding"] = "0" * (2 * HUB_CLIENT_CHUNK)
    save_file(tensors, str(weights), metadata=metadata)
    return folder


def _repo(checkpoint: Path) -> StandInRepo:
    repo = StandInRepo.from_folder(checkpoint, COMMIT)
    # What a real repository also holds and an audit does not need.
    repo.files["README.md"] = b"# model card\n"
    repo.files["model-q4.gguf"] = b"GGUF" * 1000
    repo.files["original/consolidated.pth"] = b"\0" * 1000
    return repo


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty Hugging Face cache, and a hub client allowed online (for this test only)."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HF_HOME"):
        monkeypatch.delenv(variable, raising=False)
    cache = tmp_path / "hf-hub-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    return cache


@pytest.fixture
def hub(served_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInHub]:
    with stand_in_hub(StandInHub({HUB_ID: _repo(served_checkpoint)})) as served:
        monkeypatch.setenv("HF_ENDPOINT", served.endpoint)
        yield served


def _text(result: pytest.RunResult) -> str:
    return " ".join((result.stdout.str() + "\n" + result.stderr.str()).split())


def _usage_error_line(result: pytest.RunResult) -> str:
    lines = [line for line in result.stderr.lines if line.startswith("ERROR: ")]
    assert len(lines) == 1, result.stderr.str()
    return lines[0]


def _storage(cache: Path) -> Path:
    return cache / ("models--" + HUB_ID.replace("/", "--"))


def _resolved_gets(hub: StandInHub) -> list[str]:
    return [path.rsplit("/", 1)[-1] for method, path, _ in hub.requests if method == "GET" and "/resolve/" in path]


@pytest.mark.slow
def test_a_catalogue_model_missing_from_the_cache_is_downloaded_resumed_after_a_drop_and_audited(
    shipped_audits: pytest.Pytester,
    online: Path,
    hub: StandInHub,
    served_checkpoint: Path,
    fast_options: list[str],
) -> None:
    hub.drop_first_get.add("model.safetensors")
    result = shipped_audits.runpytest_subprocess(
        f"--model={NAME}", "--medprobe-json=r.json", *fast_options, timeout=SUBPROCESS_TIMEOUT_S
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) == 0 and outcomes.get("passed", 0) + outcomes.get("failed", 0) == 5
    # The size is printed before the transfer starts.
    stderr = result.stderr.str()
    announced = stderr.index(f"downloading {HUB_ID} (commit {COMMIT[:12]}, ")
    assert "llava-med is not in the local Hugging Face cache" in stderr[:announced]
    weights_size = (served_checkpoint / "model.safetensors").stat().st_size
    assert weights_size > HUB_CLIENT_CHUNK
    # The connection dropped three quarters into the weights; the client kept the whole
    # chunks it had and asked for the rest only.
    assert hub.resolve_gets("model.safetensors") == [None, f"bytes={HUB_CLIENT_CHUNK}-"]
    snapshot = _storage(online) / "snapshots" / COMMIT
    assert (snapshot / "model.safetensors").read_bytes() == (served_checkpoint / "model.safetensors").read_bytes()
    # Only what transformers reads was fetched: no model card, GGUF or subfolder files.
    fetched = set(_resolved_gets(hub))
    assert fetched == {path.name for path in served_checkpoint.iterdir()}
    run = json.loads((shipped_audits.path / "r.json").read_text())["runs"][0]
    assert run["model"]["name"] == NAME and run["model"]["source"] == str(snapshot)


def test_the_offline_flag_keeps_the_not_cached_message_and_never_contacts_the_hub(
    pytester: pytest.Pytester, online: Path, hub: StandInHub
) -> None:
    result = pytester.runpytest_subprocess(
        f"--model={NAME}", "--medprobe-offline", "-p", "no:cacheprovider", timeout=SUBPROCESS_TIMEOUT_S
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = _usage_error_line(result)
    assert f"the weights of {HUB_ID} are not in the local Hugging Face cache" in line
    assert "downloading is off (--medprobe-offline was given)" in line
    assert hub.requests == []


def test_a_download_that_fails_part_way_leaves_no_snapshot_and_the_next_run_fetches_only_the_rest(
    pytester: pytest.Pytester, online: Path, hub: StandInHub
) -> None:
    hub.fail_get.add("model.safetensors")
    failed = pytester.runpytest_subprocess(f"--model={NAME}", "-p", "no:cacheprovider", timeout=SUBPROCESS_TIMEOUT_S)
    assert failed.ret == pytest.ExitCode.USAGE_ERROR
    line = _usage_error_line(failed)
    assert f"{MODEL.flag} '{NAME}': the download of {HUB_ID} from {hub.endpoint} failed part-way" in line
    assert "500" in line and "running again fetches only the rest" in line
    assert "Traceback" not in _text(failed)
    storage = _storage(online)
    assert not (storage / "snapshots" / COMMIT).exists()
    assert not list(storage.rglob("*.incomplete"))
    # Nothing that looks like a cached model: offline, it is reported missing.
    offline = pytester.runpytest_subprocess(
        f"--model={NAME}", "--medprobe-offline", "-p", "no:cacheprovider", timeout=SUBPROCESS_TIMEOUT_S
    )
    assert "are not in the local Hugging Face cache" in _usage_error_line(offline)

    hub.fail_get.clear()
    hub.requests.clear()
    again = pytester.runpytest_subprocess(
        f"--model={NAME}", "--collect-only", "-p", "no:cacheprovider", timeout=SUBPROCESS_TIMEOUT_S
    )
    assert again.ret == pytest.ExitCode.NO_TESTS_COLLECTED, again.stderr.str()
    assert _resolved_gets(hub) == ["model.safetensors"]
    assert (storage / "snapshots" / COMMIT / "model.safetensors").is_file()


def test_a_model_larger_than_the_free_disk_space_is_refused_before_anything_is_written(
    pytester: pytest.Pytester, online: Path, hub: StandInHub
) -> None:
    hub.repos[HUB_ID].advertised_sizes["model.safetensors"] = 10**18  # an exabyte: no test disk holds it
    result = pytester.runpytest_subprocess(f"--model={NAME}", "-p", "no:cacheprovider", timeout=SUBPROCESS_TIMEOUT_S)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = _usage_error_line(result)
    assert f"{MODEL.flag} '{NAME}': not enough disk space to download {HUB_ID}: it needs 1000000000.0 GB" in line
    assert "Nothing was left half-written in the cache." in line
    assert _resolved_gets(hub) == []
    assert not _storage(online).exists()


def test_a_repository_the_hub_does_not_have_is_a_usage_error_naming_it(
    pytester: pytest.Pytester, online: Path, hub: StandInHub
) -> None:
    result = pytester.runpytest_subprocess(
        "--model=medgemma-4b-it", "-p", "no:cacheprovider", timeout=SUBPROCESS_TIMEOUT_S
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = _usage_error_line(result)
    assert f"the hub at {hub.endpoint} refused google/medgemma-4b-it (RepositoryNotFoundError)" in line
    assert "hf auth login" in line
