"""PaliGemma: where its stages live in transformers 5.

vision blocks   model.vision_tower.encoder.layers   (SigLIP, no CLS token)
vision          input of model.multi_modal_projector (the tower's last hidden state)
connector       the decoder input at the image tokens (linear projection, scaled)
decoder layers  model.language_model.layers        (Gemma / Gemma 2)
image tokens    input_ids == config.image_token_id (alias image_token_index)

PaliGemma has no chat template: the prompt is the question, and the processor puts
the image tokens and BOS in front of it.
"""

from __future__ import annotations

from pytest_medprobe.models.base import FamilyAdapter


class PaliGemmaAdapter(FamilyAdapter):
    family = "paligemma"
    model_types = ("paligemma",)
    vision_block_paths = ("model.vision_tower.encoder.layers",)
    handoff_path = "model.multi_modal_projector"
    language_model_path = "model.language_model"
