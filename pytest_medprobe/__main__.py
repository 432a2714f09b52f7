"""Command line: ``extract [--shard I/N]``, ``zoo export DIR [--variant FAULT]`` and ``zoo train``.

``extract`` fills the feature cache the audits read, with the settings ``pytest`` takes
(same flags, same cache key), alone or as one rank of ``torchrun`` / ``accelerate launch``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


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
    _add_extract_parser(commands)
    return parser


def _add_extract_parser(commands: Any) -> None:
    from pytest_medprobe.shards import EXTRACT_SETTINGS, SHARD_FLAG

    extract = commands.add_parser(
        "extract",
        help="extract features into the cache (one shard with --shard, or this rank's under torchrun)",
        description="Extract every --model x --dataset pair into the feature cache that `pytest audits/` reads "
        "(the same flags as pytest, the same cache key; ini files are not read: pass settings as flags). "
        f"{SHARD_FLAG} I/N writes shard I of N; under torchrun or accelerate launch each process takes shard "
        "RANK/WORLD_SIZE. When all N shards are written the last one merges them into the cache entry.",
    )
    for setting in EXTRACT_SETTINGS:
        # Our own command line: every spelling of a setting is ours, so all of them are accepted.
        if setting.is_switch:
            extract.add_argument(
                *setting.flags, action="store_true", default=None, dest=setting.dest, help=setting.help
            )
        elif setting.repeatable:
            extract.add_argument(*setting.flags, action="append", default=None, dest=setting.dest, help=setting.help)
        else:
            extract.add_argument(*setting.flags, default=None, dest=setting.dest, help=setting.help)
    extract.add_argument(
        SHARD_FLAG, default=None, metavar="I/N", help="write shard I of N (0 <= I < N); default: RANK/WORLD_SIZE if set"
    )
    extract.add_argument(
        "--rootdir", type=Path, default=None, help="what a relative --medprobe-cache is relative to (default: .)"
    )


def _extract(arguments: argparse.Namespace) -> int:
    from dataclasses import replace

    from pytest_medprobe.config import resolve_settings
    from pytest_medprobe.errors import MedprobeError, MedprobeUsageError
    from pytest_medprobe.session import AuditSession, check_sources
    from pytest_medprobe.shards import EXTRACT_SETTINGS, Shard, rank_device, run_extract

    try:
        cli = {setting.dest: getattr(arguments, setting.dest) for setting in EXTRACT_SETTINGS}
        settings = resolve_settings(cli, {}, (arguments.rootdir or Path.cwd()).resolve())
        settings = check_sources(settings)
        shard = Shard.parse(arguments.shard) if arguments.shard is not None else Shard.from_environment(os.environ)
    except MedprobeUsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = replace(settings, device=rank_device(settings.device, os.environ))
    session = AuditSession(settings, progress=sys.stderr.isatty())
    status = 0
    for pair in session.pairs:
        try:
            print(f"{pair.model} × {pair.dataset}: {run_extract(session, pair, shard)}", flush=True)
        except MedprobeError as exc:
            print(f"{pair.model} × {pair.dataset}: error: {exc}", file=sys.stderr, flush=True)
            status = 1
    return status


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    arguments = _parser().parse_args(argv)
    if arguments.command == "extract":
        return _extract(arguments)
    from pytest_medprobe.zoo import export, fault_names

    if arguments.zoo_command == "export":
        if arguments.variant is not None and arguments.variant not in fault_names():
            print(f"unknown variant {arguments.variant!r}; known: {', '.join(fault_names())}", file=sys.stderr)
            return 2
        written = export(arguments.directory, arguments.variant)
        from pytest_medprobe.config import MODEL

        print(f"wrote {written}; audit it with: pytest audits/ {MODEL.flag}={written}")
        return 0
    from dataclasses import replace

    from pytest_medprobe.zoo.train import TrainingPlan, train_reference_model

    plan = TrainingPlan() if arguments.steps is None else replace(TrainingPlan(), steps=arguments.steps)
    stats = train_reference_model(arguments.out, plan)
    print(f"saved {arguments.out}: final loss {stats['final_loss']:.4f} in {stats['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
