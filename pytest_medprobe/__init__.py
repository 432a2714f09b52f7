"""pytest-medprobe: probe a medical multimodal LLM layer by layer and audit where it loses a diagnosis."""

from __future__ import annotations

__version__ = "0.1.0"
