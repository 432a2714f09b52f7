"""How library messages name a setting: by its key, unless the reader asked for other names.

The library knows settings by key (``batch_size``, ``max_connector_loss``): the keywords
of ``pytest_medprobe.probe``. Under pytest, the plugin asks for the command line's names
(``--medprobe-batch-size / ini medprobe_batch_size``) for as long as its run lasts, and so
does ``python -m pytest_medprobe``; a message built meanwhile names the flag. Nothing here
knows a flag: the namer that does (``config.flag_names``) is handed in by the plugin.

The namer lives in a ``ContextVar``, set and reset by whoever renders (never read from a
module global), so a nested pytest run (pytester) restores the outer run's names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

# (setting key, short) -> how a message names it; ``short``: the flag alone, without the ini key.
SettingNamer = Callable[[str, bool], str]


def by_key(key: str, short: bool = False) -> str:
    """The library's way to name a setting: its key."""
    return key


_NAMER: ContextVar[SettingNamer] = ContextVar("pytest_medprobe_setting_namer", default=by_key)


def mention(key: str) -> str:
    """A setting in a message, short (under pytest: its flag, e.g. ``--medprobe-batch-size``)."""
    return _NAMER.get()(key, True)


def mention_full(key: str) -> str:
    """A setting in a message, in full (under pytest: ``--medprobe-batch-size / ini medprobe_batch_size``)."""
    return _NAMER.get()(key, False)


def use_namer(namer: SettingNamer) -> Token[SettingNamer]:
    """Name settings with ``namer`` from now on; ``restore_namer(token)`` undoes it."""
    return _NAMER.set(namer)


def restore_namer(token: Token[SettingNamer]) -> None:
    """Go back to the names in use before ``use_namer`` returned ``token``."""
    _NAMER.reset(token)


@contextmanager
def named_by(namer: SettingNamer) -> Iterator[None]:
    """Name settings with ``namer`` inside the block."""
    token = use_namer(namer)
    try:
        yield
    finally:
        restore_namer(token)
