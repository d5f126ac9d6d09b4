"""Moved to :mod:`eekit.ssl.units`; this name stays so that existing code keeps working (the same module object)."""

import sys

from .ssl import units

sys.modules[__name__] = units
