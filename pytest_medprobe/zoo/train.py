"""Train ``medprobe-tiny``: the tiny LLaVA taught to answer the closed question on synthetic lesions.

Run ``python -m pytest_medprobe zoo train`` to regenerate the shipped weights (CPU, fixed
seed). The model is trained end to end (vision tower, projector, decoder, LM head) with
cross-entropy on the option letter at the answer position. Its training images come
from a seed range the audits never use, so the audits score it on images it has not seen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pytest_medprobe.models.tiny_llava import TinyLlavaSpec, make_tiny_llava, save_checkpoint_atomically
from pytest_medprobe.prompts import chat_prompt, closed_question, letter_token_ids, option_letters

TRAINING_SEED = 9_000  # synthetic-lesions seeds from here on are training data; audits use small seeds


@dataclass(frozen=True)
class TrainingPlan:
    """Hyper-parameters of the reference model; changing any changes the shipped weights."""

    n_images: int = 4_000
    vision_steps: int = 1_200  # phase 1: the vision tower alone, with a linear head
    vision_batch_size: int = 64
    vision_learning_rate: float = 1e-3
    steps: int = 800  # phase 2: the whole model on the closed question
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0
    image_token_weight: float = 0.5
    nested_dropout_share: float = 0.5  # share of phase-2 images whose vision feature is truncated
    architecture: TinyLlavaSpec = TinyLlavaSpec()


def _training_images(plan: TrainingPlan) -> tuple[Any, np.ndarray, tuple[str, ...], str]:
    from pytest_medprobe.data.synthetic import make_synthetic_lesions

    dataset = make_synthetic_lesions(seed=TRAINING_SEED + plan.seed, n_fit=plan.n_images, n_test=4 * 4)
    return dataset.fit_images, dataset.fit_labels, dataset.class_names, dataset.modality


def _pretrain_vision(model: Any, pixel_values: Any, labels: Any, plan: TrainingPlan, generator: Any, log: Any) -> None:
    """Phase 1: teach the vision tower the lesion shapes, as CLIP was pretrained for LLaVA.

    A linear head reads the mean of the patch tokens of the layer LLaVA hands to its
    projector; the head is thrown away afterwards.
    """
    import torch

    tower = model.model.vision_tower
    layer = model.config.vision_feature_layer
    head = torch.nn.Linear(tower.config.hidden_size, int(labels.max()) + 1)
    optimizer = torch.optim.AdamW([*tower.parameters(), *head.parameters()], lr=plan.vision_learning_rate)
    for step in range(plan.vision_steps):
        batch = torch.randint(0, len(labels), (plan.vision_batch_size,), generator=generator)
        hidden = tower(pixel_values[batch], output_hidden_states=True).hidden_states[layer]
        loss = torch.nn.functional.cross_entropy(head(hidden[:, 1:].mean(dim=1)), labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % 200 == 0:
            log(f"vision step {step + 1}/{plan.vision_steps}  loss {loss.item():.4f}")


def _nested_dropout(plan: TrainingPlan, generator: Any) -> Any:
    """A training-only hook: nested dropout on the projector's input (Rippel et al., 2014).

    For a share of the images, only the first k dimensions of the vision feature reach
    the projector, k drawn uniformly from 1 to all. The decoder thus learns to answer as
    well as whatever signal remains allows. A connector that loses information then
    makes the model answer about as well as its own probes read, so the loss shows in
    the connector audit and does not leak into the semantic-mapping audit; without it,
    a decoder that never saw degraded input answered 0.11 below its probe.
    """
    import torch

    def hook(module: Any, args: Any) -> Any:
        if not module.training:
            return None
        features = args[0]  # [B, tokens, width]
        batch, _, width = features.shape
        kept = torch.randint(1, width + 1, (batch, 1), generator=generator)
        mask = (torch.arange(width)[None, :] < kept).to(features.dtype)
        dropped = torch.rand(batch, 1, generator=generator) < plan.nested_dropout_share
        mask = torch.where(dropped, mask, torch.ones_like(mask))
        return (features * mask[:, None, :],)

    return hook


def train_reference_model(directory: Path, plan: TrainingPlan = TrainingPlan(), log: Any = print) -> dict[str, float]:
    """Train and save ``medprobe-tiny`` to ``directory``; returns training statistics."""
    import torch

    started = time.perf_counter()
    images, labels, class_names, modality = _training_images(plan)
    model, processor = make_tiny_llava(replace(plan.architecture, seed=plan.seed))
    prompt = chat_prompt(processor, closed_question(class_names, modality))
    letters = letter_token_ids(processor.tokenizer, option_letters(len(class_names)))
    targets = torch.tensor([letters[label][0] for label in labels])
    # One prompt for every image: tokenize once, preprocess all images once.
    encoded = processor(images=list(images[:1]), text=[prompt], return_tensors="pt")
    input_ids, attention_mask = encoded["input_ids"], encoded["attention_mask"]
    image_positions = (input_ids[0] == model.config.image_token_id).nonzero().flatten()
    pixel_values = processor.image_processor(list(images), return_tensors="pt")["pixel_values"]

    generator = torch.Generator().manual_seed(plan.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.seed)
        model.train()
        _pretrain_vision(model, pixel_values, torch.as_tensor(labels), plan, generator, log)
        # Phase 2, as LLaVA does: the pretrained vision tower stays frozen.
        model.model.vision_tower.requires_grad_(False)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=plan.learning_rate, weight_decay=plan.weight_decay)
        augmentation = model.model.multi_modal_projector.register_forward_pre_hook(_nested_dropout(plan, generator))
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=plan.learning_rate, total_steps=plan.steps)
        running: list[float] = []
        for step in range(plan.steps):
            batch = torch.randint(0, len(images), (plan.batch_size,), generator=generator)
            logits = model(
                input_ids=input_ids.expand(plan.batch_size, -1),
                attention_mask=attention_mask.expand(plan.batch_size, -1),
                pixel_values=pixel_values[batch],
            ).logits  # [B, S, vocab]
            answer_loss = torch.nn.functional.cross_entropy(logits[:, -1, :], targets[batch])
            # Dense supervision: every image token's last hidden state should also name the
            # letter. It keeps the image view informative through the decoder, as in a
            # healthy model, and gives the projector a short gradient path.
            image_logits = logits[:, image_positions, :]  # [B, n_image_tokens, vocab]
            image_loss = torch.nn.functional.cross_entropy(
                image_logits.reshape(-1, image_logits.shape[-1]),
                targets[batch].repeat_interleave(len(image_positions)),
            )
            loss = answer_loss + plan.image_token_weight * image_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            schedule.step()
            running.append(answer_loss.item())
            if (step + 1) % 100 == 0:
                log(f"step {step + 1}/{plan.steps}  answer loss {np.mean(running[-100:]):.4f}")
        augmentation.remove()
    model.eval()
    model.requires_grad_(True)
    save_checkpoint_atomically(model, processor, directory)
    return {"final_loss": float(np.mean(running[-100:])), "seconds": time.perf_counter() - started}
