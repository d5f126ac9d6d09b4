"""The simulation: a device on harvested power runs inferences back to back under one policy.

The simulation is event-driven: between events the capacitor's energy is a piecewise-linear function of time,
computed vectorized over trace samples (:class:`_Device`), and every phase's energy is booked, so that
``harvested = consumed + wasted + (stored at end - stored at start)`` holds to rounding error
(:attr:`SimResult.energy_balance_rel_err`).

Each policy is one *step function* (:data:`STEPS`): it runs one inference from its start to its answer, using the
primitives of :class:`_Run` (run a task, recover from a brown-out, sleep until charged). Every loop is bounded by
construction: :func:`simulate` first works out, from the trace's total harvest and the cheapest answer's energy and
time, how many answers and power failures can possibly happen, refuses inputs whose bound is infinite or too large,
and runs its loops over ``range`` of those bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import validate
from ..data import PowerTrace
from .hardware import MCU, Capacitor, capacitor_for_energy
from .workload import Workload

__all__ = ["SimResult", "POLICIES", "STEPS", "simulate", "MAX_EVENTS", "MAX_SIM_SAMPLES", "MAX_PLAN_STEPS"]

POLICIES = ("full", "threshold", "energy_aware", "anytime")
MAX_EVENTS = 10_000_000  # bound on answers + power failures of one run (a day of rf-1 with cnn-mnist: 11,396)
MAX_SIM_SAMPLES = 1_000_000_000  # trace samples one simulation may scan (11.6 days of a 1 kHz trace)
MAX_PLAN_STEPS = 100_000  # checkpointed pieces of one inference, over all exits


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
        accuracy = f"{self.accuracy:.2%}" if self.inferences else "n/a (no answers)"
        return (f"{self.policy}: {self.inferences} answers in {self.duration_s / 3600:.2f} h "
                f"({self.inferences_per_hour:.1f}/h), accuracy {accuracy}, median latency {median}, "
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
        if self.p[i] == 0:  # ties from zero-power samples: searchsorted gave the first one, move on
            i += int(np.argmax(self.p[i:] > 0))
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
        # every pass covers at least one more trace sample, so the samples up to until_s bound the loop
        passes = 0 if settled else int(math.ceil((until_s - t) / self.dt)) + 2
        for _ in range(passes):
            if t >= until_s:
                break
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


def _pieces(w: Workload, checkpoints: bool, checkpoint_macs: float) -> list[int]:
    """How many checkpointed pieces each stage is cut into."""
    return [max(1, math.ceil(m / checkpoint_macs)) if checkpoints else 1 for m in w.stage_macs]


def _plan(last: int, every_head: bool, checkpoints: bool, checkpoint_macs: float, w: Workload,
          mcu: MCU) -> list[tuple[float, float, float, float]]:
    """The steps of a checkpointed inference that answers at exit ``last``: one per piece of each stage, as
    ``(energy J, time s, of which checkpoint J, words to restore after a failure in it)``."""
    steps = []
    pieces_of = _pieces(w, checkpoints, checkpoint_macs)
    for k in range(last + 1):
        pieces = pieces_of[k]
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


SKIP = -1  # a step's outcome: no answer, but the simulation goes on (next sample)


class _Run:
    """One simulation in progress: the device, its energy books and failure count, what the policies precompute,
    and the primitives every policy step uses. ``max_failures`` bounds every retry loop."""

    def __init__(self, dev: "_Device", cap: Capacitor, mcu: MCU, workload: Workload, duration_s: float,
                 max_failures: int, checkpoints: bool):
        self.dev, self.cap, self.mcu, self.workload, self.duration_s = dev, cap, mcu, workload, duration_s
        self.books = dev.books
        self.e_off, self.e_on = float(cap.energy(cap.v_off)), float(cap.energy(cap.v_on))
        self.failures, self.max_failures, self.checkpoints = 0, max_failures, checkpoints
        K = workload.num_exits
        self.stage = [mcu.compute(m) for m in workload.stage_macs]
        self.head = [mcu.compute(m) for m in workload.head_macs]
        # reaching exit k in one go (stages 0..k, head k only): what the energy-aware policy chooses from
        self.exit_j = np.cumsum([s[0] for s in self.stage]) + np.array([h[0] for h in self.head])
        self.exit_s = np.cumsum([s[1] for s in self.stage]) + np.array([h[1] for h in self.head])
        self.exits: np.ndarray | None = None  # full / threshold: the exit of every test sample ...
        self.plans: list | None = None  # ... and the checkpointed steps to reach each exit
        self.K = K

    @property
    def over(self) -> bool:
        return self.dev.t >= self.duration_s

    def task(self, energy_j: float, time_s: float) -> tuple[bool, float]:
        """Run a task of fixed length: (finished, joules spent); not finished (and the device off) if the capacitor
        browned out during it, or the simulation ended."""
        dev = self.dev
        start = dev.t
        power = energy_j / time_s if time_s > 0 else 0.0
        event = dev.run(power, start + time_s, below=self.e_off)
        return event == "time" and dev.t >= start + time_s - 1e-12, (dev.t - start) * power

    def recover(self, resume: tuple[float, float] | None) -> bool:
        """Off until v_on, then reboot (and restore ``resume``'s checkpoint). False if the simulation ended first.
        Each pass of the loop after a failed reboot needs a full recharge, so ``max_failures`` bounds it."""
        for _ in range(self.max_failures + 1):
            if self.dev.run(0.0, math.inf, above=self.e_on) != "above":
                return False
            ok, spent = self.task(self.mcu.reboot_j, self.mcu.reboot_s)
            self.books["reboot"] += spent
            if ok and resume is not None:
                ok, spent = self.task(*resume)
                self.books["restore"] += spent
            if ok:
                return True
            if self.over:
                return False
            self.failures += 1
        return False

    def sleep_until(self, level: float) -> bool:
        """Low-power wait (device on) until the stored energy reaches ``level``; False if time ran out."""
        t0 = self.dev.t
        event = self.dev.run(self.mcu.sleep_w, math.inf, below=self.e_off, above=level)
        self.books["sleep"] += self.mcu.sleep_w * (self.dev.t - t0)
        return event == "above"

    def after_failure(self, spent: float) -> int | None:
        """Book a task cut short; then reboot if it was a power failure. ``SKIP`` to go on, None when over."""
        self.books["lost"] += spent  # leakage or the end of the simulation can still cut it short
        if self.over:
            return None
        self.failures += 1
        return SKIP if self.recover(None) else None


# ------------------------------------------------------------------------------------------ one step per policy
# A step runs one inference of test sample ``sample``: it returns the exit that answered, SKIP (no answer, go on
# with the next sample) or None (the simulation is over).


def _run_plan(run: _Run, last: int) -> int | None:
    """Checkpointed (or restart-from-scratch) execution of the plan that answers at exit ``last``. Each pass of the
    loop either finishes a step or is a power failure, so it is bounded by steps + failures."""
    steps, books, checkpoints = run.plans[last], run.books, run.checkpoints
    i, pending = 0, 0.0
    for _ in range(len(steps) * (run.max_failures + 1) + 1):
        if i >= len(steps):
            break
        e_j, t_s, ckpt_j, resume_words = steps[i]
        ok, spent = run.task(e_j, t_s)
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
        if run.over:  # the simulation ended mid-step: not a power failure
            return None
        run.failures += 1
        if not checkpoints:
            i = 0
        if not run.recover(run.mcu.restore(resume_words) if checkpoints else None):
            return None
    if i < len(steps):
        return None
    books["compute"] += pending
    return last


def _step_full(run: _Run, sample: int) -> int | None:
    """Every stage and the final head, checkpointed."""
    return _run_plan(run, run.K - 1)


def _step_threshold(run: _Run, sample: int) -> int | None:
    """A head after every stage; stop at the first exit the criterion trusts (known from the profile)."""
    return _run_plan(run, int(run.exits[sample]))


def _affordable(run: _Run) -> float | None:
    """Energy spendable now above brown-out; if not even exit 1 is affordable, sleep until ``v_on`` first.
    None when the sleep ended without it (then the caller books a failure or stops)."""
    spendable = run.dev.e - run.e_off
    if run.exit_j[0] > spendable:
        if not run.sleep_until(run.e_on):
            return None
        spendable = run.dev.e - run.e_off
    return spendable


def _sleep_failed(run: _Run) -> int | None:
    if run.over:
        return None
    run.failures += 1  # a sleeping device browned out (sleep power or leakage beat the harvest)
    return SKIP if run.recover(None) else None


def _step_energy_aware(run: _Run, sample: int) -> int | None:
    """The deepest exit the stored energy pays for now, in one go (no checkpoints)."""
    spendable = _affordable(run)
    if spendable is None:
        return _sleep_failed(run)
    k = int(np.nonzero(run.exit_j <= spendable)[0].max())
    ok, spent = run.task(run.exit_j[k], run.exit_s[k])
    if ok:
        run.books["compute"] += spent
        return k
    return run.after_failure(spent)


def _step_anytime(run: _Run, sample: int) -> int | None:
    """FreeML: stage after stage while the stored energy pays for the next stage and its answer (shared head)."""
    spendable = _affordable(run)
    if spendable is None:
        return _sleep_failed(run)
    stage, head = run.stage, run.head
    k, e_j, t_s = 0, stage[0][0], stage[0][1]
    while k + 1 < run.K and e_j + stage[k + 1][0] + head[k + 1][0] <= spendable:  # at most K - 1 passes
        k += 1
        e_j, t_s = e_j + stage[k][0], t_s + stage[k][1]
    ok, spent = run.task(e_j + head[k][0], t_s + head[k][1])
    if ok:
        run.books["compute"] += spent
        return k
    return run.after_failure(spent)


STEPS = {"full": _step_full, "threshold": _step_threshold, "energy_aware": _step_energy_aware,
         "anytime": _step_anytime}


# ------------------------------------------------------------------------------------------------ simulate


def _check_trace(trace: PowerTrace) -> np.ndarray:
    validate.instance("trace", trace, PowerTrace, "an eekit PowerTrace (data.load_trace or energy.synthetic_trace)")
    p = np.asarray(trace.power_w)
    if p.ndim != 1 or len(p) == 0 or not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("a power trace needs >= 1 finite, non-negative power samples (W) and dt_s > 0")
    validate.number("trace.dt_s (seconds)", trace.dt_s, 0, low_open=True)
    return p


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
    validate.one_of("policy", policy, POLICIES)
    _check_trace(trace)
    validate.instance("workload", workload, Workload, "an eekit.energy.Workload (e.g. load_workload('cnn-mnist'))")
    checkpoint_macs = validate.number("checkpoint_macs (MACs between checkpoints)", checkpoint_macs, 1)
    seed = validate.whole("seed", seed, 0)
    cap = capacitor or Capacitor()
    mcu = mcu or MCU()
    validate.instance("capacitor", cap, Capacitor, "an eekit.energy.Capacitor (or None for the default)")
    validate.instance("mcu", mcu, MCU, "an eekit.energy.MCU (or None for the default)")
    duration_s = validate.number("duration_s (seconds)", trace.duration_s if duration_s is None else duration_s,
                                 0, low_open=True)
    samples = duration_s / trace.dt_s
    if samples > MAX_SIM_SAMPLES:
        raise ValueError(f"duration_s={duration_s:g} s spans {samples:.3g} samples of {trace.name!r}; at most "
                         f"{MAX_SIM_SAMPLES:.0e} are accepted: duration_s <= {MAX_SIM_SAMPLES * trace.dt_s:g} s")

    K = workload.num_exits
    dev = _Device(trace, cap, duration_s)
    run = _Run(dev, cap, mcu, workload, duration_s, 0, checkpoints)
    if not run.exit_s.min() > 0:
        raise ValueError("on this MCU an answer takes no time (mac_cycles and call_cycles are 0), so inferences "
                         "could run infinitely often; the simulator needs MCU.mac_cycles or call_cycles > 0")
    recover_j = mcu.reboot_j + max(mcu.restore(w)[0] for w in workload.state_words)
    _check_energy_fits("a reboot and a restore", recover_j, cap, "the device can never make progress")

    if policy == "threshold":
        if threshold is None:
            raise ValueError("the threshold policy needs a threshold (see profile.threshold_range(criterion))")
        run.exits = workload.profile.exit_index(criterion, threshold)
    elif policy == "full":
        run.exits = np.full(workload.profile.num_samples, K - 1)
    if run.exits is not None:
        total = sum(_pieces(workload, checkpoints, checkpoint_macs))
        if total > MAX_PLAN_STEPS:
            raise ValueError(f"checkpoint_macs={checkpoint_macs:g} cuts one inference of {workload.name} into "
                             f"{total:,} pieces; at most {MAX_PLAN_STEPS:,} are accepted: checkpoint_macs >= "
                             f"{math.ceil(workload.stage_macs.sum() / MAX_PLAN_STEPS * 1.01):,}")
        run.plans = [_plan(k, policy == "threshold", checkpoints, checkpoint_macs, workload, mcu) for k in range(K)]
        deepest = int(run.exits.max())
        if not checkpoints:
            need = sum(step[0] for step in run.plans[deepest]) + mcu.reboot_j
            _check_energy_fits(f"exit {deepest + 1} of {workload.name} without checkpoints", need, cap,
                               "the inference can never finish")
        else:
            worst = max((step for plan in run.plans for step in plan), key=lambda step: step[0])
            _check_energy_fits(f"a checkpoint interval of {workload.name} (at most {checkpoint_macs:g} MACs, with "
                               "its checkpoint, a reboot and a restore)", worst[0] + recover_j, cap,
                               "it can never finish between two power failures", "lower checkpoint_macs or ")
    else:
        _check_energy_fits(f"exit 1 of {workload.name}", run.exit_j[0], cap,
                           f"the {policy} policy can never answer")

    # The bounds every loop runs under. Each power failure leaves the capacitor at v_off and is followed by a
    # recharge to v_on, which needs a full charge of harvest; each answer takes at least the cheapest exit's time,
    # and its energy comes from the harvest or the charge stored at the start.
    harvest = dev.harvest_between(0.0, duration_s)
    run.max_failures = int(harvest / cap.usable_j) + 2
    answers = duration_s / float(run.exit_s.min()) + 1
    if run.exit_j.min() > 0:
        answers = min(answers, (harvest + dev.e_max) / float(run.exit_j.min()) + 1)
    max_events = int(answers) + run.max_failures + 2
    if max_events > MAX_EVENTS:
        raise ValueError(f"this simulation could take up to {max_events:,} answers and power failures; at most "
                         f"{MAX_EVENTS:,} are accepted: shorten duration_s (now {duration_s:g} s) or use a workload "
                         f"and MCU whose answers cost more energy")

    order = np.random.default_rng(seed).permutation(workload.profile.num_samples)
    correct = workload.correct
    rows: list[tuple[int, int, bool, float, float]] = []
    step = STEPS[policy]
    if run.recover(None):  # the device starts off, at v_off: charge to v_on and boot
        for n in range(max_events):
            if run.over:
                break
            sample = int(order[n % len(order)])
            start = dev.t
            k = step(run, sample)
            if k is None:
                break
            if k != SKIP:
                rows.append((sample, k, bool(correct[k, sample]), start, dev.t))
    return _result(policy, trace, duration_s, rows, run.failures, dev, cap, K, workload)


def _result(policy, trace, duration_s, rows, failures, dev: "_Device", cap: Capacitor, K: int,
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
