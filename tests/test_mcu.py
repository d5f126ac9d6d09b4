"""The C export on an emulated Cortex-M3 (QEMU mps2-an385) and through power failures; the shipped results that
`python -m eekit report compress` and lesson 31 read are what a rerun gives."""

import os
import shutil

import pytest

from eekit.__main__ import main
from eekit.compress import mcu
from eekit.data import data_path

SHIPPED = mcu.load_mcu_results  # a missing shipped file fails here: it is not a skip


def require_toolchain() -> None:
    """Fail in CI (the CI env var is set) when the toolchain is missing, never a silent skip; skip elsewhere."""
    if mcu.toolchain() is None:
        message = f"no Cortex-M toolchain: {mcu.INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI installs them in .ci/run)")
        pytest.skip(message)


@pytest.fixture(scope="module")
def measured():
    """Every exportable model compiled and run once per session (about a minute per model on one core)."""
    require_toolchain()
    return {name: mcu.measure(name) for name in mcu.exportable()}


def test_a_missing_toolchain_fails_in_ci_and_skips_with_the_install_hint_elsewhere(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install gcc-arm-none-eabi"):
        require_toolchain()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="libnewlib-arm-none-eabi qemu-system-arm"):
        require_toolchain()


@pytest.mark.slow
def test_every_exportable_model_is_bit_exact_on_the_emulated_cortex_m3(measured):
    assert {"cnn-mnist-shared-compressed", "cnn-cifar10-compressed"} <= set(measured)
    for name, m in measured.items():
        run = m["mcu_run"]
        assert run["target"] == "cortex-m3 (qemu mps2-an385)"
        assert run["host_inputs_checked"] >= 200, name
        assert run["inputs_checked"] >= 200, name  # every model, on the emulator too
        # the CIFAR-10 ResNet (about 2 s an image with -icount) counts instructions on fewer, to fit CI's budget
        large = run["macs_per_exit"][-1] > mcu.LARGE_MACS
        assert run["inputs_timed"] == (mcu.LARGE_TIMED_INPUTS if large else 200), name
        assert run["mismatches"] == 0 and run["exit_mismatches"] == 0, f"{name}: MCU, host and reference differ"
        assert run["instructions_per_tick"] == 40.0  # QEMU's -icount clock: 1 ns an instruction, SysTick 25 MHz
        steps = run["instructions_per_exit"]
        assert steps == sorted(steps) and steps[0] > run["macs_per_exit"][0]  # a scalar MAC takes several
        assert run["text_bytes"] > run["kit_bytes_mcu"]  # code besides the constants the kit counts
        assert run["bss_bytes"] >= run["kit_static_activation_bytes"]


@pytest.mark.slow
def test_every_injected_power_failure_gives_the_uninterrupted_logits_and_exit(measured):
    for name, m in measured.items():
        pf = m["power_failure"]
        runs = pf["runs"]
        assert pf["identical"] == pf["points_tried"], f"{name}: a resumed inference differs"
        inside = pf["points_tried"] - pf["boundary_points"]
        assert inside >= 50 and runs["host, every exit"]["boundary_points"] >= 2 * 8  # start and end of each step
        assert runs["emulated MCU, every exit"]["identical"] == runs["emulated MCU, every exit"]["points"] > 0
        extra = pf["extra_work_per_failure"]
        assert 0 < extra["mean_macs"] <= extra["max_macs"] < runs["host, every exit"]["macs"]
        # a failure inside a layer redoes at most one output channel (progress is committed per channel); one at a
        # step's end, before its commit, redoes that step
        assert extra["mean_macs_inside_layers"] < runs["host, every exit"]["macs"] / 16
        assert extra["max_macs"] < runs["host, every exit"]["macs"] / 4
        sim = pf["simulator"]  # the measured loss sets the simulator's work between checkpoints
        assert sim["checkpoint_macs_measured"] == round(2 * extra["mean_macs_inside_layers"], 1)
        assert sim["checkpoint_macs_assumed"] == 1e5
        assert sim["answers_per_hour_measured"] > 0 if "not_simulated" not in sim else "capacitor" in sim["not_simulated"]


@pytest.mark.slow
def test_shipped_mcu_results_are_what_a_rerun_gives(measured):
    shipped = SHIPPED()
    assert sorted(shipped["models"]) == sorted(measured)
    same_compiler = shipped["toolchain"]["gcc"] == mcu._versions(mcu.toolchain())["gcc"]
    for name, m in measured.items():
        got, ship = m["mcu_run"], shipped["models"][name]["mcu_run"]
        if same_compiler:  # sizes and instruction counts are exact for one compiler version
            assert got == ship, name
        else:
            assert {k: v for k, v in got.items() if "bytes" not in k and "instructions" not in k} == \
                   {k: v for k, v in ship.items() if "bytes" not in k and "instructions" not in k}
        assert m["power_failure"] == shipped["models"][name]["power_failure"]  # MACs do not depend on the compiler


def test_report_compress_shows_the_shipped_mcu_run_without_a_toolchain(monkeypatch, capsys):
    import json

    monkeypatch.setattr(shutil, "which", lambda name: None)  # the report reads, it never runs anything
    data_path("checkpoints/" + mcu.RESULTS_FILE)  # listed in SHA256SUMS, unchanged
    assert main(["report", "compress", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)["models"]
    shipped = SHIPPED()["models"]
    for name, m in shipped.items():
        run = models[name]["mcu_run"]
        for key in ("target", "inputs_checked", "mismatches", "text_bytes", "data_bytes", "bss_bytes",
                    "instructions_per_exit"):
            assert run[key] == m["mcu_run"][key]
        assert run["mismatches"] == 0 and run["host_inputs_checked"] >= 200 and run["inputs_checked"] >= 200
        pf = models[name]["power_failure"]
        assert pf["points_tried"] == pf["identical"] == m["power_failure"]["points_tried"] >= 50
        assert pf["extra_work_per_failure"] == m["power_failure"]["extra_work_per_failure"]


def test_the_rerun_command_never_replaces_the_shipped_results_without_force(capsys):
    from eekit.data import DATA_DIR

    assert mcu.main(["--out", str(DATA_DIR / "checkpoints")]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and len(err.strip().splitlines()) == 1
    assert mcu.COMMAND == SHIPPED()["command"] == "python -m eekit.compress.mcu --out data/checkpoints --force"
