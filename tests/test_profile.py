"""The cached profile's arithmetic, checked against a hand-built example and against brute force."""

import itertools

import numpy as np
import pytest
import torch

from eekit.profile import ExitProfile
from helpers import synthetic_profile


def hand_profile():
    """4 samples, 3 exits, 2 classes; logits chosen so max-prob scores are easy to read."""
    # softmax of [a, 0] has max-prob sigmoid(|a|)
    a = np.array([
        # exit0  exit1  exit2     (logit of class 0 minus class 1)
        [3.0, 4.0, 5.0],   # sample 0: confident class 0 everywhere
        [0.1, 3.0, 4.0],   # sample 1: unsure at exit 0, confident class 0 later
        [-0.2, 0.3, -3.0],  # sample 2: unsure, flips
        [0.0, -0.1, -4.0],  # sample 3: class 1 at the end
    ])
    logits = np.stack([a, np.zeros_like(a)], axis=-1).transpose(1, 0, 2).astype(np.float32)  # [K, N, 2]
    labels = np.array([0, 0, 1, 1])
    predictions = logits.argmax(-1).T
    errors = (predictions != labels[:, None]).astype(np.float32)
    return ExitProfile(predictions=predictions, errors=errors, totals=np.ones(4, np.float32),
                       cost=np.array([1.0, 3.0, 6.0]), full_cost=5.0, exit_names=["a", "b", "c"],
                       logits=logits, labels=labels)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_operating_point_by_hand():
    p = hand_profile()
    # max-prob >= 0.9: sigmoid(3)=0.953 passes, sigmoid(0.1)=0.52 no, sigmoid(3)=0.95 yes at exit 1, ...
    point = p.at("max_prob", 0.9)
    assert p.exit_index("max_prob", 0.9).tolist() == [0, 1, 2, 2]
    assert point.exit_counts.tolist() == [1, 1, 2]
    # sample predictions at their exits: 0 (right), 0 (right), class 1 (right), class 1 (right)
    assert point.accuracy == pytest.approx(1.0)
    assert point.mean_cost == pytest.approx((1 + 3 + 6 + 6) / 4)
    assert point.savings == pytest.approx(1 - 4.0 / 5.0)
    assert p.exit_accuracy.tolist() == pytest.approx([0.75, 0.75, 1.0])  # sample 3 ties to class 0 at exit 0


def test_threshold_zero_exits_everyone_first_and_one_keeps_everyone():
    p = hand_profile()
    assert p.at("max_prob", 0.0).exit_counts.tolist() == [4, 0, 0]
    assert p.at("max_prob", 1.0).exit_counts.tolist() == [0, 0, 4]
    assert p.at("max_prob", 1.0).savings == pytest.approx(1 - 6 / 5)  # heads cost more than the plain model


