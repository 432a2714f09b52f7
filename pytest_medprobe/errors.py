"""The exceptions pytest-medprobe raises for problems a user can fix.

Every message has three parts: what is wrong, where we looked (or the value we got),
and how to fix it. The plugin turns ``MedprobeUsageError`` into ``pytest.UsageError``
(exit status 4) and lets the others surface as errors of the affected tests.
"""

from __future__ import annotations


class MedprobeError(Exception):
    """Base class of every error pytest-medprobe raises on purpose."""


class MedprobeUsageError(MedprobeError):
    """A setting, a name or a path given by the user cannot be used."""


class DatasetError(MedprobeError):
    """A dataset could not be read, or its content cannot be audited."""


class ModelLoadError(MedprobeError):
    """A model checkpoint could not be located or loaded."""


class ExtractionError(MedprobeError):
    """Features could not be extracted from the model."""


class NonFiniteFeaturesError(MedprobeError):
    """A stage produced NaN or infinite values; it cannot be scored."""


class CacheLockTimeout(MedprobeError, TimeoutError):
    """Another live process held a feature-cache entry's lock for longer than the limit."""
