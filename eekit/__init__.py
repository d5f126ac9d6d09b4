"""eekit: a kit for learning and exploring early-exit neural networks.

Start with :func:`eekit.zoo.load_profile` and :class:`eekit.widgets.ThresholdExplorer`, or the notebooks.
"""

import warnings

from .criteria import CRITERIA, get_criterion
from .profile import ExitProfile, OperatingPoint
from . import compress, sentences, zoo  # every family of shipped models registers itself in eekit.zoo (zoo.list_models())

# `python -m eekit.compress.mcu` (and requantize, librispeech) runs a module the package has already imported to
# register its models; runpy warns that this "may result in unpredictable behaviour". These modules keep no state at
# import, so the warning says nothing to the user and is silenced for eekit's own modules only.
warnings.filterwarnings("ignore", message=r"'eekit\.[\w.]+' found in sys\.modules after import of package",
                        category=RuntimeWarning)

__version__ = "0.1.0"
__all__ = ["CRITERIA", "get_criterion", "ExitProfile", "OperatingPoint", "compress", "sentences", "zoo", "__version__"]
