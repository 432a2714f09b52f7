"""Aya Vision: what differs from the common layout (its tiles, as InternVL's).

structural.py finds every part; this file only maps tiles to images.

vision blocks   model.vision_tower.encoder.layers   (SigLIP, no CLS token)
vision          input of model.multi_modal_projector (the selected layer of every tile)
connector       the decoder input at the ``<|IMG_PATCH|>`` tokens (2x2 pixel shuffle, SwiGLU)
decoder layers  model.language_model.layers (Cohere2)
image tokens    input_ids == config.image_token_id (alias image_token_index)

The GotOcr2 image processor cuts an image into tiles by aspect ratio plus a global view;
every tile is one row of the vision tower and becomes the same number of image tokens,
so an image's tiles are counted from its image tokens in ``input_ids``, as for InternVL.
"""

from __future__ import annotations

from pytest_medprobe.models.internvl import InternVLAdapter


class AyaVisionAdapter(InternVLAdapter):
    family = "aya_vision"
    model_types = ("aya_vision",)
