"""The self-supervised encoder (HuBERT's two iterations in miniature) and DAISY's label-free exit signal.

The first half checks the mechanism on small inputs (units at the encoder's frame rate, k-means, span masking,
the encoder's weights fitting the speech models, the ``ssl_entropy`` criteria, the Speech Commands speaker split).
The second half reads the shipped card and profiles (fast, no retraining) and pins issue 14's findings: where a
target of the issue was not reached, the test pins what was measured and says so.
"""

import json

import numpy as np
import pytest
import torch

from eekit import data
from eekit.criteria import CRITERIA, get_criterion, normalized_entropy
from eekit.models.speech import conformer_ctc, conformer_kws
from eekit.models.ssl import MaskedUnitEncoder, span_mask
from eekit.units import NO_UNIT, UnitCodebook, encoder_frames, kmeans, mfcc_frames, speech_frames

# ----------------------------------------------------------------------------------------------- mechanism


@pytest.mark.parametrize("samples", [8000, 7999, 3127, 2001, 1200])
def test_units_come_at_exactly_the_encoders_frame_rate(samples):
    wave = torch.randn(samples) * 0.1
    model = MaskedUnitEncoder().eval()
    with torch.no_grad():
        _, frames = model(wave[None], torch.tensor([samples]))
    feats = mfcc_frames(wave)
    assert feats.shape == (int(frames[0]), 39) == (encoder_frames(samples), 39)
    assert torch.equal(encoder_frames(torch.tensor([samples])), frames)  # elementwise on a batch's lengths


def test_kmeans_is_seeded_and_finds_separated_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + torch.randn(200, 2, generator=gen) for c in centres])
    a, b = kmeans(x, 3, seed=1), kmeans(x, 3, seed=1)
    assert torch.equal(a, b)
    assert torch.cdist(centres, a).min(1).values.max() < 0.5  # every true centre found
    with pytest.raises(ValueError, match="at least k=5 rows"):
        kmeans(x[:4], 5)


def test_codebook_round_trips_and_assigns_one_unit_per_frame():
    waves = [torch.randn(8000) * 0.1 for _ in range(4)]
    book = UnitCodebook.fit(waves, num_units=8, iters=5)
    again = UnitCodebook.from_state_dict(book.state_dict())
    units = again.units(waves[0])
    assert units.shape == (26,) and units.max() < 8 and torch.equal(units, book.units(waves[0]))
    for i in range(len(waves)):  # CMVN: a clip's units do not depend on its loudness (the encoder's input cannot)
        assert torch.equal(book.units(waves[i] * 3.0), book.units(waves[i]))


def test_speech_frames_find_a_word_in_a_quiet_room_and_nothing_in_steady_noise():
    gen = torch.Generator().manual_seed(0)
    room = torch.randn(8000, generator=gen) * 1e-3  # one second at -60 dB
    word = room.clone()
    word[3000:6000] += 0.3 * torch.sin(torch.arange(3000) * 0.3)  # 375 ms of a loud tone: frames 9-18
    found = speech_frames(word)
    assert found.shape == (encoder_frames(8000),)
    assert found[10:18].all() and not found[:8].any() and not found[20:].any()
    assert found.sum() <= 11  # the word, its two edge frames at most
    assert not speech_frames(room).any()  # steady noise never rises 6 dB above its own floor
    with pytest.raises(ValueError, match="wave"):
        speech_frames(torch.zeros(2, 100))


def test_a_speech_only_codebook_gives_silence_no_unit_and_clusters_only_speech():
    gen = torch.Generator().manual_seed(0)
    waves = []
    for i in range(6):
        w = torch.randn(8000, generator=gen) * 1e-3
        w[2000 + 100 * i : 6000] += 0.2 * torch.randn(4000 - 100 * i, generator=gen)
        waves.append(w)
    book = UnitCodebook.fit(waves, num_units=4, iters=5, speech_only=True)
    units = book.units(waves[0])
    speech = speech_frames(waves[0])
    assert (units[~speech] == NO_UNIT).all() and (units[speech] >= 0).all() and 0 < speech.sum() < len(units)
    assert "speech frames only" in book.targets
    again = UnitCodebook.from_state_dict(book.state_dict())
    assert again.speech_only and torch.equal(again.units(waves[0]), units)
    everything = UnitCodebook.fit(waves, num_units=4, iters=5)
    assert (everything.units(waves[0]) >= 0).all()  # the default codebook names every frame


def test_iteration_two_codebook_clusters_a_teacher_layer_and_carries_the_teacher():
    torch.manual_seed(0)
    teacher = MaskedUnitEncoder().eval()
    waves = [torch.randn(n) * 0.1 for n in (8000, 5000, 3127)]
    book = UnitCodebook.fit(waves, num_units=6, iters=5, teacher=teacher, teacher_layer=4)
    assert book.features(waves[2]).shape == (encoder_frames(3127), 64) and "layer 4" in book.targets
    with torch.no_grad():
        hidden, _ = teacher.hidden(waves[0][None], torch.tensor([8000]))
    assert torch.equal(book.features(waves[0]), hidden[3][0])
    again = UnitCodebook.from_state_dict(book.state_dict())  # a fresh teacher built from the saved weights
    assert again.teacher is not teacher and all(torch.equal(again.units(w), book.units(w)) for w in waves)
    with pytest.raises(ValueError, match="both teacher and teacher_layer"):
        UnitCodebook.fit(waves, 6, teacher=teacher)
    with pytest.raises(ValueError, match="teacher_layer must be 1..6"):
        UnitCodebook.fit(waves, 6, teacher=teacher, teacher_layer=7)


