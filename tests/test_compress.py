"""Compression (FreeML's SparseComp by hand): low-rank, pruning, integer quantization, byte and SRAM accounting,
and the shipped compressed MNIST model's results."""

import json

import pytest
import torch
from torch import nn

from eekit.__main__ import main
from eekit.compress import FRAM_BYTES, SRAM_BYTES, load_compressed, load_compressed_card, load_compressed_profile
from eekit.compress.lowrank import factorize_conv, factorize_linear, lowrank, rank_for_energy
from eekit.compress.memory import buffer_plan, layer_freeml_bytes, layer_mcu_bytes, qmodel_bytes, weight_storage
from eekit.compress.prune import magnitude_mask, set_density, strip_masks
from eekit.compress.quantize import early_exit, int_forward, multiplier_shift, requantize
from eekit import data, zoo
from eekit.data import load_mnist

NAME = "cnn-mnist-shared"


@pytest.fixture(scope="module")
def card():
    return load_compressed_card(NAME)


@pytest.fixture(scope="module")
def qmodel():
    return load_compressed(NAME)


def test_full_rank_factorization_is_exact_and_the_energy_knob_picks_the_rank():
    torch.manual_seed(0)
    linear, conv = nn.Linear(40, 12), nn.Conv2d(3, 8, 3, padding=1)
    x, img = torch.randn(5, 40), torch.randn(2, 3, 6, 6)
    assert torch.allclose(factorize_linear(linear, 12)(x), linear(x), atol=1e-5)
    assert torch.allclose(factorize_conv(conv, 8)(img), conv(img), atol=1e-5)
    ranks = [rank_for_energy(linear.weight, e) for e in (0.3, 0.6, 0.9, 1.0)]
    assert ranks == sorted(ranks) and ranks[-1] <= 12 and ranks[0] >= 1
    with pytest.raises(ValueError, match="energy"):
        rank_for_energy(linear.weight, 1.5)


def test_lowrank_factorizes_only_layers_over_freemls_80000_bytes(card):
    model = zoo.load_pretrained(NAME)
    before = sum(p.numel() for p in model.parameters())
    ranks = lowrank(model, energy=card["energy_knob"])
    assert ranks == card["ranks"] == {"stages.2.1": 13}  # the 1568 x 128 Linear (803 KB); conv2 is 51 KB
    assert sum(p.numel() for p in model.parameters()) < before / 4
    assert model(torch.rand(2, 1, 28, 28))[-1].shape == (2, 10)


def test_magnitude_pruning_keeps_the_largest_weights_and_they_stay_zero_while_training():
    torch.manual_seed(0)
    layer = nn.Linear(20, 10)
    mask = magnitude_mask(layer.weight, 0.25)
    assert int(mask.sum()) == 50
    assert layer.weight.abs()[mask == 1].min() >= layer.weight.abs()[mask == 0].max()
    set_density(layer, 0.25)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    layer(torch.randn(4, 20)).sum().backward()
    opt.step()
    strip_masks(layer)
    assert int((layer.weight != 0).sum()) == 50 and isinstance(layer.weight, nn.Parameter)


def test_byte_accounting_both_ways():
    layer = nn.Linear(100, 10)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[:, :10] = 1.0  # density 0.1
    assert weight_storage(layer.weight, 8) == ("csr", 100 * 3 + 11 * 2)  # values + uint16 indices + row pointers
    assert weight_storage(torch.ones(10, 100), 8) == ("dense", 1000)
    assert layer_mcu_bytes(layer, 8) == 322 + 10 * 7  # + int32 bias, int16 multiplier, uint8 shift per channel
    assert layer_freeml_bytes(layer) == round(4 * 1000 * 0.2) + 40  # min(1, 2 x density) of fp32, fp32 biases


def test_requantization_floors_like_python_integers():
    acc = torch.arange(-5000, 5000, 7).view(1, -1).T.contiguous().view(-1, 1)
    m, shift = torch.tensor([23456]), torch.tensor([19])
    expected = [max(-127, min(127, (a * 23456 + (1 << 18)) >> 19)) for a in acc.flatten().tolist()]
    assert requantize(acc, m, shift, 127, relu=False).flatten().tolist() == expected
    mult, sh = multiplier_shift(0.000123)
    assert 2**14 <= mult < 2**15 and abs(mult / 2**sh - 0.000123) / 0.000123 < 1e-4


def test_integer_reference_rejects_float_images(qmodel):
    with pytest.raises(ValueError, match="uint8 images"):
        int_forward(qmodel, torch.rand(2, 1, 28, 28))


