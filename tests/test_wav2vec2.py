"""Exits on torchaudio's wav2vec 2.0 / HuBERT / WavLM models (eekit.models.wav2vec2), built small and random with
torchaudio's own builders: no download. Real early exit must make the profile's decisions on padded batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio
from torch import nn

from eekit import data
from eekit.models.wav2vec2 import small_wav2vec2, wrap_wav2vec2
from eekit.speech_encoders import fit_unit_heads, profile_exits, train_two_stage
from eekit.runtime import infer
from eekit.train import TrainConfig


@pytest.fixture(scope="module")
def utterances():
    return data.load_digit_strings("test", count=200)  # 200 utterances of 1-5 digits: very different lengths


@pytest.fixture(scope="module")
def wrapped():
    """A 6-layer wav2vec 2.0 with exits after 3 of its layers."""
    return wrap_wav2vec2(small_wav2vec2(), [2, 4, 6], encoder_rate=8000).eval()


def _batch(dataset, n=None):
    n = len(dataset) if n is None else n
    return dataset.collate([dataset[i] for i in range(n)])[:2]


def _spread_threshold(profile, criterion):
    """A threshold at which some utterances leave at every exit (random heads score alike, so use quantiles)."""
    return float(np.quantile(profile.scores_for(criterion)[:, 0], 0.4))


def test_exits_read_the_layers_torchaudio_computes(wrapped):
    waves, lengths = _batch(data.load_digit_strings("test", count=8))
    with torch.no_grad():
        ours, frames = wrapped.hidden(waves, lengths)
        theirs, their_frames = wrapped.encoder.extract_features(waves, lengths)
    assert torch.equal(frames, their_frames)
    for layer, h in zip(wrapped.exit_after, ours):
        torch.testing.assert_close(h, theirs[layer - 1], atol=1e-5, rtol=1e-5)


def test_real_early_exit_equals_the_profile_on_200_padded_utterances(wrapped, utterances):
    profile = profile_exits(wrapped, utterances)  # batches of 16 in dataset order, each padded to its longest
    assert list(profile.cost) == [2, 4, 6] and profile.full_cost == 6
    for criterion in ("ctc_entropy", "ctc_posterior"):
        threshold = _spread_threshold(profile, criterion)
        expected = profile.exit_index(criterion, threshold)
        assert len(set(expected.tolist())) == 3, "the threshold must send utterances to every exit"
        result = infer(wrapped, _batch(utterances), criterion, threshold, batch_size=16)  # the same padded batches
        assert np.array_equal(result.exit_index.numpy(), expected)
        rows = np.arange(len(utterances))
        assert result.transcripts() == list(profile.predictions[rows, expected])


def test_one_padded_batch_of_200_exits_as_its_own_scores_say(wrapped, utterances):
    from eekit.criteria import CRITERIA, first_exit, passes

    waves, lengths = _batch(utterances)  # one batch: every utterance padded to the longest of all 200
    with torch.no_grad():
        outputs, frames = wrapped(waves, lengths)
    scores = CRITERIA["ctc_entropy"].scores(outputs, lengths=frames).T.numpy()
    threshold = float(np.quantile(scores[:, 0], 0.4))
    expected = first_exit(passes(CRITERIA["ctc_entropy"], scores, threshold))
    result = infer(wrapped, (waves, lengths), "ctc_entropy", threshold)
    assert len(set(expected.tolist())) == 3
    assert np.array_equal(result.exit_index.numpy(), expected)


def test_wavlm_takes_lengths_and_exits_as_profiled(utterances):
    encoder = small_wav2vec2(kind="wavlm")
    waves, lengths = _batch(utterances, 4)
    with pytest.raises(AssertionError):  # torchaudio's own WavLM refuses the attention mask that lengths make
        encoder.extract_features(waves, lengths)
    wrapped = wrap_wav2vec2(encoder, [1, 3, 6], encoder_rate=16000).eval()  # resamples 8 -> 16 kHz inside
    some = utterances.subset(48)
    profile = profile_exits(wrapped, some)
    threshold = _spread_threshold(profile, "ctc_entropy")
    result = infer(wrapped, _batch(some), "ctc_entropy", threshold, batch_size=16)
    assert np.array_equal(result.exit_index.numpy(), profile.exit_index("ctc_entropy", threshold))
    assert len(set(result.exit_index.tolist())) >= 2


def test_unit_heads_are_label_free_exits_scored_by_ssl_entropy(utterances):
    wrapped = wrap_wav2vec2(small_wav2vec2(), [2, 4, 6], head="units", num_classes=20, encoder_rate=8000).eval()
    losses = fit_unit_heads(wrapped, utterances.subset(64), epochs=3)
    assert len(losses) == 3 and all(loss[-1] < loss[0] for loss in losses)
    some = utterances.subset(96)
    profile = profile_exits(wrapped, some)
    assert profile.kind == "units" and set(profile.criteria()) == {"ssl_entropy", "ssl_batch_entropy"}
    threshold = _spread_threshold(profile, "ssl_entropy")
    result = infer(wrapped, _batch(some), "ssl_entropy", threshold, batch_size=16)
    assert np.array_equal(result.exit_index.numpy(), profile.exit_index("ssl_entropy", threshold))


def test_two_stage_training_freezes_the_encoder_in_stage_two(utterances):
    wrapped = wrap_wav2vec2(small_wav2vec2(num_layers=2, d_model=32), [1, 2], encoder_rate=8000)
    train_set = utterances.subset(32)
    config = TrainConfig(epochs=1, batch_size=16, lr=1e-3, optimizer="adam", weight_decay=0.0)
    before = {k: v.clone() for k, v in wrapped.state_dict().items()}
    train_two_stage(wrapped, train_set, heads=config, backbone=config, progress=False)
    after = wrapped.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("encoder.") for k in changed)  # stage one trained the encoder ...
    assert any(k.startswith("exits.0.") for k in changed)  # ... stage two the early exit
    encoder = {k: v.clone() for k, v in wrapped.state_dict().items() if k.startswith("encoder.")}
    train_two_stage(wrapped, train_set, heads=config, progress=False)  # a pretrained encoder: heads only
    assert all(torch.equal(v, wrapped.state_dict()[k]) for k, v in encoder.items())
    assert all(p.requires_grad for p in wrapped.encoder.parameters())  # trainable again afterwards


def test_the_speech_encoder_benchmark_times_every_phase():
    from eekit.bench import bench_speech_encoder

    out = bench_speech_encoder(utterances=16, epochs=1, test_utterances=16)  # tiny: the timing target is in bench
    assert set(out) == {"torch_threads", "train_utterances", "epochs", "test_utterances", "load_average", "seconds",
                        "total_seconds", "target_seconds", "target_met", "exits_as_profiled"}
    assert list(out["seconds"]) == ["wrap", "heads", "profile", "inference"]
    assert abs(sum(out["seconds"].values()) - out["total_seconds"]) <= 0.02  # phases rounded to 0.01 s each
    assert out["torch_threads"] == 1 and out["train_utterances"] == 16 and out["test_utterances"] == 16
    assert out["target_seconds"] == 120 and out["target_met"] == (out["total_seconds"] < 120)
    assert out["exits_as_profiled"] is True


# ------------------------------------------------------------------------------------------------ clear errors


def test_an_unsupported_model_kind_says_what_is_accepted():
    with pytest.raises(ValueError, match=r"encoder must be a torchaudio.models.Wav2Vec2Model.*got Conformer"):
        wrap_wav2vec2(torchaudio.models.Conformer(64, 4, 128, 2, 15), [1])
    pretrain = torchaudio.models.HuBERTPretrainModel(small_wav2vec2(), nn.Identity(), nn.Identity(), None)
    with pytest.raises(ValueError, match=r"pass its \.wav2vec2"):
        wrap_wav2vec2(pretrain, [1])


@pytest.mark.parametrize("layers", [[7], [0], [3, 2], [2, 2], [], "3", [1.5]])
def test_a_layer_out_of_range_says_which_layers_exist(layers):
    with pytest.raises(ValueError, match=r"exit_after must be a non-empty increasing list of layer numbers in 1\.\.6 "
                                         r"\(this encoder has 6 layers\)"):
        wrap_wav2vec2(small_wav2vec2(), layers)


def test_a_wrong_sample_rate_says_which_rate_the_model_takes(utterances):
    wrapped = wrap_wav2vec2(small_wav2vec2(), [2, 4, 6], sample_rate=16000)
    with pytest.raises(ValueError, match=r"dataset must be 16000 Hz audio, got 8000 Hz; resample it first .* or wrap the encoder with "
                                         r"sample_rate=8000"):
        profile_exits(wrapped, utterances)
    with pytest.raises(ValueError, match=r"sample_rate \(Hz\) of the waveforms you feed must be a whole number in"):
        wrap_wav2vec2(small_wav2vec2(), [2], sample_rate=0)


def test_lengths_that_do_not_match_the_batch_say_what_fits(wrapped):
    waves, lengths = _batch(data.load_digit_strings("test", count=4))
    for bad in (lengths[:3], torch.cat([lengths, lengths[:1]]), lengths + waves.shape[1]):
        with pytest.raises(ValueError, match=r"lengths must be 4 whole numbers in 1\.\."):
            infer(wrapped, (waves, bad), "ctc_entropy", 0.5)
        with pytest.raises(ValueError, match=r"lengths must be 4 whole numbers in 1\.\."):
            wrapped(waves, bad)
