"""Every exit criterion on cases small enough to compute by hand."""

import math

import numpy as np
import pytest
import torch

from eekit.criteria import CRITERIA, first_exit, get_criterion, passes

LN = math.log


def logits_from_probs(*rows):
    """Logits [K=len(rows), N=1, C] whose softmax is each row."""
    return torch.tensor([[list(map(LN, r))] for r in rows], dtype=torch.float32)


def test_max_prob_entropy_margin_by_hand():
    out = logits_from_probs([0.5, 0.5], [0.75, 0.25])
    assert get_criterion("max_prob").scores(out)[:, 0].tolist() == pytest.approx([0.5, 0.75])
    assert get_criterion("margin").scores(out)[:, 0].tolist() == pytest.approx([0.0, 0.5])
    h = -(0.75 * LN(0.75) + 0.25 * LN(0.25)) / LN(2)  # 0.8113 bits
    assert get_criterion("entropy").scores(out)[:, 0].tolist() == pytest.approx([1.0, h], abs=1e-6)


def test_entropy_of_one_hot_is_zero_and_exits_below_threshold():
    out = torch.tensor([[[30.0, -30.0, -30.0]]])
    c = get_criterion("entropy")
    assert c.scores(out).item() == pytest.approx(0.0, abs=1e-6)
    assert bool(passes(c, c.scores(out), 0.05))  # entropy exits when score <= threshold


def test_patience_counts_consecutive_agreement():
    # predictions over 4 exits: 1, 1, 2, 2 -> agreement counts 0, 1, 0, 1
    out = torch.zeros(4, 1, 3)
    for k, cls in enumerate([1, 1, 2, 2]):
        out[k, 0, cls] = 5.0
    scores = get_criterion("patience").scores(out)[:, 0]
    assert scores.tolist() == [0, 1, 0, 1]
    passed = passes(get_criterion("patience"), scores[None, :], 1)
    assert int(first_exit(passed)) == 1


def test_fixed_exits_at_its_index_and_oracle_at_first_correct_exit():
    out = torch.zeros(3, 2, 2)
    out[:, 0, 1] = 1.0  # sample 0: every exit says class 1
    out[0, 1, 1], out[1, 1, 0], out[2, 1, 0] = 1.0, 1.0, 1.0  # sample 1: exit 0 says 1, later exits say 0
    fixed = get_criterion("fixed")
    assert first_exit(passes(fixed, fixed.scores(out).T, 2)).tolist() == [2, 2]
    oracle = get_criterion("oracle")
    scores = oracle.scores(out, labels=torch.tensor([1, 0])).T
    assert first_exit(passes(oracle, scores, 0.5)).tolist() == [0, 1]
    with pytest.raises(ValueError, match="upper bound"):
        oracle.scores(out)


def test_last_exit_always_answers():
    passed = np.zeros((3, 4), dtype=bool)
    passed[1, 2] = True
    assert first_exit(passed).tolist() == [3, 2, 3]
    assert first_exit(torch.from_numpy(passed)).tolist() == [3, 2, 3]


def ctc_log_probs(frames):
    p = torch.tensor(frames, dtype=torch.float64).clamp_min(1e-30)
    return p.log().float()


def test_ctc_frame_entropy_respects_lengths():
    # one exit, one utterance, frames: uniform over 2 (entropy 1), one-hot (entropy 0)
    out = ctc_log_probs([[[[0.5, 0.5], [1.0, 0.0]]]])
    c = get_criterion("ctc_entropy")
    assert c.scores(out).item() == pytest.approx(0.5, abs=1e-5)
    assert c.scores(out, lengths=torch.tensor([1])).item() == pytest.approx(1.0, abs=1e-5)


def test_ctc_posterior_averages_emitting_frames():
    # blank = 0. Frame maxima: 0.8 (label 1), 0.9 (blank), 0.6 (label 2) -> mean over emitting = 0.7
    out = ctc_log_probs([[[[0.2, 0.8, 0.0], [0.9, 0.1, 0.0], [0.3, 0.1, 0.6]]]])
    assert get_criterion("ctc_posterior").scores(out).item() == pytest.approx(0.7, abs=1e-5)
    # all-blank utterance: every valid frame counts
    blank = ctc_log_probs([[[[0.9, 0.1, 0.0], [0.7, 0.3, 0.0]]]])
    assert get_criterion("ctc_posterior").scores(blank).item() == pytest.approx(0.8, abs=1e-5)


def test_ctc_batch_entropy_is_shared_by_the_batch():
    # utterance A: frames with entropy 1, 1; utterance B: one valid frame with entropy 0 (second frame padding)
    out = ctc_log_probs([[[[0.5, 0.5], [0.5, 0.5]], [[1.0, 0.0], [0.5, 0.5]]]])
    scores = get_criterion("ctc_batch_entropy").scores(out, lengths=torch.tensor([2, 1]))
    assert scores[0].tolist() == pytest.approx([2 / 3, 2 / 3], abs=1e-5)


def test_unknown_names_and_bad_thresholds_list_what_is_valid():
    with pytest.raises(ValueError, match="valid criteria: .*max_prob"):
        get_criterion("confidence")
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        get_criterion("max_prob").check_threshold(1.5)
    with pytest.raises(ValueError, match="whole number"):
        get_criterion("patience").check_threshold(1.5)
    with pytest.raises(ValueError, match="for ctc use one of"):
        get_criterion("max_prob", kind="ctc")
    with pytest.raises(ValueError, match="expects"):
        get_criterion("max_prob").scores(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="must be in"):
        get_criterion("entropy").check_threshold(float("nan"))


def test_every_criterion_is_causal():
    """Score k must not change when later exits change: real inference only has exits 0..k."""
    torch.manual_seed(0)
    out = torch.randn(4, 16, 5)
    labels = torch.randint(0, 5, (16,))
    for name, c in CRITERIA.items():
        if c.kind != "classification":
            continue
        full = c.scores(out, labels=labels)
        for k in range(4):
            assert torch.equal(c.scores(out[: k + 1], labels=labels)[k], full[k]), name
