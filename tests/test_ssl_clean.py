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
