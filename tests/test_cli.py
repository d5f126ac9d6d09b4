"""The command line: report, bench and train print what they promise."""

import json
import subprocess
import sys

import pytest

from eekit.__main__ import main


def test_report_prints_the_promised_json(capsys):
    assert main(["report", "cnn-mnist", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("exit_accuracy", "exit_mflops", "final_accuracy", "threshold", "ee_accuracy", "flops_saved"):
        assert key in out
    assert len(out["exit_accuracy"]) == 3 and 0 <= out["flops_saved"] <= 1
    assert out["final_accuracy"] >= 0.985  # the bar for the MNIST checkpoint


def test_report_takes_another_criterion_and_drop(capsys):
    assert main(["report", "cnn-cifar10", "--criterion", "margin", "--max-drop", "0.02", "--json"]) == 0
    margin = json.loads(capsys.readouterr().out)
    assert margin["criterion"] == "margin" and margin["max_drop"] == 0.02
    assert margin["ee_accuracy"] >= margin["final_accuracy"] - 0.02 - 1e-9
    assert main(["report", "cnn-cifar10", "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["criterion"] == "max_prob" and margin["flops_saved"] > card["flops_saved"]  # a looser drop saves more
    assert main(["report", "cnn-cifar10", "--criterion", "confidence"]) == 2
    assert "valid criteria" in capsys.readouterr().err
    assert main(["report", "cnn-cifar10", "--max-drop", "5"]) == 2
    assert "fraction in [0, 1]" in capsys.readouterr().err


def test_bench_widgets_json(capsys):
    assert main(["bench", "widgets", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["samples"] >= 10_000 and out["slider_update_ms"] > 0


def test_bench_energy_json(capsys):
    assert main(["bench", "energy", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["trace_hz"] == 1000 and out["simulated_hours"] == 24
    assert 0 < out["sim_seconds_24h"] and out["energy_balance_rel_err"] < 1e-9
    assert set(out["inferences_per_hour"]) == {"full", "threshold", "energy_aware", "anytime"}
    # early exits answer more often than the full model on the same harvest
    assert out["inferences_per_hour"]["threshold"] > 2 * out["inferences_per_hour"]["full"]


def test_unknown_model_is_an_error_not_a_traceback(capsys):
    assert main(["report", "cnn-imagenet"]) == 2
    assert "unknown model 'cnn-imagenet'; known:" in capsys.readouterr().err


@pytest.mark.slow  # trains a model
def test_train_quick_subset_writes_weights_card_and_profile(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "eekit", "train", "cnn-mnist", "--subset", "256", "--epochs", "1", "--quiet",
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    card = json.loads((tmp_path / "cnn-mnist.json").read_text())
    assert card["dataset"]["train_samples"] == 256
    assert card["recipe"]["command"] == "python -m eekit train cnn-mnist --subset 256 --epochs 1"
    assert (tmp_path / "cnn-mnist.pt").exists() and (tmp_path / "cnn-mnist.profile.npz").exists()


def test_bench_notebooks_runs_only_the_chosen_lessons_and_sees_their_memory(tmp_path, capsys):
    import nbformat

    from eekit.bench import bench_notebooks

    for name, mb in (("10_small.ipynb", 1), ("21_big.ipynb", 200)):
        cell = nbformat.v4.new_code_cell(f"import time\nx = b'1' * ({mb} << 20)  # touched: resident\ntime.sleep(0.5)")
        nbformat.write(nbformat.v4.new_notebook(cells=[cell]), tmp_path / name)
    out = bench_notebooks(str(tmp_path), only=["21"])
    assert list(out["notebooks"]) == ["21_big.ipynb"]
    assert out["notebooks"]["21_big.ipynb"]["kernel_uss_mb"] > 200
    assert main(["bench", "notebooks", "--only", "99"]) == 2
    assert "whose names start with ['99']" in capsys.readouterr().err
