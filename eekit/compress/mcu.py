"""Run the C export on an emulated microcontroller, and through power failures.

* **The emulated MCU**: Debian's ``gcc-arm-none-eabi`` cross-compiles the export for a Cortex-M3 and
  ``qemu-system-arm -M mps2-an385`` runs it; newlib's semihosting lets the same ``main.c`` read images and write
  logits on the host. ``-icount shift=0`` makes QEMU's clock advance one nanosecond per executed instruction, and the
  driver reads it through SysTick (25 MHz, so 40 instructions a tick; a loop of known length checks that figure):
  **instructions**, not cycles - QEMU is not cycle-accurate (no pipeline, no wait states, no flash latency).
* **Sizes**: ``arm-none-eabi-size`` of the compiled model (``text`` = code + ``const`` weights, ``bss`` = the
  persistent struct with the activation buffers + scratch), beside the kit's own byte count.
* **Power failures**: the exported runtime commits its progress (step, and output channel inside a layer) in a
  persistent struct. The driver built with ``-DEEK_POWER_FAIL_TEST`` dies at a chosen tick (a step boundary or a
  point inside a layer) after saving only that struct - SRAM, stack and registers are lost - and the next run
  resumes from it. Every failure must give the logits and exit of an uninterrupted run; the extra work it costs
  (MACs done twice) is counted and replaces the energy simulator's assumed work between two checkpoints.

Every one of the :data:`INPUTS` test images runs on the host build and on the emulator at QEMU's full speed (the
bit-exactness check); instructions are counted in a second emulator pass with ``-icount``, about three times slower,
on all of them for a small model but only the first :data:`LARGE_TIMED_INPUTS` for a large one (the CIFAR-10 ResNet,
about 360 M instructions an image; the count per exit is the same for every image), which also tries only
:data:`LARGE_QEMU_BOUNDARIES` seeded step boundaries of its power-failure test there, so the emulated checks fit a
CI budget of a few minutes on one core.

``python -m eekit.compress.mcu --out data/checkpoints --force`` reruns everything and writes ``mcu-results.json``,
which ``python -m eekit report compress`` and lesson 31 read (they need no toolchain).
"""

from __future__ import annotations

import inspect
import json
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import cli, data, validate, zoo
from ..energy import MCU, simulate
from ..files import write_bytes, write_text
from .export_c import CFLAGS, _TEMPLATES, compile_and_run, export_c, find_compiler, read_outputs
from .memory import nonzero_macs, qmodel_bytes
from .payoff import compressed_workload, energy_payoff
from .pipeline import COMPRESSED, SUFFIX, load_compressed_card, load_compressed_profile, load_integer
from .quantize import early_exit, int_forward

__all__ = ["TARGET", "INSTALL_HINT", "toolchain", "exportable", "mcu_run", "power_failure", "measure",
           "load_mcu_results", "RESULTS_FILE"]

TARGET = "cortex-m3 (qemu mps2-an385)"
INSTALL_HINT = ("install the Cortex-M cross-compiler and emulator: "
                "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm")
ARM_FLAGS = ("-mcpu=cortex-m3", "-mthumb", *CFLAGS)
QEMU_ARGS = ("-M", "mps2-an385", "-nographic", "-monitor", "none", "-serial", "none",
             "-semihosting-config", "enable=on,target=native")
ICOUNT = ("-icount", "shift=0")  # QEMU's clock counts instructions (1 ns each): for the instruction counts only
RESULTS_FILE = "mcu-results.json"
INPUTS = 200  # test images run on the host build and on the emulated MCU
INSIDE_POINTS = 50  # seeded power failures inside layers (besides every layer boundary)
QEMU_INSIDE_POINTS = 5  # ... of which the emulated MCU repeats the boundaries and this many
# a model of over LARGE_MACS per inference (the CIFAR-10 ResNet: 14 M MACs, about 360 M instructions, some 2 s of
# emulation an image on one core) runs fewer images and failure points on the emulated MCU, to fit the CI budget
LARGE_MACS = 5_000_000
LARGE_TIMED_INPUTS = 40
LARGE_QEMU_BOUNDARIES = 4
SIMULATOR_CHECKPOINT_MACS = inspect.signature(simulate).parameters["checkpoint_macs"].default  # assumed there
COMMAND = "python -m eekit.compress.mcu --out data/checkpoints --force"


