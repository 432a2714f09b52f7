"""The single-pass extractor on a real LlavaForConditionalGeneration."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_medprobe.extract import extract_split
from pytest_medprobe.prompts import chat_prompt, closed_question

CLASSES = ("round lesion", "ring lesion", "stellate lesion")


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(n)]


def test_every_stage_is_present_with_the_width_of_its_module(tiny_llava) -> None:
    config = tiny_llava.model.config
    split = extract_split(tiny_llava, _images(5), closed_question(CLASSES, "dermatoscopy"), 3, 2, progress=False)
    names = tiny_llava.stage_names()
    assert tuple(split.stages) == names
    assert names.count("vision.0") == 1
    assert sum(name.startswith("llm.") and "@" not in name for name in names) == config.text_config.num_hidden_layers
    for name, values in split.stages.items():
        expected = config.vision_config.hidden_size if name.startswith("vision") else config.text_config.hidden_size
        assert values.shape == (5, expected), name
        assert values.dtype == np.float32
        assert np.isfinite(values).all()
    assert split.letter_logits.shape == (5, 3)
    assert split.answers.tolist() == split.letter_logits.argmax(axis=1).tolist()


def test_image_token_positions_are_found_in_the_prompt(tiny_llava) -> None:
    prompt = chat_prompt(tiny_llava.processor, closed_question(CLASSES, "dermatoscopy"))
    inputs = tiny_llava.processor(images=_images(1), text=[prompt], return_tensors="pt")
    image_token_id = tiny_llava.adapter.image_token_id(tiny_llava.model)
    n_image_tokens = int((inputs["input_ids"] == image_token_id).sum())
    config = tiny_llava.model.config.vision_config
    assert n_image_tokens == (config.image_size // config.patch_size) ** 2


def test_exactly_one_forward_pass_runs_per_batch(tiny_llava) -> None:
    calls = []
    handle = tiny_llava.model.register_forward_hook(lambda *args: calls.append(1))
    try:
        extract_split(tiny_llava, _images(7), closed_question(CLASSES, "dermatoscopy"), 3, 3, progress=False)
    finally:
        handle.remove()
    assert len(calls) == 3  # batches of 3, 3 and 1


def test_features_do_not_depend_on_the_batch_size(tiny_llava) -> None:
    question = closed_question(CLASSES, "dermatoscopy")
    one = extract_split(tiny_llava, _images(6), question, 3, 1, progress=False)
    six = extract_split(tiny_llava, _images(6), question, 3, 6, progress=False)
    for name in one.stages:
        np.testing.assert_allclose(one.stages[name], six.stages[name], rtol=1e-4, atol=1e-5)
    assert one.answers.tolist() == six.answers.tolist()


def test_vision_stage_is_the_layer_the_config_hands_to_the_projector(tiny_llava) -> None:
    """LLaVA hands hidden_states[vision_feature_layer] (CLS dropped) to its projector."""
    import torch

    question = closed_question(CLASSES, "dermatoscopy")
    images = _images(2)
    split = extract_split(tiny_llava, images, question, 3, 2, progress=False)
    inputs = tiny_llava.processor(
        images=images, text=[chat_prompt(tiny_llava.processor, question)] * 2, return_tensors="pt"
    )
    with torch.inference_mode():
        out = tiny_llava.model.model.vision_tower(inputs["pixel_values"], output_hidden_states=True)
    layer = tiny_llava.model.config.vision_feature_layer
    expected = out.hidden_states[layer][:, 1:].mean(dim=1).numpy()
    np.testing.assert_allclose(split.stages["vision"], expected, rtol=1e-5, atol=1e-6)


def test_decoder_layer_hooks_agree_with_output_hidden_states(tiny_llava) -> None:
    import torch

    question = closed_question(CLASSES, "dermatoscopy")
    images = _images(2)
    split = extract_split(tiny_llava, images, question, 3, 2, progress=False)
    prompt = chat_prompt(tiny_llava.processor, question)
    inputs = tiny_llava.processor(images=images, text=[prompt] * 2, return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = tiny_llava.model(**inputs, output_hidden_states=True)
    n_layers = tiny_llava.n_decoder_layers
    mask = inputs["input_ids"] == tiny_llava.adapter.image_token_id(tiny_llava.model)
    for j in range(n_layers):
        hidden = out.hidden_states[j + 1]
        np.testing.assert_allclose(split.stages[f"llm.{j}@answer"], hidden[:, -1].numpy(), rtol=1e-4, atol=1e-5)
        image_mean = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        np.testing.assert_allclose(split.stages[f"llm.{j}"], image_mean.numpy(), rtol=1e-4, atol=1e-5)


def test_an_option_letter_missing_from_the_vocabulary_is_a_clear_error(tiny_llava) -> None:
    from pytest_medprobe.errors import DatasetError

    with pytest.raises(DatasetError, match="2 to 26 options"):
        closed_question([f"class {i}" for i in range(27)], "dermatoscopy")


def test_images_are_batched_by_size_and_equal_sizes_keep_their_order() -> None:
    from pytest_medprobe.extract import size_order

    images = [np.zeros(shape, dtype=np.uint8) for shape in ((64, 64, 3), (32, 48, 3), (64, 64, 3), (16, 16, 3))]
    assert size_order(images).tolist() == [3, 1, 0, 2]
    same = [np.zeros((8, 8, 3), dtype=np.uint8)] * 5
    assert size_order(same).tolist() == [0, 1, 2, 3, 4]
