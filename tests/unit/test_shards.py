"""Scale-out without a model: the shard partition, the launcher's rank, merged outputs, thread shares."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_medprobe.commands import extract_command
from pytest_medprobe.config import (
    AUDIT,
    BATCH_SIZE,
    DATASET,
    EXTRACT_SETTINGS,
    FEATURE_SETTINGS,
    MAX_SAMPLES,
    MODEL,
    SEED,
    SETTINGS,
    resolve_settings,
)
from pytest_medprobe.errors import MedprobeUsageError
from pytest_medprobe.pairs import Pair
from pytest_medprobe.report.outputs import PairOutput, RunOutputs, merge
from pytest_medprobe.resources import share_cpu_threads
from pytest_medprobe.shards import Shard, shard_rows


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 20])
@pytest.mark.parametrize(("n_fit", "n_test", "batch"), [(40, 40, 6), (480, 240, 16), (5, 13, 4), (1, 1, 16)])
def test_the_shards_cover_each_split_once_in_order_in_whole_batches(
    count: int, n_fit: int, n_test: int, batch: int
) -> None:
    n_rows = {"fit": n_fit, "test": n_test}
    parts = [shard_rows(Shard(index, count), n_rows, batch) for index in range(count)]

    for split, n in n_rows.items():
        ranges = [part[split] for part in parts]
        assert [row for selected in ranges for row in selected] == list(range(n))
        for selected in ranges:
            if len(selected):  # every forward pass is one a single process runs
                assert selected.start % batch == 0
                assert len(selected) % batch == 0 or selected.stop == n
    working = [part for part in parts if len(part["fit"])]
    assert all(len(part["test"]) for part in working)  # a working shard has rows of both splits
    assert len(working) == min(count, -(-n_fit // batch), -(-n_test // batch))


def test_a_shard_is_written_index_slash_count_counting_from_zero() -> None:
    assert Shard.parse(" 1/4 ") == Shard(1, 4) and str(Shard(1, 4)) == "1/4"
    for bad in ("4/4", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(MedprobeUsageError, match="--shard: got .*allowed: I/N with 0 <= I < N"):
            Shard.parse(bad)


def test_a_launched_rank_takes_the_shard_of_its_rank_and_a_single_process_takes_none() -> None:
    assert Shard.from_environment({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3"}) == Shard(3, 8)
    assert Shard.from_environment({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert Shard.from_environment({}) is None


def test_the_extract_command_takes_every_setting_that_can_change_the_features() -> None:
    audit_only = {setting.flag for setting in SETTINGS if setting.scope == AUDIT}
    assert {setting.flag for setting in EXTRACT_SETTINGS} | audit_only == {setting.flag for setting in SETTINGS}
    assert {setting.flag for setting in FEATURE_SETTINGS} <= {setting.flag for setting in EXTRACT_SETTINGS}
    settings = resolve_settings({MAX_SAMPLES.dest: "40", "cache_dir": "/c", "trust_remote_code": True}, {}, Path("/"))
    command = extract_command(settings, "m", "synthetic-lesions", "1/2", batch_size=6)

    assert command.startswith(f"python -m pytest_medprobe extract {MODEL.flag}=m {DATASET.flag}=synthetic-lesions ")
    for part in (
        f"{MAX_SAMPLES.flag}=40",
        f"{BATCH_SIZE.flag}=6",
        "--medprobe-cache=/c",
        "--medprobe-trust-remote-code",
    ):
        assert part in command.split()
    assert command.endswith("--shard=1/2") and SEED.flag not in command  # defaults left out


def _record(model: str, forward_passes: int) -> dict[str, object]:
    return {
        "model": {"name": model},
        "features": {"cache_key": model, "cache_hit": False, "forward_passes": forward_passes},
    }


def test_merged_outputs_hold_each_pair_once_with_the_forward_passes_of_every_process_in_serial_order() -> None:
    first = RunOutputs(
        [PairOutput("b", "d", _record("b", 0)), PairOutput("a", "d", _record("a", 12), ("a|d", {"x": 1}))],
        [],
        {"t2[b]": "passed", "t1[a]": "failed"},
    )
    second = RunOutputs([PairOutput("b", "d", _record("b", 14))], [("c", "d", "boom")], {"t1[b]": "passed"})

    merged = merge(
        [RunOutputs.from_json(first.to_json()), RunOutputs.from_json(second.to_json())],
        [Pair("a", "d"), Pair("b", "d"), Pair("c", "d")],
        ["t1[a]", "t1[b]", "t2[b]"],
    )

    assert [(p.model, p.record["features"]) for p in merged.pairs] == [
        ("a", {"cache_key": "a", "cache_hit": False, "forward_passes": 12}),
        ("b", {"cache_key": "b", "cache_hit": False, "forward_passes": 14}),
    ]
    assert merged.errors == [("c", "d", "boom")]
    assert list(merged.outcomes) == ["t1[a]", "t1[b]", "t2[b]"]
    assert merged.baseline_entries == {"a|d": {"x": 1}}


def test_xdist_workers_split_the_cores_unless_the_user_set_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(set_num_threads=calls.append))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    environ: dict[str, str] = {}
    assert share_cpu_threads(2, environ) == max(1, cores // 2)
    assert environ == {"OMP_NUM_THREADS": str(max(1, cores // 2))} and calls == [max(1, cores // 2)]
    assert share_cpu_threads(4 * cores, {}) == 1  # never zero
    mine = {"OMP_NUM_THREADS": "3"}
    assert share_cpu_threads(2, mine) is None and mine == {"OMP_NUM_THREADS": "3"}
