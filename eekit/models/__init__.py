"""Early-exit models: the generic :class:`EarlyExitNet` and the CNN track's builders."""

from .cnn import Normalize, branchy_lenet, resnet_ee
from .exits import EarlyExitNet, ExitHeads, SharedExitHead, SharedPlusFinal, attach_exits, pooled_head

__all__ = ["EarlyExitNet", "ExitHeads", "SharedExitHead", "SharedPlusFinal", "attach_exits", "pooled_head", "Normalize",
           "branchy_lenet", "resnet_ee"]
