"""The extractor: the one model in memory, and the forward passes it makes.

It loads a model (or uses one the caller holds in memory: ``adopt``), keeps at most one
loaded (loading another releases the first, and its memory goes back whole: see
``resources``), runs the feature extraction of ``extract.extract_features`` over a
dataset, and counts every forward call of the model, per extraction and in total. It
knows nothing of the cache: the feature store does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_medprobe.config import MedprobeSettings
    from pytest_medprobe.data.base import ProbeDataset
    from pytest_medprobe.extract import FeatureBank
    from pytest_medprobe.models.base import LoadedModel, ModelSource
    from pytest_medprobe.store import ComputedOn


def resolved_numerics(device_setting: str, dtype_setting: str) -> tuple[str, str]:
    """The dtype and the device type extraction runs in: the settings resolved on this machine.

    ``dtype auto`` is bfloat16 on a GPU and float32 on a CPU, and the two give other
    features, so the cache key holds what is used, never the setting.
    """
    from pytest_medprobe.models.loader import resolve_device, resolve_dtype

    device = resolve_device(device_setting)
    return str(resolve_dtype(dtype_setting, device)).removeprefix("torch."), device.type


class Extractor:
    """Loads models one at a time and extracts features with them, counting forward passes."""

    def __init__(
        self, settings: MedprobeSettings, sources: Callable[[str], ModelSource], progress: bool = False
    ) -> None:
        self.settings = settings
        self.progress = progress  # a per-batch bar (on a terminal)
        self._sources = sources  # a model's name -> its resolved checkpoint (the session's, memoized)
        self._loaded: LoadedModel | None = None  # at most one model in memory (see ``model``)
        self._pinned: dict[str, LoadedModel] = {}  # models the caller holds in memory (``adopt``)
        self.forward_passes_total = 0  # model forward calls made, over every extraction

    def adopt(self, loaded: LoadedModel) -> None:
        """Use a model already in memory under its name: never loaded, never released."""
        self._pinned[loaded.name] = loaded

    @property
    def loaded_model_name(self) -> str | None:
        """The name of the model in memory now, if any."""
        return None if self._loaded is None else self._loaded.name

    def model(self, name: str) -> LoadedModel:
        """The loaded model; loading one releases the model loaded before it (one in memory at a time)."""
        if self._loaded is not None and self._loaded.name == name:
            return self._loaded
        self.release()
        if name in self._pinned:
            self._loaded = self._pinned[name]
            return self._loaded
        from pytest_medprobe.models.loader import load_model
        from pytest_medprobe.resources import map_large_blocks_directly

        map_large_blocks_directly()  # so that releasing the model gives all of its memory back
        self._loaded = load_model(
            self._sources(name),
            device=self.settings.device,
            dtype=self.settings.dtype,
            trust_remote_code=self.settings.trust_remote_code,
        )
        return self._loaded

    def release(self) -> None:
        """Drop the loaded model: the reference, then a collection and the CUDA cache."""
        if self._loaded is None:
            return
        self._loaded = None
        from pytest_medprobe.resources import free_memory

        free_memory()

    def computed_on(self, name: str) -> ComputedOn | None:
        """(device, dtype) of model ``name`` when it is the one in memory, else None."""
        if self._loaded is None or self._loaded.name != name:
            return None
        return str(self._loaded.device), str(self._loaded.dtype).removeprefix("torch.")

    def numerics(self) -> tuple[str, str]:
        """The dtype and the device type extraction runs in (``resolved_numerics`` of the settings)."""
        return resolved_numerics(self.settings.device, self.settings.dtype)

    def extract(self, name: str, dataset: ProbeDataset, answer_mode: str) -> tuple[FeatureBank, int]:
        """Extract the features of ``dataset`` with model ``name``, and the number of forward calls made."""
        from pytest_medprobe.extract import extract_features

        loaded = self.model(name)
        calls = [0]
        handle = loaded.model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
        try:
            bank = extract_features(
                loaded,
                dataset,
                self.settings.batch_size,
                progress=self.progress,
                answer_mode=answer_mode,
                max_new_tokens=self.settings.max_new_tokens,
            )
        finally:
            handle.remove()
            self.forward_passes_total += calls[0]
        return bank, calls[0]
