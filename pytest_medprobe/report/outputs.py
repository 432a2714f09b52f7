"""What a test run writes at its end, as plain JSON data that several processes can merge.

Under pytest-xdist each worker computes the pairs its own tests need (a pair's tests may
land on several workers; the cache's lock lets one of them extract and the others read).
So that the results file, the baseline and the terminal summary cover every pair once,
workers hand their ``RunOutputs`` to the controller (``to_json``), which merges them
(``merge``) and alone writes the files (``report.writing.write_files``). A serial run is the case of one
part. The result of a pair computed by two workers is the same in both (same features,
same seeds); only its provenance differs, and the merge adds the forward passes up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_medprobe.pairs import Pair
    from pytest_medprobe.session import AuditSession


@dataclass
class PairOutput:
    """One pair's share of the outputs."""

    model: str
    dataset: str
    record: dict[str, Any]  # its entry of ``runs`` in the results file
    baseline: tuple[str, dict[str, Any]] | None = None  # key and entry for --medprobe-save-baseline


@dataclass
class RunOutputs:
    """Everything the end of a run writes: pair records, pair errors, audit outcomes."""

    pairs: list[PairOutput] = field(default_factory=list)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # model, dataset, message
    outcomes: dict[str, str] = field(default_factory=dict)  # node id -> passed|failed|error|skipped
    duplicates: dict[str, str] = field(default_factory=dict)  # model -> earlier model with the same content

    @classmethod
    def of_session(
        cls, session: AuditSession, pair_errors: Mapping[Pair, str], outcomes: Mapping[str, str]
    ) -> RunOutputs:
        """The outputs of the pairs this process computed."""
        from pytest_medprobe.report.json_results import run_record

        saving = session.settings.save_baseline_path is not None
        pairs = [
            PairOutput(
                result.pair.model,
                result.pair.dataset,
                run_record(result, session.compared(result.pair), session.settings.trust_remote_code),
                session.baseline_entry(result) if saving else None,
            )
            for result in session.computed_results
        ]
        errors = [(pair.model, pair.dataset, message) for pair, message in pair_errors.items()]
        return cls(pairs, errors, dict(outcomes), session.duplicates)

    def to_json(self) -> str:
        """The form a worker sends to the controller (execnet carries strings safely)."""
        return json.dumps(
            {
                "pairs": [
                    {"model": p.model, "dataset": p.dataset, "record": p.record, "baseline": p.baseline}
                    for p in self.pairs
                ],
                "errors": self.errors,
                "outcomes": self.outcomes,
                "duplicates": self.duplicates,
            },
            allow_nan=False,
        )

    @classmethod
    def from_json(cls, text: str) -> RunOutputs:
        data = json.loads(text)
        pairs = [
            PairOutput(p["model"], p["dataset"], p["record"], None if p["baseline"] is None else _pair(p["baseline"]))
            for p in data["pairs"]
        ]
        errors = [(model, dataset, message) for model, dataset, message in data["errors"]]
        return cls(pairs, errors, dict(data["outcomes"]), dict(data.get("duplicates", {})))

    @property
    def baseline_entries(self) -> dict[str, dict[str, Any]]:
        return dict(p.baseline for p in self.pairs if p.baseline is not None)


def _pair(baseline: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    key, entry = baseline
    return str(key), dict(entry)


def _merged_provenance(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One pair's feature provenance over every process that computed it."""
    forward_passes = sum(int(record["features"]["forward_passes"]) for record in records)
    return {**records[0]["features"], "cache_hit": forward_passes == 0, "forward_passes": forward_passes}


def merge(parts: Sequence[RunOutputs], pair_order: Sequence[Pair], node_order: Sequence[str] = ()) -> RunOutputs:
    """The outputs of a whole run from those of its processes, ordered as a serial run orders them.

    Pairs follow ``pair_order`` (the session's), audits ``node_order`` (collection order);
    anything not in them keeps the order it arrived in, after the rest.
    """
    order = {(pair.model, pair.dataset): index for index, pair in enumerate(pair_order)}
    grouped: dict[tuple[str, str], list[PairOutput]] = {}
    errors: dict[tuple[str, str], str] = {}
    outcomes: dict[str, str] = {}
    duplicates: dict[str, str] = {}
    for part in parts:
        duplicates.update(part.duplicates)
        for output in part.pairs:
            grouped.setdefault((output.model, output.dataset), []).append(output)
        for model, dataset, message in part.errors:
            errors.setdefault((model, dataset), message)
        outcomes.update(part.outcomes)
    pairs = []
    for name, outputs in sorted(grouped.items(), key=lambda item: order.get(item[0], len(order))):
        record = {**outputs[0].record, "features": _merged_provenance([o.record for o in outputs])}
        pairs.append(PairOutput(name[0], name[1], record, outputs[0].baseline))
    sorted_errors = sorted(errors.items(), key=lambda item: order.get(item[0], len(order)))
    position = {nodeid: index for index, nodeid in enumerate(node_order)}
    sorted_outcomes = sorted(outcomes.items(), key=lambda item: position.get(item[0], len(position)))
    return RunOutputs(
        pairs,
        [(model, dataset, message) for (model, dataset), message in sorted_errors],
        dict(sorted_outcomes),
        duplicates,
    )
