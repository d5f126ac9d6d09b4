"""The energy payoff of compression: the batteryless-device simulator (:mod:`eekit.energy`) runs the compressed
model, priced by its real work (MACs of its non-zero weights only: a CSR kernel never fetches a pruned weight from
FRAM, and the simulator's per-MAC energy includes the weight fetch) and answering as its integer reference does."""

from __future__ import annotations

import numpy as np

from ..data import load_trace
from ..energy import MCU, Workload, load_workload, simulate
from ..profile import ExitProfile
from .memory import activation_plan, nonzero_macs, op_shapes

__all__ = ["compressed_workload", "energy_payoff", "fram_mac_equivalents", "energy_per_exit"]


def fram_mac_equivalents(plan: dict, mcu: MCU | None = None) -> np.ndarray:
    """The FRAM traffic of spilled activations (:func:`eekit.compress.memory.activation_plan`: bytes read and
    written per stage and head, two int8 values a 16-bit word) priced at the simulator's FRAM cost per word and
    expressed in MACs of the same energy, ``[K, 2]`` (stage, head): the simulator then charges it as work."""
    mcu = mcu or MCU()
    reads = np.array(plan["fram_reads_per_stage_and_head"], float) / 2
    writes = np.array(plan["fram_writes_per_stage_and_head"], float) / 2
    per_mac = mcu.mac_j + mcu.call_j / mcu.vector_length
    return (reads * mcu.fram_read_word_j + writes * mcu.fram_write_word_j) / per_mac


def compressed_workload(qmodel: dict, profile: ExitProfile) -> Workload:
    """The simulator's workload of a quantized model: non-zero MACs per stage and head (plus, where activations
    spill to FRAM, that traffic in MACs of the same energy), int8 activations (two per 16-bit checkpoint word), and
    its integer test-split ``profile``."""
    macs = nonzero_macs(qmodel)
    words = [int(np.prod(rows[-1][2])) / 2 for rows in op_shapes(qmodel)]
    stage, head = np.array(macs["stage_macs"], float), np.array(macs["head_macs"], float)
    if qmodel.get("format") == 2:  # one head per exit; its spilled activations cost FRAM traffic
        fram = fram_mac_equivalents(activation_plan(qmodel))
        params = sum(int((op["weight"] != 0).sum()) for ops in qmodel["heads"][:-1] for op in ops if "weight" in op)
        return Workload(name=qmodel["source"] + "-compressed", stage_macs=stage + fram[:, 0],
                        head_macs=head + fram[:, 1], state_words=np.array(words), head_params=params,
                        profile=profile, shared_head=False)
    return Workload(name=qmodel["source"] + "-compressed", stage_macs=stage, head_macs=head,
                    state_words=np.array(words), head_params=int((qmodel["head"]["weight"] != 0).sum()),
                    profile=profile, shared_head=True)


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


def energy_per_exit(workload: Workload, mcu: MCU | None = None) -> dict:
    """Energy (mJ) of one uninterrupted inference to each exit on the simulator's MSP430 (its MACs, FRAM traffic
    of spilled activations included): for a model too big for lesson 30's capacitor, whose simulation refuses to
    run (exit 1 of the CIFAR-10 ResNet needs more energy than a full 5 mF charge holds)."""
    mcu = mcu or MCU()
    macs = np.cumsum(workload.stage_macs + workload.head_macs)
    return {"mj_per_exit": [round(mcu.compute(m)[0] * 1e3, 3) for m in macs],
            "note": "one inference, no power failure; the 5 mF capacitor of lesson 30 cannot hold exit 1's energy"}
