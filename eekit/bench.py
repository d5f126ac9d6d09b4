"""Benchmarks behind ``python -m eekit bench ...``: they measure on this machine and report what they measured.

Timing targets live here, not in unit tests: shared machines are noisy, so each benchmark compares things
measured side by side in one run (ratios), with warm-up and medians.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import statistics
import time

import numpy as np
import torch

from . import data, energy, validate
from .memory import memory_returned
from .criteria import get_criterion
from .zoo import load_card, load_pretrained, load_profile, operating_point, RECIPES
from .runtime import check_device, infer, infer_full
from .evaluate import profile_speech
from .costs import block_times
from .models.fast import inference_copy
from .models.wav2vec2 import small_wav2vec2, wrap_wav2vec2
from .speech_encoders import profile_exits, train_two_stage
from .train import TrainConfig
from .widgets import ThresholdExplorer

__all__ = ["bench_speedup", "bench_stages", "bench_speech_encoder", "bench_widgets", "bench_notebooks", "bench_energy",
           "default_model"]


def default_model() -> str:
    """The CIFAR-10 checkpoint when it is shipped, else the MNIST one."""
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


def _interleaved(pairs: dict[str, tuple], repeats: int, progress: bool = False
                 ) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Time each ``(full, early_exit)`` pair alternately, ``repeats`` times after a warm-up of each, so that a
    shared machine's load drifts hit both sides alike. Two clocks: wall-clock (``perf_counter``) and this process's
    CPU time (``process_time``: time spent computing, not waiting for a core other processes hold; with one torch
    thread it is the compute time alone). Returns, per pair and clock, the median seconds of each side and the
    median of the per-repeat ratios full / early exit."""
    clocks = {"wall": time.perf_counter, "cpu": time.process_time}
    from tqdm.auto import tqdm

    times = {key: {c: ([], []) for c in clocks} for key in pairs}
    bar = tqdm(total=(repeats + 1) * 2 * len(pairs), disable=not progress, desc="timing", unit="run")
    for fn in (f for pair in pairs.values() for f in pair):
        fn()  # warm-up: folded copy made, caches and allocator warm
        bar.update()
    for _ in range(repeats):
        for key, pair in pairs.items():
            for side, fn in enumerate(pair):
                start = {c: clock() for c, clock in clocks.items()}
                fn()
                for c, clock in clocks.items():
                    times[key][c][side].append(clock() - start[c])
                bar.update()
    bar.close()
    return {key: {c: (statistics.median(full), statistics.median(ee),
                      statistics.median(f / e for f, e in zip(full, ee))) for c, (full, ee) in by_clock.items()}
            for key, by_clock in times.items()}


def _counted(fn, *args) -> tuple[float, object]:
    """FLOPs of ``fn(*args)`` (``torch.utils.flop_counter``) and its result."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        result = fn(*args)
    return float(counter.get_total_flops()), result


def _block_flops(model, state) -> tuple[np.ndarray, np.ndarray]:
    """FLOPs of each block and of each exit head after it, starting from ``state``."""
    blocks, heads = [], []
    for k in range(model.num_exits):
        flops, state = _counted(model.advance, state, k)
        blocks.append(flops)
        heads.append(_counted(model.exit_output, state, k)[0])
    return np.asarray(blocks), np.asarray(heads)


def exit_flops(model, inputs) -> tuple[np.ndarray, np.ndarray]:
    """Per sample of ``inputs``: FLOPs to reach and evaluate each exit, heads ``0..k`` included (``[N, K]``), and
    of the plain model, every block and the last head only (``[N]``).

    Images all cost the same. A speech utterance costs its front end (counted per utterance) plus, per conformer
    layer and head, a quadratic in its frame count (attention is quadratic in it, the rest linear), which three
    counted frame counts determine exactly."""
    if isinstance(inputs, torch.Tensor):
        begin, state = _counted(model.begin, inputs[:1])
        blocks, heads = _block_flops(model, state)
        n = len(inputs)
        return np.tile(begin + np.cumsum(blocks + heads), (n, 1)), np.full(n, begin + blocks.sum() + heads[-1])
    front, frames = [], []
    for wave, n in zip(*inputs):
        flops, state = _counted(model.begin, (wave[None, : int(n)], n[None]))
        front.append(flops)
        frames.append(state.h.shape[0])
    probes, counted = [], []
    for seconds in (0.5, 1.0, 1.5):  # silent probes: FLOPs depend on the length only
        samples = int(8000 * seconds)
        state = model.begin((inputs[0].new_zeros(1, samples), inputs[1].new_tensor([samples])))
        probes.append(state.h.shape[0])
        counted.append(np.concatenate(_block_flops(model, state)))
    coef = np.polyfit(probes, np.stack(counted), 2)  # [3, 2K]: exact, three points of a quadratic
    T = np.asarray(frames, float)[:, None]
    per = np.rint(coef[0] * T**2 + coef[1] * T + coef[2])  # [N, 2K]
    K = model.num_exits
    blocks, heads, front = per[:, :K], per[:, K:], np.asarray(front)[:, None]
    return front + np.cumsum(blocks + heads, 1), front[:, 0] + blocks.sum(1) + heads[:, -1]


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """Run the block with ``threads`` torch CPU threads (``None``: as they are), restored afterwards; yields the
    count in use."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(validate.whole("threads", threads, 1))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


