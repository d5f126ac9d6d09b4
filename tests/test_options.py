"""Every option of every subcommand is either honoured or refused (exit 2, one line): none is silently ignored.

The walk reads the argparse tree of ``python -m eekit --help`` itself, so a new option without a case here fails
:func:`test_every_option_of_the_cli_has_a_case`. Each case runs the command twice, without and with the option,
and the outcome must differ: the exit status, what it prints, or what the work it would start was asked to do (the
slow work itself - training, pruning, timing - is replaced by a recorder, so the walk takes seconds). Options that
apply to some model names only are refused for the others.
"""

import argparse
import json

import pytest

from eekit import adaptivity, bench, recipes, sentences, speech_recipes
from eekit.ssl import shipped
from eekit.__main__ import build_parser, main
from eekit.compress import pipeline


def walk(parser: argparse.ArgumentParser, path: tuple = ()) -> dict[tuple, argparse.ArgumentParser]:
    """Every (sub)command's parser by its path, e.g. ``("bench", "speedup")``."""
    found = {path: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(walk(sub, path + (name,)))
    return found


def options() -> list[tuple[tuple, str]]:
    """(command path, option string) for every option but --help, of every leaf command."""
    tree = walk(build_parser())
    leaves = {p: q for p, q in tree.items() if p and not any(o[: len(p)] == p and o != p for o in tree)}
    return sorted((p, a.option_strings[-1]) for p, q in leaves.items() for a in q._actions
                  if a.option_strings and a.dest != "help")


class Recorder:
    """Stands in for the slow work; records what each call was asked to do."""

    def __init__(self, monkeypatch, tmp_path):
        self.calls, self.tmp = [], str(tmp_path)
        for module, name, result in [
            (recipes, "_run", {"name": "cnn-mnist", "final_accuracy": 0.5}),
            (shipped, "_run_recipe", None),
            (speech_recipes, "_train_cell", {"cell": "C-250", "exit_der": [], "training_seconds": 0}),
            (sentences, "_train", {"name": "sentences-ssl", "cer_by_exit": [], "wer_by_exit": [],
                                   "training_seconds": 0}),
            (pipeline, "compress", None), (adaptivity, "measure", None),
            (bench, "bench_speedup", {"x": 1}), (bench, "bench_stages", {"x": 1}),
            (bench, "bench_widgets", {"x": 1}), (bench, "bench_notebooks", {"x": 1}), (bench, "bench_energy", {"x": 1}),
            (bench, "bench_speech_encoder", {"x": 1}),
        ]:
            monkeypatch.setattr(module, name, self.stub(name, result))

    def stub(self, name, result):
        def record(*args, **kwargs):
            self.calls.append((name, repr(args).replace(self.tmp, "TMP"), repr(sorted(kwargs.items()))))
            if result is None:  # work whose result the command goes on to use: stop here, recorded
                raise ValueError(f"{name} reached")
            return result
        return record


def outcome(argv: list[str], recorder: Recorder, capsys) -> tuple:
    recorder.calls.clear()
    try:
        rc = main(argv)
    except SystemExit as exit_:  # argparse refusals
        rc = exit_.code
    out, err = capsys.readouterr()
    return rc, out, err.strip(), tuple(recorder.calls)


@pytest.fixture
def cli(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)  # the default --out (eekit-runs) lands here
    (tmp_path / "full").mkdir()  # a folder holding every command's outputs: --force is needed to replace them
    for name in ("cnn-mnist.json", "ssl-hubert.json", "C-250.json", "cnn-mnist-shared-compressed.json", "main.c"):
        (tmp_path / "full" / name).write_text("{}")
    recorder = Recorder(monkeypatch, tmp_path)
    return lambda argv: outcome(argv, recorder, capsys)


T = "train cnn-mnist --subset 64 --epochs 1 --quiet --out other".split()
S = "train speech-recipe --recipe C --labels 250 --out other".split()
# (command, option): (without, with) - two invocations whose outcomes must differ
CASES = {
    (("train",), "--out"): ("train cnn-mnist", "train cnn-mnist --out elsewhere"),
    (("train",), "--subset"): ("train cnn-mnist", "train cnn-mnist --subset 128"),
    (("train",), "--epochs"): ("train cnn-mnist", "train cnn-mnist --epochs 2"),
    (("train",), "--quiet"): ("train cnn-mnist", "train cnn-mnist --quiet"),
    (("train",), "--force"): ("train cnn-mnist --out full", "train cnn-mnist --out full --force"),
    (("train",), "--device"): ("train cnn-mnist", "train cnn-mnist --device cuda"),  # refused where no GPU is
    (("train",), "--resume"): ("train sentences --recipe scratch --labels all --out o",
                               "train sentences --recipe scratch --labels all --out o --resume"),
    (("train",), "--no-speed-perturb"): ("train sentences --recipe scratch --labels all --out o --no-speed-perturb",
                                         "train sentences --recipe scratch --labels all --out o --speed-perturb"),
    **{(("train",), f"--{o}"): ("train sentences --recipe scratch --labels all --out o",
                                f"train sentences --recipe scratch --labels all --out o --{o} {v}")
       for o, v in (("batch-size", 4), ("lr", 0.004), ("optimizer", "adamw"), ("weight-decay", 0.05))},
    (("train",), "--encoder"): ("train sentences --recipe ssl --labels all --out o",
                                "train sentences --recipe ssl --labels all --out o --encoder ssl-hubert-clean"),
    (("train",), "--recipe"): ("train speech-recipe --recipe C --labels 250",
                               "train speech-recipe --recipe E --labels 250"),
    (("train",), "--labels"): ("train speech-recipe --recipe C --labels 250",
                               "train speech-recipe --recipe C --labels 1000"),
    (("report",), "--criterion"): ("report cnn-mnist --json", "report cnn-mnist --json --criterion margin"),
    (("report",), "--max-drop"): ("report cnn-mnist --json", "report cnn-mnist --json --max-drop 0.05"),
    (("report",), "--json"): ("report cnn-mnist", "report cnn-mnist --json"),
    (("report",), "--measure"): ("report ssl-daisy --json", "report ssl-daisy --measure"),
    (("report",), "--out"): ("report ssl-daisy --measure", "report ssl-daisy --measure --out elsewhere"),
    (("report",), "--force"): ("report ssl-daisy --measure", "report ssl-daisy --measure --force"),
    (("report",), "--quiet"): ("report ssl-daisy --measure", "report ssl-daisy --measure --quiet"),
    (("compress",), "--target-bytes"): ("compress cnn-mnist-shared", "compress cnn-mnist-shared --target-bytes 20000"),
    (("compress",), "--out"): ("compress cnn-mnist-shared", "compress cnn-mnist-shared --out elsewhere"),
    (("compress",), "--force"): ("compress cnn-mnist-shared --out full", "compress cnn-mnist-shared --out full --force"),
    (("compress",), "--quiet"): ("compress cnn-mnist-shared", "compress cnn-mnist-shared --quiet"),
    (("export-c",), "--out"): ("export-c cnn-mnist-shared --out c1", "export-c cnn-mnist-shared --out /nonexistent/c"),
    (("export-onnx",), "--exit"): ("export-onnx cnn-mnist --exit 0 --out m.onnx", "export-onnx cnn-mnist --exit 9 --out m.onnx"),
    (("export-onnx",), "--out"): ("export-onnx cnn-mnist --exit 0 --out m.onnx",
                                  "export-onnx cnn-mnist --exit 0 --out /nonexistent/m.onnx"),
    (("export-onnx",), "--force"): ("export-onnx cnn-mnist --exit 0 --out full/main.c",
                                    "export-onnx cnn-mnist --exit 0 --out full/main.c --force"),
    (("export-onnx",), "--seconds"): ("export-onnx speech-fsdd --exit 0 --out s.onnx",
                                      "export-onnx speech-fsdd --exit 0 --out s.onnx --seconds 0"),
    (("export-c",), "--force"): ("export-c cnn-mnist-shared --out full", "export-c cnn-mnist-shared --out full --force"),
    **{((("bench", k)), "--json"): (f"bench {k}", f"bench {k} --json")
       for k in ("speedup", "stages", "widgets", "notebooks", "energy", "speech-encoder")},
    **{(("bench", k), "--model"): (f"bench {k}", f"bench {k} --model cnn-mnist") for k in ("speedup", "stages")},
    **{(("bench", k), "--device"): (f"bench {k}", f"bench {k} --device cpu") for k in ("speedup", "stages")},
    **{(("bench", k), "--threads"): (f"bench {k}", f"bench {k} --threads 1") for k in ("speedup", "stages")},
    **{(("bench", k), "--default-malloc"): (f"bench {k}", f"bench {k} --default-malloc")
       for k in ("speedup", "stages")},
    (("bench", "stages"), "--batch"): ("bench stages", "bench stages --batch 4"),
    (("bench", "notebooks"), "--only"): ("bench notebooks", "bench notebooks --only 10 21"),
}
# options that exist on a command but do not apply to some of its model names / kinds: refused, exit 2, one line
REFUSED = [
    "train speech-recipe --recipe C --labels 250 --epochs 1", "train speech-recipe --recipe C --labels 250 --subset 64",
    "train speech-recipes --epochs 1", "train speech-recipes --subset 64",
    "train sentences --recipe ssl-2st --labels all --epochs 1", "train sentences --recipe ssl --labels all --device tpu",
    "train sentences --recipe ssl --labels all --optimizer rmsprop", "train sentences --recipe ssl --labels all --lr 0",
    "train sentences --recipe ssl --labels all --batch-size 0", "train sentences --recipe ssl --labels all "
    "--weight-decay -1", "train cnn-mnist --lr 0.1", "train ssl-hubert --optimizer adamw",
    "train speech-recipe --recipe C --labels 250 --batch-size 4", "train cnn-mnist --weight-decay 0",
    "train sentences --recipe A --labels all", "train sentences --recipe ssl --labels 250", "train sentences",
    "train sentences --recipe scratch --labels all --encoder ssl-hubert-clean",
    "train sentences --recipe ssl --labels all --encoder wav2vec2", "train cnn-mnist --encoder ssl-hubert",
    "train cnn-mnist --speed-perturb", "train cnn-mnist --no-speed-perturb", "train speech-recipe --recipe C --labels 250 --speed-perturb",
    "report sentences-scratch --max-drop 0.1", "report sentences-scratch --measure", "report sentences-nope",
    "train ssl-hubert --recipe A", "train ssl-hubert --labels 250", "train ssl-hubert --subset 64",
    "train ssl-hubert --device cuda", "train ssl-hubert --resume", "train cnn-mnist --resume",
    "train speech-recipe --recipe C --labels 250 --resume",
    "train ssl-hubert-clean --subset 64", "train ssl-hubert-clean --device cuda", "report ssl-hubert-clean --measure",
    "report ssl-hubert-clean --criterion margin",
    "train cnn-mnist --recipe A", "train cnn-mnist --labels 250", "train kws-fsdd --recipe C",
    "report compress --criterion margin", "report compress --max-drop 0.1",
    "report speech-recipes --criterion margin", "report speech-recipes --max-drop 0.1",
    "report ssl-daisy --criterion margin", "report ssl-daisy --max-drop 0.1",
    "report cnn-mnist --measure", "report compress --measure", "report cnn-mnist --out x", "report ssl-daisy --force",
    "report ssl-daisy --measure --json", "export-onnx cnn-mnist --exit 0 --out m.onnx --seconds 2",
    *[f"bench {k} --{o}" for k in ("widgets", "notebooks", "energy", "speech-encoder")
      for o in ("model x", "threads 2", "device cpu", "batch 2", "default-malloc")],
    "bench speedup --batch 4", "bench widgets --only 10",
    "compress cnn-mnist-shared --target-bytes 0", "compress cnn-mnist-shared --target-bytes -5",
    "train cnn-mnist --subset 0", "train cnn-mnist --epochs 0", "train cnn-mnist --device tpu",
]


def test_every_option_of_the_cli_has_a_case():
    walked = options()
    assert len(walked) >= 30
    missing = [o for o in walked if o not in CASES]
    assert not missing, f"options with no case proving they are honoured: {missing}"
    assert not set(CASES) - set(walked), "cases for options that no longer exist"


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: " ".join(k[0]) + " " + k[1])
def test_each_option_changes_the_outcome(cli, key):
    without, with_ = (cli(argv.split()) for argv in CASES[key])
    assert without != with_, f"{key[1]} changed nothing: {without}"
    for rc, _, err, _ in (without, with_):
        assert rc in (0, 2) and "Traceback" not in err and len(err.splitlines()) <= 1