def toolchain() -> dict | None:
    """Paths of ``arm-none-eabi-gcc``, ``arm-none-eabi-size``, ``qemu-system-arm`` (and newlib's semihosting
    library), or None when any is missing."""
    tools = {"gcc": shutil.which("arm-none-eabi-gcc"), "size": shutil.which("arm-none-eabi-size"),
             "qemu": shutil.which("qemu-system-arm")}
    if not all(tools.values()):
        return None
    lib = subprocess.run([tools["gcc"], *ARM_FLAGS[:2], "-print-file-name=librdimon.a"], capture_output=True,
                         text=True).stdout.strip()
    return tools if os.path.isabs(lib) else None


def _tools() -> dict:
    tools = toolchain()
    if tools is None:
        raise RuntimeError(f"no Cortex-M toolchain found: {INSTALL_HINT}")
    return tools


def exportable() -> list[str]:
    """The shipped compressed models the integer C export covers."""
    return [n + SUFFIX for n in COMPRESSED if load_integer(n)]


def _versions(tools: dict) -> dict:
    first = lambda cmd: subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
    return {"gcc": first([tools["gcc"], "--version"]), "qemu": first([tools["qemu"], "--version"])}


def _run(cmd: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    """Run a compiler or size command; a failure raises with its last lines of output."""
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed: {(done.stderr or done.stdout).strip()[-800:]}")
    return done


def _arm_build(c_dir: Path, out: str, *defines: str) -> Path:
    """Cross-compile ``main.c`` + the model with the Cortex-M start-up into ``c_dir/out`` (an ELF)."""
    for name in ("startup.c", "mps2_an385.ld"):
        write_text(c_dir / name, (_TEMPLATES / "cortex_m" / name).read_text())
    _run([_tools()["gcc"], *ARM_FLAGS, *defines, "--specs=rdimon.specs", "-T", "mps2_an385.ld", "startup.c", "main.c",
          "eekit_model.c", "-o", out], c_dir, "cross-compiling for the Cortex-M3")
    return c_dir / out


def _qemu(c_dir: Path, elf: str, args: list[str], timeout: float = 600, count_instructions: bool = False) -> int:
    """Run ``elf`` on the emulated board with ``args`` as its command line; the exit status of its ``exit()``.
    ``count_instructions``: with QEMU's clock counting instructions (``-icount``), about three times slower."""
    cmd = [_tools()["qemu"], *QEMU_ARGS, *(ICOUNT if count_instructions else ()), "-kernel", elf,
           "-append", " ".join(args)]
    return subprocess.run(cmd, cwd=c_dir, capture_output=True, timeout=timeout).returncode


def sizes(c_dir: Path) -> dict:
    """``arm-none-eabi-size`` (Berkeley: text, data, bss bytes) of the model alone, compiled for the Cortex-M3."""
    tools = _tools()
    _run([tools["gcc"], *ARM_FLAGS, "-c", "eekit_model.c", "-o", "eekit_model.o"], c_dir, "cross-compiling the model")
    out = _run([tools["size"], "eekit_model.o"], c_dir, "arm-none-eabi-size")
    text, data_, bss = (int(v) for v in out.stdout.splitlines()[1].split()[:3])
    return {"text_bytes": text, "data_bytes": data_, "bss_bytes": bss}


def mcu_run(qmodel: dict, images: torch.Tensor, c_dir: Path, name: str = "", timed_inputs: int | None = None
            ) -> dict:
    """Export ``qmodel`` into ``c_dir``, run ``images`` on the host build and on the emulated Cortex-M3, and count
    the instructions of each step on the first ``timed_inputs`` of them (all by default); returns both outputs,
    the per-step instruction counts and the sizes."""
    c_dir = Path(c_dir)
    export = export_c(qmodel, c_dir, name, force=True)
    K, C = len(qmodel["stages"]), qmodel["num_classes"]
    host = compile_and_run(c_dir, images, K, C)  # writes images.bin, which the emulated MCU reads too
    _arm_build(c_dir, "eekit_model.elf", "-DEEK_STEP_TIMES")
    if _qemu(c_dir, "eekit_model.elf", ["images.bin", "arm_outputs.txt"]) != 0:  # every input, at full speed
        raise RuntimeError("the emulated MCU run failed")
    mcu = read_outputs(c_dir / "arm_outputs.txt", K, C)
    timed = "images.bin"
    if timed_inputs is not None and timed_inputs < len(images):
        timed = "timed.bin"
        write_bytes(c_dir / timed, images[:timed_inputs].to(torch.uint8).contiguous().numpy().tobytes())
    status = _qemu(c_dir, "eekit_model.elf", [timed, "timed_outputs.txt", "steps.txt"], count_instructions=True)
    if status != 0:
        raise RuntimeError(f"the emulated MCU run counting instructions failed with status {status}")
    again = read_outputs(c_dir / "timed_outputs.txt", K, C)
    n = len(again["taken"])
    if any(not torch.equal(again["logits"][k], mcu["logits"][k][:n]) for k in range(K)):
        raise RuntimeError("the emulated MCU gave other logits when counting instructions")
    lines = (c_dir / "steps.txt").read_text().splitlines()
    _, known, ticks = lines[0].split()
    per_tick = int(known) / int(ticks)  # instructions per SysTick tick (40 when QEMU's clock is 1 ns/instruction)
    steps = np.array([[int(v) for v in line.split()] for line in lines[1:]], dtype=np.int64) * per_tick
    return {"host": host, "mcu": mcu, "step_instructions": steps, "instructions_per_tick": per_tick,
            "exit_steps": export["exit_steps"], "sizes": sizes(c_dir)}


def _pf_once(run, fail_at: int, run_all: int) -> list[str]:
    """One run of the power-failure driver; returns its result line(s) split into words."""
    status, result = run(fail_at, run_all)
    lines = [line.split() for line in result.read_text().splitlines()]
    if status not in (0, 3) or (status == 3) != (lines[0][0] == "failed"):
        raise RuntimeError(f"power-failure driver: unexpected status {status} ({lines[:1]})")
    return lines


def _pf_check(run, nv: Path, run_all: int, inside: int, rng: random.Random, label: str, progress: bool,
              boundaries_tried: int | None = None) -> dict:
    """Every layer boundary (or ``boundaries_tried`` seeded ones) and ``inside`` seeded points inside layers, each
    a power failure then a resume, compared with an uninterrupted run."""
    nv.unlink(missing_ok=True)
    done, boundaries = _pf_once(run, 0, run_all)
    total, ref_macs, ref = int(done[3]), int(done[4]), done[2:3] + done[5:]
    marks = [int(t) for t in boundaries[1:]]
    if boundaries_tried is not None and boundaries_tried < len(marks):
        marks = sorted(rng.sample(marks, boundaries_tried))
    others = sorted(set(range(1, total + 1)) - set(marks))
    points = marks + sorted(rng.sample(others, min(inside, len(others))))
    identical, extra, inside_extra = 0, [], []
    for t in tqdm(points, desc=f"power failures ({label})", disable=not progress, leave=False):
        nv.unlink(missing_ok=True)
        failed = _pf_once(run, t, run_all)[0]
        resumed = _pf_once(run, 0, run_all)[0]  # power back: the same program starts again
        same = failed[0] == "failed" and resumed[0] == "done" and resumed[2:3] + resumed[5:] == ref
        identical += same
        extra.append(int(failed[2]) + int(resumed[4]) - ref_macs)
        if t not in marks:
            inside_extra.append(extra[-1])
    nv.unlink(missing_ok=True)
    return {"points": len(points), "boundary_points": len(marks), "identical": identical, "extra_macs": extra,
            "inside_extra_macs": inside_extra, "macs": ref_macs}


def power_failure(c_dir: Path, image_index: int, early_index: int, qemu: bool = True, seed: int = 0,
                  progress: bool = True, qemu_boundaries: int | None = None) -> dict:
    """Power failures at every step boundary and at :data:`INSIDE_POINTS` seeded points inside layers of image
    ``image_index`` (every exit computed) and of image ``early_index`` (stopping at its early exit), on the host
    build with a file as the persistent memory; with ``qemu``, the emulated MCU repeats the boundaries and
    :data:`QEMU_INSIDE_POINTS` points of the first image (``qemu_boundaries``: that many seeded boundaries
    only). The export must already be in ``c_dir``."""
    c_dir = Path(c_dir)
    cc = find_compiler()
    if cc is None:
        raise RuntimeError("no C compiler found: install gcc (e.g. `apt-get install gcc`) or set $CC")
    _run([cc, *CFLAGS, "-DEEK_POWER_FAIL_TEST", "main.c", "eekit_model.c", "-o", "pf"], c_dir,
         "compiling the power-failure driver")
    nv, result = c_dir / "nv.bin", c_dir / "result.txt"

    def host(index):
        def run(fail_at, run_all):
            args = ["./pf", "images.bin", str(index), "nv.bin", str(fail_at), str(run_all), "result.txt"]
            return subprocess.run(args, cwd=c_dir, capture_output=True, timeout=60).returncode, result
        return run

    rng = random.Random(seed)
    runs = {}
    for label, index, run_all, inside in (("host, every exit", image_index, 1, INSIDE_POINTS),
                                          ("host, stopping early", early_index, 0, INSIDE_POINTS // 5)):
        runs[label] = _pf_check(host(index), nv, run_all, inside, rng, label, progress)
    if qemu:
        _arm_build(c_dir, "pf.elf", "-DEEK_POWER_FAIL_TEST")

        def arm(fail_at, run_all):
            args = ["images.bin", str(image_index), "nv.bin", str(fail_at), str(run_all), "result.txt"]
            return _qemu(c_dir, "pf.elf", args, timeout=120), result

        label = "emulated MCU, every exit"
        runs[label] = _pf_check(arm, nv, 1, QEMU_INSIDE_POINTS, rng, label, progress, qemu_boundaries)
    extra = [e for r in runs.values() for e in r["extra_macs"]]
    inside = [e for r in runs.values() for e in r["inside_extra_macs"]]
    inference = runs["host, every exit"]["macs"]
    return {"points_tried": sum(r["points"] for r in runs.values()),
            "identical": sum(r["identical"] for r in runs.values()),
            "boundary_points": sum(r["boundary_points"] for r in runs.values()),
            "extra_work_per_failure": {"mean_macs": round(float(np.mean(extra)), 1), "max_macs": int(max(extra)),
                                       "mean_fraction_of_inference": round(float(np.mean(extra)) / inference, 4),
                                       "mean_macs_inside_layers": round(float(np.mean(inside)), 1)},
            "runs": {k: {key: v for key, v in r.items() if "extra" not in key} for k, r in runs.items()},
            "seed": seed}


def measure(name: str, progress: bool = True) -> dict:
    """The emulated-MCU run, the sizes, the instructions per exit and the power-failure test of shipped model
    ``name`` (the ``mcu_run`` and ``power_failure`` entries of ``python -m eekit report compress``)."""
    qmodel = load_integer(name)
    test = zoo.RECIPES[qmodel["source"]].test_set()
    images = test.images[:INPUTS]
    K = len(qmodel["stages"])
    macs = nonzero_macs(qmodel)
    large = sum(macs["stage_macs"]) + sum(macs["head_macs"]) > LARGE_MACS
    n = len(images)
    timed = LARGE_TIMED_INPUTS if large else INPUTS
    with tempfile.TemporaryDirectory() as tmp:
        run = mcu_run(qmodel, images, Path(tmp), name, timed_inputs=timed)
        ref = int_forward(qmodel, images)
        taken = early_exit(qmodel, ref)
        host, mcu = run["host"], run["mcu"]
        per_exit = [int(((mcu["logits"][k] != ref[k][:n]).any(1) | (mcu["logits"][k] != host["logits"][k][:n]).any(1)
                         ).sum() + (host["logits"][k] != ref[k]).any(1).sum()) for k in range(K)]
        exits_differ = int(((mcu["taken"] != taken[:n]) | (mcu["stopped"] != taken[:n])).sum()
                           + ((host["taken"] != taken) | (host["stopped"] != taken)).sum())
        early = int(torch.nonzero(taken < K - 1)[0, 0])  # an image that does stop early
        failures = power_failure(Path(tmp), 0, early, progress=progress,
                                 qemu_boundaries=LARGE_QEMU_BOUNDARIES if large else None)
    to_exit = np.cumsum(np.array(macs["stage_macs"], float) + np.array(macs["head_macs"], float))
    # the exit-k head runs on the way to exit k only: the shared head's earlier blocks are on every path
    instructions = run["step_instructions"][:, run["exit_steps"]].mean(0)
    model = MCU()
    card = load_compressed_card(name)
    mcu_run_ = {
        "target": TARGET, "inputs_checked": n, "host_inputs_checked": len(images), "inputs_timed": min(timed, n),
        "mismatches": sum(per_exit) + exits_differ,
        "mismatches_per_exit": per_exit, "exit_mismatches": exits_differ,
        **run["sizes"], "kit_bytes_mcu": qmodel_bytes(qmodel)["total"],
        "kit_static_activation_bytes": card["static_activation_bytes"],
        "instructions_per_exit": [int(round(v)) for v in instructions],
        "macs_per_exit": [int(v) for v in to_exit],
        "instructions_per_mac": [round(float(i / m), 2) for i, m in zip(instructions, to_exit)],
        "simulator_cycles_per_exit": [int(round(model.compute(m)[1] * model.clock_hz)) for m in to_exit],
        "instructions_per_tick": run["instructions_per_tick"],
    }
    # the simulator loses, on average, half the work between two checkpoints to a failure at a random moment: the
    # exported runtime's measured loss inside layers is that half, so twice it replaces the assumed piece of work
    piece = 2 * failures["extra_work_per_failure"]["mean_macs_inside_layers"]
    workload = compressed_workload(qmodel, load_compressed_profile(name))
    failures["simulator"] = {"checkpoint_macs_assumed": SIMULATOR_CHECKPOINT_MACS,
                             "checkpoint_macs_measured": round(piece, 1)}
    if "policies" in card["energy"]:
        measured = energy_payoff(qmodel["source"], workload, policies=("threshold",), checkpoint_macs=piece)
        failures["simulator"].update(
            answers_per_hour_assumed=card["energy"]["policies"]["threshold"]["compressed"]["answers_per_hour"],
            answers_per_hour_measured=measured["policies"]["threshold"]["compressed"]["answers_per_hour"],
            trace=measured["trace"], policy="threshold")
    else:  # too big for the simulator's capacitor (see the card's energy note)
        failures["simulator"]["not_simulated"] = card["energy"]["note"]
    return {"mcu_run": mcu_run_, "power_failure": failures}


def ship(out_dir: str | Path, force: bool = False, progress: bool = True) -> dict:
    """Measure every exportable model and write ``mcu-results.json`` into ``out_dir`` (data/checkpoints also
    records its sha256 in data/SHA256SUMS)."""
    out_dir = validate.writable_dir("output folder", out_dir)
    path = out_dir / RESULTS_FILE
    validate.no_overwrite([path], force)
    tools = _tools()
    results = {"target": TARGET, "command": COMMAND, "toolchain": _versions(tools),
               "note": "QEMU counts instructions (-icount shift=0), it is not cycle-accurate",
               "models": {name: measure(name, progress) for name in exportable()}}
    write_text(path, json.dumps(results, indent=1) + "\n")
    if out_dir.resolve() == (data.DATA_DIR / zoo.CHECKPOINT_DIR).resolve():
        data.update_manifest([path])
    return results


def load_mcu_results() -> dict:
    """The shipped results of the last ``python -m eekit.compress.mcu`` run (no toolchain needed)."""
    return json.loads(data.data_path(f"{zoo.CHECKPOINT_DIR}/{RESULTS_FILE}").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = cli.Parser(prog="python -m eekit.compress.mcu", description="run the exported models on an emulated "
                        "Cortex-M3 and through power failures; write " + RESULTS_FILE)
    parser.add_argument("--out", default="eekit-runs", help="output folder (data/checkpoints replaces the shipped "
                        "results, with --force)")
    parser.add_argument("--force", action="store_true", help="replace an existing " + RESULTS_FILE)
    args = parser.parse_args(argv)

    def command() -> int:
        results = ship(args.out, args.force)
        print(json.dumps({n: {k: m[k] for k in ("mcu_run", )} for n, m in results["models"].items()}, indent=1))
        return 0

    return cli.run(command)


if __name__ == "__main__":
    raise SystemExit(main())
