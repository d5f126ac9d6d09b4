"""Moved to :mod:`eekit.zoo.speech_grid`; this name stays so that existing code keeps working (the same module object)."""

import sys

from .zoo import speech_grid

sys.modules[__name__] = speech_grid
