"""Gemma 3 (MedGemma): where its stages live in transformers 5.

vision blocks   model.vision_tower.encoder.layers   (SigLIP, no CLS token)
vision          input of model.multi_modal_projector (the tower's last hidden state)
connector       the decoder input at the image tokens (the projector average-pools the
                patch grid to ``mm_tokens_per_image`` tokens, then projects)
decoder layers  model.language_model.layers
image tokens    input_ids == config.image_token_id (begin/end-of-image tokens excluded)
"""

from __future__ import annotations

from pytest_medprobe.models.base import FamilyAdapter


class Gemma3Adapter(FamilyAdapter):
    family = "gemma3"
    model_types = ("gemma3",)
    vision_block_paths = ("model.vision_tower.encoder.layers",)
    handoff_path = "model.multi_modal_projector"
    language_model_path = "model.language_model"
    nested_images = True  # the processor counts images per prompt
