"""What each exit costs: FLOPs/MACs and parameters (with ``torch.utils.flop_counter``) and measured CPU latency.

Costs are *cumulative*: reaching exit ``k`` means running stages ``0..k`` and evaluating heads ``0..k`` (each head
is evaluated to decide whether to stop), so the heads' cost is included. The "full model" baseline runs every
stage but only the final head.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from .models.contract import ExitModel
from .models.exits import EarlyExitNet

__all__ = ["ExitCosts", "count_flops", "exit_costs", "measure_latency", "block_times"]


@dataclass(frozen=True)
class ExitCosts:
    """Per-exit cumulative costs for one input sample."""

    stage_flops: np.ndarray  # FLOPs of each stage alone
    head_flops: np.ndarray  # FLOPs of each exit head alone
    params: np.ndarray  # cumulative parameters needed to reach exit k (stages and heads 0..k)

    @property
    def cumulative_flops(self) -> np.ndarray:
        """FLOPs to reach and evaluate exit k, heads 0..k included."""
        return np.cumsum(self.stage_flops + self.head_flops)

    @property
    def full_model_flops(self) -> float:
        """FLOPs of the plain model: every stage and only the final head."""
        return float(self.stage_flops.sum() + self.head_flops[-1])

    @property
    def cumulative_mflops(self) -> np.ndarray:
        return self.cumulative_flops / 1e6


def count_flops(fn, *args) -> int:
    """FLOPs of ``fn(*args)`` as counted by ``torch.utils.flop_counter`` (a multiply-add counts as 2)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn(*args)
    return int(counter.get_total_flops())


def exit_costs(model: EarlyExitNet, example: torch.Tensor) -> ExitCosts:
    """Count each stage's and each head's FLOPs for one sample shaped like ``example`` (batch dim included or not).

    Parameters shared between exits (a shared head) are counted once.
    """
    x = example if example.shape[0] == 1 else example[:1]
    was_training = model.training
    model.eval()
    stage_flops, head_flops, params = [], [], []
    features: list[torch.Tensor] = []
    with torch.no_grad():
        for k, stage in enumerate(model.stages):
            stage_flops.append(count_flops(stage, x))
            x = stage(x)
            features.append(x)
            head_flops.append(count_flops(model.exits, k, features))
    model.train(was_training)
    seen: set[int] = set()
    total = 0
    for k, stage in enumerate(model.stages):
        head_params = model.exits.heads[k].parameters() if hasattr(model.exits, "heads") else model.exits.parameters()
        for p in list(stage.parameters()) + list(head_params):
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
        params.append(total)
    return ExitCosts(np.asarray(stage_flops, float), np.asarray(head_flops, float), np.asarray(params))


def block_times(model: ExitModel, inputs, repeats: int = 30, warmup: int = 5, sync=None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Median wall-clock milliseconds on this machine of each block (``begin`` counted with the first) and of each
    exit head of ``model`` (any :class:`~eekit.models.contract.ExitModel`), on ``inputs`` as they are batched. Each
    call is timed on its own, after ``warmup`` untimed passes; ``sync`` (e.g. ``torch.cuda.synchronize``) runs around
    each call so that asynchronous devices are timed too. Medians resist a noisy shared machine."""
    sync = sync or (lambda: None)

    def timed(fn, *args):
        sync()
        start = time.perf_counter()
        out = fn(*args)
        sync()
        return out, (time.perf_counter() - start) * 1e3

    rows = []  # per pass: begin, then block k and head k for every k
    with torch.inference_mode():
        for r in range(warmup + repeats):
            state, ms = timed(model.begin, inputs)
            row = [ms]
            for k in range(model.num_exits):
                state, ms = timed(model.advance, state, k)
                row += [ms, timed(model.exit_output, state, k)[1]]
            if r >= warmup:
                rows.append(row)
    ms = np.median(np.asarray(rows), axis=0)
    blocks, heads = ms[1::2].copy(), ms[2::2]
    blocks[0] += ms[0]
    return blocks, heads


def measure_latency(model: EarlyExitNet, example: torch.Tensor, repeats: int = 30, warmup: int = 5,
                    threads: int = 1) -> np.ndarray:
    """Median wall-clock milliseconds on this CPU to reach and evaluate each exit (heads 0..k included), at the
    batch size of ``example``, timed by ``torch.utils.benchmark.Timer`` on ``threads`` torch threads. The exits are
    timed in interleaved rounds (exit 1, 2, ..., K, then again), so a burst of load from another process lands on
    every exit alike instead of on one of them; the median over the rounds resists the rest."""
    import logging

    quiet = logging.getLogger("torch.utils.cpp_extension")  # its import warns about CUDA on CPU-only machines
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        from torch.utils.benchmark import Timer
    finally:
        quiet.setLevel(level)

    model.eval()

    def reach(k: int):
        with torch.inference_mode():
            state = model.begin(example)
            for j in range(k + 1):
                state = model.advance(state, j)
                out = model.exit_output(state, j)
        return out

    timers = [Timer("reach(k)", globals={"reach": reach, "k": k}, num_threads=threads) for k in range(model.num_exits)]
    for timer in timers:
        timer.timeit(warmup)
    rounds = [[timer.timeit(1).median * 1e3 for timer in timers] for _ in range(repeats)]
    return np.median(np.asarray(rounds), axis=0)
