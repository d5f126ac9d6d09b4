"""The energy payoff of compression: the batteryless-device simulator (:mod:`eekit.energy`) runs the compressed
model, priced by its real work (MACs of its non-zero weights only: a CSR kernel never fetches a pruned weight from
FRAM, and the simulator's per-MAC energy includes the weight fetch) and answering as its integer reference does."""

from __future__ import annotations

import numpy as np

from ..data import load_trace
from ..energy import Workload, load_workload, simulate
from ..profile import ExitProfile
from .memory import nonzero_macs, op_shapes

__all__ = ["compressed_workload", "energy_payoff"]


def compressed_workload(qmodel: dict, profile: ExitProfile) -> Workload:
    """The simulator's workload of a quantized model: non-zero MACs per stage and head, int8 activations (two per
    16-bit checkpoint word), and its integer test-split ``profile``."""
    macs = nonzero_macs(qmodel)
    words = [int(np.prod(rows[-1][2])) / 2 for rows in op_shapes(qmodel)]
    return Workload(name=qmodel["source"] + "-compressed", stage_macs=np.array(macs["stage_macs"], float),
                    head_macs=np.array(macs["head_macs"], float), state_words=np.array(words),
                    head_params=int((qmodel["head"]["weight"] != 0).sum()), profile=profile,
                    shared_head=True)


def energy_payoff(name: str, compressed: Workload, trace: str = "rf-1", duration_s: float = 3600.0,
                  policies: tuple[str, ...] = ("threshold", "anytime"), max_drop: float = 0.01,
                  checkpoint_macs: float | None = None) -> dict:
    """Answers per hour on ``trace``, shipped model ``name`` vs its ``compressed`` workload, for each policy; the
    ``threshold`` policy uses each model's own max-prob threshold within ``max_drop`` of its final exit.
    ``checkpoint_macs`` replaces the simulator's assumed work between two checkpoints for the compressed model
    (the figure its exported runtime measured, :mod:`eekit.compress.mcu`); None keeps the simulator's default."""
    power = load_trace(trace)
    out = {"trace": trace, "duration_s": duration_s, "policies": {}}
    for label, workload in (("uncompressed", load_workload(name)), ("compressed", compressed)):
        threshold = workload.profile.calibrate("max_prob", max_drop=max_drop).threshold
        for policy in policies:
            pieces = {"checkpoint_macs": checkpoint_macs} if checkpoint_macs and label == "compressed" else {}
            r = simulate(power, workload, policy, threshold=threshold, duration_s=duration_s, **pieces)
            out["policies"].setdefault(policy, {})[label] = {
                "answers_per_hour": round(r.inferences_per_hour, 1), "accuracy": round(r.accuracy, 4),
                "power_failures": int(r.power_failures), "exit_counts": r.exit_counts.tolist(),
                "threshold": round(float(threshold), 4) if policy == "threshold" else None,
                "macs_per_exit": np.cumsum(workload.stage_macs + workload.head_macs).round().tolist()}
    return out
