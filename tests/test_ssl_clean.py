"""ssl-hubert-clean: ssl-hubert's recipe on a corpus with clean read sentences of many voices added.

The first half checks the plumbing (one name picks the corpus, the LibriSpeech test speakers are never heard, the
recipe writes its own files with the old encoder's numbers in its card); the second reads the shipped files and
pins which findings of the label-free exit moved.
"""

import json

import pytest
import torch

from eekit import data
from eekit.ssl import adaptivity, shipped
from eekit.ssl.pretraining import (CLEAN_NAME, CORPORA, ENCODERS, NAME, PretrainConfig, _pieces, load_encoder,
                                   load_ssl_profile)

# ----------------------------------------------------------------------------------------------- plumbing


def test_the_two_encoders_differ_only_in_corpus_and_in_epochs_that_keep_the_optimizer_steps():
    old, clean = ENCODERS[NAME], ENCODERS[CLEAN_NAME]
    assert old == PretrainConfig() and old.corpus == "words" and clean.corpus == "words+librispeech"
    same = {k: v for k, v in vars(clean).items() if k not in ("corpus", "epochs", "mix_epochs")}
    assert same == {k: v for k, v in vars(old).items() if k in same}
    old_batches, clean_batches = 3156 // old.batch_size, 10707 // clean.batch_size  # clips in each corpus
    assert abs(clean.epochs * clean_batches / (old.epochs * old_batches) - 1) < 0.05
    assert abs(clean.mix_epochs * clean_batches / (old.mix_epochs * old_batches) - 1) < 0.15
    with pytest.raises(ValueError, match="corpus.*words"):
        PretrainConfig(corpus="librispeech-test")


def test_sentences_are_cut_into_one_second_pieces_and_a_short_tail_is_dropped():
    pieces = _pieces(torch.ones(8000 * 3 + 3999))
    assert [len(p) for p in pieces] == [8000, 8000, 8000]
    assert [len(p) for p in _pieces(torch.ones(8000 + 4000))] == [8000, 4000]
    assert CORPORA == ("words", "words+librispeech")


def test_output_files_and_results_are_named_after_the_encoder():
    names = [p.name for p in shipped.output_files("x", CLEAN_NAME)]
    assert names[:2] == ["ssl-hubert-clean.pt", "ssl-hubert-clean.json"] and len(names) == 10
    assert not [n for n in names if "random" in n] and names[-1] == "ssl-hubert-clean-adaptivity.json"
    assert adaptivity.result_file(NAME) == adaptivity.RESULT_FILE == "ssl-hubert-adaptivity.json"
    with pytest.raises(ValueError, match="encoder.*ssl-hubert-clean"):
        adaptivity.result_file("ssl-hubert-random")