# glibc's mallopt parameters (malloc.h) and the values its dynamic thresholds settle at after a big free
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_GLIBC_SETTLED = ((_M_MMAP_MAX, 65536), (_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 64 << 20))


@contextlib.contextmanager
def _freed_memory_kept(keep: bool):
    """Run the block with glibc's allocator keeping freed memory (``keep``), restored afterwards; yields the policy
    in use for the report: ``"keep-freed"``, ``"default"``, or ``"platform"`` where the C library is not glibc.

    glibc serves every buffer over 32 MiB (the wide CIFAR-10 CNN's first activation at batch 256 is 50 MiB) with a
    fresh ``mmap`` and unmaps it on free, so each call page-faults it back in, zeroed by the kernel: that first
    convolution took 34 ms instead of 8 (docs/performance.md), a cost of bytes, not FLOPs, that lands on the early
    blocks. With ``mmap`` off and no trimming, freed buffers are reused as PyTorch's CPU tuning guide arranges with
    jemalloc or tcmalloc. Both sides of a benchmark run under the same policy; afterwards glibc gets the thresholds
    its dynamic tuning settles at and the kept memory goes back to the OS (what is still in use then, when the
    benchmark's locals go: :func:`~eekit.memory.memory_returned`)."""
    if not keep or platform.libc_ver()[0] != "glibc":
        yield "default" if not keep else "platform"
        return
    libc = ctypes.CDLL(None)
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield "keep-freed"
    finally:
        for param, value in _GLIBC_SETTLED:
            libc.mallopt(param, value)
        libc.malloc_trim(0)


def _operating_point(model_name: str | None, criterion: str | None, max_drop: float | None, device):
    """A shipped model on ``device`` and its card's operating point: ``(name, recipe, model, profile, criterion,
    threshold, device)``, the threshold the cheapest within ``max_drop`` of the final exit on the cached profile.
    The criterion is resolved here, once (a :class:`~eekit.criteria.Criterion`), and passed inward as is."""
    name = model_name or default_model()
    if name not in RECIPES:
        raise ValueError(f"unknown model {name!r}; known: {sorted(RECIPES)}")
    recipe = RECIPES[name]
    device = check_device(device)
    profile = load_profile(name)
    criterion = get_criterion(criterion or recipe.criterion, profile.kind)
    threshold = operating_point(name, criterion, max_drop, profile).threshold
    return name, recipe, load_pretrained(name).to(device), profile, criterion, threshold, device


