"""Shipped checkpoints: checksums, cards that match the weights, clear errors for damaged files."""

import json
import shutil

import pytest
import torch

from eekit import data, zoo

SHIPPED = list(zoo.RECIPES)  # every recipe ships its checkpoint: a missing one is a failure, never a skip


@pytest.mark.slow  # runs a model over a data set or a dashboard over every control
@pytest.mark.parametrize("name", SHIPPED)
def test_card_accuracy_is_reproduced_on_the_test_split(name):
    card = zoo.load_card(name)
    model = zoo.load_pretrained(name)
    recipe = zoo.RECIPES[name]
    profile = recipe.profile(model, recipe.test_set())
    assert [round(float(a), 4) for a in profile.exit_accuracy] == card["exit_accuracy"]
    assert card["final_accuracy"] == round(profile.final_accuracy, 4)
    assert card["recipe"]["command"].startswith(f"python -m eekit train {name}")


def test_shipped_models_meet_their_bars():
    assert zoo.load_card("cnn-mnist")["final_accuracy"] >= 0.985
    r = zoo.report("cnn-cifar10")  # recomputed from the shipped profile, not copied from the card
    assert r["final_accuracy"] >= 0.85
    assert r["ee_accuracy"] >= r["final_accuracy"] - 0.01 - 1e-9
    # HuBERT-EE's finding in miniature: joint training makes the shallow exits better than two-stage
    joint, two = zoo.load_card("cnn-cifar10"), zoo.load_card("cnn-cifar10-two-stage")
    assert all(j > t + 0.01 for j, t in zip(joint["exit_accuracy"][:4], two["exit_accuracy"][:4]))


def test_the_wide_cifar_cnn_differs_from_the_shipped_one_only_in_width():
    """``cnn-cifar10-wide`` exists to show what bigger blocks do to real early exit (docs/performance.md): the same
    recipe, seed and operating point rule, twice the channels, so 4x the FLOPs per stage and the same exits."""
    narrow, wide = zoo.load_card("cnn-cifar10"), zoo.load_card("cnn-cifar10-wide")
    assert (narrow["model"]["kwargs"], wide["model"]["kwargs"]) == ({"width": 24}, {"width": 48})
    assert wide["recipe"]["phases"] == narrow["recipe"]["phases"]
    assert wide["model"]["exit_names"] == narrow["model"]["exit_names"]
    assert wide["early_exit"]["criterion"] == narrow["early_exit"]["criterion"]
    assert wide["early_exit"]["max_drop"] == narrow["early_exit"]["max_drop"]
    ratio = [w / n for w, n in zip(wide["exit_mflops"], narrow["exit_mflops"])]
    # 4x for every convolution but the first (3 input channels either way: 2x), 2x for the heads' linear layers
    assert 3.55 < ratio[0] < 3.65 and all(3.85 < r < 4 for r in ratio[1:]), ratio


def test_cifar_cnn_saves_half_the_flops_within_one_point():
    # Shallow-Deep Networks' headline (> 50 % on CIFAR-10), in miniature
    assert zoo.report("cnn-cifar10")["flops_saved"] >= 0.50


@pytest.mark.slow  # runs a model over a data set or a dashboard over every control
def test_speech_recognizer_meets_its_bars_and_daisys_finding(capsys):
    from eekit.__main__ import main

    assert main(["report", "speech-fsdd", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert len(r["exit_der"]) == 6 and r["final_der"] == r["exit_der"][-1]
    assert r["final_der"] <= 0.05  # clean test takes
    assert r["layers_saved"] >= 0.30 and r["ee_der"] <= r["final_der"] + 0.01 + 1e-9
    by_snr = r["mean_exit_layer_by_snr"]
    assert list(by_snr) == ["clean", "20", "10", "5", "0"]
    layers = list(by_snr.values())
    # DAISY on real noise: the mean exit layer rises as the SNR falls
    assert all(deeper >= shallower for shallower, deeper in zip(layers, layers[1:])), by_snr
    assert layers[-1] > layers[0] + 0.5, by_snr
    joint, two = zoo.load_card("speech-fsdd"), zoo.load_card("speech-fsdd-two-stage")
    assert sum(joint["exit_accuracy"][:3]) > sum(two["exit_accuracy"][:3])  # shallow exits: joint wins
    assert zoo.load_card("kws-fsdd")["final_accuracy"] >= 0.95


def test_damaged_checkpoint_fails_its_checksum(tmp_path, monkeypatch):
    shutil.copytree(data.DATA_DIR / "checkpoints", tmp_path / "checkpoints")
    shutil.copy(data.DATA_DIR / "SHA256SUMS", tmp_path / "SHA256SUMS")
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    weights = tmp_path / "checkpoints" / "cnn-mnist.pt"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(data.DataFileError, match="cnn-mnist.pt is corrupted"):
        zoo.load_pretrained("cnn-mnist")
    (tmp_path / "checkpoints" / "cnn-mnist.json").unlink()
    with pytest.raises(data.DataFileError, match="missing.*python -m eekit train cnn-mnist"):
        zoo.load_card("cnn-mnist")


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="known: .*cnn-mnist"):
        zoo.load_pretrained("lenet")


def test_weights_load_without_pickle():
    state = torch.load(data.data_path("checkpoints/cnn-mnist.pt"), weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_training_and_noise_runs_live_elsewhere_and_are_re_exported():
    from eekit import recipes, speech_recipes
    from eekit.zoo import noise, speech_grid, training

    assert zoo.run_recipe is recipes.run_recipe is training.run_recipe
    assert speech_recipes is speech_grid  # the old module name is the moved module itself
    for name in ("noisy_run", "noisy_profile", "mean_exit_layer_by_snr", "SNR_LEVELS"):
        assert getattr(zoo, name) is getattr(noise, name)
