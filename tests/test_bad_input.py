"""Bad input never hangs, never lies, never destroys (issue 17).

Grouped by class of problem. Every error test checks that the message says what was wrong *and what is accepted*
(the shared checks in ``eekit.validate`` word them the same way everywhere). The regression tests name the cases
the issue found.
"""

import hashlib
import importlib
import json
import math
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import small_noise_runs, synthetic_profile

from eekit import data, validate
from eekit.__main__ import main
from eekit.criteria import CRITERIA, get_criterion, normalized_entropy, passes
from eekit.energy import MCU, Capacitor, Workload, capacitor_for_energy, load_workload, simulate, synthetic_trace
from eekit.evaluate import profile_model
from eekit.profile import ExitProfile
from eekit.runtime import infer
from eekit.train import TrainConfig, train
from eekit.zoo import get_recipe, load_pretrained, load_profile, report, run_recipe

ROOT = Path(__file__).resolve().parents[1]
ACCEPTED = r"must be|known:|accepted|at least|at most|use |give |pass "  # every message says what would work


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def finishes_within(seconds: int):
    """Fail instead of hanging: the simulator's loops must be bounded by construction."""
    def _timeout(*_):
        raise TimeoutError(f"still running after {seconds} s: a loop is not bounded")

    old = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def toy_workload(stage_macs=(1e5, 2e5, 3e5), head_macs=(1e4, 1e4, 1e4)) -> Workload:
    return Workload("toy", np.array(stage_macs, float), np.array(head_macs, float), np.array([1e3, 5e2, 10.0]),
                    head_params=100, profile=synthetic_profile(200, exits=3))


@pytest.fixture(scope="module")
def mnist():
    model = load_pretrained("cnn-mnist")
    images, labels = data.load_mnist("test").tensors()
    return model, images[:64], labels[:64]


# ============================================================================================ data loss


class TestDataLoss:
    def test_train_into_shipped_checkpoints_is_refused_without_force(self, capsys):
        # regression: `train cnn-mnist --subset 64 --epochs 1 --out data/checkpoints` replaced the shipped model
        shipped = ROOT / "data" / "checkpoints"
        before = {p.name: sha(p) for p in shipped.glob("cnn-mnist.*")}
        manifest = sha(ROOT / "data" / "SHA256SUMS")
        assert main(["train", "cnn-mnist", "--subset", "64", "--epochs", "1", "--quiet", "--out", str(shipped)]) == 2
        err = capsys.readouterr().err
        assert "refusing to overwrite" in err and "--force" in err and len(err.strip().splitlines()) == 1
        assert {p.name: sha(p) for p in shipped.glob("cnn-mnist.*")} == before
        assert sha(ROOT / "data" / "SHA256SUMS") == manifest

    @pytest.mark.slow  # trains for one epoch on 64 images
    def test_force_replaces_only_in_the_folder_given(self, tmp_path, capsys):
        (tmp_path / "cnn-mnist.pt").write_bytes(b"an older run")
        assert main(["train", "cnn-mnist", "--subset", "64", "--epochs", "1", "--quiet", "--out", str(tmp_path)]) == 2
        assert (tmp_path / "cnn-mnist.pt").read_bytes() == b"an older run"
        assert main(["train", "cnn-mnist", "--subset", "64", "--epochs", "1", "--quiet", "--force",
                     "--out", str(tmp_path)]) == 0
        assert torch.load(tmp_path / "cnn-mnist.pt", weights_only=True)  # a real state dict now
        assert json.loads((tmp_path / "cnn-mnist.json").read_text())["dataset"]["train_samples"] == 64

    def test_manifest_update_touches_only_the_files_written_and_corruption_stays_detected(self, tmp_path):
        for name in ("good.bin", "corrupted.bin", "new.bin"):
            (tmp_path / name).write_bytes(name.encode())
        data.write_manifest(tmp_path)
        (tmp_path / "corrupted.bin").write_bytes(b"flipped bits")  # damaged after shipping
        (tmp_path / "new.bin").write_bytes(b"retrained")
        data.update_manifest([tmp_path / "new.bin"], tmp_path)
        assert data.data_path("new.bin", tmp_path)  # the file just written passes ...
        assert data.data_path("good.bin", tmp_path)
        with pytest.raises(data.DataFileError, match="corrupted"):  # ... and the damaged one still fails
            data.data_path("corrupted.bin", tmp_path)
        with pytest.raises(ValueError, match="only shipped data files"):
            data.update_manifest([ROOT / "README.md"], tmp_path)

    def test_data_and_checkpoints_are_binary_for_git(self):
        out = subprocess.run(["git", "check-attr", "text", "binary", "--", "data/checkpoints/cnn-mnist.pt",
                              "data/traces/mementos-rf/1.txt"], cwd=ROOT, capture_output=True, text=True, check=True)
        assert "data/checkpoints/cnn-mnist.pt: binary: set" in out.stdout
        assert "data/traces/mementos-rf/1.txt: text: unset" in out.stdout  # hashed text: never converted


# ============================================================================================ hangs


