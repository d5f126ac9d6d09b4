"""The model contract, batch-norm folding, real early exit on the speech models, and ``--device``.

Speed itself is measured by ``python -m eekit bench speedup`` (a benchmark, not a timed test); these tests pin what
the speed-ups must not change: the same exits and answers as the simulation.
"""

import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from eekit import data
from eekit.__main__ import main
from eekit.bench import bench_speedup, bench_stages
from eekit.evaluate import profile_speech
from eekit.models import branchy_lenet, resnet_ee
from eekit.models.contract import ExitModel
from eekit.models.fast import (PAIRWISE_FROM, FewChannelConv2d, PairMaxPool, PooledLinear, WindowMaxPool, fold_batchnorm,
                               inference_copy)
from eekit.models.speech import conformer_ctc, conformer_kws
from eekit.runtime import check_device, infer, infer_full
from eekit.zoo import load_pretrained


def test_every_model_kind_satisfies_the_contract():
    for model in (resnet_ee(width=8), branchy_lenet(), branchy_lenet(shared_head=True), conformer_ctc(),
                  conformer_kws()):
        assert isinstance(model, ExitModel), type(model).__name__
    assert conformer_ctc().output_kind == "ctc" and conformer_kws().output_kind == "classification"
    assert not isinstance(nn.Linear(2, 2), ExitModel)


def _random_batchnorm_stats(model: nn.Module) -> None:
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


def test_folding_batchnorm_changes_nothing_but_rounding():
    torch.manual_seed(0)
    model = resnet_ee(width=8).eval()
    _random_batchnorm_stats(model)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 8  # the original keeps its layers
    x = torch.rand(16, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(model(x), folded(x)):
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    speech = conformer_ctc().eval()
    _random_batchnorm_stats(speech)
    waves, lengths = torch.randn(3, 8000), torch.tensor([8000, 6000, 4000])
    with torch.no_grad():
        for a, b in zip(speech(waves, lengths)[0], fold_batchnorm(speech)(waves, lengths)[0]):
            assert torch.allclose(a, b, atol=1e-4)


def test_the_inference_copy_is_made_once_and_follows_new_weights():
    torch.manual_seed(0)
    model = resnet_ee(width=8).eval()
    first = inference_copy(model)
    assert inference_copy(model) is first
    x = torch.rand(4, 3, 32, 32)
    before = infer_full(model, x).logits
    with torch.no_grad():
        model.exits.heads[-1][-1].bias.add_(10.0)  # an in-place update, as an optimizer step makes
    assert inference_copy(model) is not first
    assert torch.allclose(infer_full(model, x).logits, before + 10.0, atol=1e-4)


@pytest.mark.parametrize("batch", [1, 64])  # below and above PAIRWISE_FROM: max_pool2d, then pairwise maxima
def test_fast_pools_give_the_same_maxima_at_every_batch_size(batch):
    x = torch.randn(batch, 24, 32, 32).contiguous(memory_format=torch.channels_last)
    assert torch.equal(PairMaxPool()(x), nn.functional.max_pool2d(x, 2))
    assert torch.equal(WindowMaxPool(nn.AdaptiveMaxPool2d(4))(x), nn.functional.adaptive_max_pool2d(x, 4))
    assert (x.numel() >= PAIRWISE_FROM) == (batch > 1)


def test_fast_pools_give_the_same_maxima_in_the_default_layout_at_batch_1():
    x = torch.randn(1, 24, 32, 32)  # what FewChannelConv2d leaves at batch 1: pairwise maxima there too
    assert torch.equal(PairMaxPool()(x), nn.functional.max_pool2d(x, 2))


@pytest.mark.parametrize("batch", [1, 64])
def test_fused_heads_and_few_channel_convolutions_change_only_rounding(batch):
    torch.manual_seed(0)
    model = resnet_ee(width=8).eval()
    _random_batchnorm_stats(model)
    fast = inference_copy(model)
    assert sum(isinstance(m, PooledLinear) for m in fast.modules()) == 5  # every head, the 1x1 final one included
    assert [type(m) for m in fast.stages[0].modules()].count(FewChannelConv2d) == 1  # the 3-channel input only
    x = torch.rand(batch, 3, 32, 32)
    with torch.inference_mode():
        for a, b in zip(fold_batchnorm(model)(x), fast(x)):
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-4) and not torch.equal(a, torch.zeros_like(a))
    head = model.exits.heads[0]  # max pool to 4x4, flatten, linear: the same logits in either layout
    fused = PooledLinear(WindowMaxPool(head[0]), head[2], channels=16)
    h = torch.randn(batch, 16, 16, 16)
    with torch.no_grad():
        for layout in (torch.contiguous_format, torch.channels_last):
            assert torch.allclose(fused(h.contiguous(memory_format=layout)), head(h), atol=1e-5)
    with pytest.raises(ValueError, match="cannot read 7 pooled channels"):
        PooledLinear(head[0], head[2], channels=7)
    conv = FewChannelConv2d(nn.Conv2d(3, 4, 3, padding=1).to(memory_format=torch.channels_last))
    with torch.no_grad():
        assert torch.allclose(conv(x), conv.conv(x), atol=1e-6)


