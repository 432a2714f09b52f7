"""The release gate: a pair's result against its entry in a baseline file.

It reads the baseline file once, finds each pair's entry (by release line and by the
content of the model and the dataset), compares the statistics (``baseline.compare``)
and makes the entries a new baseline file holds (``baseline.make_entry``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_medprobe.baseline import BaselineComparison
    from pytest_medprobe.config import MedprobeSettings
    from pytest_medprobe.pairs import Pair, PairResult


class BaselineGate:
    """Compares results with the configured baseline file, once per pair."""

    def __init__(self, settings: MedprobeSettings) -> None:
        self.settings = settings
        self._document: dict[str, object] | None = None
        self._comparisons: dict[Pair, BaselineComparison | None] = {}

    def compare(self, result: PairResult) -> BaselineComparison | None:
        """``result`` against its entry in the baseline file; None when the file has no entry for it."""
        pair = result.pair
        if pair in self._comparisons:
            return self._comparisons[pair]
        from pytest_medprobe.baseline import compare, find_entry, read_baseline

        path = self.settings.baseline_path
        if path is None:
            raise ValueError("no baseline file is configured")
        if self._document is None:
            self._document = read_baseline(path)
        found = find_entry(
            self._document,
            pair.model,
            self.settings.label,
            result.dataset.fingerprint,
            result.source.fingerprint,
        )
        comparison = None
        if found is not None:
            key, entry = found
            comparison = compare(
                result,
                key,
                entry,
                n_bootstrap=self.settings.n_bootstrap,
                seed=self.settings.seed,
                tolerance=self.settings.tolerance,
                decision=self.settings.decision,
                probe=self._protocol(),
            )
        self._comparisons[pair] = comparison
        return comparison

    def _protocol(self) -> dict[str, Any]:
        """This run's probe protocol, as baseline entries record it."""
        from pytest_medprobe.prober import probe_settings

        return probe_settings(self.settings).protocol()

    def compared(self, pair: Pair) -> BaselineComparison | None:
        """The comparison made for ``pair`` so far, if any (for the reports)."""
        return self._comparisons.get(pair)

    def entry(self, result: PairResult) -> tuple[str, dict[str, Any]]:
        """The key and the entry of ``result`` in a baseline file (the one the run saves)."""
        from pytest_medprobe.baseline import default_release_line, entry_key, make_entry

        line = self.settings.label or default_release_line(result.pair.model, result.source.fingerprint)
        entry = make_entry(
            result, line, n_bootstrap=self.settings.n_bootstrap, seed=self.settings.seed, probe=self._protocol()
        )
        return entry_key(line, result.dataset.fingerprint), entry
