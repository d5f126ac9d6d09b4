"""eekit: a kit for learning and exploring early-exit neural networks.

Start with :func:`eekit.zoo.load_profile` and :class:`eekit.widgets.ThresholdExplorer`, or the notebooks.
"""

from .criteria import CRITERIA, get_criterion
from .profile import ExitProfile, OperatingPoint

__version__ = "0.1.0"
__all__ = ["CRITERIA", "get_criterion", "ExitProfile", "OperatingPoint", "__version__"]
