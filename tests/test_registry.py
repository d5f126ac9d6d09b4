"""One registry knows every shipped name (eekit.zoo.list_models / get), whatever family made it."""

from pathlib import Path

import pytest

from eekit import zoo
from eekit.profile import ExitProfile
from eekit.zoo.registry import Entry

CHECKPOINTS = Path(__file__).resolve().parents[1] / "data" / "checkpoints"


def test_every_shipped_checkpoint_has_a_registry_entry():
    names = set(zoo.list_models())
    weights = {p.name[: -len(".pt")] for p in CHECKPOINTS.glob("*.pt") if not p.name.endswith(".int8.pt")}
    assert weights <= names  # the zoo's rows, ssl-hubert and its twin, the compressed models, wav2vec2-fsdd
    cells = {p.stem for p in (CHECKPOINTS / "speech-recipes").glob("*.json")}
    assert {f"speech-recipe-{c}" for c in cells} <= names and len(cells) == 15
    assert set(zoo.list_models("ssl")) == {"ssl-hubert", "ssl-hubert-random", "ssl-hubert-clean"}
    assert set(zoo.list_models("compressed")) == {"cnn-mnist-shared-compressed", "cnn-cifar10-compressed"}


@pytest.mark.parametrize("name", zoo.list_models())
def test_each_entry_reads_its_card_and_profile_and_names_its_command(name):
    entry = zoo.get(name)
    assert isinstance(entry.card(), dict) and entry.card()
    profile = entry.profile()
    assert isinstance(profile, ExitProfile) and profile.num_samples > 0
    assert entry.command.startswith("python -m eekit ")
    for split in entry.splits:
        assert entry.profile(split).num_exits == profile.num_exits


@pytest.mark.parametrize("name", ["cnn-mnist", "speech-fsdd", "ssl-hubert-random", "speech-recipe-C-250",
                                  "cnn-mnist-shared-compressed"])
def test_an_entry_loads_its_model(name):
    assert zoo.get(name).load() is not None


def test_unknown_names_and_splits_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'cnn-imagenet'; known: .*ssl-hubert"):
        zoo.get("cnn-imagenet")
    with pytest.raises(ValueError, match="split"):
        zoo.get("cnn-mnist").profile("train")


def test_a_new_family_registers_with_one_call(monkeypatch):
    monkeypatch.setattr(zoo.registry, "_ENTRIES", dict(zoo.registry._ENTRIES))
    entry = Entry("toy", "toys", lambda: "model", lambda: {"name": "toy"}, lambda split: None, "python -m eekit x")
    zoo.register(entry)
    assert zoo.get("toy").card() == {"name": "toy"} and zoo.list_models("toys") == ["toy"]
    with pytest.raises(ValueError, match="already registered"):
        zoo.register(Entry("cnn-mnist", "toys", lambda: None, dict, lambda split: None, "x"))


@pytest.mark.parametrize("name", ["cnn-mnist", "cnn-cifar10", "cnn-mnist-shared", "speech-fsdd", "kws-fsdd",
                                  "wav2vec2-fsdd", "ssl-hubert", "ssl-hubert-random", "ssl-hubert-clean",
                                  "speech-recipe-C-250"])
def test_every_shipped_model_kind_satisfies_the_contract(name):
    from eekit.models.contract import ExitModel

    model = zoo.get(name).load()
    assert isinstance(model, ExitModel) and model.input_kind in ("images", "waveforms")


def test_the_ssl_encoder_runs_real_early_exit_as_its_unit_profile_decides():
    """DAISY's label-free exit through the runtime: the same exits as the unit scores of the same batch."""
    import torch

    from eekit import data
    from eekit.criteria import CRITERIA, first_exit, passes
    from eekit.runtime import infer

    encoder = zoo.get("ssl-hubert").load()
    clips = data.load_speech_commands("test").subset(8)
    waves, lengths = data._pad([clips[i][0] for i in range(len(clips))])
    threshold = 0.135
    with torch.no_grad():
        log_probs, frames = encoder.unit_log_probs(waves, lengths)
    scores = CRITERIA["ssl_entropy"].scores(log_probs, lengths=frames)  # [K, N]
    expected = first_exit(passes(CRITERIA["ssl_entropy"], scores.T, threshold))
    result = infer(encoder, (waves, lengths), "ssl_entropy", threshold)
    assert result.exit_index.tolist() == expected.tolist()
    with pytest.raises(ValueError, match="without labels"):
        encoder.batch_loss(None)


def test_the_zoo_loaders_read_every_shipped_name():
    """zoo.load_card / load_profile take any registry name (lesson 22 no longer needs to read ssl-hubert's JSON)."""
    assert zoo.load_card("ssl-hubert") == zoo.get("ssl-hubert").card()
    assert zoo.load_card("speech-recipe-C-250")["cell"] == "C-250"
    assert zoo.load_profile("cnn-mnist-shared-compressed").num_exits == 3
    with pytest.raises(ValueError, match="unknown model 'cnn-imagenet'; known:"):
        zoo.load_card("cnn-imagenet")
