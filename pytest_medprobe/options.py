"""pytest options and ini keys of every setting, registered as a guest in any pytest run.

Installing the plugin adds its options to *every* pytest session of the environment, so
each setting has a canonical ``--medprobe-…`` flag, always registered, and its short
spelling (``--model``, ``--seed``, ...) only where no other plugin and no conftest owns
it: a project's own ``--device`` then keeps working, and ours stays ``--medprobe-device``.
Option dests carry the ``medprobe_`` prefix for the same reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_medprobe.config import MODEL, SETTINGS, Setting
from pytest_medprobe.plan import PLAN_FLAG

GROUP = "medprobe"
LIST_MODELS_FLAG = "--medprobe-models"


def _add(group: Any, name: str, setting: Setting, help: str) -> None:
    if setting.is_switch:
        group.addoption(name, action="store_true", default=None, dest=setting.option_dest, help=help)
    elif setting.repeatable:
        group.addoption(name, action="append", default=None, dest=setting.option_dest, help=help)
    else:
        group.addoption(name, default=None, dest=setting.option_dest, help=help)


def register_options(parser: pytest.Parser) -> None:
    """The canonical flags and the ini keys (``pytest_addoption``)."""
    group = parser.getgroup(GROUP, "pytest-medprobe: layer-by-layer audits of medical MLLMs")
    for setting in SETTINGS:
        _add(group, setting.flag, setting, setting.help)
        if setting.ini_type == "linelist":
            ini_default: object = list(setting.default)  # type: ignore[call-overload]
        elif setting.ini_type == "bool":
            ini_default = bool(setting.default)
        else:
            ini_default = "" if setting.default is None else str(setting.default)
        parser.addini(setting.ini, help=setting.help, type=setting.ini_type, default=ini_default)  # type: ignore[arg-type]
    group.addoption(
        PLAN_FLAG,
        action="store_true",
        default=False,
        dest="medprobe_plan",
        help="print the plan of the run (models with family, weight size, device and dtype; datasets with "
        "images per split; which pairs are cached; forward passes remaining), then exit without loading a model",
    )
    group.addoption(
        LIST_MODELS_FLAG,
        action="store_true",
        default=False,
        help=f"list the models {MODEL.flag} accepts (built-in, named medical MLLMs with their hub ids and "
        "families, and which are in the local Hugging Face cache), then exit",
    )


def _taken_names(parser: pytest.Parser) -> set[str]:
    """Every option string already registered by pytest, a plugin or a conftest."""
    groups = [parser._anonymous, *parser._groups]  # noqa: SLF001 - pytest has no public listing
    return {name for group in groups for option in group.options for name in option.names()}


def register_short_spellings(parser: pytest.Parser) -> None:
    """The short spellings nobody else owns; called once the other plugins and the initial
    conftests have registered their options."""
    taken = _taken_names(parser)
    group = parser.getgroup(GROUP)
    for setting in SETTINGS:
        if setting.short is not None and setting.short not in taken:
            _add(group, setting.short, setting, f"short for {setting.flag} (only where nothing else owns it)")


def relative_paths_root(config: pytest.Config) -> Path:
    """What a relative cache folder is relative to: the rootdir, except when pytest chose the
    installed package itself (``pytest --pyargs pytest_medprobe.audits`` without an ini
    file), where nothing may be written; then the folder pytest was started in."""
    package = Path(__file__).resolve().parent
    rootdir = config.rootpath.resolve()
    if rootdir == package or package in rootdir.parents:
        return Path(config.invocation_params.dir)
    return config.rootpath
