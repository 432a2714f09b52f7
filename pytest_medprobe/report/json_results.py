"""One pair's record in the results file (the schema of docs/architecture.md); ``writing`` writes the file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_medprobe.config import flag_names
from pytest_medprobe.verdict import SettingNamer

if TYPE_CHECKING:
    from pytest_medprobe.baseline import BaselineComparison
    from pytest_medprobe.pairs import PairResult


def _score(curve: Any, stage: str) -> dict[str, Any]:
    low, high = curve.interval(stage)
    return {"score": curve.score(stage), "low": low, "high": high, **curve.diagnostics_record(stage)}


MAX_EXAMPLES = 3
EXAMPLE_CHARS = 300


def answer_mode_record(result: PairResult) -> dict[str, Any]:
    """How the answer was read; in the generate mode, how many answers named no option
    (counted as wrong) and a few of them, so a reader can tell a parsing problem from a
    model problem."""
    generated = result.features.test.generated
    if not generated:
        return {"mode": "letter-logits"}
    answers = result.features.test.answers
    unparseable = [index for index, answer in enumerate(answers) if answer < 0]
    return {
        "mode": "generate",
        "unparseable": len(unparseable),
        "n": len(generated),
        "unparseable_examples": [generated[index][:EXAMPLE_CHARS] for index in unparseable[:MAX_EXAMPLES]],
        "examples": [generated[index][:EXAMPLE_CHARS] for index in range(min(MAX_EXAMPLES, len(generated)))],
    }


def run_record(
    result: PairResult,
    comparison: BaselineComparison | None = None,
    trust_remote_code: bool = False,
    names: SettingNamer = flag_names,
) -> dict[str, Any]:
    """One entry of ``runs``: model, dataset, curve, answer, health, verdicts, root cause.

    ``names`` names the settings in verdicts (the plugin: flags; the library: keys)."""
    dataset, source, curve = result.dataset, result.source, result.curve
    record = {
        "model": {
            "name": result.pair.model,
            "family": source.family,
            "source": str(source.directory),
            "fingerprint": source.fingerprint,
            "trust_remote_code": trust_remote_code,
        },
        "dataset": {
            "name": dataset.name,
            "classes": list(dataset.class_names),
            "modality": dataset.modality,
            "n_fit": dataset.n_fit,
            "n_test": dataset.n_test,
            "fingerprint": dataset.fingerprint,
            "notes": list(dataset.notes),
        },
        "stages": curve.to_records(),
        "has_image_view": curve.has_image_view,
        "pixels": _score(curve, "pixels"),
        "answer": {**_score(curve, "answer"), **answer_mode_record(result)},
        "chance": curve.chance,
        "health": result.health.as_dict(),
        "failure_modes": [verdict.as_dict(names) for verdict in result.verdicts.failure_modes()],
        "root_cause": result.verdicts.root_cause,
        "features": {
            "cache_key": result.provenance.cache_key,
            "cache_hit": result.provenance.cache_hit,
            "forward_passes": result.provenance.forward_passes,
            "device": result.provenance.device,
            "dtype": result.provenance.dtype,
        },
    }
    if result.subgroups is not None:
        record["subgroups"] = result.subgroups.as_dict(names)
    if comparison is not None:
        from pytest_medprobe.baseline import statistic_names

        record["baseline"] = {
            "key": comparison.key,
            "release_line": comparison.release_line,
            "paired": comparison.paired,
            "regressions": [comparison.verdict(name).as_dict(names) for name in statistic_names()],
        }
    return record