def _test_inputs(recipe, device, samples: int | None):
    """The benchmark's test inputs: ``(test set, kept rows, batch input, one-sample inputs, batch size)``; images in
    a fixed shuffled order, speech padded as ``collate`` pads it."""
    test = recipe.test_set()
    if recipe.is_speech:
        test = test if samples is None else test.subset(samples)
        keep = np.arange(len(test))
        waves, lengths = test.collate([test[i] for i in keep])[:2]
        inputs = (waves.to(device), lengths.to(device))
        return test, keep, inputs, [(w[None], n[None]) for w, n in zip(*inputs)], 32
    keep = np.arange(len(test)) if samples is None else data.evenly_spaced(len(test), samples)
    # in a fixed random order: the test split is stored class by class, and batches of one class (all easy or
    # all hard) are not what a camera delivers
    keep = keep[np.random.default_rng(0).permutation(len(keep))]
    inputs = test.images[keep].float().div_(255).to(device)  # only the kept images as floats
    return test, keep, inputs, list(inputs.split(1)), 256


def _quality(result, test, keep: np.ndarray) -> float:
    """Accuracy (images, keyword spotting) or digit error rate (connected digits) of a run on ``test[keep]``."""
    if result.lengths is None:
        labels = test.digits if hasattr(test, "digits") else test.labels
        return float((result.predictions.cpu() == labels[keep]).float().mean())
    import torchaudio.functional as AF

    refs = [test.labels[i] for i in keep]
    errors = sum(AF.edit_distance(list(r), list(h)) for r, h in zip(refs, result.transcripts()))
    return errors / sum(len(r) for r in refs)


