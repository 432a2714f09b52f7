"""The core names settings by key; only the command line's own modules know flags.

Library messages mention a setting through ``naming.mention`` (its key, e.g.
``batch_size``); the plugin, for as long as a pytest run lasts, and
``python -m pytest_medprobe`` name it as "flag / ini key". The static check reads every
core module's source: no flag of a setting appears in it, and no code asks a ``Setting``
for its flag or ini key.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pytest_medprobe
from pytest_medprobe import config
from pytest_medprobe.config import SETTINGS, Setting, flag_names, resolve_settings
from pytest_medprobe.errors import MedprobeUsageError
from pytest_medprobe.naming import by_key, mention, mention_full, named_by

PACKAGE = Path(pytest_medprobe.__file__).parent
# Modules that render the command line: they name flags on purpose.
RENDERING = {
    "plugin.py",
    "fixtures.py",
    "stash.py",
    "options.py",
    "__main__.py",
    "commands.py",
    "config",
    "report",
}
SETTING_CONSTANTS = {name for name, value in vars(config).items() if isinstance(value, Setting)}
FLAGS = {flag for setting in SETTINGS for flag in setting.flags}


def _core_modules() -> list[Path]:
    return [path for path in sorted(PACKAGE.rglob("*.py")) if path.relative_to(PACKAGE).parts[0] not in RENDERING]


def _docstrings(tree: ast.AST) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)))]
    found = set()
    for node in nodes:
        body = getattr(node, "body", [])
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            found.add(id(body[0].value))
    return found


def _flag_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = _docstrings(tree)
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("flag", "flags", "ini", "short"):
            if isinstance(node.value, ast.Name) and (node.value.id in SETTING_CONSTANTS or node.value.id == "setting"):
                uses.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Name) and node.id in ("setting_names", "flag_names"):
            uses.append(f"line {node.lineno}: {node.id}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words = {word.split("=")[0].rstrip(".,;:)") for word in node.value.split()}
            uses += [f"line {node.lineno}: {flag!r} in a message" for flag in sorted(words & FLAGS)]
    return uses


def test_core_modules_name_settings_by_key_never_by_flag() -> None:
    found = {str(path.relative_to(PACKAGE)): uses for path in _core_modules() if (uses := _flag_uses(path))}
    assert not found, "flags named in core modules (use naming.mention(key)):\n" + "\n".join(
        f"  {module}: {'; '.join(uses)}" for module, uses in found.items()
    )


def test_the_static_check_sees_a_flag() -> None:
    assert _flag_uses(PACKAGE / "options.py")  # a rendering module, left out above
    assert len(_core_modules()) > 40


def test_a_library_message_names_the_setting_by_key() -> None:
    with named_by(by_key), pytest.raises(MedprobeUsageError) as caught:
        resolve_settings({"batch_size": "0"}, {}, Path("/"))
    assert str(caught.value).startswith("batch_size: got '0'") and "--" not in str(caught.value)


def test_under_pytest_the_same_message_names_the_flag_and_the_ini_key() -> None:
    # This test runs under pytest with the plugin, which asked for the command line's names.
    with pytest.raises(MedprobeUsageError, match=r"^--medprobe-batch-size / ini medprobe_batch_size: got '0'"):
        resolve_settings({"batch_size": "0"}, {}, Path("/"))
    with named_by(flag_names):
        assert (mention("max_samples"), mention_full("seed")) == (
            "--medprobe-max-samples",
            "--medprobe-seed / ini medprobe_seed",
        )
    with named_by(by_key):
        assert (mention("max_samples"), mention_full("seed")) == ("max_samples", "seed")