def test_shipped_model_meets_the_issue(card, qmodel):
    assert card["bytes_mcu"] <= 64_000 and card["bytes_mcu"] <= card["target_bytes"] + 64  # aim: 32 KB
    assert card["bytes_mcu"] == qmodel_bytes(qmodel)["total"]
    assert card["ratio"] == round(card["bytes_fp32"] / card["bytes_mcu"], 2) and card["ratio"] > 20
    assert card["accuracy_per_exit_after"][-1] >= card["accuracy_per_exit_before"][-1] - 0.01
    assert card["fits_fram"] and card["fits_sram"] and card["bytes_mcu"] <= FRAM_BYTES
    assert len(card["peak_activation_bytes"]) == 3 and max(card["peak_activation_bytes"]) <= SRAM_BYTES
    assert card["peak_activation_bytes"] == buffer_plan(qmodel)["peak_per_exit"]
    # fusing ReLU and pooling into the conv is what makes it fit: layer by layer, conv1's output alone is 12.5 KB
    assert card["peak_activation_bytes_unfused"] > SRAM_BYTES
    heads = card["head_memory"]
    assert heads["shared (cnn-mnist-shared)"]["mcu"] < heads["per-layer heads (cnn-mnist)"]["mcu"] / 3


def test_every_step_is_recorded_with_accuracy_per_exit(card):
    steps = card["steps"]
    assert steps[0]["action"] == "uncompressed" and steps[0]["accuracy_per_exit"] == card["accuracy_per_exit_before"]
    assert any(s["action"].startswith("low-rank") for s in steps)
    assert all(len(s["accuracy_per_exit"]) == 3 for s in steps)
    kept = [s["bytes_mcu"] for s in steps if s["kept"] and not s.get("beyond_target")]
    assert kept == sorted(kept, reverse=True) and kept[-1] <= card["target_bytes"]


def test_integer_profile_is_the_integer_reference(qmodel, card):
    test = load_mnist("test")
    images = test.images[:200]
    logits = int_forward(qmodel, images)
    profile = load_compressed_profile(NAME)
    for k in range(3):
        assert (profile.predictions[:200, k] == logits[k].argmax(1).numpy()).all()
    assert [round(float(a), 4) for a in profile.exit_accuracy] == card["accuracy_per_exit_after"]
    taken = early_exit(qmodel, logits)
    assert taken.min() >= 0 and taken.max() <= 2