def test_a_tiny_pretraining_run_learns_resumes_and_feeds_daisys_heads(tmp_path, monkeypatch):
    from eekit.ssl import daisy
    from eekit.ssl import pretraining as ssl

    gen = torch.Generator().manual_seed(0)
    waves = []
    for i in range(6):  # a quiet room with a noisy "word" in the middle
        w = torch.randn(4000 + 500 * i, generator=gen) * 1e-3
        w[1000:3000] += 0.2 * torch.randn(2000, generator=gen) * torch.linspace(0.2, 1.0, 2000)
        waves.append(w)
    config = ssl.PretrainConfig(num_units=4, kmeans_iters=3, epochs=2, batch_size=3, iterations=1)
    resume = tmp_path / "tiny.iter1.resume.pt"
    model, book, log = ssl._pretrain_iteration(waves, None, 1, resume, config, progress=False)
    assert book.speech_only and [e["epoch"] for e in log["epochs"]] == [1, 2]
    assert all(np.isfinite(e["loss"]) for e in log["epochs"])
    clips = ssl.UnitClips(waves, [book.units(w) for w in waves])
    assert all((u == NO_UNIT).any() and (u >= 0).any() for u in clips.units)  # silence has no unit
    accuracy = ssl.masked_unit_accuracy(model, clips, config)
    assert 0.0 <= accuracy <= 1.0
    again, _, log2 = ssl._pretrain_iteration(waves, None, 1, resume, config, progress=False)  # finished: no training
    assert log2["epochs"] == log["epochs"]
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
    with pytest.raises(ValueError, match="another configuration"):
        ssl._pretrain_iteration(waves, None, 1, resume, ssl.PretrainConfig(num_units=4, epochs=3), progress=False)
    # step 4, utterance mixing: the same encoder trains on, resumes, and a finished phase trains no more
    mixing_config = ssl.PretrainConfig(num_units=4, kmeans_iters=3, epochs=2, batch_size=3, iterations=1,
                                       mix_epochs=2)
    mixed = ssl._pretrain_iteration(waves, None, 1, tmp_path / "mix.iter1.resume.pt", mixing_config, False)[0]
    start = {k: v.clone() for k, v in mixed.state_dict().items()}
    phase = ssl._mixing_phase(mixed, clips, tmp_path / "tiny.mix.resume.pt", mixing_config, progress=False)
    assert [e["epoch"] for e in phase["epochs"]] == [1, 2] and phase["snr_db"] == [-5.0, 20.0]
    assert any(not torch.equal(start[k], v) for k, v in mixed.state_dict().items())
    resumed = ssl._pretrain_iteration(waves, None, 1, tmp_path / "mix.iter1.resume.pt", mixing_config, False)[0]
    assert ssl._mixing_phase(resumed, clips, tmp_path / "tiny.mix.resume.pt", mixing_config, False)["epochs"] == \
        phase["epochs"]
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), mixed.state_dict().values()))
    # killed in the middle (at the first batch of epoch 2), then rerun: the same weights as the uninterrupted phase
    mix_batch, calls = ssl.UtteranceMixer.__call__, []

    def crash_in_epoch_2(self, batch):
        calls.append(1)
        if len(calls) == 3:  # 6 clips in batches of 3: two batches per epoch
            raise KeyboardInterrupt
        return mix_batch(self, batch)

    cut = tmp_path / "cut.mix.resume.pt"
    with monkeypatch.context() as patch:
        patch.setattr(ssl.UtteranceMixer, "__call__", crash_in_epoch_2)
        with pytest.raises(KeyboardInterrupt):
            ssl._mixing_phase(ssl._pretrain_iteration(waves, None, 1, tmp_path / "mix.iter1.resume.pt",
                                                      mixing_config, False)[0], clips, cut, mixing_config, False)
    torch.manual_seed(123)  # a new process: whatever the global generator holds, the checkpoint restores it
    rerun = ssl._pretrain_iteration(waves, None, 1, tmp_path / "mix.iter1.resume.pt", mixing_config, False)[0]
    again = ssl._mixing_phase(rerun, clips, cut, mixing_config, False)
    assert [e["loss"] for e in again["epochs"]] == [e["loss"] for e in phase["epochs"]]
    assert all(torch.equal(a, b) for a, b in zip(rerun.state_dict().values(), mixed.state_dict().values()))
    twin = ssl.build_encoder(4)
    assert len(daisy.fit_unit_head(twin, clips, epochs=2)) == 2
    losses = daisy.fit_exit_heads(model, clips, epochs=2)
    assert len(losses) == model.num_exits and all(np.isfinite(x).all() for x in losses)


