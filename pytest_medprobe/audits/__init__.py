"""The shipped audits: one ordinary pytest test per failure mode, plus health and regression.

Run them from an installed package with ``pytest --pyargs pytest_medprobe.audits``
(options as usual, e.g. ``--model=DIR``). The repository's top-level ``audits/`` folder
imports these same functions, so there is one copy of each audit.
"""
