"""The named medical MLLMs (and the general models papers compare them with).

Each entry says where the weights live on the Hugging Face hub and which transformers
family loads them natively; ``--model NAME`` finds them in the local Hugging Face cache
(downloading them into it when missing and online), and ``--model NAME=DIR`` in a
directory. ``answer_mode`` is how each model's own answer is read unless the user says
otherwise (reasoning models think before answering: ``generate``). Entries were read off the public
model pages (../shared/reference/medical-models.md); a checkpoint's own ``config.json``
always decides the family actually used, and a mismatch is reported.

Models that only load with their own repository's code (the original LLaVA-Med,
HealthGPT, MedDr, CheXagent, LLaVA-Rad, MAIRA-2, RadFM, Med-Flamingo) are left out:
their layouts are not transformers classes, so no adapter could locate their stages.
"""

from __future__ import annotations

from dataclasses import dataclass

LETTER_LOGITS = "letter-logits"
GENERATE = "generate"


@dataclass(frozen=True)
class CatalogueEntry:
    """A model a user may name with ``--model``."""

    name: str
    hub_id: str
    model_type: str  # config.json model_type of the native checkpoint
    params_b: float  # parameters, in billions (weights ≈ 2 bytes each in bfloat16)
    notes: str
    medical: bool = True
    answer_mode: str = LETTER_LOGITS  # the mode that suits it (reasoning models: generate)

    @property
    def bfloat16_gb(self) -> float:
        """Memory of the weights alone in bfloat16 (activations of one batch come on top)."""
        return round(self.params_b * 2.0, 1)


