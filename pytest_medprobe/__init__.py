"""pytest-medprobe: probe a medical multimodal LLM layer by layer and audit where it loses a diagnosis.

The public API for in-house architectures is ``FamilyAdapter`` (say where a model's
stages live) and ``register_family`` (make pytest-medprobe use it); both are imported on
first use, so importing the package (as pytest does for ``--help``) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_medprobe.models.base import FamilyAdapter
    from pytest_medprobe.models.families import register_family

__version__ = "0.1.0"
__all__ = ["FamilyAdapter", "__version__", "register_family"]


def __getattr__(name: str) -> Any:
    if name == "FamilyAdapter":
        from pytest_medprobe.models.base import FamilyAdapter

        return FamilyAdapter
    if name == "register_family":
        from pytest_medprobe.models.families import register_family

        return register_family
    raise AttributeError(f"module 'pytest_medprobe' has no attribute {name!r}")
