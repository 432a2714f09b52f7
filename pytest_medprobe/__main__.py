"""Command line: ``python -m pytest_medprobe zoo export DIR [--variant FAULT]`` and ``zoo train``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    from pytest_medprobe.zoo import SHIPPED_DIR

    parser = argparse.ArgumentParser(prog="python -m pytest_medprobe", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    zoo = commands.add_parser("zoo", help="the reference model and its planted-fault variants")
    zoo_commands = zoo.add_subparsers(dest="zoo_command", required=True)
    export = zoo_commands.add_parser("export", help="write medprobe-tiny (or a variant) as a checkpoint directory")
    export.add_argument("directory", type=Path)
    export.add_argument(
        "--variant", default=None, help="a planted fault: blind-vision, lossy-connector, forgetful-llm, misaligned-head"
    )
    train = zoo_commands.add_parser("train", help="retrain medprobe-tiny (CPU, fixed seed)")
    train.add_argument("--out", type=Path, default=SHIPPED_DIR, help=f"where to save it (default: {SHIPPED_DIR})")
    train.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the shipped plan)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    arguments = _parser().parse_args(argv)
    from pytest_medprobe.zoo import export, fault_names

    if arguments.zoo_command == "export":
        if arguments.variant is not None and arguments.variant not in fault_names():
            print(f"unknown variant {arguments.variant!r}; known: {', '.join(fault_names())}", file=sys.stderr)
            return 2
        written = export(arguments.directory, arguments.variant)
        print(f"wrote {written}; audit it with: pytest audits/ --model={written}")
        return 0
    from dataclasses import replace

    from pytest_medprobe.zoo.train import TrainingPlan, train_reference_model

    plan = TrainingPlan() if arguments.steps is None else replace(TrainingPlan(), steps=arguments.steps)
    stats = train_reference_model(arguments.out, plan)
    print(f"saved {arguments.out}: final loss {stats['final_loss']:.4f} in {stats['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
