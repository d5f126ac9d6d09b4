"""Early-exit models: the generic :class:`EarlyExitNet` and the CNN track's builders."""

from .cnn import Normalize, branchy_lenet, resnet_ee
from .exits import EarlyExitNet, ExitHeads, SharedExitHead, SharedPlusFinal, attach_exits, pooled_head
from .contract import ExitModel

__all__ = ["EarlyExitNet", "ExitModel", "ExitHeads", "SharedExitHead", "SharedPlusFinal", "attach_exits", "pooled_head", "Normalize",
           "branchy_lenet", "resnet_ee"]
