"""The speaker (group) bootstrap: known answers, pairing, and refusals."""

import numpy as np
import pytest

from eekit.intervals import group_bootstrap


def test_two_equal_sized_groups_give_the_known_distribution_of_drawn_rates():
    """Groups at 10 % and 30 % with equal totals: a drawn pair pools to 10 % (1 in 4), 20 % (2 in 4) or 30 % (1 in
    4), so the 95 % interval is [10 %, 30 %] and a 40 % one holds only the middle."""
    errors, totals, groups = [1, 0, 3, 0], [5, 5, 5, 5], ["a", "a", "b", "b"]
    assert group_bootstrap(errors, totals, groups) == pytest.approx((0.1, 0.3))
    assert group_bootstrap(errors, totals, groups, level=0.4) == pytest.approx((0.2, 0.2))


def test_the_interval_holds_the_rate_is_seeded_and_widens_with_the_spread_between_groups():
    rng = np.random.default_rng(1)
    totals = rng.integers(20, 80, 200).astype(float)
    groups = np.repeat(np.arange(8), 25)
    alike = rng.binomial(totals.astype(int), 0.3)
    apart = rng.binomial(totals.astype(int), 0.1 + 0.05 * groups)
    for errors in (alike, apart):
        low, high = group_bootstrap(errors, totals, groups)
        assert low < errors.sum() / totals.sum() < high
        assert group_bootstrap(errors, totals, groups) == (low, high)
        assert group_bootstrap(errors, totals, groups, seed=1) != (low, high)
    width = [np.subtract(*group_bootstrap(e, totals, groups)[::-1]) for e in (alike, apart)]
    assert width[1] > 2 * width[0]


def test_a_paired_difference_is_narrower_than_the_rates_own_intervals_when_the_same_groups_are_hard():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(8), 20)
    totals = np.full(160, 50.0)
    hard = 0.2 + 0.06 * groups  # both systems find the same voices hard; b makes 2 points more errors
    a, b = rng.binomial(50, hard), rng.binomial(50, hard + 0.02)
    diff = group_bootstrap(a, totals, groups, minus=b)
    assert diff[0] < (a.sum() - b.sum()) / totals.sum() < diff[1] < 0
    assert diff[1] - diff[0] < 0.5 * np.subtract(*group_bootstrap(a, totals, groups)[::-1])
    assert group_bootstrap(b, totals, groups, minus=a) == pytest.approx((-diff[1], -diff[0]))
    assert group_bootstrap(a, totals, groups, minus=a) == (0.0, 0.0)


@pytest.mark.parametrize("kwargs, says", [
    ({"errors": [1, -1]}, "errors must be"), ({"totals": [5, 0]}, "totals must be"),
    ({"errors": [1, float("nan")]}, "errors must be"), ({"groups": ["a"]}, "of one length"),
    ({"level": 1.0}, "level must be"), ({"draws": 0}, "draws must be"), ({"seed": -1}, "seed must be"),
    ({"minus": [1]}, "same 2 samples"), ({"minus": [1, -2]}, "minus (the other system's errors)")])
def test_bad_input_is_refused_with_what_is_accepted(kwargs, says):
    given = {"errors": [1, 2], "totals": [5, 5], "groups": ["a", "b"], **kwargs}
    with pytest.raises(ValueError, match=r"must|one length") as err:
        group_bootstrap(**given)
    assert says in str(err.value)
