"""Exported exits run in ONNX Runtime and give PyTorch's logits: every exit of every shipped model kind (B-LeNet,
the CIFAR-10 CNN, the speech conformer with CTC exits, a wrapped wav2vec 2.0) on 100 inputs each, within
:data:`eekit.onnx_export.TOLERANCE` (absolute, on every logit or log-prob)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from eekit import data
from eekit.__main__ import main
from eekit.onnx_export import SECONDS, TOLERANCE, ExitSubnet, export_onnx, run_onnx
from eekit.zoo import load_pretrained

INPUTS = 100
# the largest |ONNX - PyTorch| measured on this machine (README, eekit.onnx_export.TOLERANCE); another CPU rounds a
# little differently, so each model must stay within twice its measurement
MEASURED = {"cnn-mnist": 1.2e-5, "cnn-cifar10": 7.6e-6, "speech-fsdd": 3.4e-4, "wav2vec2-fsdd": 2.0e-3}


def _speech_inputs(rate: int = 8000):
    utterances = data.load_digit_strings("test", count=INPUTS)
    waves, lengths = utterances.collate([utterances[i] for i in range(INPUTS)])[:2]
    return F.pad(waves, (0, round(SECONDS * rate) - waves.shape[1])), lengths  # the exported graphs' length


def _models():
    images = {"cnn-mnist": data.load_mnist("test"), "cnn-cifar10": data.load_cifar10("test")}
    for name, test_set in images.items():
        yield name, load_pretrained(name), (test_set.tensors()[0][:INPUTS],)
    yield "speech-fsdd", load_pretrained("speech-fsdd"), _speech_inputs()
    yield "wav2vec2-fsdd", load_pretrained("wav2vec2-fsdd"), _speech_inputs()  # the wrapper, trained


@pytest.mark.parametrize("name, model, inputs", list(_models()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_exit_gives_pytorchs_logits_in_onnx_runtime(name, model, inputs, tmp_path):
    worst = 0.0
    for k in range(model.num_exits):
        path = export_onnx(model, k, tmp_path / f"{name}-exit{k}.onnx")
        got = run_onnx(path, *inputs)
        with torch.no_grad():
            want = ExitSubnet(model.eval(), k)(*inputs)
        want = list(want) if isinstance(want, tuple) else [want]
        assert len(got) == len(want) and got[0].shape == want[0].shape
        assert got[0].shape[0] == INPUTS
        if len(want) == 2:  # speech: the frame lengths are exact
            assert torch.equal(got[1], want[1])
        diff = (got[0] - want[0]).abs()
        mismatches = int((diff > TOLERANCE).sum())
        assert mismatches == 0, f"{name} exit {k}: {mismatches} values differ by more than {TOLERANCE}"
        assert torch.equal(got[0].argmax(-1), want[0].argmax(-1))  # the same classes / best CTC path
        worst = max(worst, float(diff.max()))
    print(f"{name}: largest |ONNX - PyTorch| over {model.num_exits} exits x {INPUTS} inputs: {worst:.2e}")
    assert worst <= 2 * MEASURED[name]


def test_the_command_writes_an_exit_and_refuses_to_overwrite_it(tmp_path, capsys):
    out = tmp_path / "mnist-exit1.onnx"
    assert main(["export-onnx", "cnn-mnist", "--exit", "1", "--out", str(out)]) == 0
    first = out.read_bytes()
    assert len(first) > 1000 and "up to exit 1 (conv2) of 3" in capsys.readouterr().out
    assert main(["export-onnx", "cnn-mnist", "--exit", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing to overwrite" in err and "--force" in err
    assert out.read_bytes() == first  # untouched
    assert main(["export-onnx", "cnn-mnist", "--exit", "0", "--out", str(out), "--force"]) == 0
    assert out.read_bytes() != first
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left behind


@pytest.mark.parametrize("argv, message", [
    (["--exit", "3"], "exit index must be a whole number in 0..2 (0 = the first exit), got 3"),
    (["--exit", "-1"], "exit index must be a whole number in 0..2"),
])
def test_the_command_says_what_is_accepted(argv, message, tmp_path, capsys):
    assert main(["export-onnx", "cnn-mnist", *argv, "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert main(["export-onnx", "no-such-model", "--exit", "0", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "unknown model 'no-such-model'; known:" in capsys.readouterr().err
    assert main(["export-onnx", "cnn-mnist", "--exit", "0", "--out", str(tmp_path / "missing" / "x.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