def test_compaction_copies_the_newest_features_once():
    torch.manual_seed(0)
    x, keep = torch.rand(5, 3, 32, 32), torch.tensor([0, 2, 3])
    plain = resnet_ee(width=8).eval()  # its heads read only the newest features
    with torch.no_grad():
        state = plain.advance(plain.begin(x), 0)
        kept = plain.select(state, keep)
    assert kept.features == [kept.h] and kept.features[0] is kept.h and torch.equal(kept.h, state.h[keep])
    shared = branchy_lenet(shared_head=True).eval()  # its shared head reads every exit point reached so far
    with torch.no_grad():
        state = shared.advance(shared.advance(shared.begin(torch.rand(5, 1, 28, 28)), 0), 1)
        kept = shared.select(state, keep)
    assert [f.shape[0] for f in kept.features] == [3, 3] and torch.equal(kept.features[0], state.features[0][keep])
    assert kept.features[-1] is kept.h


@pytest.fixture(scope="module")
def recognizer():
    test = data.load_digit_strings("test", count=48)
    model = load_pretrained("speech-fsdd")
    return model, test, profile_speech(model, test, batch_size=16)


def _padded(test):
    return test.collate([test[i] for i in range(len(test))])[:2]


@pytest.mark.parametrize("criterion", ["ctc_entropy", "ctc_posterior", "ctc_batch_entropy"])
def test_real_ctc_exits_match_the_simulation_utterance_for_utterance(recognizer, criterion):
    model, test, profile = recognizer
    scores = profile.scores_for(criterion)
    threshold = float(np.quantile(scores[:, 0], 0.4 if criterion == "ctc_entropy" else 0.6))
    expected = profile.exit_index(criterion, threshold)
    assert len(set(expected.tolist())) > 1  # the case really exercises several exits
    result = infer(model, _padded(test), criterion, threshold, batch_size=16)  # the profile's batching
    assert result.exit_index.tolist() == expected.tolist()
    assert result.transcripts() == [profile.predictions[i, k] for i, k in enumerate(expected)]


def test_real_ctc_exits_at_batch_1_match_a_batch_1_profile(recognizer):
    model, test, _ = recognizer
    few = test.subset(12)
    profile = profile_speech(model, few, batch_size=1)  # no padding, as at batch 1
    threshold = float(np.median(profile.scores_for("ctc_entropy")[:, 0]))
    waves, lengths = _padded(few)
    got = [infer(model, (waves[i : i + 1], lengths[i : i + 1]), "ctc_entropy", threshold) for i in range(len(few))]
    assert [int(r.exit_index) for r in got] == profile.exit_index("ctc_entropy", threshold).tolist()
    assert [r.transcripts()[0] for r in got] == [profile.predictions[i, int(r.exit_index)] for i, r in enumerate(got)]


@pytest.mark.parametrize("criterion,quantile", [("max_prob", 0.5), ("patience", None)])
def test_real_keyword_spotting_exits_match_the_simulation(criterion, quantile):
    model = load_pretrained("kws-fsdd")
    test = data.load_fsdd("test").subset(64)
    profile = profile_speech(model, test, batch_size=16)
    threshold = 1 if quantile is None else float(np.quantile(profile.scores_for(criterion)[:, 0], quantile))
    expected = profile.exit_index(criterion, threshold)
    assert len(set(expected.tolist())) > 1
    result = infer(model, _padded(test), criterion, threshold, batch_size=16)
    assert result.exit_index.tolist() == expected.tolist()
    assert result.predictions.tolist() == profile.predictions[np.arange(len(test)), expected].tolist()
    full = infer_full(model, _padded(test), batch_size=16)
    assert full.predictions.tolist() == profile.predictions[:, -1].tolist()


def test_speedup_benchmark_runs_on_a_speech_model_on_the_cpu():
    result = bench_speedup("speech-fsdd", samples=24, batch1_samples=3, repeats=1, device="cpu")
    assert result["device"] == "cpu" and result["batch_size"] == 32 and result["exits_as_simulated"] == 1.0
    assert result["ideal_speedup"] > 1 and result["realized_speedup_batch32"] > 0
    assert 0 <= result["der_early_exit"] <= 1 and 0 <= result["der_full"] <= 1
    assert len(result["load_average"]) == 2 and min(result["load_average"]) >= 0  # recorded with every run


