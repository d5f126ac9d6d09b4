"""Real early exit must give exactly what the cached profile predicts, sample for sample."""

import numpy as np
import pytest
import torch

from eekit import data
from eekit.evaluate import profile_model
from eekit.models import EarlyExitNet, SharedExitHead, resnet_ee
from eekit.runtime import infer, infer_full
from eekit.zoo import load_pretrained, load_profile

CASES = [("max_prob", 0.9), ("max_prob", 0.999), ("entropy", 0.05), ("margin", 0.95), ("patience", 1), ("fixed", 1)]


@pytest.fixture(scope="module")
def mnist():
    model = load_pretrained("cnn-mnist")
    test = data.load_mnist("test")
    return model, test, profile_model(model, test)


@pytest.mark.parametrize("criterion,threshold", CASES)
def test_real_matches_simulated_at_batch_256(mnist, criterion, threshold):
    model, test, profile = mnist
    images, _ = test.tensors()
    expected_exit = profile.exit_index(criterion, threshold)
    expected_pred = profile.predictions[np.arange(profile.num_samples), expected_exit]
    result = infer(model, images, criterion, threshold, batch_size=256)
    assert len(result.exit_index) == len(images)
    assert result.exit_index.numpy().tolist() == expected_exit.tolist()
    assert result.predictions.numpy().tolist() == expected_pred.tolist()
    assert len(set(expected_exit.tolist())) > 1 or criterion == "fixed"  # the case really exercises exits


@pytest.mark.parametrize("criterion,threshold", [("max_prob", 0.9), ("patience", 1)])
def test_real_matches_simulated_at_batch_1(mnist, criterion, threshold):
    model, test, profile = mnist
    images, _ = test.tensors()
    n = 400
    expected = profile.exit_index(criterion, threshold)[:n]
    got = [int(infer(model, images[i : i + 1], criterion, threshold).exit_index) for i in range(n)]
    assert got == expected.tolist()


def test_shipped_profile_agrees_with_a_fresh_one(mnist):
    _, _, fresh = mnist
    shipped = load_profile("cnn-mnist")
    assert np.array_equal(shipped.predictions, fresh.predictions)
    assert np.allclose(shipped.cost, fresh.cost)


def test_compaction_with_a_shared_head_and_random_weights():
    torch.manual_seed(0)
    base = resnet_ee(width=8)
    shared = EarlyExitNet(list(base.stages), SharedExitHead([16, 16, 32, 64, 64], 10, dropout=0.0)).eval()
    x = torch.rand(300, 3, 32, 32)
    with torch.no_grad():
        scores = torch.stack(shared(x)).softmax(-1).amax(-1)  # [K, N]
    threshold = float(scores[0].median())  # half the samples leave at exit 0
    result = infer(shared, x, "max_prob", threshold)
    from eekit.criteria import first_exit
    expected = first_exit((scores >= threshold).T)
    assert result.exit_index.tolist() == expected.tolist()
    assert 0 < (result.exit_index == 0).sum() < 300


def test_full_model_and_bad_input(mnist):
    model, test, profile = mnist
    images, _ = test.tensors()
    full = infer_full(model, images[:64], batch_size=32)
    assert full.predictions.tolist() == profile.predictions[:64, -1].tolist()
    assert full.exit_index.tolist() == [model.num_exits - 1] * 64
    with pytest.raises(ValueError, match="upper bound"):
        infer(model, images[:2], "oracle", 0.5)
    with pytest.raises(ValueError, match="valid criteria"):
        infer(model, images[:2], "confidence", 0.5)
    with pytest.raises(ValueError, match="non-empty batch"):
        infer(model, images[:0], "max_prob", 0.5)


def test_a_single_row_compares_with_the_threshold_as_a_batch_does():
    """At batch 1 the exit test is one Python comparison; it must round the threshold to float32 as torch (and
    numpy, for the cached profile) do, or a score equal to the rounded threshold would leave at another exit."""
    from eekit.criteria import CRITERIA
    from eekit.models import ExitHeads

    model = EarlyExitNet([torch.nn.Identity(), torch.nn.Identity()], ExitHeads([torch.nn.Identity()] * 2)).eval()
    x = torch.tensor([[2.0, 0.5, -1.0]])  # logits: the stages pass them through, the heads answer with them
    score = CRITERIA["max_prob"].scores(x[None])[0, 0]
    assert score.dtype == torch.float32
    ulp = float(np.spacing(np.float32(score)))
    threshold = float(score) + ulp / 4  # above the score in float64, equal to it once rounded to float32
    assert float(np.float32(threshold)) == float(score) < threshold
    assert np.float32(score) >= threshold  # numpy compares in float32: the cached profile's exit test
    assert int(infer(model, x, "max_prob", threshold).exit_index) == 0  # one row
    assert infer(model, x.repeat(2, 1), "max_prob", threshold).exit_index.tolist() == [0, 0]  # a batch
    assert int(infer(model, x, "max_prob", threshold + ulp).exit_index) == 1  # just above: the last exit
    for name, c in CRITERIA.items():  # the rounding is right for every criterion: they all score in float32
        out = torch.randn(2, 3, 4, 5 if c.kind != "classification" else 4, dtype=torch.float64).log_softmax(-1)
        out = out[:, :, 0] if c.kind == "classification" else out
        labels = torch.zeros(3, dtype=torch.long) if c.needs_labels else None
        assert c.score_fn(out, labels=labels, lengths=None).dtype == torch.float32, name


@pytest.mark.parametrize("name", ["cnn-cifar10", "cnn-cifar10-wide"])
def test_the_shipped_cifar_model_exits_as_its_profile_predicts_at_batch_256_and_1(name):
    """The CIFAR-10 CNNs are where the inference copy rewrites most (channels-last, fused 4x4 heads, the RGB
    convolution in NCHW for single images): their real exits must still be the shipped profile's, image for image."""
    from eekit.zoo import load_card

    model, profile = load_pretrained(name), load_profile(name)
    threshold = load_card(name)["early_exit"]["threshold"]
    test = data.load_cifar10("test")
    rows = data.evenly_spaced(len(test), 1000)  # every class (the split is stored class by class)
    images = test.images[rows].float().div_(255)
    expected = profile.exit_index("max_prob", threshold)[rows]
    assert len(set(expected.tolist())) == model.num_exits  # every exit is used
    result = infer(model, images, "max_prob", threshold, batch_size=256)
    assert result.exit_index.tolist() == expected.tolist()
    assert result.predictions.tolist() == profile.predictions[rows, expected].tolist()
    single = [int(infer(model, images[i : i + 1], "max_prob", threshold).exit_index) for i in range(0, 1000, 5)]
    assert single == expected[::5].tolist()
