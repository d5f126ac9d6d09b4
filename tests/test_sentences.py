"""Sentences: the LibriSpeech data (split by speaker, label budgets), the character alphabet through CTC, and the
shipped sentence models (cards agree with their profiles; the measured findings are pinned)."""

import json
import re

import numpy as np
import pytest
import torch

from eekit import data, librispeech, sentences, zoo
from eekit.__main__ import main
from eekit.evaluate import greedy_ctc
from eekit.models.speech import conformer_ctc
from eekit.profile import ExitProfile
from eekit.ssl import load_encoder
from eekit.train import train
from helpers import check_sentence_card_against


@pytest.fixture(scope="module")
def test_set():
    return librispeech.load_librispeech("test")


def test_speakers_split_into_20_train_and_8_test_voices_of_both_sexes():
    train, test = librispeech.speakers("train"), librispeech.speakers("test")
    assert len(train) == 20 and len(test) == 8 and not set(train) & set(test)
    assert sorted(train + test, key=int) == librispeech.speakers("all")
    sex = {row["speaker"]: row["sex"] for row in librispeech.manifest()}
    assert sorted(sex[s] for s in test) == ["F"] * 4 + ["M"] * 4
    with pytest.raises(ValueError, match="unknown split .dev.; known"):
        librispeech.speakers("dev")


def test_the_test_set_holds_only_test_voices_and_alphabet_text(test_set):
    assert len(test_set) > 200 and set(test_set.speakers) == set(librispeech.TEST_SPEAKERS)
    assert set("".join(test_set.labels)) <= set(librispeech.ALPHABET)
    assert test_set.sample_rate == 8000 and all(w.ndim == 1 and w.dtype == torch.float32 for w in test_set.waveforms)
    hours = sum(len(w) for w in test_set.waveforms) / 8000 / 3600
    assert 0.8 < hours < 1.0  # eight voices of about 6.5 minutes


def test_a_label_budget_keeps_every_voices_share():
    budget = librispeech.load_librispeech("train", minutes=30)
    seconds = {}
    for w, s in zip(budget.waveforms, budget.speakers):
        seconds[s] = seconds.get(s, 0) + len(w) / 8000
    assert set(seconds) == set(librispeech.speakers("train"))
    assert all(90 <= v < 90 + 18 for v in seconds.values())  # 1.5 min each, overshooting by under one sentence
    with pytest.raises(ValueError, match="minutes"):
        librispeech.load_librispeech("train", minutes=0)


def test_transcripts_encode_through_the_alphabet_and_refuse_other_characters(test_set):
    pair = test_set.select([0, 1])
    waves, lengths, targets, target_lengths = pair.collate([pair[0], pair[1]])
    text = pair.labels[0] + pair.labels[1]
    assert targets.tolist() == [librispeech.ALPHABET.index(c) + 1 for c in text]
    assert target_lengths.tolist() == [len(pair.labels[0]), len(pair.labels[1])]
    assert waves.shape == (2, int(lengths.max()))
    with pytest.raises(ValueError, match="outside the alphabet"):
        pair.encode("HELLO, WORLD")


def test_length_batches_cover_every_utterance_once_per_epoch_in_a_seeded_order(test_set):
    def epoch(seed):
        return list(test_set.length_batches(16, torch.Generator().manual_seed(seed)))

    batches = epoch(0)
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat)) == len(test_set) // 16 * 16
    lengths = [len(w) for w in test_set.waveforms]
    spread = np.mean([max(lengths[i] for i in b) / min(lengths[i] for i in b) for b in batches])
    assert spread < 1.2  # similar lengths in a batch: little padding
    assert batches == epoch(0) and batches != epoch(1)


def test_greedy_ctc_spells_with_the_models_alphabet():
    model = conformer_ctc(alphabet=librispeech.ALPHABET)
    assert model.exits[0][1].out_features == 29
    path = [0, 8, 8, 5, 0, 12, 0, 12, 15, 28, 0]  # H H E _ L _ L O ' ' _
    log_probs = torch.full((len(path), 29), -10.0)
    log_probs[torch.arange(len(path)), torch.tensor(path)] = 0.0
    assert greedy_ctc(log_probs, len(path), librispeech.ALPHABET) == "HELLO "
    with pytest.raises(ValueError, match="distinct characters"):
        conformer_ctc(alphabet="AAB")