CATALOGUE: tuple[CatalogueEntry, ...] = (
    # HuatuoGPT-Vision: the current release is built on Qwen2.5-VL; the LLaVA-layout
    # releases are the HF-format conversions of the original custom-code checkpoints.
    CatalogueEntry(
        "huatuogpt-vision",
        "FreedomIntelligence/HuatuoGPT-Vision-7B-Qwen2.5VL",
        "qwen2_5_vl",
        8.3,
        "HuatuoGPT-Vision, current release (Qwen2.5-VL 7B); same as huatuogpt-vision-7b-qwen2.5vl",
    ),
    CatalogueEntry(
        "huatuogpt-vision-7b-qwen2.5vl",
        "FreedomIntelligence/HuatuoGPT-Vision-7B-Qwen2.5VL",
        "qwen2_5_vl",
        8.3,
        "HuatuoGPT-Vision 2025 release on Qwen2.5-VL",
    ),
    CatalogueEntry(
        "huatuogpt-vision-7b",
        "FreedomIntelligence/HuatuoGPT-Vision-7B-hf",
        "llava",
        7.9,
        "HF-format conversion; LLM Qwen2-7B, vision CLIP ViT-L/14-336 (the original is llava_qwen2 custom code)",
    ),
    CatalogueEntry(
        "huatuogpt-vision-34b",
        "FreedomIntelligence/HuatuoGPT-Vision-34B-hf",
        "llava",
        34.8,
        "HF-format conversion; LLM Yi-1.5-34B",
    ),
    CatalogueEntry("lingshu-7b", "lingshu-medical-mllm/Lingshu-7B", "qwen2_5_vl", 8.3, "Lingshu (Alibaba DAMO, 2025)"),
    CatalogueEntry("lingshu-32b", "lingshu-medical-mllm/Lingshu-32B", "qwen2_5_vl", 33.5, "Lingshu 32B"),
    CatalogueEntry(
        "lingshu-i-8b", "lingshu-medical-mllm/Lingshu-I-8B", "internvl", 8.1, "Lingshu-I on InternVL3 (2026)"
    ),
    CatalogueEntry(
        "medgemma-4b-it",
        "google/medgemma-4b-it",
        "gemma3",
        4.3,
        "MedGemma, instruction-tuned; MedSigLIP vision at 896 px, 256 image tokens; gated licence",
    ),
    CatalogueEntry(
        "medgemma-4b-pt",
        "google/medgemma-4b-pt",
        "gemma3",
        4.3,
        "MedGemma, pre-trained (no chat template: the question is the prompt)",
    ),
    CatalogueEntry("medgemma-1.5-4b-it", "google/medgemma-1.5-4b-it", "gemma3", 4.3, "MedGemma 1.5 (2026 update)"),
    CatalogueEntry("medgemma-27b-it", "google/medgemma-27b-it", "gemma3", 27.4, "MedGemma 27B multimodal"),
    CatalogueEntry(
        "llava-med",
        "chaoyinshe/llava-med-v1.5-mistral-7b-hf",
        "llava",
        7.6,
        "community HF-format conversion of microsoft/llava-med-v1.5-mistral-7b (whose own format needs its "
        "repository's code); any LLaVA-format conversion works as llava-med=DIR",
    ),
    CatalogueEntry(
        "medvlm-r1",
        "JZPeterPan/MedVLM-R1",
        "qwen2_vl",
        2.2,
        "reasoning model on Qwen2-VL-2B: it thinks before answering, so its answers are generated",
        answer_mode=GENERATE,
    ),
    # The Qwen3-VL generation (2025-26). Hub ids and bases are read off each model card
    # (the "base_model" field, or the loading code of its Quick Start); parameter counts
    # are those of the Qwen3-VL base the card names, since fine-tuning keeps the shapes:
    # Qwen3-VL-2B ≈ 2.1B, -4B 4.44B, -8B 8.77B, -30B-A3B ≈ 31.1B (Qwen's model cards
    # as quoted by third-party pages; the hub itself could not be browsed from here).
    # "unconfirmed" marks what no page we could read stated outright.
    CatalogueEntry(
        "medmo-4b",
        "MBZUAI/MedMO-4B",  # card loads it with Qwen3VLForConditionalGeneration
        "qwen3_vl",
        4.44,
        "MedMO (MBZUAI, 2026) on Qwen3-VL-4B; grounding and VQA; size from the Qwen3-VL-4B base (unconfirmed)",
    ),
    CatalogueEntry(
        "medmo-8b-next",
        "MBZUAI/MedMO-8B-Next",
        "qwen3_vl",
        8.77,
        "MedMO-8B-Next (MBZUAI, 2026), the latest MedMO; base Qwen3-VL-8B (family and size unconfirmed: "
        "the card we read shows no config)",
    ),
    CatalogueEntry(
        "healthgpt-pro-4b",
        "lintw/HealthGPT-Pro-4B",  # card: base_model Qwen/Qwen3-VL-4B-Instruct
        "qwen3_vl",
        4.44,
        "HealthGPT-Pro (ZJU, 2026) on Qwen3-VL-4B-Instruct; not the original HealthGPT (Phi + H-LoRA custom code)",
    ),
    CatalogueEntry(
        "healthgpt-pro-8b",
        "lintw/HealthGPT-Pro-8B",
        "qwen3_vl",
        8.77,
        "HealthGPT-Pro 8B on Qwen3-VL-8B (base named by the project README; size unconfirmed)",
    ),
    CatalogueEntry(
        "medix-r1-2b",
        "MBZUAI/MediX-R1-2B",  # card: base_model Qwen/Qwen3-VL-2B-Instruct
        "qwen3_vl",
        2.13,
        "MediX-R1 (MBZUAI, 2026), RL-tuned reasoning model: thinks in <think> blocks, so its answers are "
        "generated; size from the Qwen3-VL-2B base (unconfirmed)",
        answer_mode=GENERATE,
    ),
    CatalogueEntry(
        "medix-r1-8b",
        "MBZUAI/MediX-R1-8B",
        "qwen3_vl",
        8.77,
        "MediX-R1 8B reasoning model (answers generated); base Qwen3-VL-8B (unconfirmed)",
        answer_mode=GENERATE,
    ),
    CatalogueEntry(
        "medix-r1-30b",
        "MBZUAI/MediX-R1-30B",  # card: base_model Qwen/Qwen3-VL-30B-A3B-Instruct
        "qwen3_vl_moe",
        31.1,
        "MediX-R1 30B reasoning model on the Qwen3-VL-30B-A3B mixture of experts (3B active; all weights "
        "are loaded); size unconfirmed",
        answer_mode=GENERATE,
    ),
    CatalogueEntry("bimedix2", "MBZUAI/BiMediX2-8B-hf", "llava", 8.0, "BiMediX2 (Llama-3.1-8B), the -hf repository"),
    CatalogueEntry("medvision-v0-7b", "YongchengYAO/MedVision-V0-7B", "qwen2_5_vl", 8.3, "MedVision on Qwen2.5-VL"),
    # General-purpose baselines medical papers compare against; one per supported family.
    CatalogueEntry(
        "qwen2.5-vl-7b-instruct", "Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl", 8.3, "baseline", medical=False
    ),
    CatalogueEntry("qwen3-vl-4b-instruct", "Qwen/Qwen3-VL-4B-Instruct", "qwen3_vl", 4.44, "baseline", medical=False),
    CatalogueEntry("qwen3-vl-8b-instruct", "Qwen/Qwen3-VL-8B-Instruct", "qwen3_vl", 8.77, "baseline", medical=False),
    CatalogueEntry("qwen2-vl-2b-instruct", "Qwen/Qwen2-VL-2B-Instruct", "qwen2_vl", 2.2, "baseline", medical=False),
    CatalogueEntry("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf", "llava", 7.1, "baseline", medical=False),
    CatalogueEntry(
        "llava-v1.6-mistral-7b", "llava-hf/llava-v1.6-mistral-7b-hf", "llava_next", 7.6, "baseline", medical=False
    ),
    CatalogueEntry("gemma-3-4b-it", "google/gemma-3-4b-it", "gemma3", 4.3, "baseline; gated licence", medical=False),
    CatalogueEntry("internvl3-8b", "OpenGVLab/InternVL3-8B-hf", "internvl", 8.1, "baseline", medical=False),
    CatalogueEntry(
        "idefics3-8b-llama3", "HuggingFaceM4/Idefics3-8B-Llama3", "idefics3", 8.5, "baseline", medical=False
    ),
    CatalogueEntry(
        "smolvlm-2.2b-instruct", "HuggingFaceTB/SmolVLM-Instruct", "idefics3", 2.2, "baseline", medical=False
    ),
    CatalogueEntry(
        "smolvlm2-2.2b-instruct",
        "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
        "smolvlm",
        2.2,
        "baseline",
        medical=False,
    ),
    CatalogueEntry(
        "paligemma2-3b-pt-224",
        "google/paligemma2-3b-pt-224",
        "paligemma",
        3.0,
        "baseline; pre-trained (no chat template); gated licence",
        medical=False,
    ),
    CatalogueEntry(
        "llama-3.2-11b-vision-instruct",
        "meta-llama/Llama-3.2-11B-Vision-Instruct",
        "mllama",
        10.7,
        "baseline; cross-attention (no image view); gated licence",
        medical=False,
    ),
)

CATALOGUE_BY_NAME: dict[str, CatalogueEntry] = {entry.name: entry for entry in CATALOGUE}

# model_type values of checkpoints that need their own repository's code, with advice.
CUSTOM_CODE_MODEL_TYPES: dict[str, str] = {
    "llava_qwen2": "the original HuatuoGPT-Vision format; use the -hf conversion (huatuogpt-vision-7b)",
    "llava_mistral": "the original LLaVA-Med format; use an HF-format conversion (llava-med=DIR)",
    "llava_llama": "an original LLaVA-repository format; convert it with transformers' convert_llava_weights_to_hf",
    "internvl_chat": "the original InternVL format; use the OpenGVLab '-hf' checkpoint",
    "gemma3_text": "a text-only model (e.g. medgemma-27b-text-it): it has no vision tower to audit",
}