@pytest.mark.parametrize("argv", REFUSED)
def test_options_that_do_not_apply_are_refused_in_one_line(cli, argv):
    rc, out, err, calls = cli(argv.split())
    assert rc == 2 and not calls and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert any(s in err for s in ("does not apply", "unrecognized arguments", "must be", "not accepted", "known")), err


def test_the_recorded_work_gets_the_options_values(cli):
    """Beyond "differs": the values reach the work as given."""
    *_, calls = cli("train cnn-mnist --subset 128 --epochs 2 --quiet --out o".split())
    assert calls[0][0] == "_run" and "'cnn-mnist', PosixPath('o'), 128, 2, False, device(" in calls[0][1]
    *_, calls = cli("compress cnn-mnist-shared --target-bytes 20000 --quiet".split())
    kwargs = dict(eval(calls[0][2]))
    assert kwargs["target_bytes"] == 20000 and kwargs["progress"] is False
    *_, calls = cli("bench stages --model cnn-mnist --batch 4 --threads 1 --default-malloc".split())
    assert calls[0][0] == "bench_stages" and "('batch', 4)" in calls[0][2] and "('threads', 1)" in calls[0][2]
    assert "('keep_freed_memory', False)" in calls[0][2]
    *_, calls = cli("train sentences --recipe ssl-2st --labels 30min --epochs 120 --lr 0.004 --optimizer adamw".split())
    assert calls[0][0] == "_train" and "{'epochs': 120, 'lr': 0.004, 'optimizer': 'adamw'}" in calls[0][1]
    for flag, speed in (("", None), (" --speed-perturb", True), (" --no-speed-perturb", False)):  # None: the recipe's
        *_, calls = cli(f"train sentences --recipe scratch --labels all{flag}".split())
        assert calls[0][1].endswith(f"False, {speed}, {{}}, None)")  # resume, speed_perturb, overrides, encoder
    *_, calls = cli("train sentences --recipe ssl --labels all --encoder ssl-hubert-clean".split())
    assert calls[0][0] == "_train" and calls[0][1].endswith("{}, 'ssl-hubert-clean')")
    rc, out, _, _ = cli("bench widgets --json".split())
    assert rc == 0 and json.loads(out) == {"x": 1}
