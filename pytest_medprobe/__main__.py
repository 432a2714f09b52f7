"""Command line: ``extract [--all-pairs | --shard I/N]``, ``rerun RESULTS.json``,
``zoo export DIR [--variant FAULT | --model NAME]`` and ``zoo train``.

``extract`` fills the feature cache the audits read, with the settings ``pytest`` takes
(same flags, same cache key), alone or as one rank of ``torchrun`` / ``accelerate launch``:
with ``--all-pairs`` each rank takes whole models, without it each rank a shard of every pair.
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
    "launch; with --all-pairs each rank takes whole models. rerun replays the pytest command recorded in a "
    "results file. zoo exports or retrains the "
    "reference model medprobe-tiny and its planted-fault variants."
)


def _parser() -> argparse.ArgumentParser:
    from pytest_medprobe.zoo import SHIPPED_DIR

    parser = argparse.ArgumentParser(prog="python -m pytest_medprobe", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    zoo = commands.add_parser("zoo", help="the reference model and its planted-fault variants")
    zoo_commands = zoo.add_subparsers(dest="zoo_command", required=True)
    export = zoo_commands.add_parser(
        "export", help="write medprobe-tiny (or a variant, or any built-in model) as a checkpoint directory"
    )
    export.add_argument("directory", type=Path)
    which = export.add_mutually_exclusive_group()
    which.add_argument(
        "--variant", default=None, help="a planted fault: blind-vision, lossy-connector, forgetful-llm, misaligned-head"
    )
    which.add_argument(
        "--model",
        default=None,
        help="any built-in model, as --model names it in an audit: medprobe-tiny, medprobe-tiny:FAULT, "
        "medprobe-tiny-wide, medprobe-tiny-wide:injective-connector, medprobe-tiny-wide:rank-limited-connector, "
        "tiny-llava",
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
    from pytest_medprobe.commands import ALL_PAIRS_FLAG, SHARD_FLAG
    from pytest_medprobe.config import CACHE, DATASET, EXTRACT_SETTINGS, MODEL
    from pytest_medprobe.plan import PLAN_FLAG

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
        ALL_PAIRS_FLAG,
        action="store_true",
        help=f"every {MODEL.flag} x {DATASET.flag} pair, model-major; under torchrun or any launcher that sets "
        "RANK/WORLD_SIZE, each rank takes whole models (largest first, to the least-loaded rank)",
    )
    extract.add_argument(
        PLAN_FLAG, action="store_true", help="print the plan (models, datasets, cached pairs) and exit"
    )
    extract.add_argument(
        "--rootdir", type=Path, default=None, help=f"what a relative {CACHE.flag} is relative to (default: .)"
    )


def _extract(arguments: argparse.Namespace) -> int:
    from dataclasses import replace

    from pytest_medprobe.commands import ALL_PAIRS_FLAG, SHARD_FLAG
    from pytest_medprobe.config import CACHE, EXTRACT_SETTINGS, resolve_settings
    from pytest_medprobe.errors import MedprobeUsageError
    from pytest_medprobe.launcher import launcher_rank
    from pytest_medprobe.naming import mention
    from pytest_medprobe.preflight import check_sources
    from pytest_medprobe.session import AuditSession
    from pytest_medprobe.shards import Shard, rank_device

    try:
        cli = {setting.dest: getattr(arguments, setting.dest) for setting in EXTRACT_SETTINGS}
        settings = resolve_settings(cli, {}, (arguments.rootdir or Path.cwd()).resolve())
        settings = check_sources(settings)
        if arguments.all_pairs and arguments.shard is not None:
            raise MedprobeUsageError(
                f"{ALL_PAIRS_FLAG} gives each rank whole models and {SHARD_FLAG} gives each a part of every "
                f"pair; pass one of them ({SHARD_FLAG} for one model too big to extract alone)."
            )
        rank = launcher_rank(os.environ) if arguments.all_pairs else None
        shard = None
        if not arguments.all_pairs:
            shard = Shard.parse(arguments.shard) if arguments.shard is not None else Shard.from_environment(os.environ)
    except MedprobeUsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = replace(settings, device=rank_device(settings.device, os.environ))
    prefix = "" if rank is None else f"rank {rank[0]}/{rank[1]}: "

    def echo(line: str) -> None:
        print(prefix + line, flush=True)

    session = AuditSession(settings, progress=sys.stderr.isatty(), echo=echo)
    session.adopt_orphans = True  # this command is what extracts pairs a dead rank left
    from pytest_medprobe.plan import make_plan

    plan = make_plan(session)
    for line in plan.lines():
        echo(line)
    if arguments.medprobe_plan:
        return 0
    try:  # the cache is this command's only output: a run that cannot keep anything must not start
        if plan.writes:  # (a read-only shared cache that already holds every pair is fine)
            session.store.cache.check_writable()
    except OSError as exc:
        print(
            f"error: extract fills the feature cache, and {settings.cache_dir} cannot be written ({exc}), so "
            f"nothing it extracts would be kept. Point {mention(CACHE.dest)} at a writable folder, free space, or fix "
            "the folder's permissions.",
            file=sys.stderr,
        )
        return 2
    status = _extract_shards(session, shard) if shard is not None else _extract_models(session, rank)
    if session.store.cache.unwritable:  # it filled up or turned read-only during the run (said above)
        print(
            f"error: the feature cache {settings.cache_dir} could not be written during extraction (above): "
            "the features of this run are not stored; run the command again once it can be.",
            file=sys.stderr,
        )
        return 1
    return status


def _extract_models(session: Any, rank: tuple[int, int] | None) -> int:
    """Model-major extraction of every pair (of this rank's models under a launcher); 1 if a pair failed."""
    from contextlib import nullcontext

    from pytest_medprobe.matrix import extract_model_pairs
    from pytest_medprobe.ranks import assign_models, rank_claims, weight_bytes

    models = list(session.unique_models)
    claims: Any = nullcontext()
    if rank is not None:
        assignment = assign_models([(model, weight_bytes(session, model)) for model in models], rank[1])
        models = assignment[rank[0]]
        session.echo(f"models of this rank: {', '.join(models) or 'none (more ranks than models)'}")
        mine = [
            pair for pair in session.pairs if pair.model in models and not session.is_cached(session.features_key(pair))
        ]
        claims = rank_claims(session, mine, *rank)
    with claims:
        if rank is not None:
            session.echo(f"claimed {len(mine)} pair{'s' if len(mine) != 1 else ''} in {session.settings.cache_dir}")
        for model in models:
            extract_model_pairs(session, model, [pair for pair in session.pairs if pair.model == model])
    session.matrix_progress.close()
    failed = [pair for pair in session.pairs if pair.model in models and session.error_of(pair) is not None]
    session.echo(
        f"done: {len(models)} model{'s' if len(models) != 1 else ''}, {session.forward_passes_total} forward passes"
        + (f"; {len(failed)} pair{'s' if len(failed) != 1 else ''} failed (above)" if failed else "")
    )
    return 1 if failed else 0


def _extract_shards(session: Any, shard: Any) -> int:
    """``--shard I/N`` (or RANK/WORLD_SIZE without --all-pairs): this shard of every pair."""
    from pytest_medprobe.errors import MedprobeError
    from pytest_medprobe.shards import run_extract

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
    from pytest_medprobe.config import flag_names
    from pytest_medprobe.naming import named_by

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    arguments = _parser().parse_args(argv)
    with named_by(flag_names):  # this is a command line: messages name its flags
        return _run(arguments)


def _run(arguments: argparse.Namespace) -> int:
    if arguments.command == "extract":
        return _extract(arguments)
    if arguments.command == "rerun":
        return _rerun(arguments)
    from pytest_medprobe.zoo import REFERENCE_NAME, export, fault_names

    if arguments.zoo_command == "export":
        from pytest_medprobe.config import MODEL
        from pytest_medprobe.models.builtin import BUILTIN_MODELS

        if arguments.variant is not None and arguments.variant not in fault_names():
            print(f"unknown variant {arguments.variant!r}; known: {', '.join(fault_names())}", file=sys.stderr)
            return 2
        if arguments.model is not None and arguments.model not in BUILTIN_MODELS:
            print(f"unknown built-in model {arguments.model!r}; known: {', '.join(BUILTIN_MODELS)}", file=sys.stderr)
            return 2
        name = arguments.model or (f"{REFERENCE_NAME}:{arguments.variant}" if arguments.variant else REFERENCE_NAME)
        builtin = BUILTIN_MODELS[name]
        # The shipped reference is copied; every other built-in model is built into the folder.
        written = builtin.locate(arguments.directory) if builtin.writes_cache else export(arguments.directory)
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