def test_word_error_rate_counts_word_edits_over_reference_words():
    profile = ExitProfile(predictions=np.array([["THE CAT SAT", "THE CAT"], ["A DOG", "A DOG"]]),
                          errors=np.zeros((2, 2), np.float32), totals=np.ones(2, np.float32), kind="ctc",
                          labels=np.array(["THE CAT SAT", "A DOG"]), cost=np.array([1.0, 2.0]), full_cost=2.0,
                          exit_names=["layer 1", "layer 2"], cost_unit="layers")
    assert sentences.word_errors(profile).tolist() == [0.0, pytest.approx(1 / 5)]


def test_the_recipe_trains_writes_and_reloads_a_model_end_to_end(tmp_path, monkeypatch, test_set):
    """The whole ``train sentences`` path in miniature (16 training sentences, one epoch, 8 test sentences): the
    files it writes load back, the card records where it trained, and a second run refuses to overwrite."""
    full = librispeech.load_librispeech
    monkeypatch.setattr(sentences.librispeech, "load_librispeech", lambda split, minutes=None: full(split).subset(16))
    monkeypatch.setattr(sentences, "test_set", lambda test: test_set.subset(8))
    monkeypatch.setitem(sentences.EPOCHS, "all", 1)
    card = sentences.train_model("scratch", "all", out_dir=tmp_path, progress=False, device="cpu")
    assert card["machine"]["device"] == "cpu" and card["train_utterances"] == 16
    assert card["phases"][0]["batch_size"] == sentences._SPEECH["batch_size"]
    assert all(len(card["cer_by_exit"][t]) == 6 for t in sentences.TESTS)
    model = sentences.load_model("sentences-scratch", out_dir=tmp_path)
    assert model.alphabet == librispeech.ALPHABET and not model.training
    assert sentences.load_profile("sentences-scratch", "clean", out_dir=tmp_path).num_samples == 8
    assert not list(tmp_path.glob("*.resume-*.pt"))  # the per-epoch state goes once the model is written
    with pytest.raises(ValueError, match="refusing to overwrite"):
        sentences.train_model("scratch", "all", out_dir=tmp_path, progress=False)


def test_speed_perturb_trains_on_stretched_sentences_and_says_so_in_the_card(tmp_path, monkeypatch, test_set):
    """``--speed-perturb``: ``train`` is asked for speeds 0.9/1.0/1.1, the utterances it reads are stretched by one
    of them, and the card and its command say so."""
    full = librispeech.load_librispeech
    monkeypatch.setattr(sentences.librispeech, "load_librispeech", lambda split, minutes=None: full(split).subset(8))
    monkeypatch.setattr(sentences, "test_set", lambda test: test_set.subset(4))
    heard = []
    real_getitem = data.SpeedPerturbed.__getitem__

    def spy(self, i):
        wave, text = real_getitem(self, i)
        heard.append(len(wave) / len(self.waveforms[i]))
        return wave, text

    monkeypatch.setattr(data.SpeedPerturbed, "__getitem__", spy)
    schedule = {"epochs": 1, "optimizer": "adamw", "weight_decay": 0.05}
    card = sentences.train_model("scratch", "all", out_dir=tmp_path, progress=False, device="cpu",
                                 speed_perturb=True, overrides=schedule)
    assert len(heard) == 8 and len({round(r, 2) for r in heard}) > 1  # every sentence, at more than one speed
    assert {round(r, 2) for r in heard} <= {round(1 / 0.9, 2), 1.0, round(1 / 1.1, 2)}
    assert card["command"].endswith("--labels all --speed-perturb --epochs 1 --optimizer adamw --weight-decay 0.05")
    assert list(card["phases"][0]["speed_perturb"]) == [0.9, 1.0, 1.1]
    assert {k: card["phases"][0][k] for k in ("epochs", "optimizer", "weight_decay", "batch_size")} == {
        "epochs": 1, "optimizer": "adamw", "weight_decay": 0.05, "batch_size": sentences._SPEECH["batch_size"]}


