"""The training runs kept between sittings (unfinished-runs/): each saved state holds the settings of the command
its README gives for it, so the next sitting's ``--resume`` continues it instead of refusing it hours later; a run
that finished keeps a verified card, weights and profiles that match its command until all of them ship."""

import math
import shlex
from dataclasses import asdict
from pathlib import Path

import pytest

from eekit import data, sentences
from eekit.__main__ import build_parser
from helpers import check_sentence_card_against

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "unfinished-runs"
PREFIX = "OMP_NUM_THREADS=1 python -m eekit "


def _args(command: str):
    return build_parser().parse_args(shlex.split(command[len(PREFIX):]))


def _commands() -> dict[Path, str]:
    """Each run's folder and its full command line, from the README."""
    lines = [line for line in (FOLDER / "README.md").read_text().splitlines() if line.startswith(PREFIX)]
    return {Path(_args(line).out): line for line in lines}


def test_every_kept_run_has_one_command_and_every_command_its_folder():
    folders = sorted(p.relative_to(ROOT) for p in FOLDER.iterdir() if p.is_dir())
    assert sorted(_commands()) == folders
    for out, command in _commands().items():
        args = _args(command)
        assert args.resume and args.model == "sentences" and out.parent == Path("unfinished-runs")
        assert out.name == sentences.model_name(args.recipe, args.labels)  # one folder per model


@pytest.mark.parametrize("out", sorted(_commands()), ids=str)
def test_each_run_holds_its_commands_settings_a_finite_history_or_its_finished_model(out):
    command = _commands()[out]
    args = _args(command)
    phases = sentences.cli_phases(args)
    states = [ROOT / out / f"{out.name}.resume-{i}.pt" for i in range(len(phases))]
    if (ROOT / out / f"{out.name}.json").exists():  # finished: the files verify and are what the command asks for
        assert not any(p.exists() for p in states), "a finished run deletes its state"
        check_sentence_card_against(sentences.load_card(out.name, ROOT / out), command)
        for test in sentences.TESTS:
            assert sentences.load_profile(out.name, test, ROOT / out).num_exits == 6
        assert sentences.load_model(out.name, ROOT / out).alphabet == sentences.librispeech.ALPHABET
        return
    assert states[0].is_file(), f"{states[0]} is missing: the run would start over"
    for i, (phase, path) in enumerate(zip(phases, states)):
        if not path.is_file():
            assert all(not p.is_file() for p in states[i:]), "a later phase saved a state before this one"
            break
        state = data.read_torch(path)
        assert state["config"] == asdict(phase)
        history = state["history"]
        assert [h["epoch"] for h in history] == list(range(1, len(history) + 1)) and 0 < len(history) <= phase.epochs
        assert all(math.isfinite(h["loss"]) and h["seconds"] > 0 for h in history)
        if i + 1 < len(states) and states[i + 1].is_file():
            assert len(history) == phase.epochs, "the next phase began before this one finished"
        assert len(history) < 2 or history[-1]["loss"] < history[0]["loss"]  # a diverged run is not worth continuing
