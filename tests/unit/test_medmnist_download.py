"""Downloading a missing MedMNIST file, against a stand-in HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pytest_medprobe.config import MEDMNIST_OFFICIAL_URL, MEDMNIST_URL, MEDMNIST_URL_ENV, resolve_settings
from pytest_medprobe.data import check_dataset_spec, load_dataset
from pytest_medprobe.data.download import download
from pytest_medprobe.data.medmnist_files import MD5
from pytest_medprobe.errors import DatasetError, MedprobeUsageError
from tests.stand_in_server import StandIn


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_a_file_with_the_right_checksum_is_downloaded_atomically(stand_in: StandIn, tmp_path: Path) -> None:
    data = stand_in.files["breastmnist.npz"]
    target = tmp_path / "breastmnist.npz"
    download(f"{stand_in.url}/breastmnist.npz", target, _md5(data), progress=False)
    assert target.read_bytes() == data
    assert sorted(path.name for path in tmp_path.iterdir()) == [".breastmnist.npz.lock", "breastmnist.npz"]
    assert stand_in.ranges == [None]


def test_a_wrong_checksum_is_a_clear_error_and_leaves_no_file_behind(stand_in: StandIn, tmp_path: Path) -> None:
    target = tmp_path / "breastmnist.npz"
    url = f"{stand_in.url}/breastmnist.npz"
    with pytest.raises(DatasetError) as caught:
        download(url, target, "0" * 32, progress=False)
    observed = _md5(stand_in.files["breastmnist.npz"])
    assert str(caught.value).startswith(
        f"{url}: the downloaded file has MD5 {observed}, but the published checksum is {'0' * 32}; "
        "it was deleted, nothing is kept."
    )
    assert [path.name for path in tmp_path.iterdir() if not path.name.endswith(".lock")] == []


def test_an_interrupted_transfer_resumes_from_where_it_stopped(stand_in: StandIn, tmp_path: Path) -> None:
    data = stand_in.files["breastmnist.npz"]
    stand_in.cut_first_response_at = 1000
    target = tmp_path / "breastmnist.npz"
    download(f"{stand_in.url}/breastmnist.npz", target, _md5(data), progress=False)
    assert target.read_bytes() == data
    assert stand_in.ranges == [None, "bytes=1000-"]  # the second request asked only for the rest


def test_a_partial_file_left_by_an_earlier_run_is_resumed(stand_in: StandIn, tmp_path: Path) -> None:
    data = stand_in.files["breastmnist.npz"]
    (tmp_path / "breastmnist.npz.part").write_bytes(data[:777])
    download(f"{stand_in.url}/breastmnist.npz", tmp_path / "breastmnist.npz", _md5(data), progress=False)
    assert (tmp_path / "breastmnist.npz").read_bytes() == data and stand_in.ranges == ["bytes=777-"]


def test_a_missing_medmnist_file_is_fetched_from_the_configured_mirror_and_read(
    stand_in: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(MD5["breastmnist"], 28, _md5(stand_in.files["breastmnist.npz"]))
    check_dataset_spec("medmnist:breastmnist", tmp_path, medmnist_url=stand_in.url)
    dataset = load_dataset("medmnist:breastmnist", data_root=tmp_path, max_samples=None, seed=0)
    assert (dataset.n_fit, dataset.n_test) == (40, 20)


def test_the_published_checksum_guards_the_medmnist_download(stand_in: StandIn, tmp_path: Path) -> None:
    # The stand-in's file is not the official one: the official MD5 refuses it.
    with pytest.raises(MedprobeUsageError) as caught:
        check_dataset_spec("medmnist:breastmnist", tmp_path, medmnist_url=stand_in.url)
    assert "dataset 'medmnist:breastmnist': downloading breastmnist.npz failed:" in str(caught.value)
    assert f"the published checksum is {MD5['breastmnist'][28]}" in str(caught.value)
    assert not (tmp_path / "breastmnist.npz").exists() and not (tmp_path / "breastmnist.npz.part").exists()


def test_offline_the_message_is_todays_with_the_reason_the_download_failed(tmp_path: Path) -> None:
    with pytest.raises(MedprobeUsageError) as caught:  # port 9 (discard) refuses at once
        check_dataset_spec("medmnist:breastmnist_64", tmp_path, medmnist_url="http://127.0.0.1:9/files")
    message = str(caught.value)
    assert message.startswith(
        f"dataset 'medmnist:breastmnist_64': no MedMNIST file at {tmp_path / 'breastmnist_64.npz'}"
    )
    assert "Downloading it failed: cannot reach http://127.0.0.1:9/files/breastmnist_64.npz" in message
    assert "pip install medmnist" in message and list(tmp_path.iterdir()) == [tmp_path / ".breastmnist_64.npz.lock"]


def test_the_download_url_comes_from_the_command_line_else_ini_else_the_environment(tmp_path: Path) -> None:
    def resolved(cli: str | None, ini: str | None, env: str | None) -> str | None:
        environ = {MEDMNIST_URL_ENV: env} if env is not None else {}
        return resolve_settings({MEDMNIST_URL.dest: cli}, {MEDMNIST_URL.ini: ini}, tmp_path, environ).medmnist_url

    assert resolved(None, None, None) == MEDMNIST_OFFICIAL_URL
    assert resolved(None, None, "https://mirror.example/medmnist/") == "https://mirror.example/medmnist"
    assert resolved(None, "https://ini.example", "https://env.example") == "https://ini.example"
    assert resolved("off", "https://ini.example", None) is None
    with pytest.raises(MedprobeUsageError, match="--medprobe-medmnist-url / ini medprobe_medmnist_url: got 'ftp"):
        resolved("ftp://old.example", None, None)


def test_two_processes_sharing_a_data_folder_download_the_file_once(stand_in: StandIn, tmp_path: Path) -> None:
    import functools
    import multiprocessing

    data = stand_in.files["breastmnist.npz"]
    stand_in.delay_s = 3.0  # slow enough that, unlocked, both transfers would be under way at once
    target = tmp_path / "breastmnist.npz"
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as two users' runs would be
    with context.Pool(2) as pool:
        quiet = functools.partial(download, progress=False)
        pool.starmap(quiet, [(f"{stand_in.url}/breastmnist.npz", target, _md5(data))] * 2)
    assert target.read_bytes() == data
    assert stand_in.ranges == [None]  # one transfer: the second process waited, then found the file
