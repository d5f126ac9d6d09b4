"""Speech track: connected-digit data, noise mixing, the early-exit conformer, CTC decoding and profiles."""

import numpy as np
import pytest
import torch

from eekit import data
from eekit.evaluate import greedy_ctc, profile_speech
from eekit.models.speech import SpeechEarlyExit, conformer_ctc, conformer_kws


@pytest.fixture(scope="module")
def strings():
    return data.load_digit_strings("test", count=40)


def test_connected_digits_are_deterministic_one_speaker_and_1_to_5_digits(strings):
    again = data.load_digit_strings("test", count=40)
    assert again.labels == strings.labels
    assert all(torch.equal(a, b) for a, b in zip(again.waveforms, strings.waveforms))
    assert {len(t) for t in strings.labels} <= set(range(1, 6)) and len({len(t) for t in strings.labels}) > 2
    assert all(t.isdigit() for t in strings.labels)
    assert data.HELD_OUT_SPEAKER not in set(strings.speakers)
    held = data.load_digit_strings("held_out", count=10)
    assert set(held.speakers) == {data.HELD_OUT_SPEAKER}
    # an utterance is at least its digits (>= 0.1 s each once trimmed) plus two gaps of >= 50 ms
    for wave, text in zip(strings.waveforms, strings.labels):
        assert len(wave) >= 8000 * (0.1 * len(text) + 0.1)
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_digit_strings("dev")


def test_trim_silence_cuts_quiet_edges_only():
    tone = torch.sin(torch.arange(4000) * 0.3)
    wave = torch.cat([torch.zeros(2000), tone, torch.zeros(3000)])
    trimmed = data.trim_silence(wave)
    assert 4000 <= len(trimmed) <= 4000 + 2 * 160 + 160  # the tone, 20 ms padding each side, one frame of slack


def test_noise_is_mixed_at_the_requested_snr(strings):
    clean = strings.waveforms[0]
    for snr in (20.0, 5.0, 0.0):
        noisy = strings.with_noise(snr, "white_noise").waveforms[0]
        noise = noisy - clean
        measured = 10 * torch.log10(clean.pow(2).sum() / noise.pow(2).sum())
        assert float(measured) == pytest.approx(snr, abs=0.01)
    assert strings.with_noise(None) is strings


def test_collate_pads_and_shifts_digits_past_the_blank(strings):
    # static on the class, as lessons call it, and the same through a set
    waves, lengths, targets, target_lengths = data.DigitStrings.collate([strings[0], strings[1]])
    assert all(torch.equal(a, b) for a, b in zip((waves, lengths, targets, target_lengths),
                                                strings.collate([strings[0], strings[1]])))
    assert waves.shape == (2, int(lengths.max()))
    assert targets.tolist() == [int(c) + 1 for c in strings.labels[0] + strings.labels[1]]
    assert target_lengths.tolist() == [len(strings.labels[0]), len(strings.labels[1])]


def test_greedy_ctc_collapses_repeats_and_drops_blanks():
    path = [0, 3, 3, 0, 3, 1, 1, 0, 0, 10]  # blank, '2','2', blank, '2', '0','0', blank, blank, '9'
    log_probs = torch.full((len(path) + 2, 11), -10.0)
    log_probs[torch.arange(len(path)), torch.tensor(path)] = 0.0
    assert greedy_ctc(log_probs, len(path)) == "2209"
    assert greedy_ctc(log_probs, 3) == "2"


def test_conformer_exits_shapes_forward_to_and_bad_input(strings):
    torch.manual_seed(0)
    model = conformer_ctc().eval()
    waves, lengths, _, _ = strings.collate([strings[0], strings[1]])
    outputs, frames = model(waves, lengths)
    assert len(outputs) == 6 and outputs[0].shape[:2] == (2, int(frames.max())) and outputs[0].shape[2] == 11
    assert torch.allclose(outputs[0].exp().sum(-1), torch.ones(2, outputs[0].shape[1]), atol=1e-5)
    assert torch.allclose(model.forward_to(waves, lengths, 2), outputs[2], atol=1e-5)
    # padding does not change an utterance's outputs
    alone, alone_frames = model(waves[:1, : int(lengths[0])], lengths[:1])
    n = int(alone_frames[0])
    assert torch.allclose(alone[5][0, :n], outputs[5][0, :n], atol=1e-4)
    with pytest.raises(ValueError, match=r"expected waveforms \[B, samples\]"):
        model(waves[0], lengths[:1])
    with pytest.raises(ValueError, match="task must be"):
        SpeechEarlyExit(task="asr")
    kws = conformer_kws().eval()
    logits, _ = kws(waves, lengths)
    assert len(logits) == 6 and logits[0].shape == (2, 10)