def test_report_compress_json(capsys, card):
    assert main(["report", "compress", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    model = out["models"][f"{NAME}-compressed"]
    for key in ("source", "target_bytes", "bytes_fp32", "bytes_mcu", "ratio", "accuracy_per_exit_before",
                "accuracy_per_exit_after", "peak_activation_bytes", "fits_fram", "fits_sram"):
        assert model[key] == card[key]
    assert out["c_export"]["compiled"] and out["c_export"]["inputs_checked"] >= 200
    assert out["c_export"]["mismatches"] == 0


def test_energy_payoff_is_what_the_simulator_says(card):
    from eekit.compress.payoff import compressed_workload, energy_payoff

    workload = compressed_workload(load_compressed(NAME), load_compressed_profile(NAME))
    assert energy_payoff(NAME, workload) == card["energy"]
    runs = card["energy"]["policies"]["threshold"]
    # the compressed model never does more work than the uncompressed one at any exit (non-zero MACs only)
    assert all(c <= u for c, u in zip(runs["compressed"]["macs_per_exit"], runs["uncompressed"]["macs_per_exit"]))
    assert runs["compressed"]["answers_per_hour"] > runs["uncompressed"]["answers_per_hour"]


def test_fit_explorer_shows_the_step_where_the_run_stops(card):
    from eekit.widgets import FitExplorer

    ex = FitExplorer(card, target_kb=32)
    assert ex.state["bytes_mcu"] <= 32_000 and not ex.state["beyond_target"]
    assert ex.state["accuracy_per_exit"] == card["steps"][ex.state["step"]]["accuracy_per_exit"]
    ex.slider.value = ex.slider.max
    assert ex.state["step"] == 0 and ex.state["fram_percent"] > 80  # uncompressed int8 fills most of the FRAM
    ex.slider.value = ex.slider.min
    assert ex.state["step"] is None and "No step fits" in ex.readout.value


def test_fit_explorer_names_layers_for_a_learner_and_starts_its_axis_at_zero(card):
    from eekit.widgets import FitExplorer

    ex = FitExplorer(card, target_kb=32)
    assert "stages." not in ex.readout.value and "fully connected layer 1568 x 128" in ex.readout.value
    assert "low-rank factor 1 of 2" in ex.state["action"]
    assert ex.accuracy.layout.yaxis.range == (0, 100)
    for bad, words in (("card.json", "compressed model's card"), ({"steps": []}, "lacks"),):
        with pytest.raises(ValueError, match=words):
            FitExplorer(bad)
    with pytest.raises(ValueError, match="target_kb .* whole number >= 1"):
        FitExplorer(card, target_kb=-3)


def test_compress_cli_refuses_to_replace_shipped_results(capsys):
    assert main(["compress", NAME, "--out", str(data.DATA_DIR / "checkpoints"), "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["compress", "no-such-model", "--out", "unused-dir", "--quiet"]) == 2


@pytest.mark.parametrize("low_rank", [False, True])
def test_batchnorm_folds_into_the_conv_without_changing_outputs(low_rank):
    from eekit.compress.quantize import fold_batchnorm

    model = zoo.load_pretrained("cnn-cifar10")
    if low_rank:  # then the BatchNorm follows a (k x k, 1 x 1) pair and folds into the 1 x 1
        lowrank(model, energy=0.5)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        after = fold_batchnorm(model)(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(before, after))


def test_cifar10_compressed_fits_the_fram_and_its_int8_weights_reproduce_the_card():
    from eekit.compress.pipeline import CHECK_PREDICTIONS, build_weights_only

    card = load_compressed_card("cnn-cifar10")
    assert card["bytes_mcu"] <= card["target_bytes"] and card["fits_fram"] and card["bytes_mcu"] <= FRAM_BYTES
    assert not card["fits_sram"] and min(card["peak_activation_bytes"]) > SRAM_BYTES  # honest: SRAM is the wall
    assert card["ratio"] > 15
    assert card["accuracy_per_exit_after"][-1] >= card["accuracy_per_exit_before"][-1] - 0.03  # the issue's bar
    assert card["steps"][-1]["action"].startswith("final fine-tune")
    model = build_weights_only("cnn-cifar10", load_compressed("cnn-cifar10"))
    test = zoo.RECIPES["cnn-cifar10"].test_set()
    images = torch.stack([test[i][0] for i in range(200)])
    with torch.no_grad():
        predictions = torch.stack(model(images)).argmax(-1)
    assert predictions.tolist() == [p[:200] for p in card["predictions_first_test_images"]]
    assert CHECK_PREDICTIONS >= 200 and len(card["accuracy_per_exit_after"]) == 5


def test_cifar10_with_int8_activations_stays_within_3_points_and_its_profile_is_the_integer_reference():
    from eekit.compress.memory import activation_plan
    from eekit.compress.pipeline import load_integer

    card, qmodel = load_compressed_card("cnn-cifar10"), load_integer("cnn-cifar10")
    assert card["accuracy_per_exit_int8"][-1] >= card["accuracy_per_exit_before"][-1] - 0.03  # the target
    test = zoo.RECIPES["cnn-cifar10"].test_set()
    logits = int_forward(qmodel, test.images[:300])
    profile = load_compressed_profile("cnn-cifar10")
    for k in range(5):
        assert (profile.predictions[:300, k] == logits[k].argmax(1).numpy()).all()
    assert [round(float(a), 4) for a in profile.exit_accuracy] == card["accuracy_per_exit_int8"]
    # the activation plan: three 12 KB buffers, none fits 8 KB SRAM, all spill to FRAM; with the weights that is
    # more than the 256 KB FRAM (said plainly on the card)
    plan = activation_plan(qmodel)
    assert plan == card["activation_plan"] and plan["policy"] == "spill" and plan["memory"] == ["fram"] * 3
    assert qmodel_bytes(qmodel)["total"] + plan["fram_activation_bytes"] > FRAM_BYTES
    assert not card["fits_fram_with_activations"]


def test_requantize_never_replaces_shipped_files_without_force_and_takes_weights_only_models(capsys):
    from eekit.compress import requantize
    from eekit.data import DATA_DIR

    assert requantize.main(["cnn-cifar10", "--out", str(DATA_DIR / "checkpoints")]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and len(err.strip().splitlines()) == 1
    assert requantize.main(["cnn-mnist-shared", "--out", str(DATA_DIR / "checkpoints")]) == 2
    assert "weights-only" in capsys.readouterr().err