def test_utterance_mixing_overlays_another_clip_at_the_drawn_snr_and_keeps_the_targets():
    from eekit.ssl import pretraining as ssl

    gen = torch.Generator().manual_seed(1)
    waves = [torch.randn(800, generator=gen), torch.randn(600, generator=gen), torch.randn(1000, generator=gen)]
    units = [torch.zeros(3, dtype=torch.long)] * 3
    batch = ssl.UnitClips.collate(list(zip(waves, units)))
    config = ssl.PretrainConfig(mix_prob=1.0, mix_snr_db=(6.0, 6.0))
    mixed, lengths, targets = ssl.UtteranceMixer(waves, config, seed=0)(batch)
    assert torch.equal(targets, batch[2]) and torch.equal(lengths, batch[1])
    for i, n in enumerate(lengths.tolist()):
        added = mixed[i, :n] - batch[0][i, :n]
        snr = 10 * torch.log10(batch[0][i, :n].pow(2).sum() / added.pow(2).sum())
        assert float(snr) == pytest.approx(6.0, abs=1e-3)  # every clip mixed (prob 1) at exactly 6 dB
        assert not mixed[i, n:].any()  # padding stays silent
    untouched = ssl.UtteranceMixer(waves, ssl.PretrainConfig(mix_prob=0.0), seed=0)(batch)[0]
    assert torch.equal(untouched, batch[0])
    for bad in (dict(mix_prob=1.5), dict(mix_snr_db=(10.0, 0.0)), dict(mix_epochs=-1)):
        with pytest.raises(ValueError, match="mix_epochs >= 0"):
            ssl.PretrainConfig(**bad)


def test_span_masks_cover_about_half_of_the_valid_frames_and_never_padding():
    frames = torch.tensor([26, 12, 3])
    gen = torch.Generator().manual_seed(0)
    fractions = []
    for _ in range(50):
        mask = span_mask(frames, 26, 0.8, 5, gen)
        assert mask.shape == (3, 26) and mask.any(1).all()
        assert not mask[1, 12:].any() and not mask[2, 3:].any()
        fractions.append(mask[0].float().mean().item())
    assert 0.4 < np.mean(fractions) < 0.75
    with pytest.raises(ValueError, match="mask_prob"):
        span_mask(frames, 26, 0.0)


def test_the_ssl_encoder_drops_into_the_speech_models_unchanged():
    ssl = MaskedUnitEncoder()
    for model in (conformer_ctc(), conformer_kws()):
        ssl.load_into(model)
        state = model.state_dict()
        for key, value in ssl.encoder_state().items():
            assert torch.equal(state[key], value), key
    assert {k.split(".")[0] for k in ssl.encoder_state()} == {"frontend", "subsample", "layers"}


def test_mask_embedding_replaces_masked_frames_only():
    model = MaskedUnitEncoder().eval()
    waves, lengths = torch.randn(2, 8000) * 0.1, torch.tensor([8000, 4000])
    mask = torch.zeros(2, 26, dtype=torch.bool)
    mask[:, 20:] = True  # utterance 0 only: frames 20.. are past utterance 1's 13 frames
    with torch.no_grad():
        plain, _ = model.hidden(waves, lengths)
        masked, _ = model.hidden(waves, lengths, mask)
    assert not torch.allclose(plain[-1][0], masked[-1][0])
    with pytest.raises(ValueError, match="mask must be"):
        model.hidden(waves, lengths, mask[:, :5])


def test_ssl_entropy_is_the_mean_normalized_unit_entropy_over_valid_frames():
    torch.manual_seed(0)
    log_probs = torch.randn(6, 4, 26, 100).mul(3).log_softmax(-1)
    lengths = torch.tensor([26, 20, 7, 1])
    got = get_criterion("ssl_entropy", "units").scores(log_probs, lengths=lengths)
    for k in range(6):
        for n, T in enumerate(lengths.tolist()):
            assert torch.isclose(got[k, n], normalized_entropy(log_probs[k, n, :T]).mean(), atol=1e-6)
    batch = CRITERIA["ssl_batch_entropy"].scores(log_probs, lengths=lengths)
    ent = normalized_entropy(log_probs)
    for k in range(6):
        want = torch.cat([ent[k, n, :T] for n, T in enumerate(lengths.tolist())]).mean()
        assert torch.allclose(batch[k], want.expand(4), atol=1e-6)
    assert CRITERIA["ssl_batch_entropy"].batch_wide and not CRITERIA["ssl_entropy"].higher_is_confident
    with pytest.raises(ValueError, match="for units use one of"):
        get_criterion("ctc_entropy", "units")


def test_speech_commands_split_is_by_speaker_and_keeps_the_digit_voices_unseen():
    train, test = data.speech_commands_speakers("train"), data.speech_commands_speakers("test")
    assert len(train) == 97 and len(test) == 142 and not set(train) & set(test)
    digits = data.load_speech_commands("digits")
    assert len(digits) == 240 and len(set(digits.speakers)) == 118
    assert set(digits.speakers) <= set(test)
    assert digits.classes == data.SC_DIGITS and digits.labels.tolist() == [
        data.SC_DIGITS.index(w) for w in digits.words]
    kws = data.load_speech_commands("train", data.SC_COMMANDS)
    assert set(kws.words) == set(data.SC_COMMANDS) and set(kws.speakers) <= set(train)
    assert all(len(w) == 8000 for w in kws.waveforms[:50])
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_speech_commands("dev")
    with pytest.raises(ValueError, match="unknown Speech Commands word"):
        data.load_speech_commands("train", ["yes", "banana"])


