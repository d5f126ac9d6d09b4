"""Make an early-exit model fit a microcontroller (FreeML's SparseComp, by hand) and export it to C.

:mod:`~eekit.compress.lowrank` (SVD factorization), :mod:`~eekit.compress.prune` (iterative magnitude pruning with
retraining, fragile layers), :mod:`~eekit.compress.quantize` (int8 / Q15, the pure-integer reference),
:mod:`~eekit.compress.memory` (FRAM bytes, SRAM peak activations), :mod:`~eekit.compress.export_c` (C99) and
:mod:`~eekit.compress.pipeline` (the whole run, the shipped results).
"""

from .memory import FRAM_BYTES, SRAM_BYTES
from .pipeline import load_compressed, load_compressed_card, load_compressed_profile
from .results import report
from .quantize import early_exit, int_forward

__all__ = ["FRAM_BYTES", "SRAM_BYTES", "load_compressed", "load_compressed_card", "load_compressed_profile",
           "report", "int_forward", "early_exit"]