@memory_returned
def bench_speedup(model_name: str | None = None, criterion: str | None = None, max_drop: float | None = None,
                  batch1_samples: int = 500, repeats: int = 5, samples: int | None = None,
                  device: str | None = None, threads: int | None = None, keep_freed_memory: bool = True,
                  progress: bool = False) -> dict:
    """Full model vs real early exit at the model card's operating point (its criterion, the cheapest threshold
    within ``max_drop`` of the final exit, calibrated on the whole test split).

    ``ideal_speedup`` is the FLOP ratio over the test samples (early-exit heads included; speech: counted per
    utterance, front end included). The realized speedups are wall-clock ratios on ``device`` at batch 1
    (``batch1_samples`` evenly spaced test samples, one at a time) and at batch 256 for images, 32 for speech (the
    whole test split, or ``samples`` evenly spaced ones; images in a fixed shuffled order), each the median of
    ``repeats`` full / early-exit pairs
    timed alternately; ``threads`` sets torch's CPU threads for the run (default: as they are). The ``*_cpu_time``
    figures use this process's CPU time instead of the wall clock: on a machine shared with other jobs, that is
    the work each side did, while the wall clock also counts waiting for a core (and, with two or more threads,
    threads spinning at barriers for a sibling that lost its core). ``keep_freed_memory`` (glibc) keeps the
    allocator from returning big buffers to the OS between calls, so neither side pays page faults per call
    (``malloc`` in the report). Both sides run the same batch-norm-folded copy under ``torch.inference_mode``. On
    the CPU the real exits must equal the simulated ones (the cached profile; speech: ``profile_speech`` at the
    same batching, since padding shapes a conformer's outputs); elsewhere the share that does is reported.
    """
    name, recipe, model, profile, criterion, threshold, device = _operating_point(model_name, criterion, max_drop,
                                                                                  device)
    test, keep, inputs, single, batch = _test_inputs(recipe, device, samples)
    pick = data.evenly_spaced(len(single), min(batch1_samples, len(single)))  # speech: 300 utterances
    single = [single[i] for i in pick]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    load_before = os.getloadavg()[0]

    def timed(fn):
        return lambda: (fn(), sync())

    with _torch_threads(threads) as used_threads, _freed_memory_kept(keep_freed_memory) as malloc:
        timing = _interleaved({
            "batch": (timed(lambda: infer_full(model, inputs, batch_size=batch)),
                      timed(lambda: infer(model, inputs, criterion, threshold, batch_size=batch))),
            "single": (timed(lambda: [infer_full(model, x) for x in single]),
                       timed(lambda: [infer(model, x, criterion, threshold) for x in single])),
        }, repeats, progress)

    result = infer(model, inputs, criterion, threshold, batch_size=batch)
    full = infer_full(model, inputs, batch_size=batch)
    ee_exit = result.exit_index.cpu().numpy()
    one_exit = np.array([int(infer(model, x, criterion, threshold).exit_index) for x in single])
    if recipe.is_speech:
        simulated = profile_speech(load_pretrained(name), test, batch_size=batch).exit_index(criterion, threshold)
    else:
        simulated = profile.exit_index(criterion, threshold)[keep]
    as_simulated = float((ee_exit == simulated).mean())
    if device.type == "cpu" and as_simulated < 1:
        raise RuntimeError(f"real early exit left at different exits than the simulation predicts for "
                           f"{int((ee_exit != simulated).sum())} of {len(ee_exit)} samples")

    cost, full_cost = exit_flops(model, inputs)

    def ideal(exits: np.ndarray, rows: np.ndarray) -> float:
        return float(full_cost[rows].sum() / cost[rows, exits].sum())

    ideal_batch, ideal_1 = ideal(ee_exit, np.arange(len(keep))), ideal(one_exit, pick)
    quality = "der" if recipe.dataset == "fsdd-strings" else "accuracy"
    out = {
        "model": name,
        "criterion": criterion.name,
        "threshold": round(threshold, 4),
        "device": str(device),
        "torch_threads": used_threads,
        "malloc": malloc,
        "samples": len(keep),
        "batch1_samples": len(single),
        "batch_size": batch,
        "repeats": repeats,
        # the host's 1-minute load average before and after the timing: its neighbours move the third digit
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "exits_as_simulated": as_simulated,
        "ideal_speedup": round(ideal_batch, 3),
        "ideal_speedup_batch1_samples": round(ideal_1, 3),
        "flops_saved": round(1 - 1 / ideal_batch, 4),
        f"{quality}_full": round(_quality(full, test, keep), 4),
        f"{quality}_early_exit": round(_quality(result, test, keep), 4),
    }
    for clock, suffix in (("wall", ""), ("cpu", "_cpu_time")):
        (t_full_1, t_ee_1, realized_1), (t_full_b, t_ee_b, realized_b) = timing["single"][clock], timing["batch"][clock]
        out.update({
            f"realized_speedup_batch1{suffix}": round(realized_1, 3),
            f"realized_speedup_batch{batch}{suffix}": round(realized_b, 3),
            f"realized_over_ideal_batch1{suffix}": round(realized_1 / ideal_1, 3),
            f"realized_over_ideal_batch{batch}{suffix}": round(realized_b / ideal_batch, 3),
            f"ms_per_sample_full_batch1{suffix}": round(1e3 * t_full_1 / len(single), 4),
            f"ms_per_sample_early_exit_batch1{suffix}": round(1e3 * t_ee_1 / len(single), 4),
            f"ms_per_sample_full_batch{batch}{suffix}": round(1e3 * t_full_b / len(keep), 4),
            f"ms_per_sample_early_exit_batch{batch}{suffix}": round(1e3 * t_ee_b / len(keep), 4),
        })
    return out