# ------------------------------------------------------------------------------- shipped results (issue 14)


@pytest.fixture(scope="module")
def numbers():
    from eekit.daisy import report

    return report()


@pytest.fixture(scope="module")
def card():
    return json.loads(data.data_path("checkpoints/ssl-hubert.json").read_text())


def test_shipped_encoder_loads_verified_and_fits_the_ctc_model():
    from eekit.ssl import load_encoder

    model, codebook = load_encoder("ssl-hubert")
    twin, twin_book = load_encoder("ssl-hubert-random")
    assert codebook.num_units == 100 and torch.equal(codebook.centroids, twin_book.centroids)
    ctc = model.load_into(conformer_ctc())
    assert torch.equal(ctc.layers[0].ffn1.sequential[1].weight, model.layers[0].ffn1.sequential[1].weight)
    # the twin is the pretraining start: same seed-fixed init, different from the pretrained weights
    assert not torch.equal(model.layers[3].self_attn.in_proj_weight, twin.layers[3].self_attn.in_proj_weight)
    from eekit.ssl import build_encoder

    init = build_encoder()
    assert all(torch.equal(v, init.encoder_state()[k]) for k, v in twin.encoder_state().items())


def test_card_lists_who_was_heard_and_no_test_speaker_is_among_them(card):
    heard = card["heard"]
    assert len(heard["speech_commands_speakers"]) == 97
    assert not set(heard["speech_commands_speakers"]) & set(data.speech_commands_speakers("test"))
    assert data.HELD_OUT_SPEAKER not in heard["fsdd_speakers"] and heard["fsdd_takes"] == "5-49"
    config, iterations = card["pretraining"]["config"], card["pretraining"]["iterations"]
    assert [it["iteration"] for it in iterations] == [1, 2] == list(range(1, config["iterations"] + 1))
    assert config["speech_only"]
    assert iterations[0]["targets"] == "k-means on MFCC + deltas, speech frames only"
    assert iterations[1]["targets"] == (f"k-means on layer {config['teacher_layer']} of the iteration-1 encoder, "
                                        "speech frames only")
    assert all(len(it["epochs"]) == config["epochs"] for it in iterations)
    mixing = card["pretraining"]["mixing"]  # step 4: utterance mixing on the corpus' own clips, no noise recording
    assert len(mixing["epochs"]) == config["mix_epochs"] == 3 and mixing["interference"].startswith("another clip")
    assert card["masked_unit_accuracy"]["ssl-hubert"] == mixing["held_out_masked_accuracy"]


def test_report_has_the_issues_keys(numbers):
    for key in ("masked_unit_accuracy", "masked_unit_accuracy_random", "entropy_by_layer", "entropy_by_layer_random",
                "mean_exit_layer_by_snr", "mean_exit_layer_by_snr_batch", "threshold", "tasks", "layers_saved_clean"):
        assert key in numbers, key
    assert list(numbers["mean_exit_layer_by_snr"]) == ["clean", "20", "10", "5", "0"]
    assert list(numbers["mean_exit_layer_by_snr_batch"]) == ["clean", "20", "10", "5", "0"]
    assert set(numbers["tasks"]) == {"kws", "digits", "speaker", "ctc"}
    for task, t in numbers["tasks"].items():
        assert t["metric"] == ("der" if task == "ctc" else "accuracy")
        assert {"at_exit", "at_last_layer", "random_at_last_layer"} <= set(t)
    assert len(numbers["entropy_by_layer"]) == len(numbers["entropy_by_layer_random"]) == 6


def test_ssl_learned_the_units_well_above_its_twin(numbers):
    ssl, twin = numbers["masked_unit_accuracy"], numbers["masked_unit_accuracy_random"]
    # Issue 14: >= 0.35 and >= 0.2 above the twin on held-out speech (the speech frames of unseen Speech Commands
    # speakers). Iteration 1 (MFCC units) reached only 0.13; iteration 2 (units of its layer 4) 0.43; utterance
    # mixing costs some of it (0.40: it trained on mixtures, is tested clean); the twin 0.06.
    assert ssl >= 0.35 and ssl >= twin + 0.2
    assert ssl == pytest.approx(0.4005, abs=0.005) and twin == pytest.approx(0.0626, abs=0.005)


def test_at_the_last_layer_ssl_beats_its_twin_on_every_classification_task_by_10_points(numbers):
    gains = {}
    for task, t in numbers["tasks"].items():
        gain = t["at_last_layer"] - t["random_at_last_layer"]
        gains[task] = -gain if t["metric"] == "der" else gain  # connected digits: a lower error rate is better
    assert all(gains[task] >= 0.10 for task in ("kws", "digits", "speaker", "ctc")), gains
    # speaker identity, cross-validated over its 2,574 clips (4 folds): 71.5 vs 61.4 %, 10.1 points, the narrowest
    # lead (random convolutions keep a lot of who speaks). Fold 0 alone, the earlier fixed split, gave 9.1.
    assert gains["speaker"] == pytest.approx(0.1010, abs=0.002)
    assert numbers["tasks"]["speaker"]["test_samples"] == 2574


