"""Moved to :mod:`eekit.ssl.adaptivity`; this name stays so that existing code keeps working (the same module object)."""

import sys

from .ssl import adaptivity

sys.modules[__name__] = adaptivity