def test_profile_speech_counts_digit_edits(strings):
    torch.manual_seed(0)
    model = conformer_ctc()
    small = strings.subset(8)
    profile = profile_speech(model, small, batch_size=4)
    assert profile.kind == "ctc" and profile.cost_unit == "layers" and profile.full_cost == 6
    assert profile.totals.tolist() == [len(t) for t in small.labels]
    import torchaudio.functional as AF
    for n in range(8):
        for k in range(6):
            assert profile.errors[n, k] == AF.edit_distance(list(small.labels[n]), list(profile.predictions[n, k]))
    for name in ("ctc_entropy", "ctc_posterior", "ctc_batch_entropy"):
        assert profile.scores_for(name).shape == (8, 6)
    batch_scores = profile.scores_for("ctc_batch_entropy")
    assert np.allclose(batch_scores[:4], batch_scores[0])  # DAISY: one score per batch of 4


def test_noise_explorer_reuses_the_lessons_noise_runs_and_the_cards_operating_point(monkeypatch):
    from helpers import small_noise_runs

    from eekit.widgets import NoiseExplorer
    from eekit.zoo import SNR_LEVELS, load_card, noisy_profile, noisy_run, operating_point

    runs = small_noise_runs(monkeypatch, 30)
    profiles = {snr: noisy_profile("speech-fsdd", snr) for snr in SNR_LEVELS if snr is not None}  # as lesson 21 does
    assert len(runs) == len(profiles)
    explorer = NoiseExplorer("speech-fsdd", snrs=SNR_LEVELS)
    assert len(runs) == len(profiles)  # the dashboard ran the model on nothing the lesson had run
    assert explorer.set(snr_db=10) is profiles[10] is noisy_run("speech-fsdd", 10.0, None)[1]
    explorer.set(noise="white_noise", snr_db=0)
    assert len(runs) == len(profiles) + 4 and {r["noise"] for r in runs[-4:]} == {"white_noise"}
    # the default threshold is the card's operating point of the criterion shown, never another criterion's
    assert explorer.threshold == load_card("speech-fsdd")["early_exit"]["threshold"]
    other = NoiseExplorer("speech-fsdd", criterion="ctc_posterior", snrs=(None, 10))
    assert other.threshold == operating_point("speech-fsdd", "ctc_posterior").threshold
    assert len(runs) == len(profiles) + 4


@pytest.mark.slow  # runs a model over a data set or a dashboard over every control
def test_noise_explorer_every_control_keeps_a_consistent_readout():
    from eekit.widgets import NoiseExplorer

    explorer = NoiseExplorer("speech-fsdd", snrs=(None, 10, 0))
    assert explorer.summary().startswith("clean: mean exit layer")
    rng = np.random.default_rng(0)
    noises = [v for _, v in explorer.noise_dropdown.options]
    for noise in noises:
        for snr in (None, 0, [None, 10, 0][rng.integers(3)]):
            profile = explorer.set(noise=noise, snr_db=snr)
            assert explorer.error is None and profile is not None
            point = profile.at(explorer.criterion, explorer.threshold)
            assert point.exit_counts.sum() == profile.num_samples == 300
            assert sum(explorer.histogram.data[0].y) == pytest.approx(100)
            assert 1 <= point.mean_exit + 1 <= 6 and f"mean exit layer {point.mean_exit + 1:.2f}" in explorer.readout.value
            assert explorer.curve.data[1].y == (point.mean_exit + 1,)
    # noisier means deeper, for every noise type (DAISY), at the card's threshold
    for noise in noises:
        assert explorer.mean_exit_layer(noise, 0) > explorer.mean_exit_layer(noise, None)
    with pytest.raises(ValueError, match="not on the slider"):
        explorer.set(snr_db=7)
