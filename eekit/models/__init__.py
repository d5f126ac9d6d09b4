"""Early-exit models: the generic :class:`EarlyExitNet`, the CNN track's builders, and exits on torchaudio's
wav2vec 2.0 / HuBERT / WavLM encoders (:func:`wrap_wav2vec2`)."""

from .cnn import Normalize, branchy_lenet, resnet_ee
from .exits import EarlyExitNet, ExitHeads, SharedExitHead, SharedPlusFinal, attach_exits, pooled_head
from .contract import ExitModel
from .wav2vec2 import wrap_wav2vec2

__all__ = ["EarlyExitNet", "ExitModel", "ExitHeads", "SharedExitHead", "SharedPlusFinal", "attach_exits", "pooled_head", "Normalize",
           "branchy_lenet", "resnet_ee", "wrap_wav2vec2"]
