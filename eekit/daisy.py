"""Moved to :mod:`eekit.ssl.daisy` (its report to :mod:`eekit.ssl.shipped`); this name stays so that existing code
keeps working."""

from .ssl.daisy import *  # noqa: F401,F403 (the moved module's public names)
from .ssl.daisy import __all__ as _moved
from .ssl.shipped import report

__all__ = [*_moved, "report"]