def test_speaker_identity_is_cross_validated_so_every_clip_is_tested_by_probes_that_never_saw_it():
    from eekit import probes
    from eekit.ssl import load_ssl_profile

    train, clips = probes.task_data("speaker")
    assert train is None and clips.folds is not None and len(clips) == 2574
    assert sorted(clips.folds.unique().tolist()) == list(range(probes.SPEAKER_FOLDS))
    for s in range(len(clips.classes)):  # every speaker is in every fold, so each fold's probes know every class
        assert set(clips.folds[clips.labels == s].tolist()) == set(range(probes.SPEAKER_FOLDS))
    profile = load_ssl_profile("ssl-hubert-speaker")
    assert profile.num_samples == len(clips) and "4 folds" in profile.meta["cross_validated"]


def test_cross_validated_probes_never_answer_a_clip_they_learned_on():
    # random features, random labels: a probe answers a clip it learned on right (it memorizes 96 points in 200
    # dimensions) and any other at chance (1 in 4), so near-chance accuracy shows each fold was held out
    from eekit import probes

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 96, 200, generator=g), torch.randint(4, (96,), generator=g)
    everyone = [(x, y, torch.ones(96, dtype=torch.bool))]
    seen = probes._layer_predictions(everyone, x, 4) == y[:, None].numpy()
    held_out = probes._layer_predictions(probes._fold_splits(x, y, torch.arange(96) % 4), x, 4) == y[:, None].numpy()
    assert seen.mean() == 1.0 and held_out.mean() < 0.4, (seen.mean(), held_out.mean())


def test_unit_entropy_falls_with_depth_for_ssl_and_not_for_the_twin(numbers):
    ssl, twin = numbers["entropy_by_layer"], numbers["entropy_by_layer_random"]
    assert ssl[-1] <= 0.7 * ssl[0]
    assert all(a > b for a, b in zip(ssl, ssl[1:]))  # every layer surer than the one before
    assert max(twin) - min(twin) < 0.03  # the control: flat


def test_one_clean_threshold_saves_a_quarter_of_the_layers_and_every_task_stays_within_2_points(numbers):
    assert numbers["layers_saved_clean"] >= 0.25
    for task, t in numbers["tasks"].items():
        if t["metric"] == "accuracy":
            assert t["at_exit"] >= t["at_last_layer"] - 0.02, task
        else:
            assert t["at_exit"] <= t["at_last_layer"] + 0.02, task
        assert abs(t["at_exit"] - t["at_last_layer"]) <= 0.01, task  # the issue's aim: within 1 point
    # each task's own clips save what their speech allows: the long, clean connected FSDD digit strings hardly exit
    # early at this threshold (they are not the speech it was calibrated on)
    saved = {task: t["layers_saved_at_exit"] for task, t in numbers["tasks"].items()}
    assert saved == pytest.approx({"kws": 0.2522, "digits": 0.1132, "speaker": 0.1862, "ctc": 0.0156}, abs=0.005)


def test_daisys_noise_finding_reproduces_batch_wide_and_per_clip(numbers):
    order = ["clean", "20", "10", "5", "0"]
    per_clip = [numbers["mean_exit_layer_by_snr"][k] for k in order]
    batch = [numbers["mean_exit_layer_by_snr_batch"][k] for k in order]
    twin = [numbers["mean_exit_layer_by_snr_random"][k] for k in order]
    # DAISY (and issue 14): exits never earlier as the SNR falls, 0 dB at least a whole layer deeper than clean.
    # Batch-wide: 4.95 -> 5.5 -> 6.0 -> 6.0 -> 6.0.
    assert all(b >= a for a, b in zip(batch, batch[1:])) and batch[-1] >= batch[0] + 1
    # Per clip, every step down goes deeper: 4.46 -> 5.03 -> 5.58 -> 5.77 -> 5.88. Before utterance mixing the
    # encoder had only heard clean speech and per clip fell by 0.07 layer from 5 to 0 dB (surer of loud steady noise).
    assert all(b > a for a, b in zip(per_clip, per_clip[1:])) and per_clip[-1] >= per_clip[0] + 1
    assert per_clip == pytest.approx([4.463, 5.028, 5.581, 5.769, 5.884], abs=0.01)
    # the control: noise moves the random twin's exits too (flatter softmax), but by far less, and not steadily
    assert twin[-1] - twin[0] < 0.5 and max(twin) - twin[0] < 0.7 < per_clip[2] - per_clip[0]