def test_the_clean_recipe_writes_its_files_with_the_old_encoders_numbers_beside_its_own(tmp_path, monkeypatch):
    """The recipe's glue, with the slow parts (pretraining, probes, noise grid) replaced by ssl-hubert's own shipped
    results: the card's history holds the old numbers, and two identical encoders show no finding that moved."""
    from eekit.ssl import daisy, probes

    model, codebook = load_encoder(NAME)
    old_card = json.loads(data.data_path(f"checkpoints/{NAME}.json").read_text())
    seen = {}

    def fake_pretrain(out_dir, config, progress, name):
        seen["config"], seen["name"] = config, name
        return model, codebook, {"heard": {"librispeech_pieces": 0}, "pretraining_seconds": 1.0}

    monkeypatch.setattr(shipped, "pretrain", fake_pretrain)
    monkeypatch.setattr(shipped, "pretraining_corpus", lambda corpus: ([torch.zeros(8000)], {}))
    monkeypatch.setattr(shipped, "masked_unit_accuracy", lambda *a: old_card["masked_unit_accuracy"][NAME])
    monkeypatch.setattr(daisy, "fit_exit_heads", lambda *a, **k: [])
    monkeypatch.setattr(daisy, "unit_profile", lambda e, clips, meta: load_ssl_profile(
        NAME if "calibration" not in meta["clips"] else f"{NAME}-calibration"))
    monkeypatch.setattr(daisy, "noisy_unit_profile", lambda *a, **k: load_ssl_profile(f"{NAME}-noisy"))
    monkeypatch.setattr(probes, "task_profile", lambda e, task, *a, **k: load_ssl_profile(f"{NAME}-{task}"))

    def fake_measure(out_dir, name, **kwargs):
        (out_dir / adaptivity.result_file(name)).write_text(json.dumps(adaptivity.load()))

    monkeypatch.setattr(adaptivity, "measure", lambda out_dir, **kw: fake_measure(out_dir, **kw))
    card = shipped.run_recipe(tmp_path, progress=False, name=CLEAN_NAME)
    assert seen == {"config": ENCODERS[CLEAN_NAME], "name": CLEAN_NAME}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "SHA256SUMS") == \
        sorted(p.name for p in shipped.output_files(tmp_path, CLEAN_NAME))
    assert card["name"] == CLEAN_NAME and card["command"] == "python -m eekit train ssl-hubert-clean"
    assert card["history"][NAME]["report"] == shipped.encoder_numbers(NAME)
    report = shipped.clean_report(tmp_path)
    assert report["moved"] == [] and len(report["did_not_move"]) == len(report["findings"]) >= 12
    with pytest.raises(ValueError, match="refusing to overwrite"):
        shipped.run_recipe(tmp_path, progress=False, name=CLEAN_NAME)


# ----------------------------------------------------------------------------------------------- the shipped run


@pytest.fixture(scope="module")
def clean():
    return shipped.clean_report()


@pytest.fixture(scope="module")
def clean_card():
    return json.loads(data.data_path(f"checkpoints/{CLEAN_NAME}.json").read_text())


def test_the_card_says_who_was_heard_and_no_test_voice_is_among_them(clean_card):
    from eekit.librispeech import TEST_SPEAKERS, speakers

    heard = clean_card["heard"]
    assert heard["librispeech_speakers"] == speakers("train") and len(heard["librispeech_speakers"]) == 20
    assert not set(heard["librispeech_speakers"]) & set(TEST_SPEAKERS)
    assert heard["librispeech_pieces"] == 7551 and heard["piece_seconds"] == 1.0
    assert heard["speech_commands_clips"] == 906 and heard["fsdd_clips"] == 2250  # the old corpus, all of it
    config = clean_card["pretraining"]["config"]
    assert config == {**json.loads(json.dumps(vars(ENCODERS[CLEAN_NAME])))}
    assert [len(it["epochs"]) for it in clean_card["pretraining"]["iterations"]] == [12, 12]
    assert clean_card["command"] == "python -m eekit train ssl-hubert-clean"
    assert clean_card["masked_unit_accuracy"][CLEAN_NAME] == clean_card["pretraining"]["mixing"][
        "held_out_masked_accuracy"]


def test_the_history_holds_the_old_encoders_numbers_as_shipped(clean_card, clean):
    old = clean_card["history"][NAME]
    assert old["report"] == shipped.encoder_numbers(NAME)  # ssl-hubert's files are unchanged since
    assert old["held_out_masked_accuracy_by_iteration"] == [0.127, 0.4305]
    assert clean["masked_unit_accuracy"] == {NAME: 0.4005, CLEAN_NAME: 0.3167}  # each on its own units


