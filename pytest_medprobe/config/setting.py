"""What a setting is: a key (``dest``), its command-line flag and ini key, and what it changes.

The scope of a setting is declared here, once, on the setting: ``FEATURES`` settings
change the features a model gives for a dataset (the feature cache key must change with
them, and ``python -m pytest_medprobe extract`` must take them), ``EXTRACTION`` settings
change how features are obtained but never their values (the extract command takes them;
the cache key does not hold them), ``AUDIT`` settings only change how features are scored
and reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scope = Literal["features", "extraction", "audit"]
FEATURES: Scope = "features"
EXTRACTION: Scope = "extraction"
AUDIT: Scope = "audit"


@dataclass(frozen=True)
class Setting:
    """One user-facing setting: a command-line flag with an ini twin."""

    dest: str  # attribute name on MedprobeSettings
    flag: str  # canonical command-line flag, always registered, e.g. "--medprobe-max-connector-loss"
    ini: str  # ini key, e.g. "medprobe_max_connector_loss"
    help: str
    default: object  # already parsed
    ini_type: str = "string"  # pytest addini type
    repeatable: bool = False
    is_switch: bool = False  # a flag without a value
    # A short spelling (e.g. "--model"), registered only when no other plugin or conftest owns
    # it: every pytest run of the environment sees our options, and a clash must not crash it.
    short: str | None = None
    # What the setting can change (see ``Scope``): declared on every setting, the one place
    # that says which settings the feature cache key and the extract command must follow.
    scope: Scope = AUDIT

    @property
    def option_dest(self) -> str:
        """The attribute on pytest's option namespace: prefixed, so that a conftest's own
        ``--seed`` (dest ``seed``) never collides with ours."""
        return "medprobe_" + self.dest.removeprefix("medprobe_")

    @property
    def flags(self) -> tuple[str, ...]:
        """Every spelling, canonical first."""
        return (self.flag,) if self.short is None else (self.flag, self.short)


def declare(dest: str, flag: str, help: str, default: object, *, scope: Scope, **kwargs: object) -> Setting:
    """A setting from its flag; ``scope`` is required (every setting says what it changes).

    A flag without the ``--medprobe-`` prefix becomes the short spelling of the prefixed
    canonical one (``--seed`` -> ``--medprobe-seed`` + ``--seed``).
    """
    name = flag.removeprefix("--").removeprefix("medprobe-")
    if not flag.startswith("--medprobe-"):
        kwargs.setdefault("short", flag)
    canonical = "--medprobe-" + name
    ini = "medprobe_" + name.replace("-", "_")
    return Setting(dest=dest, flag=canonical, ini=ini, help=help, default=default, scope=scope, **kwargs)  # type: ignore[arg-type]


def setting_names(setting: Setting) -> str:
    """How messages name a setting: its canonical flag (which always works) and its ini key."""
    return f"{setting.flag} / ini {setting.ini}"
