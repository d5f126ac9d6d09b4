"""Moved to :mod:`eekit.zoo.training`; this name stays so that existing code keeps working (the same module object)."""

import sys

from .zoo import training

sys.modules[__name__] = training