def test_what_moved_the_noise_reaction_halves_and_the_placement_order_reverses(clean):
    """The label-free exit still goes deeper under 9 of the 10 noises (brown still makes it earlier), but only half
    as far: about half a layer at 0 dB instead of more than one, for both scores. Noise on the words now makes the
    exit *earlier* than noise in the silence (ssl-hubert: later)."""
    f = clean["findings"]
    for score in ("speech", "all_frames"):
        assert f[f"noises_deepening_{score}"][NAME] == f[f"noises_deepening_{score}"][CLEAN_NAME] == 9
        assert f[f"noise_rise_{score}"][NAME] > 1.1 and 0.45 < f[f"noise_rise_{score}"][CLEAN_NAME] < 0.65
        assert f[f"noise_rise_{score}"]["moved"]
    assert f["placement_speech_minus_silence"][NAME] > 0.1 and f["placement_speech_minus_silence"][CLEAN_NAME] < -0.5
    grid = shipped.encoder_numbers(CLEAN_NAME)["adaptivity"]["noise_grid"]
    assert grid["brown"]["0"] < grid["brown"]["clean"]  # unchanged: brown noise still makes the exit earlier
    snr = clean["mean_exit_layer_by_snr"]  # DAISY's score, kit noises round-robin: no longer deeper at 20 dB
    assert snr[NAME]["20"] > snr[NAME]["clean"] + 0.5 and snr[CLEAN_NAME]["20"] < snr[CLEAN_NAME]["clean"]


def test_what_moved_the_threshold_travels_to_fsdd_and_the_equal_cost_gains_turn_positive(clean):
    f = clean["findings"]
    assert f["threshold"][CLEAN_NAME] == 0.09 and f["threshold"]["moved"]  # the clean encoder is surer overall
    transfer = shipped.encoder_numbers(CLEAN_NAME)["adaptivity"]["transfer"]
    gap = transfer["fsdd_unseen_takes"]["layers_saved"] - transfer["speech_commands_calibration"]["layers_saved"]
    assert f["fsdd_layers_saved"]["moved"] and abs(gap) < 0.10  # the old encoder's 18-point gap: within 10 now
    # equal-cost gains: single-seed, 240 digit clips (a point is 2.4 clips) - moved, but small
    for task in ("digits", "ctc-10db"):
        assert f[f"{task}_gain_vs_static_points"][CLEAN_NAME] > 1.5 and f[f"{task}_gain_vs_static_points"]["moved"]
    assert f["ctc_gain_vs_static_points"][NAME] < -1.5 < 0 < f["ctc_gain_vs_static_points"][CLEAN_NAME]
    assert f["digits-10db_gain_vs_random_points"][CLEAN_NAME] < -1.5  # and one that moved the other way


def test_what_did_not_move(clean):
    f = clean["findings"]
    for key in ("layers_saved_clean", "speech_share_r", "speech_share_r_all_frames", "padding_2s_shift",
                "noises_deepening_speech", "noises_deepening_all_frames", "speaker_gain_vs_static_points",
                "speaker_gain_vs_random_points", "kws_gain_vs_static_points"):
        assert not f[key]["moved"], key
    assert abs(f["speech_share_r"][CLEAN_NAME]) < 0.15 and f["padding_2s_shift"][CLEAN_NAME] > 0.9
    assert sorted(clean["moved"]) == sorted(MOVED)


MOVED = ["threshold", "unit_agreement_at_threshold", "placement_speech_minus_silence", "fsdd_layers_saved",
         "noise_rise_speech", "noise_rise_all_frames", "digits_gain_vs_static_points", "digits_gain_vs_random_points",
         "ctc_gain_vs_static_points", "ctc_gain_vs_random_points", "kws-10db_gain_vs_random_points",
         "digits-10db_gain_vs_random_points", "ctc-10db_gain_vs_static_points", "ctc-10db_gain_vs_random_points"]


def test_cli_reports_the_findings_side_by_side(capsys):
    from eekit.__main__ import main

    assert main(["report", CLEAN_NAME, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["findings"]["threshold"] == {NAME: 0.135, CLEAN_NAME: 0.09, "change": -0.045, "tolerance": 0.02,
                                            "moved": True}
    assert main(["report", CLEAN_NAME, "--measure"]) == 2
