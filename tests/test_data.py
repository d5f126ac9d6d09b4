"""Loaders: shapes, dtypes, label ranges, split sizes, units; corrupted or missing files fail clearly."""

import shutil

import numpy as np
import pytest
import torch

from eekit import data


def test_mnist_is_resplit_8000_2000_stratified_and_deterministic():
    train, test = data.load_mnist("train"), data.load_mnist("test")
    assert len(train) == 8000 and len(test) == 2000
    x, y = train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert set(train.labels.tolist()) == set(range(10))
    counts = np.bincount(test.labels.numpy(), minlength=10)
    assert counts.min() >= 170 and counts.max() <= 235  # ~20% of each class (892..1135 per class)
    assert torch.equal(data.load_mnist("test").labels, test.labels)
    train_idx_bytes = {bytes(im.numpy()) for im in train.images[:500]}
    assert not any(bytes(im.numpy()) in train_idx_bytes for im in test.images[:500])


def test_cifar10_shapes_classes_and_cache(tmp_path):
    test = data.load_cifar10("test", cache_dir=tmp_path)
    assert len(test) == 10000 and test.images.shape == (10000, 3, 32, 32) and test.images.dtype == torch.uint8
    assert np.bincount(test.labels.numpy()).tolist() == [1000] * 10
    assert test.classes[0] == "airplane" and len(list(tmp_path.glob("*.npy"))) == 2
    again = data.load_cifar10("test", cache_dir=tmp_path)  # from the cache
    assert torch.equal(again.images, test.images)


def test_fsdd_convention_and_speakers():
    test = data.load_fsdd("test")
    assert len(test) == 300 and set(test.takes.tolist()) == set(range(5))
    george = data.load_fsdd("train", speakers=["george"])
    assert len(george) == 450 and set(george.takes.tolist()) == set(range(5, 50))
    wave, digit = george[0]
    assert wave.dtype == torch.float32 and wave.ndim == 1 and 0 <= digit <= 9 and george.sample_rate == 8000
    with pytest.raises(ValueError, match="known: .*jackson"):
        data.load_fsdd("train", speakers=["jason"])


def test_noise_is_resampled_with_torchaudio():
    at16 = data.load_noise("white_noise", sample_rate=16000)
    at8 = data.load_noise("white_noise")
    assert len(at16) == 960000 and abs(len(at8) - 480000) <= 1
    with pytest.raises(ValueError, match="known"):
        data.load_noise("rain")


def test_traces_are_watts_over_seconds():
    rf = data.load_trace("rf-1")
    assert rf.dt_s == 1e-3 and len(rf.power_w) == 25274
    # mean V^2/R of trace 1 is about 153 uW (data/traces/mementos-rf/SOURCE.md)
    assert 100e-6 < rf.power_w.mean() < 200e-6 and rf.power_w.max() == pytest.approx(5.283**2 / 30e3, rel=1e-3)
    solar = data.load_trace("solar-2023jun")
    assert solar.dt_s == 60 and len(solar.power_w) == 43200 and solar.power_w.min() == 0
    # peak irradiance 1429.5 W/m^2 on 5 cm^2 at 15 %: about 107 mW
    assert solar.power_w.max() == pytest.approx(1429.5 * 5e-4 * 0.15, rel=1e-3)
    with pytest.raises(ValueError, match="known"):
        data.load_trace("wind")
    with pytest.raises(ValueError, match="panel_efficiency"):
        data.load_trace("solar-2023jun", panel_efficiency=1.5)


@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    """A private copy of data/mnist and the manifest, so a test may damage it."""
    shutil.copytree(data.DATA_DIR / "mnist", tmp_path / "mnist")
    shutil.copy(data.DATA_DIR / "SHA256SUMS", tmp_path / "SHA256SUMS")
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    return tmp_path


def test_corrupted_file_names_itself(data_copy):
    target = data_copy / "mnist" / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(target.read_bytes())
    raw[100] ^= 0xFF
    target.write_bytes(bytes(raw))
    with pytest.raises(data.DataFileError, match="t10k-labels-idx1-ubyte.gz is corrupted: its sha256"):
        data.load_mnist("test")


def test_missing_file_names_itself(data_copy):
    (data_copy / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(data.DataFileError, match="t10k-images-idx3-ubyte.gz is missing"):
        data.load_mnist("train")


def test_bad_split_is_explained():
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'test'\]"):
        data.load_mnist("validation")