def test_overridden_settings_reach_every_phase_and_two_stage_still_splits_its_epochs():
    phases = sentences._phases("ssl-2st", "all", overrides={"epochs": 120, "lr": 4e-3, "optimizer": "adamw"})
    assert [p.epochs for p in phases] == [72, 48]  # the head-only stage keeps its share (STAGE_TWO_FRACTION)
    assert all(p.lr == 4e-3 and p.optimizer == "adamw" and p.batch_size == 8 for p in phases)
    assert sentences._phases("scratch", "30min")[0].epochs == sentences.EPOCHS["30min"]  # nothing given: the recipe's


@pytest.mark.parametrize("overrides, says", [({"seed": 1}, "unknown training setting 'seed'"),
                                             ({"optimizer": "rmsprop"}, "unknown optimizer"),
                                             ({"epochs": 0}, "epochs must be"), ({"lr": -1.0}, "lr"),
                                             ([("lr", 1.0)], "overrides must be a mapping")])
def test_bad_overrides_are_refused_before_any_work(tmp_path, overrides, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        sentences.train_model("scratch", "all", out_dir=tmp_path, overrides=overrides)
    assert not list(tmp_path.iterdir())


def test_two_stage_needs_an_epoch_for_each_stage(tmp_path):
    with pytest.raises(ValueError, match="at least one per stage"):
        sentences.train_model("ssl-2st", "all", out_dir=tmp_path, overrides={"epochs": 1})


def test_a_pretrained_recipe_starts_from_the_encoder_it_is_given():
    """``--encoder``: the SSL recipes load the named shipped encoder (ENCODER unless told) under seeded heads; the
    scratch recipe refuses one, and an unknown name is refused with the known ones."""
    built = {e: sentences.build("ssl", e) for e in (None, *sentences.ENCODERS)}
    assert built[None][1] == built[sentences.ENCODER][1]
    for name in sentences.ENCODERS:
        model, source = built[name]
        assert source.startswith(f"{name}.pt (shipped); encoder fingerprint ")
        encoder = load_encoder(name)[0].encoder_state()
        assert all(torch.equal(model.state_dict()[k], v) for k, v in encoder.items())
    first, second = (built[e][0].state_dict() for e in sentences.ENCODERS)
    assert not torch.equal(first["layers.0.self_attn.in_proj_weight"], second["layers.0.self_attn.in_proj_weight"])
    assert all(torch.equal(first[k], second[k]) for k in first if k.startswith("exits."))  # the same seeded heads
    with pytest.raises(ValueError, match="does not apply to the scratch recipe"):
        sentences.build("scratch", "ssl-hubert-clean")
    with pytest.raises(ValueError, match=r"unknown encoder 'wav2vec2'; known: \['ssl-hubert', 'ssl-hubert-clean'\]"):
        sentences.train_model("ssl", "all", out_dir="/nonexistent", encoder="wav2vec2")


def test_a_stopped_speed_perturbed_run_is_not_continued_without_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sentences.EPOCHS, "all", 1)
    perturbed = sentences._phases("scratch", "all", speed_perturb=True)[0]
    train(sentences.build("scratch")[0], librispeech.load_librispeech("train").subset(8), perturbed,
          progress=False, checkpoint=tmp_path / "sentences-scratch.resume-0.pt")  # the state a stopped run leaves
    with pytest.raises(ValueError, match=r"\(speed_perturb differ\)"):
        sentences.train_model("scratch", "all", out_dir=tmp_path, progress=False, device="cpu", resume=True)


def test_a_stopped_run_is_neither_restarted_nor_continued_without_being_asked(tmp_path):
    (tmp_path / "sentences-ssl-2st.resume-1.pt").write_bytes(b"state")
    with pytest.raises(ValueError, match="pass --resume to continue it, or --force to start over"):
        sentences.train_model("ssl-2st", "all", out_dir=tmp_path, progress=False)


