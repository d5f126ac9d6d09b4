"""Benchmarks behind ``python -m eekit bench ...``: they measure on this machine and report what they measured.

Timing targets live here, not in unit tests: shared machines are noisy, so each benchmark compares things
measured side by side in one run (ratios), with warm-up and medians.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from . import data

__all__ = ["bench_speedup", "bench_widgets", "bench_notebooks", "bench_energy", "default_model"]


def default_model() -> str:
    """The CIFAR-10 checkpoint when it is shipped, else the MNIST one."""
    from .zoo import load_card

    try:
        load_card("cnn-cifar10")
        return "cnn-cifar10"
    except data.DataFileError:
        return "cnn-mnist"


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_speedup(model_name: str | None = None, criterion: str = "max_prob", max_drop: float = 0.01,
                  batch1_samples: int = 500, repeats: int = 3, samples: int | None = None) -> dict:
    """Full model vs real early exit at the threshold calibrated for <= ``max_drop`` accuracy drop.

    ``ideal_speedup`` is the FLOP ratio (early-exit heads included); the realized speedups are wall-clock ratios
    on this CPU at batch 1 (``batch1_samples`` evenly spaced test images, one at a time) and at batch 256 (the
    whole test split, or ``samples`` evenly spaced images). The threshold is calibrated on the whole test split.
    """
    from .runtime import infer, infer_full
    from .zoo import RECIPES, load_pretrained, load_profile

    name = model_name or default_model()
    model = load_pretrained(name)
    profile = load_profile(name)
    point = profile.calibrate(criterion, max_drop=max_drop)
    test = RECIPES[name].test_set()
    keep = np.arange(len(test)) if samples is None else data.evenly_spaced(len(test), samples)
    images, labels = test.images[keep].float().div_(255), test.labels[keep]  # only the kept images as floats

    def full_batched():
        return infer_full(model, images, batch_size=256)

    def ee_batched():
        return infer(model, images, criterion, point.threshold, batch_size=256)

    single = images[data.evenly_spaced(len(images), batch1_samples)]

    def full_single():
        for i in range(len(single)):
            infer_full(model, single[i : i + 1])

    def ee_single():
        for i in range(len(single)):
            infer(model, single[i : i + 1], criterion, point.threshold)

    t_full_256, t_ee_256 = _median_seconds(full_batched, repeats), _median_seconds(ee_batched, repeats)
    t_full_1, t_ee_1 = _median_seconds(full_single, repeats), _median_seconds(ee_single, repeats)
    result = ee_batched()
    ee_pred, ee_exit = result.predictions, result.exit_index.numpy()
    full_pred = full_batched()
    if not np.array_equal(ee_exit, profile.exit_index(criterion, point.threshold)[keep]):
        raise RuntimeError("real early exit left at different exits than the shipped profile predicts")
    mean_cost = float(profile.cost[ee_exit].mean())
    ideal = profile.full_cost / mean_cost
    realized_1, realized_256 = t_full_1 / t_ee_1, t_full_256 / t_ee_256
    return {
        "model": name,
        "criterion": criterion,
        "threshold": round(point.threshold, 4),
        "samples": len(images),
        "batch1_samples": len(single),
        "torch_threads": torch.get_num_threads(),
        "ideal_speedup": round(ideal, 3),
        "realized_speedup_batch1": round(realized_1, 3),
        "realized_speedup_batch256": round(realized_256, 3),
        "realized_over_ideal_batch1": round(realized_1 / ideal, 3),
        "realized_over_ideal_batch256": round(realized_256 / ideal, 3),
        "flops_saved": round(1 - mean_cost / profile.full_cost, 4),
        "accuracy_full": round(float((full_pred == labels).float().mean()), 4),
        "accuracy_early_exit": round(float((ee_pred == labels).float().mean()), 4),
        "ms_per_sample_full_batch1": round(1e3 * t_full_1 / len(single), 4),
        "ms_per_sample_early_exit_batch1": round(1e3 * t_ee_1 / len(single), 4),
        "ms_per_sample_full_batch256": round(1e3 * t_full_256 / len(images), 4),
        "ms_per_sample_early_exit_batch256": round(1e3 * t_ee_256 / len(images), 4),
    }


def bench_energy(trace: str = "rf-1", hours: float = 24.0, threshold: float = 0.9) -> dict:
    """Seconds to simulate ``hours`` of a harvesting trace (1 kHz RF by default, repeated) with each policy on the
    shipped MNIST workloads (per-layer heads; the shared head for ``anytime``), and the worst energy-balance error.
    """
    from . import energy

    power = data.load_trace(trace)
    workloads = {"per-layer": energy.load_workload("cnn-mnist"), "shared": energy.load_workload("cnn-mnist-shared")}
    seconds, rows = {}, {}
    for policy in energy.POLICIES:
        workload = workloads["shared" if policy == "anytime" else "per-layer"]
        start = time.perf_counter()
        result = energy.simulate(power, workload, policy, threshold=threshold, duration_s=hours * 3600)
        seconds[policy] = time.perf_counter() - start
        rows[policy] = result
    return {
        "trace": power.name,
        "trace_hz": round(1 / power.dt_s, 3),
        "simulated_hours": hours,
        "sim_seconds_24h": round(max(seconds.values()) * 24 / hours, 3),
        "sim_seconds_by_policy": {p: round(s, 3) for p, s in seconds.items()},
        "energy_balance_rel_err": max(r.energy_balance_rel_err for r in rows.values()),
        "inferences_per_hour": {p: round(r.inferences_per_hour, 1) for p, r in rows.items()},
        "accuracy": {p: round(r.accuracy, 4) for p, r in rows.items()},
        "power_failures": {p: r.power_failures for p, r in rows.items()},
    }


def bench_widgets(moves: int = 50, seed: int = 0) -> dict:
    """Milliseconds for one threshold move of the threshold explorer on 10,000 samples x all exits
    (the numbers, the curve marker, the histogram and the readout), median over ``moves`` random moves."""
    from .widgets import ThresholdExplorer
    from .zoo import load_profile

    source = default_model()
    profile = load_profile(source)  # a missing shipped profile is an error, not a silent stand-in
    explorer = ThresholdExplorer(profile)
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.1, 1.0, moves)
    times = []
    for v in values:
        start = time.perf_counter()
        explorer.set(threshold=float(v))
        times.append((time.perf_counter() - start) * 1e3)
    numbers = [
        _median_seconds(lambda v=v: profile.at("max_prob", float(v)), 3) * 1e3 for v in values[:10]
    ]
    return {
        "profile": source,
        "samples": profile.num_samples,
        "exits": profile.num_exits,
        "moves": moves,
        "slider_update_ms": round(statistics.median(times), 3),
        "slider_update_ms_max": round(max(times), 3),
        "numbers_only_ms": round(statistics.median(numbers), 3),
    }


def bench_notebooks(folder: str | None = None, timeout: int = 600) -> dict:
    """Execute every notebook in ``folder`` (default: the repository's ``notebooks/``) on a fresh kernel, as nbval
    does, and report wall-clock seconds and the peak resident memory of each kernel (sampled every 0.1 s).
    Goals: all notebooks in < 360 s on 2 cores, every kernel < 1500 MB (Binder gives 2 GB)."""
    import os
    import threading
    from pathlib import Path

    import nbformat
    import psutil
    from nbclient import NotebookClient

    folder_path = Path(folder) if folder else Path(__file__).resolve().parents[1] / "notebooks"
    notebooks = sorted(p for p in folder_path.glob("*.ipynb"))
    if not notebooks:
        raise ValueError(f"no notebooks in {folder_path}")
    me = psutil.Process()
    per_notebook = {}
    total_start = time.perf_counter()
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        peak = [0]
        done = threading.Event()

        def watch(done=done, peak=peak):  # this notebook's event and peak, not a later one's
            while not done.is_set():
                rss = 0
                for child in me.children(recursive=True):
                    try:
                        rss = max(rss, child.memory_info().rss)
                    except psutil.Error:
                        pass
                peak[0] = max(peak[0], rss)
                done.wait(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        start = time.perf_counter()
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        finally:
            done.set()
            watcher.join()
        per_notebook[path.name] = {"seconds": round(time.perf_counter() - start, 1),
                                   "kernel_rss_mb": round(peak[0] / 2**20, 1)}
    return {
        "notebooks": per_notebook,
        "total_seconds": round(time.perf_counter() - total_start, 1),
        "max_kernel_rss_mb": max(v["kernel_rss_mb"] for v in per_notebook.values()),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