@pytest.mark.slow  # mixes 320 clips for each of the 28 noisy settings (about 40 s)
def test_unit_exit_explorer_moves_with_every_control_and_refuses_unknown_settings(numbers):
    from eekit.daisy import NOISE_CHOICES, NOISY_SNRS
    from eekit.widgets.ssl import UnitExitExplorer

    explorer = UnitExitExplorer()
    assert explorer.summary().startswith("clean: pretrained: mean exit layer 4.46")
    for noise in NOISE_CHOICES:
        for snr in (None,) + NOISY_SNRS:
            profiles = explorer.set(noise, snr)
            assert explorer.error is None and set(profiles) == {"ssl-hubert", "ssl-hubert-random"}
            for bars in explorer.histogram.data:
                assert sum(bars.y) == pytest.approx(100.0)
            assert len(explorer.curve.data[0].y) == len(NOISY_SNRS) + 1
    explorer.set("all", 0)
    assert f"{numbers['mean_exit_layer_by_snr']['0']:.2f}" in explorer.summary()
    with pytest.raises(ValueError, match="noise must be one of"):
        explorer.set("traffic")
    with pytest.raises(ValueError, match="not on the slider"):
        explorer.set(snr_db=15)


def test_cli_reports_ssl_daisy_and_refuses_flags_that_do_not_apply(capsys, tmp_path):
    from eekit.__main__ import main

    assert main(["report", "ssl-daisy", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["threshold"] == pytest.approx(0.135) and printed["tasks"]["ctc"]["metric"] == "der"
    assert main(["report", "ssl-daisy", "--max-drop", "0.1"]) == 2
    assert main(["train", "ssl-hubert", "--subset", "10", "--out", str(tmp_path)]) == 2
    assert "--subset does not apply to train ssl-hubert; it takes --out, --epochs" in capsys.readouterr().err


def test_units_profiles_work_with_the_existing_sweeps_calibration_and_threshold_explorer(numbers):
    from eekit.ssl import load_ssl_profile
    from eekit.widgets import ThresholdExplorer

    kws = load_ssl_profile("ssl-hubert-kws")
    assert kws.kind == "units" and kws.criteria() == ["ssl_batch_entropy", "ssl_entropy"]
    sweep = kws.sweep("ssl_entropy")
    assert sweep.savings[0] == 0.0 and sweep.savings[-1] == pytest.approx(5 / 6)  # threshold 0: all to layer 6
    point = kws.at("ssl_entropy", numbers["threshold"])
    assert point.accuracy == pytest.approx(numbers["tasks"]["kws"]["at_exit"], abs=1e-4)
    assert kws.calibrate("ssl_entropy", max_drop=0.01).threshold == pytest.approx(
        numbers["tasks"]["kws"]["task_threshold"])
    explorer = ThresholdExplorer(kws, criterion="ssl_entropy", criteria=["ssl_entropy", "ssl_batch_entropy"])
    assert explorer.summary().startswith("ssl_entropy @")
    with pytest.raises(ValueError, match="for units use one of"):
        kws.at("ctc_entropy", 0.5)


# ------------------------------------------------------------------ does the label-free exit earn its keep?


def test_the_kits_exit_score_reads_only_speech_frames_and_a_clip_without_speech_leaves_at_layer_1():
    from eekit.daisy import NO_SPEECH_SCORE, speech_entropy, speech_mask

    torch.manual_seed(0)
    log_probs = torch.randn(6, 3, 10, 100).mul(3).log_softmax(-1)
    speech = torch.zeros(3, 10, dtype=torch.bool)
    speech[0, 2:6] = True
    speech[1, :] = True
    got = speech_entropy(log_probs, speech)  # [L, B]; clip 2 has no speech frame
    ent = normalized_entropy(log_probs)
    assert torch.allclose(got[:, 0], ent[:, 0, 2:6].mean(-1), atol=1e-6)
    assert torch.allclose(got[:, 1], ent[:, 1].mean(-1), atol=1e-6)
    assert torch.equal(got[:, 2], torch.full((6,), NO_SPEECH_SCORE)) and torch.isfinite(got).all()
    # the detector on real padded waves: a word in a quiet room has speech frames, digital silence has none
    word = data.load_speech_commands("digits").waveforms[0]
    waves = torch.nn.utils.rnn.pad_sequence([word, torch.zeros(4000)], batch_first=True)
    mask = speech_mask(waves, torch.tensor([8000, 4000]), encoder_frames(8000))
    assert mask[0].any() and not mask[1].any() and torch.equal(mask[0], speech_frames(word))


def test_a_silent_clip_gets_a_defined_exit_never_nan():
    from eekit.adaptivity import _exits, clip_scores
    from eekit.ssl import load_encoder

    model, _ = load_encoder("ssl-hubert")
    scored = clip_scores(model, [torch.zeros(8000), data.load_speech_commands("digits").waveforms[0]])
    assert np.isfinite(scored["speech"]).all() and np.isfinite(scored["agreement"]).all()
    assert (scored["speech"][0] == 0).all() and scored["speech_share"][0] == 0 and scored["speech_share"][1] > 0
    assert _exits(scored, "speech", 0.13).tolist()[0] == 1  # nothing to resolve: the first layer answers


def test_generated_noises_are_seeded_and_have_their_colours_spectral_slope():
    from eekit.adaptivity import babble_noise, colored_noise

    for color, slope in (("white", 0.0), ("pink", -10.0), ("brown", -20.0)):
        x = colored_noise(color, 80000, seed=3)
        assert torch.equal(x, colored_noise(color, 80000, seed=3)) and not torch.equal(x, colored_noise(color, 80000))
        assert x.pow(2).mean().item() == pytest.approx(1.0, abs=1e-3)
        power = torch.fft.rfft(x.double()).abs().pow(2)
        f = torch.fft.rfftfreq(80000, 1 / 8000)
        low, high = (power[(f >= lo) & (f < 2 * lo)].mean() for lo in (200, 2000))  # two octaves, a decade apart
        per_decade = 10 * torch.log10(high / low).item()
        assert per_decade == pytest.approx(slope, abs=1.5), color
    with pytest.raises(ValueError, match="unknown noise colour"):
        colored_noise("blue", 100)
    babble = babble_noise(16000, seed=1)
    assert babble.shape == (16000,) and torch.equal(babble, babble_noise(16000, seed=1))


def test_equal_cost_baselines_interpolate_depth_and_shuffle_exits():
    from eekit.adaptivity import random_same_cost, static_same_cost

    assert static_same_cost([0.5, 0.7, 0.9], 2.5) == pytest.approx(0.8)
    assert static_same_cost([0.5, 0.7, 0.9], 1) == 0.5 and static_same_cost([0.5, 0.7, 0.9], 3) == 0.9
    # utterance i is right at layer i only: exits on the diagonal score 1, any shuffle of them scores less
    errors = 1 - np.eye(4)
    exits = np.arange(4)
    shuffled = random_same_cost(errors, np.ones(4), exits, draws=200)
    assert 0 < shuffled < 0.5 and shuffled == random_same_cost(errors, np.ones(4), exits, draws=200)


def test_the_adaptivity_block_ships_with_every_key_and_matches_the_card(numbers, card):
    from eekit.adaptivity import PLACEMENTS, SNRS

    block = numbers["adaptivity"]
    assert block == card["report"]["adaptivity"]
    assert block["command"] == "python -m eekit report ssl-daisy --measure"
    for t in block["tasks"].values():
        assert {"by_layer", "at_exit", "at_static_same_cost", "at_random_same_cost", "layers_saved_at_exit"} <= set(t)
        assert len(t["by_layer"]) == 6 and set(t["daisy_all_frames"]) >= {"at_exit", "at_static_same_cost"}
    assert set(block["noise_grid"]) == {"white", "pink", "brown", "babble"} | set(data.NOISE_NAMES)
    for row in block["noise_grid"].values():
        assert list(row) == ["clean"] + [str(s) for s in SNRS]
    assert set(block["placement"]) == set(PLACEMENTS) and list(block["padding"]) == ["0", "1", "2"]
    assert set(block["transfer"]) == {"speech_commands_calibration", "speech_commands_held_out",
                                      "fsdd_unseen_takes", "padded_2s"}
    for corpus in block["transfer"].values():
        assert set(corpus) == {"layers_saved", "unit_agreement", "clips"}
    from eekit.adaptivity import load

    clips = load()["clips"]
    assert len(clips["clean"]["speech"]) == 320 and set(clips) >= {"padded_1s", "padded_2s", *PLACEMENTS}


def test_the_label_free_exits_targets_pinned_met_and_not_met(numbers):
    """The measured answers to "does the exit earn its keep?" (``python -m eekit report ssl-daisy --measure``).
    Met: speech share, placement order, unit agreement, two depth-sensitive tasks. NOT met, pinned as measured:
    adaptive vs static at equal cost, brown noise, room-tone padding, FSDD transfer."""
    a = numbers["adaptivity"]
    tasks = a["tasks"]
    # (2) at least two tasks where depth matters (best layer >= 5 points over layer 1): connected digits, clean and
    # at 10 dB. Keywords, digits and speakers are not (1.6, 4.2 and 0.04 points); at 10 dB digits, layer 1 is best.
    deep = sorted(t for t, v in tasks.items() if v["best_minus_layer_1"] >= 0.05)
    assert deep == ["ctc", "ctc-10db"]
    assert tasks["ctc"]["best_minus_layer_1"] == pytest.approx(0.1433, abs=1e-3)
    assert tasks["ctc-10db"]["best_minus_layer_1"] == pytest.approx(0.066, abs=1e-3)
    # (3) NOT met: on no depth-sensitive task does the adaptive exit beat the static exit of the same cost; on
    # connected digits it is 2 points of DER worse than static and 1 point worse than random exits.
    gains = {t: v["gain_vs_static_points"] for t, v in tasks.items()}
    assert gains == pytest.approx({"kws": 0.47, "digits": 0.0, "speaker": -0.05, "ctc": -1.98, "kws-10db": -0.38,
                                   "digits-10db": 0.83, "ctc-10db": -0.47}, abs=0.02)
    assert all(gains[t] < 1.0 for t in deep) and tasks["ctc"]["gain_vs_random_points"] == pytest.approx(-1.03, abs=0.02)
    # (1) the speech-frame score does not track the share of speech frames (target |r| <= 0.2: met; DAISY's 0.10)
    assert abs(a["speech_share_r"]) <= 0.2 and a["speech_share_r"] == pytest.approx(0.0041, abs=1e-3)
    assert a["speech_share_r_all_frames"] == pytest.approx(0.0993, abs=1e-3)
    # ... and noise on the speech sends clips deeper than the same noise in the silence (DAISY's score: the reverse)
    assert a["placement"]["speech_only"] > a["placement"]["silence_only"]
    assert a["placement_all_frames"]["speech_only"] < a["placement_all_frames"]["silence_only"]
    # NOT met: padding with the clip's own room tone moves a clip by about a layer (target < 0.5), either score
    assert a["padding"]["2"]["mean_abs_shift"] == pytest.approx(0.938, abs=0.01)
    assert a["padding"]["1"]["mean_abs_shift"] == pytest.approx(0.887, abs=0.01)
    assert a["padding_all_frames"]["2"]["mean_abs_shift"] == pytest.approx(0.963, abs=0.01)
    # (4) every noise but brown: never earlier than clean, >= 1 layer deeper at 0 dB (met for 9 of 10 noises)
    grid = a["noise_grid"]
    for noise, row in grid.items():
        deeper = all(row[s] >= row["clean"] for s in ("20", "10", "5", "0")) and row["0"] >= row["clean"] + 1
        assert deeper == (noise != "brown"), noise
    # NOT met for brown noise: exits come *earlier* the louder it gets (power nearly all below 100 Hz)
    assert [grid["brown"][s] for s in ("clean", "20", "10", "5", "0")] == pytest.approx(
        [4.359, 3.997, 3.831, 3.684, 3.653], abs=0.01)
    # (5) transfer: unit agreement >= 0.88 everywhere (met); layers saved within 10 points of the calibration
    # corpus on padded clips (met) but NOT on FSDD's unseen takes (45 % against 27 %)
    t = a["transfer"]
    assert all(v["unit_agreement"] >= 0.88 for v in t.values())
    base = t["speech_commands_calibration"]["layers_saved"]
    assert abs(t["padded_2s"]["layers_saved"] - base) <= 0.10
    assert t["fsdd_unseen_takes"]["layers_saved"] == pytest.approx(0.4528, abs=1e-3) and base == pytest.approx(
        0.2693, abs=1e-3)


def test_exit_signal_explorer_moves_with_every_control_and_refuses_bad_arguments():
    from eekit.adaptivity import load
    from eekit.widgets.ssl import ExitSignalExplorer, UnitExitExplorer, equal_cost_figure

    result = load()
    signal = ExitSignalExplorer(result=result)
    assert signal.condition() == "clean" and signal.numbers()["mean_abs_shift"] == 0
    for placement in ("speech_only", "silence_only", "everywhere"):
        n = signal.set(placement=placement)
        assert n["mean_exit_layer"] == pytest.approx(result["placement"][placement], abs=1e-3)
        assert sum(signal.histogram.data[1].y) == pytest.approx(100.0)
    n = signal.set(padding_s=2)  # padding resets the placement: the two were measured separately
    assert signal.placement.value == "none" and n["condition"] == "padded_2s"
    assert n["mean_abs_shift"] == pytest.approx(result["padding"]["2"]["mean_abs_shift"], abs=1e-3)
    signal.set(placement="silence_only")
    assert signal.padding.value == 0
    n = signal.set(score="all_frames")
    assert n["mean_exit_layer"] == pytest.approx(result["placement_all_frames"]["silence_only"], abs=1e-3)
    with pytest.raises(ValueError, match="unknown score"):
        ExitSignalExplorer(score="frames")
    with pytest.raises(ValueError, match="result must be"):
        ExitSignalExplorer(result=[1])
    with pytest.raises(ValueError, match="unknown padding_s"):
        signal.set(padding_s=3)
    fig = equal_cost_figure(result["tasks"])
    assert len(fig.data) == 3 and list(fig.data[0].y) == [t["gain_vs_static_points"] for t in result["tasks"].values()]
    with pytest.raises(ValueError, match="clip .* must be a whole number in 0..319"):
        UnitExitExplorer(clip=320)
    with pytest.raises(ValueError, match="unknown criterion"):
        UnitExitExplorer(criterion="entropy")


def test_unit_exit_explorers_snr_slider_rises_left_to_right_and_starts_clean():
    from eekit.widgets.ssl import UnitExitExplorer

    explorer = UnitExitExplorer()
    labels = [label for label, _ in explorer.snr_slider.options]
    assert labels == ["0 dB", "5 dB", "10 dB", "20 dB", "clean"] and explorer.snr_db is None
    xs = list(explorer.curve.data[0].x)
    assert xs == sorted(xs)


def test_cli_measure_applies_to_ssl_daisy_only_and_never_overwrites_without_force(capsys, tmp_path):
    from eekit.__main__ import main

    assert main(["report", "cnn-mnist", "--measure"]) == 2
    assert "--measure does not apply to report cnn-mnist" in capsys.readouterr().err
    (tmp_path / "ssl-hubert-adaptivity.json").write_text("{}")
    assert main(["report", "ssl-daisy", "--measure", "--out", str(tmp_path)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