class TestHangs:
    """Each of these used to loop forever or eat memory; now each is refused at once or runs to its bound."""

    def test_infinite_duration(self):
        with finishes_within(20), pytest.raises(ValueError, match=r"duration_s \(seconds\) must be a finite number > 0"):
            simulate(synthetic_trace("constant", 10), toy_workload(), "energy_aware", duration_s=math.inf)

    def test_zero_mac_workload(self):
        with finishes_within(20), pytest.raises(ValueError, match="costs 0 MACs.*needs > 0 MACs"):
            toy_workload(stage_macs=(0, 0, 0), head_macs=(0, 0, 0))

    def test_mcu_with_zero_costs(self):
        free = MCU(**{f: 0.0 for f in ("mac_j", "mac_cycles", "call_j", "call_cycles", "fram_write_word_j",
                                        "fram_write_call_j", "fram_read_word_j", "fram_read_call_j",
                                        "fram_word_cycles", "fram_call_cycles", "reboot_j", "reboot_s")})
        for policy in ("full", "energy_aware", "anytime"):
            with finishes_within(20), pytest.raises(ValueError, match="takes no time.*needs MCU.mac_cycles"):
                simulate(synthetic_trace("constant", 10), toy_workload(), policy, mcu=free)

    def test_energy_free_but_timed_mcu_runs_to_its_bound(self):
        free_energy = MCU(mac_j=0.0, call_j=0.0)
        with finishes_within(60):
            r = simulate(synthetic_trace("constant", 10, power_w=1e-3), toy_workload(), "energy_aware",
                         mcu=free_energy, duration_s=30)
        assert r.inferences > 0 and r.energy_balance_rel_err < 1e-9

    @pytest.mark.parametrize("macs", [0.5, 1e-9, 0.0, -1.0, math.nan])
    def test_checkpoint_macs_below_one(self, macs):
        with finishes_within(20), pytest.raises(ValueError, match=r"checkpoint_macs .* must be a finite number >= 1"):
            simulate(synthetic_trace("constant", 10), toy_workload(), "full", checkpoint_macs=macs)

    def test_too_many_checkpoint_pieces(self):
        with finishes_within(20), pytest.raises(ValueError, match="pieces; at most .*checkpoint_macs >="):
            simulate(synthetic_trace("constant", 10), toy_workload(), "full", checkpoint_macs=1)

    def test_a_very_long_simulation_is_refused_not_run(self):
        with finishes_within(20), pytest.raises(ValueError, match="at most .* accepted: duration_s <="):
            simulate(data.load_trace("rf-1"), toy_workload(), "energy_aware", duration_s=1e9)
        with finishes_within(20), pytest.raises(ValueError, match="at most .* accepted: shorten duration_s"):
            simulate(synthetic_trace("constant", 10, power_w=1.0), toy_workload(stage_macs=(1, 1, 1), head_macs=(
                1, 1, 1)), "energy_aware", duration_s=1e5)

    def test_dark_trace_with_a_sleeping_device_ends(self):
        dark = synthetic_trace("constant", 10, power_w=0.0)
        with finishes_within(30):
            r = simulate(dark, toy_workload(), "energy_aware", mcu=MCU(sleep_w=1e-6), duration_s=3600,
                         capacitor=Capacitor(leakage_w=1e-6))
        assert r.inferences == 0 and r.energy["harvested"] == 0

    def test_synthetic_trace_too_long_or_infinite(self):
        with pytest.raises(ValueError, match=r"samples; at most .* raise dt_s"):
            synthetic_trace("constant", duration_s=1e9)
        with pytest.raises(ValueError, match=r"duration_s \(seconds\) must be a finite number > 0"):
            synthetic_trace("constant", duration_s=math.inf)
        with pytest.raises(ValueError, match=r"period_s \(seconds\) must be a finite number >= 0.001"):
            synthetic_trace("telegraph", period_s=1e-9)


# ============================================================================================ CLI errors


def cli(args: list[str], capsys, command=main) -> tuple[int, str]:
    """Exit status and stderr of ``python -m eekit args``, or of another command's ``main`` (in process; argparse
    errors raise SystemExit)."""
    try:
        code = command(args)
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, accepted: str) -> None:
    """The CLI's one way to refuse: exit 2 and a single ``error: ...`` line that matches ``accepted``."""
    assert code == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ")
    assert re.search(accepted, err), err