def test_train_refuses_an_unknown_device_before_any_work(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown device"):
        sentences.train_model("scratch", "all", out_dir=tmp_path, device="tpu")
    assert main(["train", "sentences", "--recipe", "scratch", "--labels", "all", "--out", str(tmp_path),
                 "--device", "tpu"]) == 2
    assert "unknown device" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------- the shipped models

@pytest.mark.parametrize("name", sentences.names())
def test_each_shipped_cards_command_reruns_its_recipe(name):
    """The command a card gives, and the registry's, ask under today's defaults for the phases the card trained with
    and for the encoder it started from: a default changed without retraining, or a card from another recipe, fails."""
    card = sentences.load_card(name)
    for command in (card["command"], zoo.get(name).command):  # the card's own, and the one the registry lists
        check_sentence_card_against(card, command)


@pytest.mark.parametrize("name", sentences.names())
def test_each_shipped_model_has_a_card_that_its_profiles_confirm(name):
    card = sentences.load_card(name)
    assert card["name"] == name and card["test_speakers"] == list(librispeech.TEST_SPEAKERS)
    assert not set(card["train_speakers"]) & set(card["test_speakers"])
    for test in sentences.TESTS:
        profile = sentences.load_profile(name, test)
        assert profile.num_samples == len(sentences.test_set("clean"))
        assert card["cer_by_exit"][test] == [round(float(1 - a), 4) for a in profile.exit_accuracy]
        assert card["wer_by_exit"][test] == [round(float(w), 4) for w in sentences.word_errors(profile)]


def test_the_scratch_model_recognizes_sentences_of_unseen_voices():
    """The measured findings on the held-out speakers, pinned (lesson 24 states them). Of the targets set for this
    recipe, layer 1 at least 10 points worse is met; final CER <= 30 % is NOT met by the shipped 30-epoch run: these
    pins say what it does, so a retrained model that changes them must update the lesson too."""
    clean = sentences.load_card("sentences-scratch")["cer_by_exit"]["clean"]
    assert clean[-1] == pytest.approx(0.4114, abs=1e-4)
    assert clean[0] - clean[-1] == pytest.approx(0.1065, abs=1e-4)  # a real trade-off: the 10-point goal is met
    assert all(a >= b for a, b in zip(clean, clean[1:]))  # every layer at least as good as the one before


def test_eight_voices_leave_the_final_cer_uncertain_by_a_few_points():
    """The speaker bootstrap of the scratch model's final-exit CER: redrawing the 8 held-out voices moves it by
    about 2.4 points either way on clean speech, more at 10 dB."""
    interval = sentences.results("sentences-scratch", "ctc_entropy")["final_cer_interval"]
    assert interval["clean"] == pytest.approx([0.3876, 0.4347], abs=1e-4)
    assert interval["clean"][0] < 0.4114 < interval["clean"][1]
    assert interval["snr10"][1] - interval["snr10"][0] > interval["clean"][1] - interval["clean"][0]


def test_the_speaker_interval_refuses_a_profile_of_other_sentences():
    clean = sentences.load_profile("sentences-scratch")
    with pytest.raises(ValueError, match="not the held-out speakers' .* sentences in manifest order"):
        sentences.speaker_interval(clean.rows(slice(0, 10)))
    with pytest.raises(ValueError, match="manifest order"):
        sentences.speaker_interval(clean, minus=clean.rows(slice(1, None)))
    assert sentences.speaker_interval(clean, minus=clean) == [0.0, 0.0]


def test_the_exit_rule_saves_layers_but_does_not_beat_a_static_exit_of_the_same_cost():
    """Honest controls: within 1 CER point the entropy rule saves about a quarter of the layers and beats random
    exits, but a fixed depth of the same mean cost is better; at 10 dB the same threshold goes deeper."""
    rule = sentences.results("sentences-scratch", "ctc_entropy")
    assert rule["layers_saved"]["clean"] == pytest.approx(0.2596, abs=1e-4)
    assert rule["cer"]["clean"] <= rule["cer_by_exit"]["clean"][-1] + sentences.MAX_DROP + 1e-9
    assert rule["static_same_cost_cer"] < rule["cer"]["clean"] < rule["random_same_cost_cer"]
    assert rule["layers_used"]["snr10"] > rule["layers_used"]["clean"] + 1.0


def test_an_oracle_could_save_twice_the_layers_the_rule_saves():
    """The sentences differ in difficulty; the rule's confidence does not see it. Choosing each sentence's exit
    with its errors in hand, within the same CER point, saves about half of the layers."""
    rule = sentences.results("sentences-scratch", "ctc_entropy")
    bound = rule["oracle_bound"]
    assert bound["layers_saved"] == pytest.approx(0.5296, abs=1e-4)
    assert bound["cer"] <= rule["cer_by_exit"]["clean"][-1] + sentences.MAX_DROP + 1e-9
    assert bound["layers_saved"] > 2 * rule["layers_saved"]["clean"]


def test_report_carries_the_exit_rule_and_the_comparison(capsys):
    assert main(["report", "sentences-scratch", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("cer_by_exit", "wer_by_exit", "layers_saved", "threshold", "comparison", "oracle_bound",
                "final_cer_interval"):
        assert key in result, key
    assert set(result["cer_by_exit"]) == {"clean", "snr10"}
    assert result["cer"]["clean"] <= result["cer_by_exit"]["clean"][-1] + sentences.MAX_DROP + 1e-9
    assert set(result["comparison"]["final_exit_cer"]) == set(sentences.RECIPES)
    assert main(["report", "sentences-nope"]) == 2


def test_from_scratch_is_no_worse_than_pretrained_at_both_budgets():
    """2309.09546's finding, measured here on unseen voices (lesson 24 says it matches, with its caveat: the kit's
    encoder was pre-trained on about 40 minutes of one-second words)."""
    comparison = sentences.comparison()
    assert set(comparison) == set(sentences.BUDGETS)
    for budget, block in comparison.items():  # read from the cards: they must be what the shipped profiles say
        for recipe, cer in block["final_exit_cer"].items():
            profile = sentences.load_profile(sentences.model_name(recipe, budget))
            assert cer == pytest.approx(1 - profile.exit_accuracy[-1], abs=1e-4)
    assert comparison["all"]["scratch_minus_best_pretrained"] == pytest.approx(-0.0048, abs=1e-4)
    assert comparison["30min"]["scratch_minus_best_pretrained"] == pytest.approx(-0.0224, abs=1e-4)
    assert all(block["same_training"] for block in comparison.values())  # a fair comparison: the same recipe
    # paired over redrawn voices: at 30 minutes the 8 test voices tell the two apart, at 2.1 hours they cannot
    assert comparison["30min"]["scratch_minus_best_pretrained_interval"] == pytest.approx([-0.0275, -0.0179], abs=1e-4)
    assert comparison["all"]["scratch_minus_best_pretrained_interval"] == pytest.approx([-0.0088, 0.0001], abs=1e-4)
    for block in comparison.values():  # two-stage is the worst recipe at the final exit at both budgets
        final = block["final_exit_cer"]
        assert final["ssl-2st"] == max(final.values())


@pytest.mark.parametrize("setting, value", [("speed_perturb", [0.9, 1.0, 1.1]), ("weight_decay", 0.05),
                                            ("optimizer", "adamw")])
def test_the_comparison_says_when_the_recipes_did_not_train_alike(tmp_path, setting, value):
    """One recipe retrained alone with ``--speed-perturb`` (or another optimizer, decay or epochs) still reports its
    gap, but not as fair."""
    for name in ("sentences-scratch", "sentences-ssl", "sentences-ssl-2st"):
        card = sentences.load_card(name)
        if name == "sentences-scratch":
            card["phases"][0][setting] = value
        (tmp_path / f"{name}.json").write_text(json.dumps(card))
        sentences.load_profile(name).save(tmp_path / f"{name}.clean.profile.npz")  # the gap's interval reads them
    block = sentences.comparison(tmp_path)["all"]
    assert block["same_training"] is False and block["differs"] == [setting]
    assert block["scratch_minus_best_pretrained"] == sentences.comparison()["all"]["scratch_minus_best_pretrained"]