def test_stage_profile_counts_the_cards_flops_and_every_exit(capsys):
    """``bench stages``: its FLOP ideal from the cached profile's exit shares is the card's (1 / (1 - FLOPs saved)),
    and the shares and per-sample figures cover every exit."""
    from eekit.zoo import load_card

    assert main(["bench", "stages", "--model", "cnn-cifar10", "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    card = load_card("cnn-cifar10")
    assert out["flop_ideal"] == pytest.approx(1 / (1 - card["early_exit"]["flops_saved"]), abs=2e-3)
    assert out["block_mflops_per_sample"][1] == pytest.approx(card["exit_mflops"][1] - card["exit_mflops"][0]
                                                              - out["head_mflops_per_sample"][1], abs=1e-3)
    for key in ("exit_share", "block_time_share", "block_flop_share"):
        assert len(out[key]) == 5 and sum(out[key]) == pytest.approx(1, abs=1e-3)
    assert min(out["block_ms_per_sample"] + out["head_ms_per_sample"]) > 0 and out["time_ideal"] > 1
    speech = bench_stages("speech-fsdd", batch=4, repeats=1, device="cpu")
    assert speech["batch_size"] == 4 and len(speech["block_ms_per_sample"]) == 6 and speech["flop_ideal"] > 1
    assert main(["bench", "stages", "--batch", "0"]) == 2
    assert "batch must be" in capsys.readouterr().err


_FAULTS_OF_REUSE = """
import json, resource, torch
from eekit.bench import _freed_memory_kept

def faults(nbytes):  # minor page faults of allocating and filling nbytes a second time, after a first was freed
    torch.empty(nbytes // 4).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(nbytes // 4).fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

big = 64 << 20
default = faults(big)
with _freed_memory_kept(True) as policy:
    faults(big)  # grows the heap once
    kept = faults(big)
print(json.dumps({"policy": policy, "default": default, "kept": kept, "after": faults(big)}))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the malloc policy is glibc's (elsewhere: 'platform')")
def test_benchmarks_keep_freed_memory_so_big_buffers_do_not_fault_on_every_call():
    """glibc maps every buffer over 32 MiB afresh, so the same 64 MiB activation page-faults on every call, a cost of
    bytes the FLOP count does not see; the benchmarks' policy reuses it, and afterwards glibc's is back. Measured in a
    fresh process: a heap that earlier work left with a big free block would serve the buffer from it either way."""
    from eekit.bench import _freed_memory_kept

    run = subprocess.run([sys.executable, "-c", _FAULTS_OF_REUSE], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    faults = json.loads(run.stdout)
    assert faults["policy"] == "keep-freed"
    assert faults["default"] > 1000 and faults["after"] > 1000  # 16,384 pages of 4 KiB, each zeroed by the kernel
    assert faults["kept"] < faults["default"] / 20
    with _freed_memory_kept(False) as policy:
        assert policy == "default"



@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the malloc policy is glibc's (elsewhere: 'platform')")
def test_benchmarks_and_training_hand_their_memory_back_when_they_return(monkeypatch):
    """A benchmark's big buffers are freed only when it returns, after its malloc policy's own trim: the heap is
    trimmed again once its locals are gone (without that, lesson 12's kernel kept 300 MB after two benchmarks, and
    lesson 01's 170 MB after training)."""
    import ctypes

    from eekit import bench, train
    from eekit.memory import memory_returned

    events = []

    class Buffer:
        def __del__(self):
            events.append("buffer freed")

    class Libc:
        def malloc_trim(self, pad):
            events.append("heap trimmed")

    def benchmark():
        buffer = Buffer()  # noqa: F841 (a local, freed at return)
        return "result"

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    assert memory_returned(benchmark)() == "result"
    assert events == ["buffer freed", "heap trimmed"]
    for fn in (bench.bench_speedup, bench.bench_stages, train.train):
        assert fn.__wrapped__.__name__ == fn.__name__  # the benchmarks and training hand their memory back


def test_device_option(capsys, tmp_path, monkeypatch):
    assert check_device("cpu") == torch.device("cpu")
    for argv in (["bench", "speedup", "--device", "tpu9"], ["train", "cnn-mnist", "--device", "gpu",
                                                             "--out", str(tmp_path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "accepted: cpu, cuda" in err
    if not torch.cuda.is_available():
        assert main(["bench", "speedup", "--device", "cuda"]) == 2
        assert "not available here" in capsys.readouterr().err
    # --device cpu reaches the benchmark and the training run (both stubbed: the real ones take minutes)
    from eekit import bench
    from eekit.zoo import training

    monkeypatch.setattr(bench, "bench_speedup", lambda model, device, threads, keep_freed_memory: {
        "device": device, "keep": keep_freed_memory})
    assert main(["bench", "speedup", "--device", "cpu", "--json"]) == 0
    assert '"device": "cpu"' in capsys.readouterr().out
    assert main(["bench", "speedup", "--device", "cpu", "--default-malloc", "--json"]) == 0
    assert '"keep": false' in capsys.readouterr().out
    monkeypatch.setattr(training, "run_recipe", lambda *args, device, **kwargs: {"name": device})
    assert main(["train", "cnn-mnist", "--device", "cpu", "--quiet"]) == 0
    assert '"name": "cpu"' in capsys.readouterr().out


def test_speech_flops_fit_equals_a_direct_count():
    from eekit.bench import _block_flops, _counted, exit_flops

    model = conformer_ctc().eval()
    waves, lengths = torch.randn(2, 12000), torch.tensor([12000, 5000])
    cost, full = exit_flops(model, (waves, lengths))
    for i in range(2):
        begin, state = _counted(model.begin, (waves[i : i + 1, : lengths[i]], lengths[i : i + 1]))
        blocks, heads = _block_flops(model, state)
        assert cost[i].tolist() == (begin + np.cumsum(blocks + heads)).tolist()
        assert full[i] == begin + blocks.sum() + heads[-1]
    assert full[0] > full[1] and (np.diff(cost, axis=1) > 0).all()


BENCH_DIR = data.DATA_DIR.parent / "docs" / "bench"
RECORDED = sorted(BENCH_DIR.glob("*.speedup.json"))
# the allocator A/B behind docs/performance.md: <model>.<keep|default>-<run>.speedup.json, run alternately
MALLOC_AB = sorted((BENCH_DIR / "malloc-ab").glob("*.speedup.json"))


def _ab_policy(path) -> str:
    """``keep`` or ``default``: the allocator policy an A/B run's file name says."""
    return path.name.split(".")[1].split("-")[0]


def test_recorded_benchmark_runs_exist_for_both_cifar_widths():
    assert {p.name for p in RECORDED} >= {"cnn-cifar10.speedup.json", "cnn-cifar10-wide.speedup.json"}
    ab = {p.name.split(".")[0] + "." + _ab_policy(p) for p in MALLOC_AB}
    assert ab == {f"{m}.{policy}" for m in ("cnn-cifar10", "cnn-cifar10-wide") for policy in ("keep", "default")}


@pytest.mark.parametrize("path", RECORDED + MALLOC_AB, ids=lambda p: p.parent.name + "/" + p.name)
def test_a_recorded_benchmark_run_is_of_the_shipped_model(path):
    """The README and lesson 12 quote recorded ``bench speedup --threads 1 --json`` runs (docs/bench/): each must be a
    full run of the shipped weights at their card's operating point, or its numbers describe some other model; the
    A/B runs under the policy their name says (``--default-malloc`` for ``default``)."""
    from eekit.zoo import load_card

    run = json.loads(path.read_text())
    card = load_card(run["model"])
    if path.parent.name == "malloc-ab":
        policy = _ab_policy(path)
        assert path.name.startswith(run["model"] + ".") and run["malloc"] == {"keep": "keep-freed"}.get(policy, policy)
    else:
        assert path.name == f"{run['model']}.speedup.json" and run["malloc"] == "keep-freed"
    assert run["device"] == "cpu" and run["torch_threads"] == 1 and run["exits_as_simulated"] == 1.0
    assert run["samples"] == card["dataset"]["test_samples"] and run["batch1_samples"] == 500 and run["repeats"] == 5
    assert (run["criterion"], run["threshold"]) == (card["early_exit"]["criterion"], card["early_exit"]["threshold"])
    assert run["accuracy_full"] == card["final_accuracy"]
    assert run["accuracy_early_exit"] == card["early_exit"]["accuracy"]
    assert run["ideal_speedup"] == pytest.approx(1 / (1 - card["early_exit"]["flops_saved"]), abs=2e-3)
    assert run["realized_over_ideal_batch1"] == pytest.approx(
        run["realized_speedup_batch1"] / run["ideal_speedup_batch1_samples"], abs=2e-3)
    assert run["realized_over_ideal_batch256"] == pytest.approx(
        run["realized_speedup_batch256"] / run["ideal_speedup"], abs=2e-3)
    assert len(run["load_average"]) == 2
