"""Moved to :mod:`eekit.ssl.probes`; this name stays so that existing code keeps working (the same module object)."""

import sys

from .ssl import probes

sys.modules[__name__] = probes