class TestCLI:
    @pytest.mark.parametrize("args,accepted", [
        (["train", "cnn-mnist", "--subset", "10"], r"subset \(training samples\) must be a whole number >= 64"),
        (["train", "cnn-mnist", "--subset", "0"], r"subset .* must be a whole number >= 64, got 0"),
        (["train", "cnn-mnist", "--subset", "-5"], r"must be a whole number >= 64"),
        (["train", "cnn-mnist", "--subset", "99999"], r"must be a whole number in 64\.\.8000"),
        (["train", "cnn-mnist", "--epochs", "0"], r"epochs must be a whole number >= 1, got 0"),
        (["train", "cnn-mnist", "--out", "/no/such/folder/run"], r"parent folder .* does not exist; give an existing"),
        (["train", "cnn-mnist", "--out", "README.md"], r"is a file; give a folder"),
        # /proc takes no new folders, even from root (who may write anywhere else)
        (["train", "cnn-mnist", "--out", "/proc/eekit-run"], r"'/proc/eekit-run' cannot be written .*; give a folder"),
        (["train", "cnn-imagenet"], r"unknown model 'cnn-imagenet'; known:"),
        (["train", "cnn-mnist", "--subset", "ten"], r"invalid int value: 'ten'"),
        (["report", "cnn-mnist", "--max-drop", "nan"], r"fraction in \[0, 1\]"),
        (["bench", "speedup", "--model", "cnn-imagenet"], r"unknown model|known"),
        (["bench", "teleport"], r"invalid choice: 'teleport'"),
        (["fly"], r"invalid choice"),
    ])
    def test_every_error_is_one_line_with_exit_2(self, args, accepted, capsys, monkeypatch):
        monkeypatch.chdir(ROOT)
        assert_one_line_error(*cli(args, capsys), accepted)

    @pytest.mark.parametrize("module,args,accepted", [
        ("eekit.compress.mcu", ["--bogus"], r"unrecognized arguments: --bogus \(see `python -m eekit.compress.mcu"),
        # refused at once, not after minutes of emulation when the results are saved
        ("eekit.compress.mcu", ["--out", "/proc/eekit-run"], r"'/proc/eekit-run' cannot be written"),
        ("eekit.compress.requantize", [], r"the following arguments are required: name"),
        ("eekit.compress.requantize", ["cnn-cifar10", "--out", "/proc/eekit-run"], r"cannot be written"),
        ("eekit.compress.requantize", ["cnn-imagenet"], r"cnn-imagenet"),
        ("eekit.librispeech", [], r"the following arguments are required: --source"),
        ("eekit.librispeech", ["--source", "/no/such/corpus"], r"holds no manifest.csv; give the mini-librispeech"),
        ("eekit.librispeech", ["--source", str(ROOT / "data" / "librispeech")], r"refusing to overwrite .*--force"),
    ])
    def test_module_commands_answer_the_same_way(self, module, args, accepted, capsys):
        assert_one_line_error(*cli(args, capsys, command=importlib.import_module(module).main), accepted)

    @pytest.mark.slow  # a fresh interpreter imports torch (about 10 s here)
    @pytest.mark.parametrize("module", ["eekit.compress.mcu", "eekit.compress.requantize", "eekit.librispeech"])
    def test_a_module_command_says_one_line_and_no_runpy_warning(self, module):
        # regression: runpy warned "found in sys.modules ... unpredictable behaviour" above every module command's
        # output, because the package imports these modules to register its models
        result = subprocess.run([sys.executable, "-m", module, "--bogus"], capture_output=True, text=True,
                                timeout=120, cwd=ROOT)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr

    @pytest.mark.slow  # a fresh interpreter imports torch (about 10 s here)
    def test_no_traceback_from_a_real_process(self, tmp_path):
        # regression: `train --subset 10` died with ZeroDivisionError (less than one batch)
        result = subprocess.run([sys.executable, "-m", "eekit", "train", "cnn-mnist", "--subset", "10", "--quiet",
                                 "--out", str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip() == "error: subset (training samples) must be a whole number >= 64, got 10"
        assert not any(tmp_path.iterdir())  # nothing written

    @pytest.mark.slow  # runs the speech model over its test set
    def test_bench_speedup_on_a_speech_model_answers_or_says_why(self):
        # regression: `bench speedup --model kws-fsdd` was a traceback
        result = subprocess.run([sys.executable, "-m", "eekit", "bench", "speedup", "--model", "kws-fsdd", "--json"],
                                capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert "Traceback" not in result.stderr
        if result.returncode == 0:
            assert json.loads(result.stdout)["model"] == "kws-fsdd"
        else:
            assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
            assert re.search(ACCEPTED, result.stderr)


# ============================================================================================ confident nonsense


class TestNoConfidentNonsense:
    def test_nan_images_are_an_error_not_a_confident_first_exit(self, mnist):
        # regression: NaN images left at exit 1 as "confident" (entropy mapped NaN to 0)
        model, images, _ = mnist
        bad = images.clone()
        bad[3, 0, 5, 5] = float("nan")
        for criterion in ("max_prob", "entropy", "margin"):
            with pytest.raises(ValueError, match="non-finite .* only finite numbers are accepted"):
                infer(model, bad, criterion, 0.5)
        with pytest.raises(ValueError, match="only finite numbers are accepted"):
            profile_model(model, torch.utils.data.TensorDataset(bad, torch.zeros(64, dtype=torch.long)))

    def test_images_in_0_255_name_the_expected_range(self, mnist):
        # regression: 0..255 images ran silently at lower accuracy
        model, images, _ = mnist
        with pytest.raises(ValueError, match=r"pixel values in \[0, 1\], got values in \[0, 255\].*divide by 255"):
            infer(model, images * 255, "max_prob", 0.9)
        with pytest.raises(ValueError, match=r"in \[0, 1\], got dtype torch.uint8 \(uint8 images: divide by 255\)"):
            infer(model, (images * 255).to(torch.uint8), "max_prob", 0.9)
        with pytest.raises(ValueError, match=r"pixel values in \[0, 1\]"):
            profile_model(model, torch.utils.data.TensorDataset(images * 255, torch.zeros(64, dtype=torch.long)))

    def test_no_criterion_turns_nan_into_confidence(self):
        logits = torch.randn(3, 5, 10)
        logits[0, 2] = float("nan")
        for c in CRITERIA.values():
            if c.kind != "classification":
                continue
            with pytest.raises(ValueError, match="only finite numbers are accepted"):
                c.scores(logits, labels=torch.zeros(5, dtype=torch.long))
        assert torch.isnan(normalized_entropy(torch.tensor([[float("nan"), 0.0]]))).all()  # NaN stays NaN
        assert normalized_entropy(torch.tensor([[-math.inf, 0.0]])).item() == 0.0  # 0 log 0 is still 0

    def test_ctc_criteria_reject_raw_logits(self):
        raw = torch.randn(2, 3, 8, 11) * 4  # what a model gives before log_softmax
        for c in CRITERIA.values():
            if c.kind == "classification":
                continue
            with pytest.raises(ValueError, match=r"must be log-probabilities .* apply \.log_softmax\(-1\) first"):
                c.scores(raw)
            assert c.scores(raw.log_softmax(-1)).shape == (2, 3)

    @pytest.mark.parametrize("bad", [math.nan, math.inf, -0.1, 1.5])
    def test_thresholds_outside_the_range(self, bad):
        p = synthetic_profile(100, exits=3)
        with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
            p.at("max_prob", bad)
        with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
            passes(get_criterion("max_prob"), np.zeros((4, 3)), np.array([0.1, bad, 0.9]))


# ============================================================================================ clear errors


class TestProfileFiles:
    @pytest.fixture
    def saved(self, tmp_path):
        return synthetic_profile(50, exits=3).save(tmp_path / "p.npz")

    def test_truncated_damaged_and_foreign_files_raise_the_documented_value_error(self, saved, tmp_path):
        raw = saved.read_bytes()
        cases = {"truncated.npz": raw[: len(raw) // 2], "damaged.npz": raw[:200] + bytes(300) + raw[500:],
                 "text.npz": b"not a zip at all"}
        for name, content in cases.items():
            (tmp_path / name).write_bytes(content)
        np.savez(tmp_path / "foreign.npz", weights=np.ones(3))
        np.save(tmp_path / "array.npy", np.ones(3))
        for name in [*cases, "foreign.npz", "array.npy"]:
            path = tmp_path / name
            with pytest.raises(ValueError, match=r"is not an eekit exit profile.*accepted: an \.npz written by") as e:
                ExitProfile.load(path)
            assert str(path) in str(e.value)
        with pytest.raises(FileNotFoundError, match="no exit profile at"):
            ExitProfile.load(tmp_path / "missing.npz")

    def test_save_returns_the_path_it_really_wrote(self, tmp_path):
        p = synthetic_profile(20, exits=3)
        written = p.save(tmp_path / "profile")  # numpy appends .npz
        assert written == tmp_path / "profile.npz" and written.is_file()
        assert ExitProfile.load(written).num_samples == 20

    def test_sweep_checks_every_threshold_not_just_the_extremes(self):
        p = synthetic_profile(100, exits=4)
        with pytest.raises(ValueError, match=r"must be in \[0, 1\], got nan"):
            p.sweep("max_prob", [0.1, math.nan, 0.9])
        with pytest.raises(ValueError, match="whole number of exits, got 1.5"):
            p.sweep("patience", [1, 1.5, 3])
        with pytest.raises(ValueError, match="at least one threshold"):
            p.sweep("max_prob", [])


class TestDataHelpers:
    def test_silent_noise(self):
        with pytest.raises(ValueError, match="noise is silent .* use a noise with energy"):
            data.mix_noise(torch.randn(800), torch.zeros(1600), 10.0)

    @pytest.mark.parametrize("snr", [math.nan, math.inf, -math.inf, "10"])
    def test_non_finite_snr(self, snr):
        with pytest.raises(ValueError, match=r"snr_db \(dB\) must be a finite number"):
            data.mix_noise(torch.randn(800), torch.randn(1600), snr)

    def test_noisy_waves_checks_names_and_snr(self):
        waves = [torch.randn(400)]
        with pytest.raises(ValueError, match=r"snr_db \(dB\) must be a finite number"):
            data.noisy_waves(waves, math.nan)
        with pytest.raises(ValueError, match="unknown noise 'rain'; known:"):
            data.noisy_waves(waves, 10, "rain")
        with pytest.raises(ValueError, match="noise must be a non-empty list of names"):
            data.noisy_waves(waves, 10, [])

    @pytest.mark.parametrize("count", [0, -3, 2.5])
    def test_count_must_be_positive(self, count):
        with pytest.raises(ValueError, match=r"count \(utterances\) must be a whole number >= 1"):
            data.load_digit_strings("test", count=count)

    def test_speaker_lists(self):
        # regression: [] silently meant every speaker; "george" was read letter by letter
        with pytest.raises(ValueError, match=r"FSDD speaker\(s\) must be a non-empty list of names, e.g. \['george'\]"):
            data.load_fsdd("test", speakers=[])
        with pytest.raises(ValueError, match=r"must be a list of names, e.g. \['george'\], got the string 'george'"):
            data.load_fsdd("test", speakers="george")
        with pytest.raises(ValueError, match=r"unknown FSDD speaker\(s\) \['bob'\]; known:"):
            data.load_fsdd("test", speakers=["bob"])
        assert len(data.load_fsdd("test", speakers=["george"])) == 50

    def test_splits_traces_and_subsets(self):
        with pytest.raises(ValueError, match=r"split must be one of \['train', 'test'\]"):
            data.load_mnist("validation")
        with pytest.raises(ValueError, match="unknown trace 'wind'; known:"):
            data.load_trace("wind")
        with pytest.raises(ValueError, match=r"must be a whole number in 1\.\.10"):
            data.evenly_spaced(10, 0)
        with pytest.raises(ValueError, match=r"subset size must be a whole number in 1\.\.2000"):
            data.load_mnist("test").subset(0)


class TestRuntimeAndTraining:
    def test_infer_says_which_model_kind_shape_and_dtype_it_takes(self, mnist):
        model, images, _ = mnist
        with pytest.raises(ValueError, match="model must be an eekit early-exit model .*got Linear"):
            infer(torch.nn.Linear(4, 4), images, "max_prob", 0.9)
        with pytest.raises(ValueError, match=r"\[N, C, H, W\], got shape \(64, 28, 28\).*x\[:, None\]"):
            infer(model, images[:, 0], "max_prob", 0.9)
        with pytest.raises(ValueError, match=r"must have 1 channel\(s\) \[N, 1, H, W\]"):
            infer(model, images.repeat(1, 3, 1, 1), "max_prob", 0.9)
        with pytest.raises(ValueError, match=r"takes float waveforms \[N, samples\]"):
            infer(load_pretrained("kws-fsdd"), images, "max_prob", 0.9)
        with pytest.raises(ValueError, match="valid criteria"):
            infer(model, images, "certainty", 0.9)

    def test_training_config_and_tiny_sets(self, mnist):
        model, images, labels = mnist
        with pytest.raises(ValueError, match="epochs must be a whole number >= 1, got 0"):
            TrainConfig(epochs=0)
        with pytest.raises(ValueError, match=r"lr \(learning rate\) must be a finite number > 0"):
            TrainConfig(lr=math.nan)
        tiny = torch.utils.data.TensorDataset(images[:10], labels[:10])
        with pytest.raises(ValueError, match="fewer than one batch.*give at least 64 samples"):
            train(model, tiny, TrainConfig(batch_size=64, epochs=1), progress=False)

    def test_freeze_backbone_gives_the_backbone_back(self, mnist):
        model = get_recipe("cnn-mnist").build()
        _, images, labels = mnist
        train(model, torch.utils.data.TensorDataset(images, labels),
              TrainConfig(epochs=1, batch_size=32, loss_weights="early-only", freeze_backbone=True), progress=False)
        assert all(p.requires_grad for p in model.parameters())

    def test_run_recipe_checks_before_it_trains(self, tmp_path):
        with pytest.raises(ValueError, match=r"subset \(training samples\) must be a whole number >= 64, got 10"):
            run_recipe("cnn-mnist", tmp_path, subset=10)
        assert not any(tmp_path.iterdir())


class TestEnergyInput:
    @pytest.mark.parametrize("call,accepted", [
        (lambda: Capacitor(capacitance_f=math.nan), r"capacitance_f \(farads\) must be a finite number > 0"),
        (lambda: Capacitor(v_on=math.inf), r"v_on \(volts\) must be a finite number > 0"),
        (lambda: MCU(clock_hz=0), r"MCU.clock_hz must be a finite number > 0"),
        (lambda: MCU(reboot_j=math.nan), r"MCU.reboot_j must be a finite number >= 0"),
        (lambda: capacitor_for_energy(-1), r"joules must be a finite number > 0"),
        (lambda: synthetic_trace("constant", duty=2), r"duty must be a finite number >= 0 and <= 1"),
        (lambda: load_workload("speech-fsdd"), r"no energy workload for 'speech-fsdd'.*image models"),
        (lambda: Workload("w", [1, 2], [1, 1, 1], [1, 1, 1], 0, synthetic_profile(10, exits=3)),
         r"stage_macs needs 3 finite, non-negative values"),
        (lambda: Workload("w", [1, 2, 3], [1, 1, 1], [1, 1, 1], 0, "a profile"), r"profile must be an eekit"),
        (lambda: simulate(synthetic_trace("constant", 10), toy_workload(), "greedy"), r"unknown policy 'greedy'; known"),
        (lambda: simulate("rf-1", toy_workload()), r"trace must be an eekit PowerTrace"),
        (lambda: simulate(synthetic_trace("constant", 10), "cnn-mnist"), r"workload must be an eekit.energy.Workload"),
    ])
    def test_says_what_is_accepted(self, call, accepted):
        with pytest.raises(ValueError, match=accepted):
            call()


class TestValidators:
    """The shared checks themselves: one wording for every entry point."""

    @pytest.mark.parametrize("value", [math.nan, math.inf, "1", None, True, [1]])
    def test_number(self, value):
        with pytest.raises(ValueError, match=r"x must be a finite number >= 0"):
            validate.number("x", value, 0)

    @pytest.mark.parametrize("value", [0, 1.5, math.nan, "3", 11])
    def test_whole(self, value):
        with pytest.raises(ValueError, match=r"n must be a whole number in 1\.\.10"):
            validate.whole("n", value, 1, 10)
        assert validate.whole("n", 3.0, 1, 10) == 3

    def test_names_and_choices(self):
        with pytest.raises(ValueError, match="got the string 'ab'; wrap it in a list"):
            validate.names("letters", "ab", ["ab"])
        with pytest.raises(ValueError, match=r"unknown colour \[1\]; known: \['red'\]"):
            validate.one_of("colour", [1], ["red"])


def test_every_message_says_what_is_accepted(mnist):
    """A sweep over public entry points: each bad call raises ValueError with an 'accepted' part."""
    model, images, _ = mnist
    p = load_profile("cnn-mnist")
    calls = [
        lambda: p.calibrate("max_prob", max_drop=2),
        lambda: p.calibrate("max_prob"),
        lambda: report("cnn-imagenet"),
        lambda: load_pretrained(None),
        lambda: data.load_noise("rain"),
        lambda: data.load_trace("solar-2023jun", panel_area_m2=-1),
        lambda: get_criterion("ctc_entropy", "classification"),
        lambda: infer(model, images, "max_prob", 0.9, batch_size=0),
    ]
    for call in calls:
        with pytest.raises(ValueError) as e:
            call()
        assert re.search(ACCEPTED + r"|in \[|one of|exactly one|fraction|valid", str(e.value)), e.value


# ============================================================================================ widgets


def positions(slider) -> list[float]:
    """Every position of a float slider: min, min + step, ..., max (each integer step index)."""
    n = int(round((slider.max - slider.min) / slider.step))
    return [min(slider.min + i * slider.step, slider.max) for i in range(n + 1)]


class TestWidgets:
    """Property-style sweeps: every control over its whole range, one step at a time. No position may raise, and
    a position that cannot be shown says why with the figures emptied, never the previous setting's picture."""

    def test_threshold_explorer_every_criterion_every_position(self):
        from eekit.widgets import ThresholdExplorer

        profile = load_profile("cnn-mnist")
        ex = ThresholdExplorer(profile)
        for _, name in ex.criterion_dropdown.options:
            ex.set(criterion=name)
            c = get_criterion(name)
            if c.integer:
                assert ex.threshold_slider.step == 1 and ex.threshold_slider.max == profile.num_exits - 1
            for value in positions(ex.threshold_slider):
                point = ex.set(threshold=value)
                assert ex.error is None and point is not None, (name, value, ex.error)
                assert point.exit_counts.sum() == profile.num_samples
                assert f"{100 * point.accuracy:.2f}%" in ex.readout.value
                np.testing.assert_allclose(ex.histogram.data[0].y, 100 * point.exit_fractions)

    def test_threshold_explorer_failure_empties_the_figures(self):
        from eekit.widgets import ThresholdExplorer

        prof = synthetic_profile(samples=200)
        ex = ThresholdExplorer(prof)
        assert len(ex.curve.data[0].x) > 0
        prof.scores["max_prob"] = prof.scores_for("max_prob")[:100]  # a corrupted cache
        ex.set(threshold=0.5)
        assert ex.point is None and "Cannot evaluate" in ex.readout.value
        assert len(ex.curve.data[0].x) == 0 and len(ex.curve.data[3].x) == 0
        assert sum(ex.histogram.data[0].y) == 0

    @pytest.mark.slow  # about 1,000 gallery redraws
    @pytest.mark.parametrize("criterion", ["max_prob", "patience", "fixed"])
    def test_gallery_every_exit_every_position(self, criterion):
        from eekit.widgets import ExitGallery

        profile = load_profile("cnn-mnist")
        test = data.load_mnist("test")
        c = get_criterion(criterion)
        gallery = ExitGallery(profile, test.images.numpy(), test.classes, criterion=criterion,
                              threshold=c.default if not c.integer else 1)
        s = gallery.threshold_slider
        if c.integer:  # regression: integer criteria had a step of (high - low) / 200
            assert s.step == 1 and s.max == profile.num_exits - 1
        for k in range(profile.num_exits):
            for value in positions(s):
                shown = gallery.set(exit=k, threshold=value)
                assert "Cannot" not in gallery.readout.value, (criterion, k, value, gallery.readout.value)
                exits = profile.exit_index(criterion, round(value) if c.integer else value)
                assert (exits[shown] == k).all()
                count = int(gallery.readout.value.split("<b>")[1].split("</b>")[0])
                assert count == int((exits == k).sum())
                titles = [a.text for a in gallery.figure.layout.annotations]
                assert sum(bool(t) for t in titles) == len(shown)  # no stale tile

    def test_gallery_refuses_a_bad_threshold_and_blanks_on_failure(self):
        from eekit.widgets import ExitGallery

        profile = synthetic_profile(samples=60, exits=3)
        images = np.zeros((60, 1, 8, 8), dtype=np.uint8)
        with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
            ExitGallery(profile, images, [str(i) for i in range(10)], threshold=5.0)
        gallery = ExitGallery(profile, images, [str(i) for i in range(10)], threshold=0.0)
        assert len(gallery.shown) > 0
        def broken(*_):
            raise RuntimeError("a corrupted profile")

        profile.exit_index = broken
        gallery.set(threshold=0.5)
        assert "Cannot show" in gallery.readout.value and len(gallery.shown) == 0
        assert not any(a.text for a in gallery.figure.layout.annotations)

    @pytest.mark.slow  # about 170 simulations
    def test_energy_dashboard_every_control_every_position(self):
        from eekit.widgets import EnergyDashboard
        from eekit.widgets.energy import HARVESTERS

        d = EnergyDashboard()

        def check():
            if d.result is None:  # refused (e.g. a capacitor too small): said why, nothing stale on screen
                assert "Cannot run" in d.readout.value and "at least" in d.readout.value
                assert len(d.timeline.data[0].x) == 0 and sum(d.histogram.data[0].y) == 0
                assert len(d.policies.data[1].x) == 0
                return
            r = d.result
            assert d.error is None and r.energy_balance_rel_err < 1e-9
            assert f"<b>{r.inferences}</b> answers" in d.readout.value
            assert sum(d.histogram.data[0].y) == pytest.approx(100 if r.inferences else 0)
            assert d.policies.data[1].x == (r.inferences_per_hour,)

        for harvester in HARVESTERS:
            for _, policy in d.policy_dropdown.options:
                d.set(harvester=harvester, policy=policy)
                check()
        d.set(harvester=next(iter(HARVESTERS)), policy="threshold")
        refused = 0
        for exponent in positions(d.capacitor_slider):
            d.set(capacitance_mf=10 ** exponent)
            check()
            refused += d.result is None
        assert 0 < refused < len(positions(d.capacitor_slider))  # 1 mF is too small for these models, 5 mF is not
        d.set(capacitance_mf=5)
        for value in positions(d.threshold_slider):
            d.set(threshold=value)
            check()
            assert d.result is not None

    @pytest.mark.slow  # runs the speech model at every noise and SNR
    def test_noise_explorer_every_noise_every_snr(self, monkeypatch):
        from eekit.widgets import NoiseExplorer

        small_noise_runs(monkeypatch, 30)  # 30 of the 300 test utterances: the same code paths, a tenth of the runs
        ex = NoiseExplorer()
        for _, noise in ex.noise_dropdown.options:
            for _, position in ex.snr_slider.options:
                ex.noise_dropdown.value, ex.snr_slider.value = noise, position
                assert ex.error is None and ex.profile is not None, ex.error
                assert "mean exit layer" in ex.readout.value
                assert sum(ex.histogram.data[0].y) == pytest.approx(100)

    def test_dashboard_constructors_and_setters_say_what_they_accept(self):
        from eekit.widgets import EnergyDashboard, NoiseExplorer

        with pytest.raises(ValueError, match="needs a connected-digit recognizer; choose from"):
            NoiseExplorer("cnn-mnist")
        with pytest.raises(ValueError, match="unknown harvester 'wind'; known:"):
            EnergyDashboard(harvester="wind")
        d = EnergyDashboard()
        with pytest.raises(ValueError, match=r"capacitance_mf \(the capacitor slider\) must be a finite number >= 1"):
            d.set(capacitance_mf=1000)  # the slider would have clamped it to 100 mF without a word
        with pytest.raises(ValueError, match=r"threshold \(the threshold slider\) must be a finite number >= 0.1"):
            d.set(threshold=math.nan)
        with pytest.raises(ValueError, match="unknown policy 'greedy'; known:"):
            d.set(policy="greedy")


def test_more_entry_points_say_what_they_accept():
    from eekit.zoo import noisy_run
    from eekit.widgets import exits_figure, pareto_figure
    from eekit.widgets.speech import audio_player
    from eekit.zoo import load_card

    calls = {
        lambda: noisy_run("cnn-mnist", 10): "not a shipped connected-digit recognizer; choose from",
        lambda: load_card("cnn-imagenet"): "unknown model 'cnn-imagenet'; known:",
        lambda: load_profile(""): "unknown model ''; known:",
        lambda: data.load_cifar10("validation"): r"split must be one of \['train', 'test'\]",
        lambda: data.load_noise("pink_noise", sample_rate=0): "sample_rate must be a positive integer",
        lambda: data.load_digit_strings("test", max_digits=0): "max_digits must be a whole number >= 1",
        lambda: CRITERIA["patience"].check_threshold(1.5): "whole number of exits",
        lambda: pareto_figure(synthetic_profile(50, exits=3), criteria="max_prob"): "got the string 'max_prob'",
        lambda: pareto_figure(synthetic_profile(50, exits=3), criteria=[]): "non-empty list of names",
        lambda: exits_figure("cnn-mnist"): r"profile must be an ExitProfile \(e.g. zoo.load_profile",
        lambda: audio_player(torch.full((80,), math.nan)): "only finite numbers are accepted",
        lambda: audio_player(torch.zeros(0)): "non-empty 1-D tensor of mono samples",
        lambda: train(get_recipe("cnn-mnist").build(), [], {"epochs": 1}): "config must be a TrainConfig",
    }
    for call, accepted in calls.items():
        with pytest.raises(ValueError, match=accepted):
            call()


def test_unit_features_refuse_anything_but_one_nonempty_waveform():
    from eekit.units import mfcc_frames

    for bad in (torch.zeros(2, 800), torch.zeros(0), [0.0] * 800):
        with pytest.raises(ValueError, match=r"wave: expected one non-empty waveform \[samples\]"):
            mfcc_frames(bad)


# ---------------------------------------------------------------------- the new entry points, below the CLI too


@pytest.mark.parametrize("field, value, says", [
    ("lr", math.nan, "lr (learning rate) must be a finite number > 0"),
    ("lr", math.inf, "lr (learning rate) must be a finite number > 0"),
    ("epochs", 2.5, "epochs must be a whole number >= 1"),
    ("mask_prob", 0.0, "mask_prob (share of frames that start a masked span) must be a finite number > 0 and <= 1"),
    ("mask_prob", 1.5, "mask_prob"),
    ("mask_prob", math.nan, "mask_prob"),
    ("clip_norm", math.nan, "clip_norm (gradient norm clip) must be a finite number > 0"),
    ("mask_span", 0, "mask_span must be a whole number >= 1"),
    ("speech_only", "yes", "speech_only must be True or False"),
    ("corpus", "librispeech-test", "unknown corpus 'librispeech-test'; known: ['words', 'words+librispeech']"),
])
def test_pretrain_config_refuses_bad_fields(field, value, says):
    from eekit.ssl import PretrainConfig

    with pytest.raises(ValueError, match=ACCEPTED) as err:
        PretrainConfig(**{field: value})
    assert says in str(err.value)


@pytest.mark.parametrize("field, value", [("weight_decay", -1.0), ("weight_decay", math.nan), ("momentum", 1.0),
                                          ("label_smoothing", math.nan), ("temperature", 0.0),
                                          ("freeze_backbone", "no"), ("seed", -1), ("seed", 0.5),
                                          ("optimizer", "rmsprop"), ("loss_weights", "deepest")])
def test_train_config_refuses_its_other_fields(field, value):
    with pytest.raises(ValueError, match=ACCEPTED) as err:
        TrainConfig(**{field: value})
    assert field in str(err.value)


def test_units_refuse_another_sample_rate_and_non_finite_waves():
    from eekit.units import mfcc_frames, speech_frames

    wave = torch.randn(8000)
    with pytest.raises(ValueError, match=r"sample_rate must be 8000 Hz .*resample"):
        mfcc_frames(wave, sample_rate=16000)
    assert mfcc_frames(wave).shape == (26, 39)  # encoder_frames(8000) 40 ms frames
    bad = wave.clone()
    bad[100] = math.nan
    for f in (mfcc_frames, speech_frames):
        with pytest.raises(ValueError, match="non-finite value.*only finite numbers are accepted"):
            f(bad)


def test_kmeans_and_codebook_refuse_what_they_cannot_cluster():
    from eekit.units import UnitCodebook, kmeans

    x = torch.randn(50, 3)
    assert kmeans(x, 4).shape == (4, 3)
    x[3, 1] = math.inf
    with pytest.raises(ValueError, match="non-finite.*only finite numbers are accepted"):
        kmeans(x, 4)
    with pytest.raises(ValueError, match="k \\(number of centroids\\) must be a whole number >= 1"):
        kmeans(torch.randn(50, 3), 0)
    with pytest.raises(ValueError, match="iters \\(Lloyd iterations\\) must be a whole number >= 0"):
        kmeans(torch.randn(50, 3), 2, iters=2.5)
    with pytest.raises(ValueError, match="needs a float tensor of at least k=4 rows"):
        kmeans(torch.randint(0, 5, (50, 3)), 4)
    with pytest.raises(ValueError, match="num_units must be a whole number >= 2"):
        UnitCodebook.fit([torch.randn(8000)], num_units=1)
    with pytest.raises(ValueError, match="at least one waveform"):
        UnitCodebook.fit([], num_units=4)
    good = {"mean": torch.zeros(3), "std": torch.ones(3), "centroids": torch.randn(4, 3)}
    assert UnitCodebook.from_state_dict(good).num_units == 4
    for key, value, says in [("std", torch.zeros(3), "codebook std must be a finite number > 0"),
                             ("centroids", torch.full((4, 3), math.nan), "codebook centroids must be a finite number"),
                             ("mean", torch.zeros(5), "needs centroids \\[K >= 2, D\\] and mean, std \\[D\\]")]:
        with pytest.raises(ValueError, match=says):
            UnitCodebook.from_state_dict({**good, key: value})


def test_quantize_refuses_calibration_images_outside_0_1():
    """0..255 calibration images used to give a 12 % int8 model instead of 98.6 %, silently."""
    from eekit.compress.quantize import quantize

    model = load_pretrained("cnn-mnist-shared")
    images = data.load_mnist("train").images[:64].float()  # 0..255, not divided
    with pytest.raises(ValueError, match=r"pixel values in \[0, 1\].*divide by 255"):
        quantize(model, images)
    assert quantize(model, images / 255)["weight_bits"] == 8


def _profile_args(n=4, k=3):
    preds = np.zeros((n, k), np.int64)
    return dict(predictions=preds, errors=np.zeros((n, k), np.float32), totals=np.ones(n, np.float32),
                cost=np.array([1.0, 2.0, 3.0][:k]), full_cost=3.0, exit_names=[f"e{i}" for i in range(k)],
                logits=np.zeros((k, n, 2), np.float32), labels=np.zeros(n, np.int64))


@pytest.mark.parametrize("change, says", [
    ({"cost": np.array([1.0, math.nan, 3.0])}, "every value of cost .* must be a finite number > 0"),
    ({"cost": np.array([0.0, 2.0, 3.0])}, "every value of cost .* must be a finite number > 0; 1 of 3"),
    ({"full_cost": 0.0}, "full_cost .* must be a finite number > 0"),
    ({"totals": np.array([1, 0, 1, 1], np.float32)}, "every value of totals .* must be a finite number > 0"),
    ({"errors": np.full((4, 3), 2.0, np.float32)}, "errors must be at most each sample's total \\(accepted"),
    ({"errors": np.full((4, 3), -1.0, np.float32)}, "every value of errors must be a finite number >= 0"),
    ({"labels": np.zeros(3, np.int64)}, "labels must be one per sample \\[N=4\\]"),
    ({"predictions": np.zeros((0, 3)), "errors": np.zeros((0, 3)), "totals": np.zeros(0),
      "logits": None, "labels": None}, "at least one sample and one exit"),
])
def test_exit_profile_refuses_arrays_that_would_give_wrong_numbers(change, says):
    ExitProfile(**_profile_args())  # the unchanged arrays are fine
    with pytest.raises(ValueError, match=says):
        ExitProfile(**{**_profile_args(), **change})


@pytest.mark.parametrize("criterion, threshold", [("patience", 3), ("patience", 40), ("fixed", 3)])
def test_infer_refuses_patience_or_fixed_beyond_the_models_exits(criterion, threshold):
    model = load_pretrained("cnn-mnist")  # 3 exits
    x = data.load_mnist("test").tensors()[0][:4]
    with pytest.raises(ValueError, match=rf"threshold for '{criterion}' must be in \[\d, 2\] for this 3-exit model"):
        infer(model, x, criterion, threshold)
    assert len(infer(model, x, criterion, 2).exit_index) == 4  # the last one that exists is fine


# ---------------------------------------------------------------------- every load failure names the file


def _run_folder(tmp_path):
    """A run folder as `train` writes it (weights, profile, card, SHA256SUMS), without training."""
    from eekit.recipes import output_files

    weights, card, profile = output_files("cnn-mnist", tmp_path)
    data.write_run(tmp_path, {weights: lambda p: torch.save(load_pretrained("cnn-mnist").state_dict(), p),
                              profile: load_profile("cnn-mnist").write,
                              card: lambda p: p.write_text(json.dumps({"name": "cnn-mnist"}))})
    return weights, card, profile


def test_run_folder_manifest_catches_a_flipped_byte_and_names_the_file(tmp_path):
    from eekit.zoo import load_card

    weights, card, profile = _run_folder(tmp_path)
    assert load_card("cnn-mnist", tmp_path) == {"name": "cnn-mnist"}
    assert load_pretrained("cnn-mnist", tmp_path).num_exits == 3
    assert load_profile("cnn-mnist", tmp_path).num_exits == 3
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    weights.write_bytes(bytes(raw))
    with pytest.raises(data.DataFileError, match=rf"{weights} is corrupted.*Rerun the command that wrote it"):
        load_pretrained("cnn-mnist", tmp_path)


@pytest.mark.parametrize("suffix, damage, says", [
    (".pt", lambda p: p.write_bytes(p.read_bytes()[:1000]), "cannot be read as torch weights.*accepted"),
    (".json", lambda p: p.write_text('{"name": "cnn-'), "is not valid JSON.*accepted"),
    (".profile.npz", lambda p: p.write_bytes(p.read_bytes()[:500]), "is not an eekit exit profile.*accepted"),
])
def test_a_damaged_file_without_a_manifest_entry_is_named(tmp_path, suffix, damage, says):
    from eekit.zoo import load_card

    _run_folder(tmp_path)
    (tmp_path / "SHA256SUMS").unlink()  # a run from before run folders kept a checksum list: read unchecked
    path = tmp_path / f"cnn-mnist{suffix}"
    damage(path)
    load = {".pt": load_pretrained, ".json": load_card, ".profile.npz": load_profile}[suffix]
    with pytest.raises((data.DataFileError, ValueError), match=says) as err:
        load("cnn-mnist", tmp_path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("text", ["e3b0c44298fc1c149afbf4c8996fb924\n", "not-a-digest  mnist/x.npy\n", "abc\n"])
def test_a_damaged_sha256sums_is_named_with_the_accepted_format(tmp_path, text):
    (tmp_path / "x.bin").write_bytes(b"x")
    (tmp_path / "SHA256SUMS").write_text(text)
    with pytest.raises(data.DataFileError, match=r"SHA256SUMS is damaged at line 1 .*accepted: lines of "
                                                 r"'<64 hex digits>  <relative path>'"):
        data.data_path("x.bin", tmp_path)
