"""The prober: from a pair's features to its probe curve, health, verdicts and subgroups.

Plain numbers in, plain results out: the linear probes of every stage (``probes``), the
health score (``health``), the failure-mode verdicts (``failure_modes``) and, on a dataset
with subgroup columns, the per-subgroup scores (``subgroups``). No cache, no model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_medprobe.config import MedprobeSettings
    from pytest_medprobe.curve import ProbeCurve
    from pytest_medprobe.data.base import ProbeDataset
    from pytest_medprobe.extract import FeatureBank
    from pytest_medprobe.failure_modes import AuditVerdicts
    from pytest_medprobe.health import HealthScores
    from pytest_medprobe.probes import ProbeSettings
    from pytest_medprobe.subgroups import SubgroupReport


@dataclass(frozen=True)
class Probed:
    """What the probes say about one pair's features."""

    curve: ProbeCurve
    health: HealthScores
    verdicts: AuditVerdicts
    subgroups: SubgroupReport | None  # None: the dataset has no subgroup columns


def probe_settings(settings: MedprobeSettings) -> ProbeSettings:
    """How this run fits its probes; the torch backend fits where the audit runs unless
    the ``probe_device`` setting says otherwise."""
    from pytest_medprobe.probes import ProbeSettings
    from pytest_medprobe.torch_probes import resolve_probe_device

    backend = settings.probe_backend
    device = "cpu" if backend == "sklearn" else resolve_probe_device(settings.probe_device, settings.device)
    return ProbeSettings(
        c=settings.probe_c,
        n_bootstrap=settings.n_bootstrap,
        seed=settings.seed,
        backend=backend,
        c_grid=settings.probe_c_grid,
        cv_folds=settings.probe_cv_folds,
        device=device,
    )


def probe_features(settings: MedprobeSettings, dataset: ProbeDataset, bank: FeatureBank) -> Probed:
    """Fit the probes of every stage of ``bank`` and judge the curve with ``settings``' thresholds."""
    from pytest_medprobe.data.base import pixel_features
    from pytest_medprobe.failure_modes import evaluate
    from pytest_medprobe.health import compute_health
    from pytest_medprobe.probes import build_probe_curve_with_predictions

    curve, predictions = build_probe_curve_with_predictions(
        fit_features=bank.fit.stages,
        test_features=bank.test.stages,
        fit_labels=dataset.fit_labels,
        test_labels=dataset.test_labels,
        answers=bank.test.answers,
        pixel_fit=pixel_features(dataset.fit_images),
        pixel_test=pixel_features(dataset.test_images),
        n_classes=dataset.n_classes,
        stage_names=bank.stage_names,
        has_image_view=bank.has_image_view,
        settings=probe_settings(settings),
    )
    health = compute_health(curve)
    verdicts = evaluate(curve, health, settings.thresholds, settings.decision)
    subgroups = None
    if dataset.test_subgroups:
        from pytest_medprobe.subgroups import subgroup_report

        subgroups = subgroup_report(
            predictions,
            dataset.test_labels,
            dataset.test_subgroups,
            curve,
            n_bootstrap=settings.n_bootstrap,
            seed=settings.seed,
            max_gap=settings.thresholds.max_subgroup_gap,
            decision=settings.decision,
        )
    return Probed(curve, health, verdicts, subgroups)