@memory_returned
def bench_stages(model_name: str | None = None, batch: int = 1, repeats: int = 50, device: str | None = None,
                 threads: int | None = None, keep_freed_memory: bool = True) -> dict:
    """Where a model's time goes, block by block and head by head, against its FLOPs: the measurement behind
    docs/performance.md's "where the remaining gap goes".

    Times ``begin`` plus each block, and each exit head, of the inference copy that real early exit runs, on one
    batch of ``batch`` test inputs (images: the first of :func:`bench_speedup`'s shuffled order; speech: the first
    utterances, padded to the longest), each call the median of ``repeats`` after a warm-up, per sample; the FLOPs
    are those of the same calls (speech: padding included). With the share of test samples that leave at each exit
    at the card's operating point (cached profile) it gives the *time ideal*, the plain model's time over the mean
    time to reach and evaluate the exit each sample leaves at (what early exit would realize if scoring and
    compaction cost nothing and every block ran at this batch size), beside the FLOP ideal computed the same way.
    ``threads`` and ``keep_freed_memory`` as in :func:`bench_speedup`.
    """
    repeats = validate.whole("repeats", repeats, 1)
    name, recipe, model, profile, criterion, threshold, device = _operating_point(model_name, None, None, device)
    inputs = _test_inputs(recipe, device, None)[2]
    batch = validate.whole("batch", batch, 1, len(inputs[1]) if recipe.is_speech else len(inputs))
    if recipe.is_speech:
        waves, lengths = inputs[0][:batch], inputs[1][:batch]
        inputs = (waves[:, : int(lengths.max())], lengths)
    else:
        inputs = inputs[:batch]
    fast = inference_copy(model)
    with _torch_threads(threads) as used_threads, _freed_memory_kept(keep_freed_memory) as malloc:
        block_ms, head_ms = block_times(fast, inputs, repeats, warmup=1,
                                        sync=torch.cuda.synchronize if device.type == "cuda" else None)
        with torch.inference_mode():
            begin_flops, state = _counted(fast.begin, inputs)
            block_flops, head_flops = _block_flops(fast, state)
    block_ms, head_ms = block_ms / batch, head_ms / batch
    block_flops[0] += begin_flops  # the front end (speech: log-mel and subsampling) belongs to the first block
    K = fast.num_exits
    share = np.bincount(profile.exit_index(criterion, threshold), minlength=K) / profile.num_samples

    def ideal(blocks: np.ndarray, heads: np.ndarray) -> float:
        return float((blocks.sum() + heads[-1]) / (share * np.cumsum(blocks + heads)).sum())

    flop_ideal, time_ideal = ideal(block_flops, head_flops), ideal(block_ms, head_ms)
    return {
        "model": name, "criterion": criterion.name, "threshold": round(threshold, 4), "device": str(device),
        "torch_threads": used_threads, "malloc": malloc, "batch_size": batch, "repeats": repeats,
        "exit_names": list(model.exit_names),
        "exit_share": [round(float(v), 4) for v in share],
        "block_ms_per_sample": [round(float(v), 4) for v in block_ms],
        "head_ms_per_sample": [round(float(v), 4) for v in head_ms],
        "block_mflops_per_sample": [round(float(v) / batch / 1e6, 4) for v in block_flops],
        "head_mflops_per_sample": [round(float(v) / batch / 1e6, 4) for v in head_flops],
        "block_time_share": [round(float(v), 4) for v in block_ms / block_ms.sum()],
        "block_flop_share": [round(float(v), 4) for v in block_flops / block_flops.sum()],
        "flop_ideal": round(flop_ideal, 3),
        "time_ideal": round(time_ideal, 3),
        "time_ideal_over_flop_ideal": round(time_ideal / flop_ideal, 3),
    }


