"""Property tests over the core: antisymmetric differences, bit-exact cache round trips."""

from __future__ import annotations

import math
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pytest_medprobe.cache import FeatureCache, cache_key
from pytest_medprobe.extract import FeatureBank, SplitFeatures
from pytest_medprobe.stages import stage_order
from tests.unit.curve_factory import curve_from_levels

LEVEL = st.floats(0.25, 1.0)
STAGES = stage_order(1, 3, True)


@settings(deadline=None, max_examples=30)
@given(levels=st.lists(LEVEL, min_size=len(STAGES) + 2, max_size=len(STAGES) + 2), data=st.data())
def test_the_loss_between_two_stages_is_antisymmetric_interval_included(
    levels: list[float], data: st.DataObject
) -> None:
    curve = curve_from_levels(
        dict(zip((*STAGES, "answer", "pixels"), levels)), n_per_class=20, n_vision_blocks=1, n_layers=3, n_bootstrap=60
    )
    names = (*STAGES, "answer", "pixels")
    a, b = data.draw(st.sampled_from(names)), data.draw(st.sampled_from(names))
    forward, backward = curve.loss(a, b), curve.loss(b, a)
    assert math.isclose(float(forward), -float(backward), abs_tol=1e-12)
    assert math.isclose(forward.low, -backward.high, abs_tol=1e-9)
    assert math.isclose(forward.high, -backward.low, abs_tol=1e-9)
    if a == b:
        assert float(forward) == 0.0 and forward.low == 0.0 and forward.high == 0.0


FEATURES = hnp.arrays(
    dtype=np.float32,
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=9),
    elements=st.floats(width=32, allow_nan=False, allow_infinity=False),
)


@settings(deadline=None, max_examples=40)
@given(fit=FEATURES, test=FEATURES, seed=st.integers(0, 2**31 - 1))
def test_the_cache_round_trips_arbitrary_arrays_bit_exactly(fit: np.ndarray, test: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)

    def split(values: np.ndarray) -> SplitFeatures:
        n = len(values)
        return SplitFeatures(
            stages={"vision": values, "llm.0@answer": values[:, ::-1].copy()},
            answers=rng.integers(-1, 5, n).astype(np.int64),
            letter_logits=rng.normal(size=(n, 3)).astype(np.float32),
        )

    bank = FeatureBank(("vision", "llm.0@answer"), has_image_view=False, fit=split(fit), test=split(test))
    with TemporaryDirectory() as folder:
        cache, key = FeatureCache(Path(folder)), cache_key({"seed": seed})
        cache.store(key, bank, {})
        loaded = cache.load(key)
    assert loaded is not None and loaded.stage_names == bank.stage_names
    for mine, theirs in ((bank.fit, loaded.fit), (bank.test, loaded.test)):
        for name in bank.stage_names:
            assert mine.stages[name].tobytes() == theirs.stages[name].tobytes()
            assert theirs.stages[name].dtype == mine.stages[name].dtype
        assert mine.answers.tobytes() == theirs.answers.tobytes()
        assert mine.letter_logits.tobytes() == theirs.letter_logits.tobytes()
