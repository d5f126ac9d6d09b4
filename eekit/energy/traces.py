"""Teaching power traces (the real RF and solar traces load with :func:`eekit.data.load_trace`)."""

from __future__ import annotations

import numpy as np

from .. import validate
from ..data import PowerTrace

__all__ = ["synthetic_trace", "TRACE_KINDS", "MAX_TRACE_SAMPLES"]

TRACE_KINDS = ("constant", "square", "telegraph", "diurnal")
MAX_TRACE_SAMPLES = 20_000_000  # 160 MB of float64 per array; a shorter trace repeats in simulate()


def synthetic_trace(kind: str, duration_s: float = 600.0, dt_s: float = 1e-3, power_w: float = 1e-3,
                    period_s: float = 10.0, duty: float = 0.5, seed: int = 0) -> PowerTrace:
    """A teaching trace: ``constant`` (``power_w`` all the time), ``square`` (``power_w`` for ``duty`` of each
    ``period_s``, else nothing), ``telegraph`` (on/off with exponential holding times of mean ``period_s / 2``,
    seeded) or ``diurnal`` (half a sine per ``period_s``, peak ``power_w``: a day of sun)."""
    validate.one_of("synthetic trace", kind, TRACE_KINDS)
    duration_s = validate.number("duration_s (seconds)", duration_s, 0, low_open=True)
    dt_s = validate.number("dt_s (seconds)", dt_s, 0, duration_s, low_open=True)
    power_w = validate.number("power_w (watts)", power_w, 0)
    period_s = validate.number("period_s (seconds)", period_s, dt_s)
    duty = validate.number("duty", duty, 0, 1)
    samples = int(round(duration_s / dt_s))
    if samples > MAX_TRACE_SAMPLES:
        raise ValueError(f"duration_s / dt_s = {samples:,} samples; at most {MAX_TRACE_SAMPLES:,} are accepted: "
                         f"raise dt_s or shorten the trace (simulate() repeats a shorter trace)")
    t = np.arange(samples) * dt_s
    if kind == "constant":
        p = np.full_like(t, power_w)
    elif kind == "square":
        p = np.where((t % period_s) < duty * period_s, power_w, 0.0)
    elif kind == "telegraph":
        rng = np.random.default_rng(seed)
        holds = rng.exponential(period_s / 2, size=int(4 * duration_s / period_s) + 16)
        switches = np.cumsum(holds)
        p = np.where(np.searchsorted(switches, t) % 2 == 0, power_w, 0.0)
    else:  # diurnal
        p = power_w * np.clip(np.sin(2 * np.pi * t / period_s), 0, None)
    return PowerTrace(f"synthetic-{kind}", t, p, dt_s, f"synthetic {kind}, {power_w * 1e3:g} mW")
