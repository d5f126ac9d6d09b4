"""The energy dashboard, driven from Python exactly as its controls are driven in a notebook."""

import numpy as np
import pytest

from eekit.widgets import EnergyDashboard
from eekit.widgets.energy import HARVESTERS


@pytest.fixture(scope="module")
def dashboard():
    return EnergyDashboard()


def check_consistent(d: EnergyDashboard):
    r = d.result
    assert d.error is None and r is not None
    assert r.exit_counts.sum() == r.inferences
    assert r.inferences == 0 or 0 <= r.accuracy <= 1
    assert r.energy_balance_rel_err < 1e-9
    assert sum(d.histogram.data[0].y) == pytest.approx(100 if r.inferences else 0)
    assert len(d.timeline.data[0].x) > 1
    assert f"<b>{r.inferences}</b> answers" in d.readout.value
    assert d.policies.data[1].x == (r.inferences_per_hour,)


def test_default_state_is_drawn_before_anyone_touches_it(dashboard):
    check_consistent(dashboard)
    assert dashboard.result.policy == "threshold"
    assert len(dashboard.policies.data[0].x) == 4  # every policy is on the map


def test_a_bigger_capacitor_means_fewer_power_failures(dashboard):
    small = dashboard.set(harvester=next(iter(HARVESTERS)), capacitance_mf=5, policy="threshold")
    big = dashboard.set(capacitance_mf=50)
    assert big.power_failures < small.power_failures
    assert "power failures</b> " + str(big.power_failures) in dashboard.readout.value


def test_threshold_slider_only_matters_for_the_threshold_policy(dashboard):
    dashboard.set(policy="energy_aware")
    assert dashboard.threshold_slider.disabled
    dashboard.set(policy="threshold", threshold=0.5)
    assert not dashboard.threshold_slider.disabled
    loose = dashboard.result.exit_counts[0]
    strict = dashboard.set(threshold=1.0).exit_counts[0]
    assert strict < loose


@pytest.mark.slow  # runs a model over a data set or a dashboard over every control
def test_every_control_at_its_extremes_and_random_values_keeps_a_consistent_readout(dashboard):
    rng = np.random.default_rng(0)
    slider = dashboard.capacitor_slider
    for harvester in HARVESTERS:
        for policy in dashboard.policy_dropdown.options:
            for mf in (10 ** slider.max, float(10 ** rng.uniform(np.log10(3), slider.max))):
                dashboard.set(harvester=harvester, policy=policy[1], capacitance_mf=mf,
                              threshold=float(rng.uniform(0.1, 1.0)))
                check_consistent(dashboard)
    dashboard.set(capacitance_mf=10 ** slider.min)  # 1 mF: too small for these models
    assert dashboard.result is None and "Cannot run" in dashboard.readout.value and "at least" in dashboard.readout.value
    dashboard.set(capacitance_mf=5)
    check_consistent(dashboard)  # and it recovers


def test_each_exit_has_one_name_in_every_plot(dashboard):
    """The timeline's legend and the histogram's bars name an exit the same way: its number and its layer."""
    bars = list(dashboard.histogram.data[0].x)
    legend = [t.name.removeprefix("answer at ") for t in dashboard.timeline.data[1:]]
    assert bars == legend == ["exit 1 (conv1)", "exit 2 (conv2)", "exit 3 (fc, final)"]
