"""Command line: ``extract [--shard I/N]``, ``rerun RESULTS.json``, ``zoo export DIR [--variant FAULT]``
and ``zoo train``.

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

# --help is read in a terminal: plain text, not the docstring's reStructuredText markup.
DESCRIPTION = (
    "pytest-medprobe's command line. extract fills the feature cache that the audits read, with the "
    "settings pytest takes (same flags, same cache key), alone or as one rank of torchrun or accelerate "
    "launch. rerun replays the pytest command recorded in a results file. zoo exports or retrains the "
    "reference model medprobe-tiny and its planted-fault variants."
)


def _parser() -> argparse.ArgumentParser:
    from pytest_medprobe.zoo import SHIPPED_DIR

    parser = argparse.ArgumentParser(prog="python -m pytest_medprobe", description=DESCRIPTION)
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
    rerun = commands.add_parser(
        "rerun",
        help="run again the pytest command recorded in a results file (--medprobe-json)",
        description="Run the exact pytest command recorded in RESULTS.json, in the folder it was run from, "
        "with this Python. The file also records the resolved settings, the versions and the content "
        "fingerprints of model and dataset, so the new results file can be compared with the old one.",
    )
    rerun.add_argument("results", type=Path, metavar="RESULTS.json")
    rerun.add_argument("--dry-run", action="store_true", help="print the command and the folder, run nothing")
    return parser


def _add_extract_parser(commands: Any) -> None:
    from pytest_medprobe.config import CACHE, DATASET, MODEL
    from pytest_medprobe.shards import EXTRACT_SETTINGS, SHARD_FLAG

    extract = commands.add_parser(
        "extract",
        help="extract features into the cache (one shard with --shard, or this rank's under torchrun)",
        description=f"Extract every {MODEL.flag} x {DATASET.flag} pair into the feature cache that pytest reads "
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
        "--rootdir", type=Path, default=None, help=f"what a relative {CACHE.flag} is relative to (default: .)"
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


def _rerun(arguments: argparse.Namespace) -> int:
    import json
    import shlex
    import subprocess

    try:
        document = json.loads(arguments.results.read_text(encoding="utf-8"))
        command = document["command"]
        args, folder = [str(a) for a in command["args"]], Path(command["invocation_dir"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(
            f"error: {arguments.results} is not a results file with a recorded command ({exc!r}); write one "
            "with pytest --medprobe-json=PATH (pytest-medprobe 0.1.0 or later).",
            file=sys.stderr,
        )
        return 2
    line = shlex.join([sys.executable, "-m", "pytest", *args])
    print(f"cd {shlex.quote(str(folder))} && {line}", flush=True)
    if arguments.dry_run:
        return 0
    if not folder.is_dir():
        print(
            f"error: the recorded folder {folder} does not exist here; run the command above by hand.", file=sys.stderr
        )
        return 2
    return subprocess.call([sys.executable, "-m", "pytest", *args], cwd=folder)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    arguments = _parser().parse_args(argv)
    if arguments.command == "extract":
        return _extract(arguments)
    if arguments.command == "rerun":
        return _rerun(arguments)
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
