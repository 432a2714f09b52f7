"""The plan of a run, printed before any forward pass: what will load, what is cached, what is left.

Models (family, size of the weight files, device and dtype), datasets (images per split),
each pair's state (in the cache, in shards on disk, to extract, or unusable) and the
forward passes that remain. Making the plan reads files only: model sources are
resolved (config and weight file sizes, never the weights), datasets are read, and the
cache is looked up by its manifests; nothing is loaded onto a device. A pair whose
extraction was left to a rank that died (``ranks``) is shown as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_medprobe.errors import MedprobeError
from pytest_medprobe.naming import mention

if TYPE_CHECKING:
    from pytest_medprobe.pairs import Pair
    from pytest_medprobe.session import AuditSession

PLAN_FLAG = "--medprobe-plan"

CACHED, SHARDS, PENDING, UNUSABLE, ORPHANED = "cached", "shards", "to extract", "error", "rank died"


@dataclass(frozen=True)
class ModelPlan:
    name: str
    family: str | None
    weight_bytes: int | None
    duplicate_of: str | None
    error: str | None


@dataclass(frozen=True)
class DatasetPlan:
    name: str
    n_fit: int | None
    n_test: int | None
    error: str | None


@dataclass(frozen=True)
class PairPlan:
    pair: Pair
    state: str
    forward_passes: int  # still to run for this pair (0 unless PENDING or ORPHANED)
    detail: str = ""


@dataclass(frozen=True)
class MatrixPlan:
    models: tuple[ModelPlan, ...]
    datasets: tuple[DatasetPlan, ...]
    pairs: tuple[PairPlan, ...]
    device: str
    dtype: str
    batch_size: int

    @property
    def forward_passes(self) -> int:
        return sum(pair.forward_passes for pair in self.pairs)

    @property
    def writes(self) -> bool:
        """Whether carrying out the plan writes the cache (a pair to extract, or shards to merge)."""
        return any(pair.state in (PENDING, ORPHANED, SHARDS) for pair in self.pairs)

    def count(self, state: str) -> int:
        return sum(1 for pair in self.pairs if pair.state == state)

    def lines(self) -> list[str]:
        """The plan as text, one line per model, dataset and model row of the pair grid."""
        n_pairs = len(self.pairs)
        cached = self.count(CACHED) + self.count(SHARDS)
        todo = self.count(PENDING) + self.count(ORPHANED)
        lines = [
            f"medprobe plan: {len(self.models)} model{'s' if len(self.models) != 1 else ''} × "
            f"{len(self.datasets)} dataset{'s' if len(self.datasets) != 1 else ''} = {n_pairs} pair"
            f"{'s' if n_pairs != 1 else ''}; {cached} cached (not extracted again), {todo} to extract: "
            f"{self.forward_passes} forward passes at {mention('batch_size')}={self.batch_size}"
            + (f"; {self.count(UNUSABLE)} unusable" if self.count(UNUSABLE) else "")
        ]
        width = max(len(model.name) for model in self.models)
        for model in self.models:
            if model.error is not None:
                what = f"cannot be used: {model.error}"
            else:
                size = "?" if model.weight_bytes is None else _size(model.weight_bytes)
                what = f"{model.family}, {size} of weights, {self.device}, {self.dtype}"
                if model.duplicate_of is not None:
                    what += (
                        f"; same content as {model.duplicate_of}: extracted and reported once, as {model.duplicate_of}"
                    )
            lines.append(f"  model    {model.name.ljust(width)}  {what}")
        width = max(len(dataset.name) for dataset in self.datasets)
        for dataset in self.datasets:
            if dataset.error is not None:
                what = f"cannot be used: {dataset.error}"
            else:
                what = f"{dataset.n_fit} fit + {dataset.n_test} test images"
            lines.append(f"  dataset  {dataset.name.ljust(width)}  {what}")
        lines.extend(self._grid())
        for pair in self.pairs:
            if pair.detail:
                lines.append(f"  {pair.pair.model} × {pair.pair.dataset}: {pair.detail}")
        return lines

    def _grid(self) -> list[str]:
        def cell(pair: PairPlan) -> str:
            if pair.state in (PENDING, ORPHANED):
                return f"{pair.state} ({pair.forward_passes})"
            return pair.state

        by_pair = {(p.pair.model, p.pair.dataset): p for p in self.pairs}
        models = [m.name for m in self.models if m.duplicate_of is None]
        datasets = [d.name for d in self.datasets]
        rows = [["pairs", *datasets]]
        rows += [
            [model, *(cell(by_pair[(model, d)]) if (model, d) in by_pair else "-" for d in datasets)]
            for model in models
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]


def _size(n_bytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} B"


def _device_and_dtype(device: str, dtype: str) -> tuple[str, str]:
    """The device and dtype models will load with, as the loader resolves them (torch, no weights)."""
    try:
        from pytest_medprobe.models.loader import resolve_device, resolve_dtype

        torch_device = resolve_device(device)
        resolved = str(resolve_dtype(dtype, torch_device)).removeprefix("torch.")
    except MedprobeError as exc:
        return f"{device} (unusable: {exc})", dtype
    shown = device if device == str(torch_device) else f"{device} → {torch_device}"
    return shown, resolved if dtype == "auto" else dtype


def make_plan(session: AuditSession) -> MatrixPlan:
    """The plan of ``session``'s matrix, from files only."""
    from pytest_medprobe.ranks import orphaned_claim

    settings = session.settings
    duplicates = session.duplicates
    models = []
    for name in settings.models:
        try:
            source = session.source(name)
        except MedprobeError as exc:
            models.append(ModelPlan(name, None, None, None, str(exc)))
            continue
        weights = sum(
            path.stat().st_size
            for path in source.directory.iterdir()
            if path.is_file() and path.name.endswith((".safetensors", ".bin", ".pt", ".pth"))
        )
        models.append(ModelPlan(name, source.family, weights, duplicates.get(name), None))
    datasets = []
    for name in settings.datasets:
        try:
            dataset = session.dataset(name)
        except MedprobeError as exc:
            datasets.append(DatasetPlan(name, None, None, str(exc)))
            continue
        datasets.append(DatasetPlan(name, dataset.n_fit, dataset.n_test, None))
    pairs = []
    for pair in session.pairs:
        try:
            key = session.features_key(pair)
        except MedprobeError as exc:
            pairs.append(PairPlan(pair, UNUSABLE, 0, str(exc).splitlines()[0]))
            continue
        if session.is_cached(key):
            pairs.append(PairPlan(pair, CACHED, 0))
        elif not settings.refresh and any(session.store.shards_dir(key).glob("*-of-*")):
            pairs.append(PairPlan(pair, SHARDS, 0))
        else:
            passes = forward_passes(session, pair)
            claim = orphaned_claim(session, key)
            if claim is not None:
                pairs.append(PairPlan(pair, ORPHANED, passes, claim))
            else:
                pairs.append(PairPlan(pair, PENDING, passes))
    device, dtype = _device_and_dtype(settings.device, settings.dtype)
    return MatrixPlan(tuple(models), tuple(datasets), tuple(pairs), device, dtype, settings.batch_size)


def forward_passes(session: AuditSession, pair: Pair) -> int:
    """Forward calls an extraction of ``pair`` makes: one per batch of each split (plus generation)."""
    dataset = session.dataset(pair.dataset)
    batch = session.settings.batch_size
    passes = math.ceil(dataset.n_fit / batch) + math.ceil(dataset.n_test / batch)
    if session.answer_mode(pair.model) == "generate":
        passes += math.ceil(dataset.n_test / batch)  # one generate() call per batch of the test split
    return passes
