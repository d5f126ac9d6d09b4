"""The batteryless simulator: energy conservation, hand-checkable runs on synthetic traces, bad input."""

import math

import numpy as np
import pytest

from eekit import data
from eekit.energy import (MCU, POLICIES, Capacitor, Workload, capacitor_for_energy, load_workload, simulate,
                          synthetic_trace)

from helpers import synthetic_profile

MCU_DEFAULT = MCU()
CAP = Capacitor()


def toy_workload(stage_mj=(0.5, 1.0, 1.5), head_mj=(0.1, 0.1, 0.1), words=(1000, 500, 10)) -> Workload:
    """Three exits whose energies are round numbers in mJ on the default MCU."""
    per_mac = MCU_DEFAULT.compute(1.0)[0]
    return Workload("toy", np.array(stage_mj) * 1e-3 / per_mac, np.array(head_mj) * 1e-3 / per_mac,
                    np.array(words, dtype=float), head_params=1000, profile=synthetic_profile(500, exits=3))


def harvested_independently(trace, duration_s: float) -> float:
    """Integral of the (repeating) trace over [0, duration_s], with numpy on the samples."""
    whole, rest = divmod(duration_s, trace.duration_s)
    full_samples = int(rest // trace.dt_s)
    partial = rest - full_samples * trace.dt_s
    return (whole * trace.power_w.sum() * trace.dt_s + trace.power_w[:full_samples].sum() * trace.dt_s
            + (trace.power_w[full_samples] * partial if full_samples < len(trace.power_w) else 0.0))


TRACES = {
    "rf-1": lambda: data.load_trace("rf-1"),
    "solar-2023jun": lambda: data.load_trace("solar-2023jun"),
    "constant": lambda: synthetic_trace("constant", duration_s=60, power_w=2e-3),
    "square": lambda: synthetic_trace("square", duration_s=60, power_w=20e-3, period_s=7.3, duty=0.3),
    "telegraph": lambda: synthetic_trace("telegraph", duration_s=60, power_w=5e-3),
    "diurnal": lambda: synthetic_trace("diurnal", duration_s=600, dt_s=0.1, power_w=40e-3, period_s=200),
}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("trace_name", [pytest.param(name, marks=pytest.mark.slow) if name.startswith("solar")
                                        else name for name in TRACES])  # a simulated solar day takes seconds
@pytest.mark.parametrize("leakage_w", [0.0, 20e-6])
def test_energy_is_conserved(policy, trace_name, leakage_w):
    trace = TRACES[trace_name]()
    duration = 86400 if trace_name.startswith("solar") else 200.0
    cap = Capacitor(leakage_w=leakage_w)
    result = simulate(trace, toy_workload(), policy, capacitor=cap, threshold=0.5, duration_s=duration,
                      mcu=MCU(sleep_w=1e-6))
    e = result.energy
    harvested = harvested_independently(trace, duration)
    assert e["harvested"] == pytest.approx(harvested, rel=1e-9)
    stored_end = float(cap.energy(result.timeline_v[-1]))
    residual = harvested - result.consumed_j - result.wasted_j - (stored_end - e["stored_start"])
    assert abs(residual) <= 1e-9 * harvested
    assert result.energy_balance_rel_err < 1e-9
    assert all(v >= -1e-15 for k, v in e.items()), e
    assert result.inferences > 0
    assert (result.timeline_v <= cap.v_max + 1e-9).all()
    assert (np.diff(result.timeline_s) >= 0).all()
    if leakage_w:
        assert e["leakage"] > 0


def test_charge_boot_and_first_answer_on_a_constant_trace_by_hand():
    power = 1e-3
    trace = synthetic_trace("constant", duration_s=100, power_w=power)
    w = toy_workload()
    result = simulate(trace, w, "energy_aware", duration_s=30)
    charge = CAP.usable_j / power  # 2.75 s from v_off to v_on
    assert charge == pytest.approx(2.75, rel=1e-3)
    # after the reboot, spendable = usable - reboot + harvest during the reboot = 2.75 - 0.078 + 0.07 mJ:
    # exit 2 (0.5 + 1.0 + 0.1 = 1.6 mJ) fits, exit 3 (3.1 mJ) does not
    spendable = CAP.usable_j - MCU_DEFAULT.reboot_j + power * MCU_DEFAULT.reboot_s
    assert 1.6e-3 < spendable < 3.1e-3
    assert result.exit_index[0] == 1
    run_time = sum(MCU_DEFAULT.compute(m)[1] for m in w.stage_macs[:2]) + MCU_DEFAULT.compute(w.head_macs[1])[1]
    assert result.answer_s[0] == pytest.approx(charge + MCU_DEFAULT.reboot_s + run_time, rel=1e-9)
    assert result.power_failures == 0


def test_full_policy_never_fails_when_harvest_beats_the_draw():
    # 50 mW in, about 5 mW drawn while computing: the capacitor tops out and overflows, answers come back to back
    trace = synthetic_trace("constant", duration_s=10, power_w=50e-3)
    w = toy_workload()
    result = simulate(trace, w, "full", duration_s=20, checkpoint_macs=1e12)
    t_inf = (sum(MCU_DEFAULT.compute(m)[1] for m in w.stage_macs) + MCU_DEFAULT.compute(w.head_macs[-1])[1]
             + sum(MCU_DEFAULT.checkpoint(words)[1] for words in w.state_words[:2]))  # one checkpoint per stage
    boot = CAP.usable_j / 50e-3 + MCU_DEFAULT.reboot_s
    assert result.power_failures == 0
    assert result.inferences == math.floor((20 - boot) / t_inf + 1e-9)
    assert np.allclose(np.diff(result.answer_s), t_inf)
    assert result.energy["overflow"] > 0
    assert (result.exit_index == 2).all()


def test_checkpoints_turn_a_too_big_model_into_power_failures():
    # the full model needs 3.1 mJ; a 2.75 mJ charge cannot pay for it, but checkpointed pieces can
    trace = synthetic_trace("constant", duration_s=100, power_w=0.1e-3)
    w = toy_workload(stage_mj=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="without checkpoints.*at least"):
        simulate(trace, w, "full", checkpoints=False)
    result = simulate(trace, w, "full", duration_s=600)
    assert result.inferences >= 1
    assert result.power_failures >= result.inferences
    assert result.energy["lost"] > 0 and result.energy["checkpoint"] > 0 and result.energy["restore"] > 0
    # each answer cost its compute plus overheads: the harvest of 600 s pays for at most this many
    per_answer = 3.1e-3
    assert result.inferences <= 0.1e-3 * 600 / per_answer


def test_threshold_policy_exits_where_the_profile_says():
    trace = synthetic_trace("constant", duration_s=60, power_w=20e-3)
    w = toy_workload()
    result = simulate(trace, w, "threshold", criterion="max_prob", threshold=0.6, duration_s=60)
    expected = w.profile.exit_index("max_prob", 0.6)[result.sample]
    assert (result.exit_index == expected).all()
    assert (result.correct == w.correct[result.exit_index, result.sample]).all()


def test_anytime_goes_as_deep_as_the_charge_allows():
    trace = synthetic_trace("constant", duration_s=600, power_w=0.2e-3)
    small = simulate(trace, toy_workload(), "anytime", duration_s=600)
    big = simulate(trace, toy_workload(), "anytime", duration_s=600,
                   capacitor=Capacitor(capacitance_f=capacitor_for_energy(4e-3)))
    assert small.power_failures == big.power_failures == 0
    assert small.exit_index.mean() < big.exit_index.mean()
    assert (big.exit_index == 2).any()


def test_real_workloads_shared_head_is_smaller_and_answers_at_every_depth():
    per_layer, shared = load_workload("cnn-mnist"), load_workload("cnn-mnist-shared")
    assert shared.shared_head and not per_layer.shared_head
    assert shared.head_bytes() < per_layer.head_bytes() / 3
    np.testing.assert_allclose(shared.stage_macs, per_layer.stage_macs)  # same backbone
    assert shared.profile.exit_accuracy[0] > 0.85
    trace = data.load_trace("rf-1")
    result = simulate(trace, shared, "anytime", duration_s=600,
                      capacitor=Capacitor(capacitance_f=capacitor_for_energy(11e-3)))
    assert result.inferences > 0 and result.accuracy > 0.85


@pytest.mark.parametrize("kwargs,message", [
    (dict(capacitance_f=-1e-3), r"capacitance_f \(farads\) must be a finite number > 0"),
    (dict(v_on=2.7, v_off=2.8), "v_off < v_on"),
    (dict(v_max=2.9), "could never turn on"),
    (dict(leakage_w=-1.0), r"leakage_w \(watts\) must be a finite number >= 0"),
])
def test_bad_capacitors_say_why(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Capacitor(**kwargs)


def test_bad_simulation_input_says_what_is_accepted():
    trace = synthetic_trace("constant", duration_s=10)
    w = toy_workload()
    with pytest.raises(ValueError, match="unknown policy 'greedy'.*anytime"):
        simulate(trace, w, "greedy")
    with pytest.raises(ValueError, match="needs a threshold"):
        simulate(trace, w, "threshold")
    with pytest.raises(ValueError, match="threshold"):
        simulate(trace, w, "threshold", threshold=7.0)
    with pytest.raises(ValueError, match="non-negative"):
        simulate(data.PowerTrace("bad", np.arange(3.0), np.array([1e-3, -1e-3, 0]), 1.0, "test"), w, "full")
    with pytest.raises(ValueError, match="can never answer.*at least"):
        simulate(trace, toy_workload(stage_mj=(3.0, 1.0, 1.0)), "anytime")
    with pytest.raises(ValueError, match="unknown synthetic trace"):
        synthetic_trace("wind")
    with pytest.raises(ValueError, match="one per exit"):
        Workload("bad", np.ones(2), np.ones(3), np.ones(3), 0, synthetic_profile(10, exits=3))
    with pytest.raises(ValueError, match="MCU.mac_j"):
        MCU(mac_j=-1.0)


def test_package_keeps_its_public_names_and_has_one_step_per_policy():
    import eekit.energy as energy
    from eekit.energy.simulator import STEPS

    assert all(hasattr(energy, name) for name in energy.__all__)
    assert set(STEPS) == set(POLICIES) and len(set(STEPS.values())) == len(POLICIES)