def bench_speech_encoder(utterances: int = 800, epochs: int = 2, test_utterances: int | None = None,
                         threads: int = 1) -> dict:
    """Seconds to bring your own speech encoder, lesson 02's path, on ``threads`` torch threads (target: under 120 s
    in all on one core): wrap a small random 6-layer torchaudio wav2vec 2.0 with exits after layers 2, 4 and 6
    (:func:`~eekit.models.wav2vec2.small_wav2vec2`, :func:`~eekit.models.wav2vec2.wrap_wav2vec2`), train its heads
    on the frozen encoder (:func:`~eekit.speech_encoders.train_two_stage`, ``epochs`` over ``utterances``
    connected-digit training utterances), profile the exits on the test utterances (all 300, or the first
    ``test_utterances``) and run real early exit (:func:`eekit.runtime.infer`) on them at the profile's
    calibrated threshold. Seeded: the same model, data and order every run."""
    utterances = validate.whole("utterances", utterances, 1)
    train_set = data.load_digit_strings("train", count=utterances)
    test_set = data.load_digit_strings("test", count=test_utterances)
    heads = TrainConfig(epochs=validate.whole("epochs", epochs, 1), batch_size=16, lr=1e-2, optimizer="adam",
                        weight_decay=0.0, seed=0)
    seconds = {}
    load_before = os.getloadavg()[0]
    with _torch_threads(threads) as used_threads:
        torch.manual_seed(0)
        start = time.perf_counter()
        model = wrap_wav2vec2(small_wav2vec2(seed=0), [2, 4, 6], encoder_rate=8000)
        seconds["wrap"] = time.perf_counter() - start
        start = time.perf_counter()
        train_two_stage(model, train_set, heads=heads, progress=False)
        seconds["heads"] = time.perf_counter() - start
        start = time.perf_counter()
        profile = profile_exits(model.eval(), test_set)
        seconds["profile"] = time.perf_counter() - start
        threshold = profile.calibrate("ctc_entropy", max_drop=0.01).threshold
        waves, lengths = test_set.collate([test_set[i] for i in range(len(test_set))])[:2]
        start = time.perf_counter()
        result = infer(model, (waves, lengths), "ctc_entropy", threshold, batch_size=16)  # the profile's batches
        seconds["inference"] = time.perf_counter() - start
    total = sum(seconds.values())
    return {
        "torch_threads": used_threads,
        "train_utterances": len(train_set),
        "epochs": heads.epochs,
        "test_utterances": len(test_set),
        # the host's 1-minute load average before and after: on a shared machine, neighbours slow every phase
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "seconds": {phase: round(s, 2) for phase, s in seconds.items()},
        "total_seconds": round(total, 2),
        "target_seconds": 120.0,
        "target_met": total < 120.0,
        "exits_as_profiled": bool(np.array_equal(result.exit_index.numpy(),
                                                 profile.exit_index("ctc_entropy", threshold))),
    }


def bench_energy(trace: str = "rf-1", hours: float = 24.0, threshold: float = 0.9) -> dict:
    """Seconds to simulate ``hours`` of a harvesting trace (1 kHz RF by default, repeated) with each policy on the
    shipped MNIST workloads (per-layer heads; the shared head for ``anytime``), and the worst energy-balance error.
    """
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


def bench_notebooks(folder: str | None = None, timeout: int = 600, only: list[str] | None = None) -> dict:
    """Execute every notebook in ``folder`` (default: the repository's ``notebooks/``) on a fresh kernel, as nbval
    does, and report wall-clock seconds and the peak memory of each kernel (sampled every 0.1 s): resident (RSS)
    and unique to the kernel (USS: without the shared library pages a second kernel would share, e.g. the 250 MB
    of libraries a CUDA build of torch maps at import). Goals: all notebooks in < 360 s on 2 cores, every kernel's
    RSS <= 1000 MB (Binder gives 2 GB, and a learner may have two lessons open: one kernel's RSS plus the other's
    USS). ``only``: just the notebooks whose file names start with one of these prefixes (e.g. ``["10", "21"]``)."""
    import os
    import threading
    from pathlib import Path

    import nbformat
    import psutil
    from nbclient import NotebookClient

    folder_path = Path(folder) if folder else Path(__file__).resolve().parents[1] / "notebooks"
    notebooks = sorted(p for p in folder_path.glob("*.ipynb") if not only or p.name.startswith(tuple(only)))
    if not notebooks:
        raise ValueError(f"no notebooks in {folder_path}" + (f" whose names start with {only}" if only else ""))
    me = psutil.Process()
    per_notebook = {}
    total_start = time.perf_counter()
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        peak = [0, 0]  # RSS, USS
        done = threading.Event()

        def watch(done=done, peak=peak):  # this notebook's event and peak, not a later one's
            while not done.is_set():
                for child in me.children(recursive=True):
                    try:
                        info = child.memory_full_info()
                    except psutil.Error:
                        continue
                    peak[0], peak[1] = max(peak[0], info.rss), max(peak[1], info.uss)
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
                                   "kernel_rss_mb": round(peak[0] / 2**20, 1),
                                   "kernel_uss_mb": round(peak[1] / 2**20, 1)}
    return {
        "notebooks": per_notebook,
        "total_seconds": round(time.perf_counter() - total_start, 1),
        "max_kernel_rss_mb": max(v["kernel_rss_mb"] for v in per_notebook.values()),
        "max_kernel_uss_mb": max(v["kernel_uss_mb"] for v in per_notebook.values()),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
