"""How a matrix run shows its progress: a bar over the whole matrix, and event lines.

The bar counts pairs whose features are ready (from the cache or extracted) out of all
pairs of the run; the per-batch bar of the extraction in progress nests inside it
(tqdm places a second open bar below the first). Both show only on a terminal, so CI
logs stay clean. The extract command also prints one line per event (a model loading,
a pair done, a model released), which is what a cluster job's log needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_medprobe.pairs import Pair


class MatrixProgress:
    """Pairs done out of ``total``, as a bar (on a terminal) and as lines (to ``echo``)."""

    def __init__(self, total: int, bar: bool, echo: Callable[[str], None] | None = None) -> None:
        self.total = total
        self.done = 0
        self.echo = echo
        self._bar_wanted = bar
        self._bar: Any = None
        self._seen: set[Pair] = set()

    def _line(self, text: str) -> None:
        if self.echo is not None:
            self.echo(text)

    def _advance(self) -> None:
        if not self._bar_wanted:
            return
        if self._bar is None:
            from tqdm.auto import tqdm

            # disable=None: shown on a terminal only.
            self._bar = tqdm(total=self.total, desc="medprobe matrix", unit="pair", disable=None)
        self._bar.update(1)
        if self.done >= self.total:
            self.close()

    def model_loading(self, model: str, pending: int) -> None:
        self._line(f"loading {model} for {pending} pair{'s' if pending != 1 else ''} to extract")

    def model_released(self, model: str, seconds: float) -> None:
        self._line(f"released {model} ({seconds:.1f} s loaded)")

    def pair_done(self, pair: Pair, what: str) -> None:
        if pair in self._seen:
            return
        self._seen.add(pair)
        self.done += 1
        self._line(f"[{self.done}/{self.total}] {pair.model} × {pair.dataset}: {what}")
        self._advance()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
