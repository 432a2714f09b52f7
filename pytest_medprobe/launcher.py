"""The rank a distributed launcher gave this process (torchrun, Slurm through torchrun,
accelerate launch...): read once here for both ways a run is split (``--shard`` and
``extract --all-pairs``)."""

from __future__ import annotations

from collections.abc import Mapping

from pytest_medprobe.errors import MedprobeUsageError


def launcher_rank(environ: Mapping[str, str], instead: str = "") -> tuple[int, int] | None:
    """``(RANK, WORLD_SIZE)`` from ``environ``; None when absent or a world of one.

    ``instead``: what the user can pass instead, added to the error about a bad value.
    """
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        return None
    try:
        rank, world = int(environ["RANK"]), int(environ["WORLD_SIZE"])
    except ValueError:
        raise MedprobeUsageError(
            f"RANK={environ['RANK']!r}, WORLD_SIZE={environ['WORLD_SIZE']!r}: not whole numbers"
            + (f"; {instead}." if instead else ".")
        ) from None
    if world <= 1:
        return None
    if not 0 <= rank < world:
        raise MedprobeUsageError(f"RANK={rank} is outside 0..WORLD_SIZE-1 (WORLD_SIZE={world}).")
    return rank, world
