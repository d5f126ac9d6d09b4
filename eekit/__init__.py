"""eekit: a kit for learning and exploring early-exit neural networks.

Start with :func:`eekit.zoo.load_profile` and :class:`eekit.widgets.ThresholdExplorer`, or the notebooks.
"""

from .criteria import CRITERIA, get_criterion
from .profile import ExitProfile, OperatingPoint
from . import compress, sentences, zoo  # every family of shipped models registers itself in eekit.zoo (zoo.list_models())

__version__ = "0.1.0"
__all__ = ["CRITERIA", "get_criterion", "ExitProfile", "OperatingPoint", "compress", "sentences", "zoo", "__version__"]