def test_sweep_matches_single_points():
    p = hand_profile()
    for name in ("max_prob", "entropy", "margin", "patience", "fixed"):
        sw = p.sweep(name)
        for i in range(0, len(sw.thresholds), max(1, len(sw.thresholds) // 17)):
            point = p.at(name, sw.thresholds[i])
            assert sw.accuracy[i] == pytest.approx(point.accuracy)
            assert sw.mean_cost[i] == pytest.approx(point.mean_cost)


def test_oracle_is_an_upper_bound():
    p = hand_profile()
    oracle = p.at("oracle", 0.5)
    assert oracle.accuracy == pytest.approx(1.0)
    assert oracle.mean_cost <= p.at("max_prob", 0.9).mean_cost
    assert p.exit_index("oracle", 0.5).tolist() == [0, 0, 0, 1]


def test_oracle_bound_is_the_cheapest_choice_within_the_loss_as_brute_force_finds_it():
    rng = np.random.default_rng(1)
    N, K = 5, 3
    cost = np.array([1.0, 2.5, 3.0])
    for _ in range(20):
        errors = rng.integers(0, 6, (N, K)).astype(np.float32)  # edit distances, as a CTC profile holds
        totals = np.full(N, 8.0, np.float32)
        p = ExitProfile(np.zeros((N, K), str), errors, totals, cost, 3.0, list("abc"), kind="ctc")
        for max_drop in (0.0, 0.05, 0.2):
            allowed = errors[:, -1].sum() + max_drop * totals.sum()
            cheapest = min(cost[list(e)].sum() for e in itertools.product(range(K), repeat=N)
                           if errors[np.arange(N), list(e)].sum() <= allowed + 1e-6)
            bound = p.oracle_bound(max_drop)
            assert bound.mean_cost * N == pytest.approx(cheapest)
            assert bound.accuracy >= p.final_accuracy - max_drop - 1e-6
            assert bound.exit_counts.sum() == N


def test_oracle_bound_saves_at_least_what_any_criterion_saves_at_the_same_loss():
    p = synthetic_profile(samples=2_000, exits=4)
    bound = p.oracle_bound(0.01)
    for criterion in ("max_prob", "entropy", "margin"):
        assert bound.mean_cost <= p.calibrate(criterion, max_drop=0.01).mean_cost + 1e-9
    assert bound.mean_cost < p.cost[-1]  # and here it saves something
    with pytest.raises(ValueError, match="whole errors"):
        ExitProfile(p.predictions, p.errors * 0.5, p.totals, p.cost, p.full_cost, p.exit_names).oracle_bound(0.01)
    with pytest.raises(ValueError, match=r"fraction in \[0, 1\]"):
        p.oracle_bound(float("nan"))
    with pytest.raises(ValueError, match="at most .* cells"):  # refused at once, not minutes of table-filling
        synthetic_profile(samples=200_000, exits=2).oracle_bound(0.5)


def test_pareto_keeps_only_undominated_points():
    p = hand_profile()
    sw = p.sweep("max_prob")
    mask = sw.pareto_mask()
    for i in np.flatnonzero(mask):
        dominated = (sw.mean_cost <= sw.mean_cost[i]) & (sw.accuracy > sw.accuracy[i])
        assert not dominated.any()


def test_calibrate_to_accuracy_drop_and_budget():
    p = hand_profile()
    exact = p.calibrate("max_prob", max_drop=0.0)
    assert exact.accuracy == pytest.approx(1.0)
    sw = p.sweep("max_prob")
    assert exact.mean_cost == pytest.approx(sw.mean_cost[sw.accuracy >= 1.0].min())
    cheap = p.calibrate("max_prob", max_drop=0.25)
    assert cheap.mean_cost == pytest.approx(1.0) and cheap.accuracy == pytest.approx(0.75)
    within = p.calibrate("max_prob", budget=0.6)  # mean cost <= 3
    assert within.mean_cost <= 3.0 and within.accuracy == pytest.approx(sw.accuracy[sw.mean_cost <= 3].max())
    with pytest.raises(ValueError, match="exactly one"):
        p.calibrate("max_prob")
    with pytest.raises(ValueError, match="cheapest"):
        p.calibrate("max_prob", budget=0.1)


def test_brute_force_agreement_on_random_profile():
    rng = np.random.default_rng(0)
    K, N, C = 4, 500, 7
    logits = rng.normal(size=(K, N, C)).astype(np.float32) * 3
    labels = rng.integers(0, C, N)
    preds = logits.argmax(-1).T
    p = ExitProfile(preds, (preds != labels[:, None]).astype(np.float32), np.ones(N, np.float32),
                    np.array([1.0, 2, 3, 4]), 3.5, list("abcd"), logits=logits, labels=labels)
    probs = torch.from_numpy(logits).softmax(-1).numpy()
    for t in (0.3, 0.5, 0.8):
        expected = []
        for n in range(N):  # the slow, obvious loop
            k = next((k for k in range(K) if probs[k, n].max() >= t), K - 1)
            expected.append(k)
        assert p.exit_index("max_prob", t).tolist() == expected


def test_save_load_round_trip_without_pickle(tmp_path):
    p = hand_profile()
    path = p.save(tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as f:  # loads with pickle disabled
        assert "logits" in f.files
    q = ExitProfile.load(path)
    assert q.exit_names == p.exit_names and q.full_cost == p.full_cost
    assert q.at("entropy", 0.5).accuracy == p.at("entropy", 0.5).accuracy
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not an eekit exit profile"):
        ExitProfile.load(tmp_path / "bad.npz")


def test_bad_input_is_rejected_with_reasons():
    p = hand_profile()
    with pytest.raises(ValueError, match="valid criteria"):
        p.at("certainty", 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        p.at("max_prob", -0.1)
    with pytest.raises(ValueError, match="3-exit model"):
        p.at("fixed", 3)
    with pytest.raises(ValueError, match="inconsistent"):
        ExitProfile(p.predictions, p.errors, p.totals[:3], p.cost, 5.0, ["a", "b", "c"])


def test_the_criterion_is_resolved_once_at_the_public_boundary(monkeypatch):
    """calibrate, sweep and at look the criterion up once and pass the Criterion inward (no repeated lookups)."""
    import eekit.profile as profile_module
    from helpers import synthetic_profile

    calls = []
    real = profile_module.get_criterion
    monkeypatch.setattr(profile_module, "get_criterion", lambda *a, **k: calls.append(a) or real(*a, **k))
    profile = synthetic_profile(samples=500)
    for run in (lambda: profile.calibrate("max_prob", max_drop=0.01), lambda: profile.sweep("entropy"),
                lambda: profile.at("margin", 0.5), lambda: profile.calibrate("patience", budget=0.8)):
        calls.clear()
        run()
        assert len(calls) == 1


def test_taking_rows_or_joining_profiles_keeps_each_samples_reference():
    """A CTC profile's ``labels`` are its references (word error rates and speaker intervals read them)."""
    profile = ExitProfile(predictions=np.array([["A", "AB"], ["C", "CD"], ["E", "EF"]]), errors=np.ones((3, 2)),
                          totals=np.full(3, 2.0), cost=np.array([1.0, 2.0]), full_cost=2.0, exit_names=["0", "1"],
                          kind="ctc", labels=np.array(["AB", "CD", "EF"]), scores={"ctc_entropy": np.zeros((3, 2))},
                          cost_unit="layers")
    assert profile.rows(slice(1, None)).labels.tolist() == ["CD", "EF"]
    joined = ExitProfile.concat([profile.rows(slice(2, None)), profile.rows(slice(0, 1))])
    assert joined.labels.tolist() == ["EF", "AB"] and joined.predictions[:, 1].tolist() == ["EF", "AB"]
    without = ExitProfile.concat([profile, ExitProfile(**{**profile.__dict__, "labels": None})])
    assert without.labels is None  # a part without references: none for the whole, never misaligned
