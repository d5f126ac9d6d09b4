"""A batteryless device running an early-exit network on harvested energy (FreeML's setting, in miniature).

The device is a harvester charging a capacitor that powers an MSP430FR5994-class microcontroller:

* **Harvester** - a :class:`eekit.data.PowerTrace` (real RF or solar traces, or :func:`synthetic_trace`): power in
  watts, held constant for ``dt_s`` seconds per sample. A trace shorter than the simulation repeats.
* **Storage** - a :class:`Capacitor` with ``E = C V^2 / 2``. The device turns on at ``v_on`` and browns out at
  ``v_off``; charge above ``v_max`` is wasted (overflow), and optional leakage drains it.
* **Compute** - an :class:`MCU` cost table: energy and time per multiply-accumulate, per word written to / read
  from FRAM (checkpoints), and per reboot.
* **Workload** - a :class:`Workload`: per-stage and per-head MACs of a real trained early-exit model, the size of
  the activations to checkpoint, and the model's measured exits and correctness on its test split.

Four policies (:data:`POLICIES`) decide how each inference runs:

* ``full`` - every stage and the final head; progress checkpointed to FRAM after each stage, so a power failure
  only loses the stage in flight (then: recharge to ``v_on``, reboot, restore, redo the stage);
* ``threshold`` - the same, with a head after every stage and a confidence criterion to stop early;
* ``energy_aware`` - pick the deepest exit the stored energy can pay for now, run it in one go (no checkpoints);
  if not even the first exit is affordable, sleep until the capacitor reaches ``v_on``;
* ``anytime`` - FreeML: run stage after stage while the stored energy still pays for the next stage *and* its
  answer; answer with the (shared) head at the depth reached. Never starts what it cannot finish.

The simulation is event-driven: between events the capacitor's energy is a piecewise-linear function of time,
computed vectorized over trace samples, and every phase's energy is booked, so that
``harvested = consumed + wasted + (stored at end - stored at start)`` holds to rounding error
(:attr:`SimResult.energy_balance_rel_err`).

Defaults and their sources are on each dataclass. All energies are in joules, times in seconds, power in watts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .data import PowerTrace
from .profile import ExitProfile

__all__ = ["Capacitor", "MCU", "Workload", "SimResult", "POLICIES", "simulate", "synthetic_trace",
           "load_workload", "capacitor_for_energy"]

POLICIES = ("full", "threshold", "energy_aware", "anytime")


# ------------------------------------------------------------------------------------------------ the hardware


@dataclass(frozen=True)
class Capacitor:
    """Energy storage: ``E = C V^2 / 2``.

    Defaults are iNAS's (Mendis et al., TECS 2021, ``EMCLab-Sinica/Intermittent-aware-NAS``): C = 5 mF, the MCU
    turns on at 2.99 V and browns out at 2.8 V (2.75 mJ usable per charge), supply regulated at 3.0 V (the
    capacitor's ceiling here). ``leakage_w`` is a constant leakage power (a leakage current at the ~3 V operating
    point; a few uA for a 5 mF supercapacitor); 0 by default.
    """

    capacitance_f: float = 5e-3
    v_on: float = 2.99
    v_off: float = 2.8
    v_max: float = 3.0
    leakage_w: float = 0.0

    def __post_init__(self):
        if not math.isfinite(self.capacitance_f) or self.capacitance_f <= 0:
            raise ValueError(f"capacitance_f must be a positive number of farads, got {self.capacitance_f}")
        if not 0 < self.v_off < self.v_on:
            raise ValueError(f"need 0 < v_off < v_on (the device browns out below the voltage it turns on at), "
                             f"got v_off={self.v_off} V, v_on={self.v_on} V")
        if self.v_max < self.v_on:
            raise ValueError(f"v_max ({self.v_max} V) is below v_on ({self.v_on} V): the device could never turn on")
        if not math.isfinite(self.leakage_w) or self.leakage_w < 0:
            raise ValueError(f"leakage_w must be >= 0 watts, got {self.leakage_w}")

    def energy(self, volts: float | np.ndarray) -> float | np.ndarray:
        return 0.5 * self.capacitance_f * np.square(volts)

    def voltage(self, joules: float | np.ndarray) -> float | np.ndarray:
        return np.sqrt(2 * np.maximum(joules, 0) / self.capacitance_f)

    @property
    def usable_j(self) -> float:
        """Energy delivered between turn-on and brown-out: one full charge."""
        return float(self.energy(self.v_on) - self.energy(self.v_off))


def capacitor_for_energy(joules: float, like: Capacitor | None = None) -> float:
    """The capacitance (F) whose full charge (``v_on`` to ``v_off`` of ``like``) holds ``joules``."""
    like = like or Capacitor()
    return 2 * joules / (like.v_on**2 - like.v_off**2)


@dataclass(frozen=True)
class MCU:
    """Energy and time costs of an MSP430FR5994 at 16 MHz, from iNAS's measured microbenchmarks.

    * A MAC runs on the LEA vector unit: 0.527 nJ and 1.5 cycles per element plus 204 nJ and 616 cycles per call,
      amortized over ``vector_length`` elements (a 3x3x8 conv window is 72).
    * Checkpoint: DMA SRAM -> FRAM, 26.8 nJ per word + 193 nJ per transfer; restore: FRAM -> SRAM, 27 nJ per word
      + 200 nJ; both 64 cycles per word + 424 cycles. Activations are 16-bit fixed point (one word each).
    * Reboot: 77.88 uJ and 70 ms (iNAS, measured with an oscilloscope).
    * ``sleep_w``: power drawn while waiting in a low-power mode (0 by default; LPM3 is about 1 uW).
    Weight fetches from FRAM are not modelled separately (they are part of the per-MAC figure).
    """

    clock_hz: float = 16e6
    mac_j: float = 0.527e-9
    mac_cycles: float = 1.5
    call_j: float = 204e-9
    call_cycles: float = 616
    vector_length: int = 64
    fram_write_word_j: float = 26.8e-9
    fram_write_call_j: float = 193e-9
    fram_read_word_j: float = 27e-9
    fram_read_call_j: float = 200e-9
    fram_word_cycles: float = 64
    fram_call_cycles: float = 424
    reboot_j: float = 77.88e-6
    reboot_s: float = 0.070
    sleep_w: float = 0.0

    def __post_init__(self):
        for name, value in self.__dict__.items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"MCU.{name} must be a finite number >= 0, got {value}")
        if self.clock_hz <= 0 or self.vector_length < 1:
            raise ValueError("MCU.clock_hz must be > 0 and vector_length >= 1")

    def compute(self, macs: float) -> tuple[float, float]:
        """(energy J, time s) of ``macs`` multiply-accumulates."""
        calls = macs / self.vector_length
        return (macs * self.mac_j + calls * self.call_j,
                (macs * self.mac_cycles + calls * self.call_cycles) / self.clock_hz)

    def checkpoint(self, words: float) -> tuple[float, float]:
        """(energy J, time s) to save ``words`` 16-bit words of state to FRAM."""
        if words <= 0:
            return 0.0, 0.0
        return (words * self.fram_write_word_j + self.fram_write_call_j,
                (words * self.fram_word_cycles + self.fram_call_cycles) / self.clock_hz)

    def restore(self, words: float) -> tuple[float, float]:
        """(energy J, time s) to read ``words`` of checkpointed state back after a reboot."""
        if words <= 0:
            return 0.0, 0.0
        return (words * self.fram_read_word_j + self.fram_read_call_j,
                (words * self.fram_word_cycles + self.fram_call_cycles) / self.clock_hz)


# ------------------------------------------------------------------------------------------------ the workload


@dataclass(frozen=True)
class Workload:
    """What one inference costs at each depth, and what the model answers there.

    ``stage_macs[k]`` / ``head_macs[k]``: MACs of backbone stage ``k`` and of exit head ``k`` (one sample);
    ``state_words[k]``: activations after stage ``k`` (what a checkpoint saves); ``head_params``: weights of the
    early heads (their memory overhead on the device); ``profile``: the model's exits on its test split.
    """

    name: str
    stage_macs: np.ndarray
    head_macs: np.ndarray
    state_words: np.ndarray
    head_params: int
    profile: ExitProfile
    shared_head: bool = False

    def __post_init__(self):
        K = self.profile.num_exits
        for attr in ("stage_macs", "head_macs", "state_words"):
            value = np.asarray(getattr(self, attr), dtype=np.float64)
            if value.shape != (K,) or (value < 0).any():
                raise ValueError(f"{attr} needs {K} non-negative values (one per exit), got {value}")
            object.__setattr__(self, attr, value)

    @property
    def num_exits(self) -> int:
        return self.profile.num_exits

    @property
    def correct(self) -> np.ndarray:
        """``[K, N]``: whether exit k answers test sample n correctly."""
        return (self.profile.errors == 0).T

    def head_bytes(self, bytes_per_weight: int = 2) -> int:
        """Memory the early heads add (16-bit weights by default)."""
        return int(self.head_params * bytes_per_weight)


def load_workload(name: str) -> Workload:
    """The workload of a shipped checkpoint (e.g. ``cnn-mnist``, ``cnn-mnist-shared``): MACs counted with
    ``torch.utils.flop_counter`` on the real model, exits from its shipped test-split profile."""
    import torch

    from . import zoo
    from .costs import exit_costs
    from .models.exits import SharedPlusFinal

    model = zoo.load_pretrained(name)
    example = torch.zeros(1, *zoo.RECIPES[name].input_shape)
    costs = exit_costs(model, example)
    words = []
    with torch.no_grad():
        x = example
        for stage in model.stages:
            x = stage(x)
            words.append(x.numel())
    early = model.exits.shared if isinstance(model.exits, SharedPlusFinal) else model.exits.heads[:-1]
    return Workload(name=name, stage_macs=costs.stage_flops / 2, head_macs=costs.head_flops / 2,
                    state_words=np.array(words, dtype=np.float64),
                    head_params=sum(p.numel() for p in early.parameters()), profile=zoo.load_profile(name),
                    shared_head=isinstance(model.exits, SharedPlusFinal))


# ------------------------------------------------------------------------------------------------ traces


def synthetic_trace(kind: str, duration_s: float = 600.0, dt_s: float = 1e-3, power_w: float = 1e-3,
                    period_s: float = 10.0, duty: float = 0.5, seed: int = 0) -> PowerTrace:
    """A teaching trace: ``constant`` (``power_w`` all the time), ``square`` (``power_w`` for ``duty`` of each
    ``period_s``, else nothing), ``telegraph`` (on/off with exponential holding times of mean ``period_s / 2``,
    seeded) or ``diurnal`` (half a sine per ``period_s``, peak ``power_w``: a day of sun)."""
    if duration_s <= 0 or dt_s <= 0 or dt_s > duration_s:
        raise ValueError(f"need 0 < dt_s <= duration_s, got dt_s={dt_s}, duration_s={duration_s}")
    if power_w < 0 or period_s <= 0 or not 0 <= duty <= 1:
        raise ValueError(f"need power_w >= 0, period_s > 0, duty in [0, 1]; got {power_w}, {period_s}, {duty}")
    t = np.arange(int(round(duration_s / dt_s))) * dt_s
    if kind == "constant":
        p = np.full_like(t, power_w)
    elif kind == "square":
        p = np.where((t % period_s) < duty * period_s, power_w, 0.0)
    elif kind == "telegraph":
        rng = np.random.default_rng(seed)
        holds = rng.exponential(period_s / 2, size=int(4 * duration_s / period_s) + 16)
        switches = np.cumsum(holds)
        p = np.where(np.searchsorted(switches, t) % 2 == 0, power_w, 0.0)
    elif kind == "diurnal":
        p = power_w * np.clip(np.sin(2 * np.pi * t / period_s), 0, None)
    else:
        raise ValueError(f"unknown synthetic trace {kind!r}; known: constant, square, telegraph, diurnal")
    return PowerTrace(f"synthetic-{kind}", t, p, dt_s, f"synthetic {kind}, {power_w * 1e3:g} mW")


# ------------------------------------------------------------------------------------------------ simulation


@dataclass
class SimResult:
    """What happened: one row per answered inference, event counts, and the energy books (J)."""

    policy: str
    trace: str
    duration_s: float
    sample: np.ndarray  # test sample each answered inference used
    exit_index: np.ndarray  # exit it answered at
    correct: np.ndarray
    start_s: np.ndarray  # when it started (input captured)
    answer_s: np.ndarray  # when it answered
    power_failures: int
    energy: dict  # harvested, compute, lost, checkpoint, restore, reboot, sleep, overflow, leakage, stored_start/end
    timeline_s: np.ndarray  # capacitor voltage at every event, for plots
    timeline_v: np.ndarray
    num_exits: int = 0

    @property
    def inferences(self) -> int:
        return len(self.exit_index)

    @property
    def inferences_per_hour(self) -> float:
        return self.inferences * 3600.0 / self.duration_s

    @property
    def accuracy(self) -> float:
        """Fraction of answered inferences that were right (nan when none was answered)."""
        return float(self.correct.mean()) if self.inferences else float("nan")

    @property
    def latency_s(self) -> np.ndarray:
        """Start to answer, charging and reboots included."""
        return self.answer_s - self.start_s

    @property
    def exit_counts(self) -> np.ndarray:
        return np.bincount(self.exit_index, minlength=self.num_exits)

    @property
    def consumed_j(self) -> float:
        e = self.energy
        return e["compute"] + e["lost"] + e["checkpoint"] + e["restore"] + e["reboot"] + e["sleep"]

    @property
    def wasted_j(self) -> float:
        return self.energy["overflow"] + self.energy["leakage"]

    @property
    def energy_balance_rel_err(self) -> float:
        """|harvested - consumed - wasted - change in storage| / harvested (0 when nothing was harvested)."""
        e = self.energy
        residual = e["harvested"] - self.consumed_j - self.wasted_j - (e["stored_end"] - e["stored_start"])
        scale = max(e["harvested"], e["stored_start"], 1e-300)
        return abs(residual) / scale

    def summary(self) -> str:
        lat = self.latency_s
        median = f"{np.median(lat):.2f} s" if len(lat) else "n/a"
        return (f"{self.policy}: {self.inferences} answers in {self.duration_s / 3600:.2f} h "
                f"({self.inferences_per_hour:.1f}/h), accuracy {self.accuracy:.2%}, median latency {median}, "
                f"{self.power_failures} power failures; harvested {self.energy['harvested'] * 1e3:.1f} mJ, "
                f"used {self.consumed_j * 1e3:.1f} mJ, wasted {self.wasted_j * 1e3:.1f} mJ")


class _Device:
    """The capacitor and harvester, advanced phase by phase with exact energy books."""

    def __init__(self, trace: PowerTrace, cap: Capacitor, end_s: float):
        self.p = np.asarray(trace.power_w, dtype=np.float64)
        self.dt = float(trace.dt_s)
        self.n = len(self.p)
        self.cap = cap
        self.end_s = end_s
        self.e_max = float(cap.energy(cap.v_max))
        self.cum = np.concatenate(([0.0], np.cumsum(self.p * self.dt)))  # harvest over one period, at sample edges
        self.p_max = float(self.p.max())
        self.t = 0.0
        self.e = float(cap.energy(cap.v_off))
        self.books = dict.fromkeys(["harvested", "compute", "lost", "checkpoint", "restore", "reboot", "sleep",
                                    "overflow", "leakage"], 0.0)
        self.times, self.energies = [0.0], [self.e]

    def _harvest_to(self, t: float) -> float:
        """Energy harvested from time 0 to ``t`` (the trace repeats)."""
        period = self.n * self.dt
        q, r = divmod(t, period)
        i = min(int(r // self.dt), self.n - 1)
        return q * self.cum[-1] + self.cum[i] + self.p[i] * (r - i * self.dt)

    def harvest_between(self, t0: float, t1: float) -> float:
        return self._harvest_to(t1) - self._harvest_to(t0)

    def _time_harvesting(self, t0: float, joules: float) -> float:
        """The first time after ``t0`` by which ``joules`` will have been harvested (inf if the trace is dark)."""
        if self.cum[-1] <= 0:
            return math.inf
        target = self._harvest_to(t0) + joules
        q, r = divmod(target, self.cum[-1])
        i = int(np.searchsorted(self.cum, r, side="left")) - 1  # sample i holds the moment r is reached
        if i < 0:  # exactly at a period's edge
            return q * self.n * self.dt
        i = min(i, self.n - 1)
        while self.p[i] == 0:  # ties from zero-power samples: searchsorted gave the first one, move on
            i += 1
        return max(t0, (q * self.n + i) * self.dt + (r - self.cum[i]) / self.p[i])

    def run(self, draw_w: float, until_s: float, below: float | None = None, above: float | None = None) -> str:
        """Draw ``draw_w`` from now until ``until_s``, or until the stored energy falls to ``below`` or rises to
        ``above``. Returns ``"time"``, ``"below"`` or ``"above"``; books harvested, drawn, overflow and leakage.

        Between trace samples the stored energy is linear in time, so crossings are exact. Only one boundary can
        bind: the ceiling (overflow) when nothing stops us below it, the floor (an empty capacitor stops leaking)
        when nothing stops us above it.
        """
        until_s = min(until_s, self.end_s)
        leak = self.cap.leakage_w
        harvested = reflected = 0.0
        e, t, event = self.e, self.t, "time"
        if below is not None and e <= below:
            return "below"
        if above is not None and e >= above:
            return "above"
        settled = False  # True once a shortcut below has worked out the whole phase
        if draw_w + leak == 0 and above is not None:  # nothing drawn: invert the cumulative harvest, no scan
            t_hit = self._time_harvesting(t, above - e)
            event = "above" if t_hit <= until_s else "time"
            t = min(t_hit, until_s)
            harvested = above - e if event == "above" else self.harvest_between(self.t, t)
            settled = True
        elif above is None and draw_w + leak >= self.p_max:  # draining: no overflow, one look at the end will do
            h = self.harvest_between(t, until_s)
            if below is None or e + h - (draw_w + leak) * (until_s - t) > below:
                harvested, t, settled = h, until_s, True
        elif until_s <= (t // self.dt + 1) * self.dt:  # within one trace sample: constant power, scalar math
            power = float(self.p[int(t // self.dt) % self.n])
            net = power - draw_w - leak
            t_end = until_s
            if net < 0 and below is not None and e + net * (until_s - t) <= below:
                t_end, event = t + (below - e) / net, "below"
            elif net > 0 and above is not None and e + net * (until_s - t) >= above:
                t_end, event = t + (above - e) / net, "above"
            x = e + net * (t_end - t)
            if above is None:
                reflected = max(x - self.e_max, 0.0)
            elif below is None:
                reflected = max(-x, 0.0)
            harvested, t, settled = power * (t_end - t), t_end, True
        chunk = 64
        while t < until_s and not settled:
            g0 = int(t // self.dt)
            needed = int(math.ceil((until_s - g0 * self.dt) / self.dt))
            m = max(1, min(chunk, needed))
            idx = g0 + np.arange(m)
            ends = np.minimum((idx + 1) * self.dt, until_s)
            starts = np.concatenate(([t], ends[:-1]))
            seg = np.maximum(ends - starts, 0.0)
            power = self.p[idx % self.n]
            net = power - draw_w - leak
            x = e + np.cumsum(net * seg)
            if above is None:  # ceiling reflects: what would go above e_max overflows
                r = np.maximum(np.maximum.accumulate(x - self.e_max), 0.0)
                level = x - r
            elif below is None:  # floor reflects: an empty capacitor cannot leak
                r = np.maximum(np.maximum.accumulate(-x), 0.0)
                level = x + r
            else:
                r = np.zeros_like(x)
                level = x
            hit = np.zeros(m, dtype=bool)
            if below is not None:
                hit |= level <= below
            if above is not None:
                hit |= level >= above
            j = int(np.argmax(hit)) if hit.any() else -1
            if j >= 0:
                prev = level[j - 1] if j else e
                target = below if (below is not None and level[j] <= below) else above
                event = "below" if target == below else "above"
                frac = 0.0 if net[j] * seg[j] == 0 else min(max((target - prev) / (net[j] * seg[j]), 0.0), 1.0)
                t_hit = starts[j] + frac * seg[j]
                r_before = r[j - 1] if j else 0.0
                harvested += float(power[:j] @ seg[:j]) + float(power[j]) * (t_hit - starts[j])
                reflected += r_before
                t = t_hit
                break
            harvested += float(power @ seg)
            reflected += float(r[-1])
            t = float(ends[-1])
            e = float(level[-1])
            chunk = min(chunk * 4, 1 << 20)
        drawn_time = t - self.t
        b = self.books
        leaked = leak * drawn_time
        overflow = reflected if above is None else 0.0
        unleaked = reflected if (above is not None and below is None) else 0.0
        b["harvested"] += harvested
        b["overflow"] += overflow
        b["leakage"] += leaked - unleaked
        self.e = self.e + harvested - draw_w * drawn_time - (leaked - unleaked) - overflow
        self.t = t
        self.times.append(t)
        self.energies.append(self.e)
        return event


def _check_energy_fits(name: str, need_j: float, cap: Capacitor, why: str, other_fix: str = "") -> None:
    if need_j > cap.usable_j:
        raise ValueError(
            f"{name} needs {need_j * 1e3:.3f} mJ in one go but a full charge of the capacitor holds "
            f"{cap.usable_j * 1e3:.3f} mJ ({cap.capacitance_f * 1e3:g} mF, {cap.v_on} V -> {cap.v_off} V), so {why}; "
            f"{other_fix}use a capacitor of at least {capacitor_for_energy(need_j, cap) * 1e3:.2f} mF")


def _plan(last: int, every_head: bool, checkpoints: bool, checkpoint_macs: float, w: Workload,
          mcu: MCU) -> list[tuple[float, float, float, float]]:
    """The steps of a checkpointed inference that answers at exit ``last``: one per piece of each stage, as
    ``(energy J, time s, of which checkpoint J, words to restore after a failure in it)``."""
    steps = []
    for k in range(last + 1):
        pieces = max(1, math.ceil(w.stage_macs[k] / checkpoint_macs)) if checkpoints else 1
        e_piece, t_piece = mcu.compute(w.stage_macs[k] / pieces)
        resume = w.state_words[k - 1] if k else 0.0  # the stage's input (the sensor sample stays in FRAM)
        for i in range(pieces):
            e_j, t_s, c_j = e_piece, t_piece, 0.0
            if i == pieces - 1 and (every_head or k == last):
                e_head, t_head = mcu.compute(w.head_macs[k])
                e_j, t_s = e_j + e_head, t_s + t_head
            if checkpoints and not (k == last and i == pieces - 1):
                c_j, c_s = mcu.checkpoint(w.state_words[k] / pieces)
                e_j, t_s = e_j + c_j, t_s + c_s
            steps.append((e_j, t_s, c_j, resume))
    return steps


def simulate(
    trace: PowerTrace,
    workload: Workload,
    policy: str = "threshold",
    capacitor: Capacitor | None = None,
    mcu: MCU | None = None,
    criterion: str = "max_prob",
    threshold: float | None = None,
    duration_s: float | None = None,
    checkpoints: bool = True,
    checkpoint_macs: float = 1e5,
    seed: int = 0,
) -> SimResult:
    """Run ``workload`` on a device powered by ``trace`` for ``duration_s`` (default: the trace's length; a
    shorter trace repeats) with ``policy`` (one of :data:`POLICIES`). Inferences run back to back on test samples
    in a seeded random order; the capacitor starts at ``v_off`` with the device off.

    ``criterion``/``threshold`` set the ``threshold`` policy's exit rule. ``full`` and ``threshold`` save their
    progress to FRAM every ``checkpoint_macs`` MACs (a stage is cut into equal pieces, each saving its share of the
    stage's output, like SONIC's loop continuation); after a power failure they restore the stage's input and redo
    the piece in flight. ``checkpoints=False`` restarts the inference from scratch instead (then one full charge
    must pay for the whole of it).
    """
    if not checkpoint_macs > 0:
        raise ValueError(f"checkpoint_macs must be > 0, got {checkpoint_macs}")
    cap = capacitor or Capacitor()
    mcu = mcu or MCU()
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; known: {list(POLICIES)}")
    p = np.asarray(trace.power_w)
    if p.ndim != 1 or len(p) == 0 or not np.isfinite(p).all() or (p < 0).any() or trace.dt_s <= 0:
        raise ValueError("a power trace needs >= 1 finite, non-negative power samples (W) and dt_s > 0")
    duration_s = float(trace.duration_s if duration_s is None else duration_s)
    if not duration_s > 0:
        raise ValueError(f"duration_s must be > 0 seconds, got {duration_s}")

    K = workload.num_exits
    stage = [mcu.compute(m) for m in workload.stage_macs]
    head = [mcu.compute(m) for m in workload.head_macs]
    # reaching exit k in one go (stages 0..k, head k only): what the energy-aware policy chooses from
    exit_j = np.cumsum([s[0] for s in stage]) + np.array([h[0] for h in head])
    exit_s = np.cumsum([s[1] for s in stage]) + np.array([h[1] for h in head])
    recover_j = mcu.reboot_j + max(mcu.restore(w)[0] for w in workload.state_words)
    _check_energy_fits("a reboot and a restore", recover_j, cap, "the device can never make progress")

    exits = None
    if policy == "threshold":
        if threshold is None:
            raise ValueError("the threshold policy needs a threshold (see profile.threshold_range(criterion))")
        exits = workload.profile.exit_index(criterion, threshold)
    elif policy == "full":
        exits = np.full(workload.profile.num_samples, K - 1)
    plans = None
    if exits is not None:
        plans = [_plan(k, policy == "threshold", checkpoints, checkpoint_macs, workload, mcu) for k in range(K)]
        deepest = int(exits.max())
        if not checkpoints:
            need = sum(step[0] for step in plans[deepest]) + mcu.reboot_j
            _check_energy_fits(f"exit {deepest + 1} of {workload.name} without checkpoints", need, cap,
                               "the inference can never finish")
        else:
            worst = max((step for plan in plans for step in plan), key=lambda step: step[0])
            _check_energy_fits(f"a checkpoint interval of {workload.name} (at most {checkpoint_macs:g} MACs, with "
                               "its checkpoint, a reboot and a restore)", worst[0] + recover_j, cap,
                               "it can never finish between two power failures", "lower checkpoint_macs or ")
    else:
        _check_energy_fits(f"exit 1 of {workload.name}", exit_j[0], cap,
                           f"the {policy} policy can never answer")

    dev = _Device(trace, cap, duration_s)
    e_off, e_on = float(cap.energy(cap.v_off)), float(cap.energy(cap.v_on))
    books = dev.books
    order = np.random.default_rng(seed).permutation(workload.profile.num_samples)
    correct = workload.correct
    rows: list[tuple[int, int, bool, float, float]] = []
    failures = 0

    def task(energy_j: float, time_s: float) -> tuple[bool, float]:
        """Run a task of fixed length: (finished, joules spent); not finished (and the device off) if the capacitor
        browned out during it, or the simulation ended."""
        start = dev.t
        power = energy_j / time_s if time_s > 0 else 0.0
        event = dev.run(power, start + time_s, below=e_off)
        return event == "time" and dev.t >= start + time_s - 1e-12, (dev.t - start) * power

    def recover(resume: tuple[float, float] | None) -> bool:
        """Off until v_on, then reboot (and restore ``resume``'s checkpoint). False if the simulation ended first."""
        nonlocal failures
        while dev.run(0.0, math.inf, above=e_on) == "above":
            ok, spent = task(mcu.reboot_j, mcu.reboot_s)
            books["reboot"] += spent
            if ok and resume is not None:
                ok, spent = task(*resume)
                books["restore"] += spent
            if ok:
                return True
            if dev.t >= duration_s:
                break
            failures += 1
        return False

    def sleep_until(level: float) -> bool:
        """Low-power wait (device on) until the stored energy reaches ``level``; False if time ran out."""
        t0 = dev.t
        event = dev.run(mcu.sleep_w, math.inf, below=e_off, above=level)
        books["sleep"] += mcu.sleep_w * (dev.t - t0)
        return event == "above"

    if not recover(None):  # the device starts off, at v_off: charge to v_on and boot
        return _result(policy, trace, duration_s, rows, failures, dev, cap, K, workload)
    n = 0
    while dev.t < duration_s:
        sample = int(order[n % len(order)])
        n += 1
        start = dev.t
        if plans is not None:  # full / threshold: step by step, checkpointed (or restarted after a failure)
            last = int(exits[sample])
            steps = plans[last]
            i, pending, done = 0, 0.0, True
            while i < len(steps):
                e_j, t_s, ckpt_j, resume_words = steps[i]
                ok, spent = task(e_j, t_s)
                if ok:
                    work = spent * (1 - ckpt_j / e_j) if e_j > 0 else 0.0
                    pending += work
                    books["checkpoint"] += spent - work
                    if checkpoints:
                        books["compute"] += pending
                        pending = 0.0
                    i += 1
                    continue
                books["lost"] += spent + pending
                pending = 0.0
                if dev.t >= duration_s:  # the simulation ended mid-step: not a power failure
                    done = False
                    break
                failures += 1
                if not checkpoints:
                    i = 0
                if not recover(mcu.restore(resume_words) if checkpoints else None):
                    done = False
                    break
            if not done:
                break
            books["compute"] += pending
            rows.append((sample, last, bool(correct[last, sample]), start, dev.t))
            continue

        # energy_aware / anytime: never start what the stored energy cannot pay for
        spendable = dev.e - e_off
        if exit_j[0] > spendable:
            if not sleep_until(e_on):
                if dev.t >= duration_s:
                    break
                failures += 1  # a sleeping device browned out (sleep power or leakage beat the harvest)
                if not recover(None):
                    break
                continue
            spendable = dev.e - e_off
        if policy == "energy_aware":
            k = int(np.nonzero(exit_j <= spendable)[0].max())
            ok, spent = task(exit_j[k], exit_s[k])
        else:
            k, e_j, t_s = 0, stage[0][0], stage[0][1]
            while k + 1 < K and e_j + stage[k + 1][0] + head[k + 1][0] <= spendable:
                k += 1
                e_j, t_s = e_j + stage[k][0], t_s + stage[k][1]
            ok, spent = task(e_j + head[k][0], t_s + head[k][1])
        if ok:
            books["compute"] += spent
            rows.append((sample, k, bool(correct[k, sample]), start, dev.t))
            continue
        books["lost"] += spent  # leakage or the end of the simulation can still cut it short
        if dev.t >= duration_s:
            break
        failures += 1
        if not recover(None):
            break
    return _result(policy, trace, duration_s, rows, failures, dev, cap, K, workload)


def _result(policy, trace, duration_s, rows, failures, dev: _Device, cap: Capacitor, K: int,
            workload: Workload) -> SimResult:
    cols = list(zip(*rows)) if rows else [[], [], [], [], []]
    energy = dict(dev.books)
    energy["stored_start"] = float(cap.energy(cap.v_off))
    energy["stored_end"] = dev.e
    return SimResult(
        policy=policy, trace=trace.name, duration_s=duration_s,
        sample=np.asarray(cols[0], dtype=np.int64), exit_index=np.asarray(cols[1], dtype=np.int64),
        correct=np.asarray(cols[2], dtype=bool), start_s=np.asarray(cols[3], dtype=np.float64),
        answer_s=np.asarray(cols[4], dtype=np.float64), power_failures=failures, energy=energy,
        timeline_s=np.asarray(dev.times), timeline_v=np.asarray(cap.voltage(np.asarray(dev.energies))),
        num_exits=K,
    )
