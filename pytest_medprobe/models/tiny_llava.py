"""A tiny, randomly initialized LLaVA checkpoint, built locally and saved to a directory.

It is the default ``--model`` until the trained reference zoo lands, and the model the
plugin's own tests audit. It is a real ``LlavaForConditionalGeneration`` (CLIP vision
tower, two-layer projector, Llama decoder) with a word-level tokenizer and a CLIP image
processor built here, because nothing can be fetched from the hub. The directory is
loaded back through the same loader as any user checkpoint.

Builds are deterministic: the same arguments give byte-identical files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN, IMAGE_TOKEN)

# Words of the closed question (metrics.md §4), the chat markers, the option letters,
# and the words of the embedded dataset's class names. Other words map to <unk>.
PROMPT_WORDS = (
    "USER ASSISTANT What does this image show Options Answer with the letter "
    "dermatoscopy medical histopathology chest X ray retinal OCT fundus photograph breast "
    "ultrasound blood cell microscopy kidney cortex abdominal CT round ring stellate elongated "
    "lesion normal pneumonia malignant benign"
).split()
PUNCTUATION = tuple("()?:.,-\n")
LETTERS = tuple(chr(ord("A") + i) for i in range(26))

CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>{{ '\\n' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{{ '\\n' }}"
    "{% elif message['role'] == 'assistant' %}ASSISTANT: "
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}"
    "{% endif %}{% endfor %}{{ eos_token }}{{ '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


@dataclass(frozen=True)
class TinyLlavaSpec:
    """Sizes of the tiny LLaVA; small enough to run hundreds of images per second on a CPU."""

    image_size: int = 64
    patch_size: int = 8
    vision_hidden: int = 64
    vision_layers: int = 3
    text_hidden: int = 64
    text_layers: int = 4
    heads: int = 4
    seed: int = 0


def build_tokenizer(
    special_attributes: Mapping[str, str] | None = None,
    extra_tokens: Sequence[str] = (),
    extra_words: Sequence[str] = (),
) -> Any:
    """A word-level fast tokenizer whose vocabulary covers the closed question.

    ``special_attributes`` maps attribute names processors look up (``image_token``,
    ``boi_token``, ...) to their special tokens; ``extra_tokens`` are further special
    tokens a family's processor or chat template needs (``<|im_start|>``, ...), and
    ``extra_words`` plain words of its chat template (``user``, ``model``). Tiny
    checkpoints of every family build their tokenizer here.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    attributes = {"image_token": IMAGE_TOKEN} if special_attributes is None else dict(special_attributes)
    specials = list(dict.fromkeys([*SPECIAL_TOKENS, *attributes.values(), *extra_tokens]))
    words = list(dict.fromkeys([*specials, *LETTERS, *PUNCTUATION, *PROMPT_WORDS, *extra_words]))
    vocab = {word: index for index, word in enumerate(words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    # Whitespace() drops the newline pieces Split() isolates, so prompts carry no newline
    # tokens; the shipped reference model was trained on exactly this tokenization.
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("\n", behavior="isolated"), pre_tokenizers.Whitespace()]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens=attributes,
        padding_side="left",
    )
    # Special tokens are matched whole, before the word-level split.
    tokenizer.add_special_tokens(
        {"additional_special_tokens": specials[len(SPECIAL_TOKENS) :]}, replace_extra_special_tokens=False
    )
    return tokenizer


def build_tiny_llava(directory: Path, spec: TinyLlavaSpec = TinyLlavaSpec()) -> Path:
    """Build the tiny LLaVA (model, tokenizer, processor) and save it to ``directory``.

    The directory is written atomically: files go to a temporary sibling that is renamed
    into place, so a crash never leaves a half-written checkpoint behind.
    """
    model, processor = make_tiny_llava(spec)
    return save_checkpoint_atomically(model, processor, directory)


def make_tiny_llava(spec: TinyLlavaSpec = TinyLlavaSpec()) -> tuple[Any, Any]:
    """A freshly initialized tiny LLaVA (eval mode) and its processor, in memory.

    Long because it spells out the three transformers configs (vision, text, LLaVA) field
    by field: the architecture is in plain sight rather than behind helpers.
    """
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = build_tokenizer()
    vocab_size = len(tokenizer)  # type: ignore[arg-type]
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)  # type: ignore[attr-defined]
    vision_config = CLIPVisionConfig(
        hidden_size=spec.vision_hidden,
        intermediate_size=spec.vision_hidden * 2,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.heads,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        projection_dim=spec.vision_hidden,
    )
    text_config = LlamaConfig(
        hidden_size=spec.text_hidden,
        intermediate_size=spec.text_hidden * 2,
        num_hidden_layers=spec.text_layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        vocab_size=vocab_size,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
        eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=image_token_id,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    # Seed inside fork_rng so building leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = LlavaForConditionalGeneration(config).eval()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": spec.image_size},
        crop_size={"height": spec.image_size, "width": spec.image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=spec.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor


def save_checkpoint_atomically(model: object, processor: object, directory: Path) -> Path:
    """Save model and processor to a temporary sibling of ``directory``, then rename it."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    from transformers.utils import logging as hf_logging

    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    progress_was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(staging)  # type: ignore[attr-defined]
        processor.save_pretrained(staging)  # type: ignore[attr-defined]
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
    finally:
        if progress_was_enabled:
            hf_logging.enable_progress_bar()
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return directory
