"""Five early-exit speech recipes x three label budgets: what pre-training and joint training buy.

HuBERT-EE adds CTC exits to a *pre-trained* encoder and compares joint fine-tuning with two-stage training;
Wright et al. 2023 (arXiv 2309.09546) compare early-exit models trained *from scratch* with exits added to
*pre-trained* ones, and with single-exit twins. The grid repeats both on eekit's conformer (``conformer_ctc``, a CTC
exit after each of 6 layers), connected FSDD digits:

====== ======= ==============================================================================
recipe init    training
====== ======= ==============================================================================
A      scratch every exit jointly (uniform loss weights; at "all" labels this is ``speech-fsdd``)
B      scratch the final exit only (single-exit baseline)
C      SSL     joint fine-tuning: final loss + the sum of the exit losses (HuBERT-EE joint)
D      SSL     two-stage: final CTC fine-tuning, then the exit heads on the frozen backbone (HuBERT-EE)
E      SSL     the final exit only (single-exit pre-trained baseline)
====== ======= ==============================================================================

"SSL" is the kit's own self-supervised encoder ``ssl-hubert`` (:mod:`eekit.ssl`). Each recipe runs at 250, 1,000
and all 4,000 labelled training utterances (the label subset is evenly spaced, so fixed), and every exit is evaluated
on four test sets (:data:`TESTS`). Training reuses :func:`eekit.train.train`; evaluation
:func:`eekit.evaluate.profile_speech`. Each cell ships as ``data/checkpoints/speech-recipes/<cell>.json`` (card),
``<cell>.<test>.profile.npz`` (one profile per test set) and ``<cell>.pt`` (fp16 weights; the profiles are
computed from these fp16 weights, loaded back into fp32). Two cells reuse shipped models instead of retraining:
A at all labels *is* ``speech-fsdd``, and B at all labels is phase 1 of ``speech-fsdd-two-stage`` (phase 2 trains
only the early heads on a frozen backbone, so its final exit is exactly the single-exit model).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import torch

from .. import data, validate
from ..evaluate import profile_speech
from ..files import claim_folder
from ..models.speech import DIGITS, SpeechEarlyExit, conformer_ctc
from ..models.ssl import ENCODER_PREFIXES
from ..profile import ExitProfile
from ..runtime import check_device
from ..ssl import NAME, load_encoder
from ..train import TrainConfig, machine, train
from .registry import TRAIN_ALWAYS, Entry, Runner, load_card, load_pretrained, register, register_runner, takes

__all__ = ["SpeechRecipe", "SPEECH_RECIPES", "LABELS", "TESTS", "CRITERIA", "EPOCHS", "OUT_DIR", "cell_name",
           "cells", "test_set", "encoder_fingerprint", "shipped_encoder_fingerprint", "trained_cells",
           "cell_results", "build_cell", "train_cell", "train_grid", "load_cell_card", "load_cell_profile",
           "load_cell_model", "report", "comparisons", "claims", "CLAIMS", "MAX_DROP"]

CELL_DIR = "speech-recipes"  # inside data/checkpoints/
OUT_DIR = f"checkpoints/{CELL_DIR}"  # inside data/
LABELS = (250, 1000, "all")  # labelled training utterances ("all" = 4,000)
TESTS = ("clean", "snr10", "held_out_speaker", "unseen_voices")
CRITERIA = ("ctc_entropy", "ctc_posterior")  # HuBERT-EE's frame-averaged entropy; 2309.09546's posterior
MAX_DROP = 0.01  # each criterion's threshold: the cheapest within 1 DER point of the cell's final exit
SEED = 0
# Epochs per label budget: about the same number of optimizer steps (~2,000 batches of 16) in every trained cell, so
# budgets differ in how many different utterances are heard, not in training time. 2,000 steps is what fits the
# issue's budget (the whole grid in under 3 hours of a 2-core CPU, two cells at a time, ~0.4 s a step on one
# thread); 500 steps (the first grid) left every from-scratch cell and joint fine-tuning on CTC's all-blank
# plateau. The reused "all" cells A and B had 15 epochs (3,750 steps).
EPOCHS = {250: 128, 1000: 32, "all": 8}
STAGE_TWO_FRACTION = 0.4  # D's second stage (heads on the frozen backbone) runs this share of the epochs
_SPEECH = dict(batch_size=16, lr=2e-3, optimizer="adam", weight_decay=0.0, seed=SEED)  # as the zoo's speech models


@dataclass(frozen=True)
class SpeechRecipe:
    """One row of the grid: where the encoder starts and which exits the training phases train."""

    name: str
    init: str  # "scratch" or "ssl"
    description: str
    schedule: tuple[str, ...]  # loss weighting of each phase; "early-only" phases train on the frozen backbone

    @property
    def single_exit(self) -> bool:
        """Only the final exit is trained: the early heads are left at their random init and never used."""
        return self.schedule == ("final-only",)

    def phases(self, labels) -> tuple[TrainConfig, ...]:
        epochs = EPOCHS[labels]
        return tuple(TrainConfig(loss_weights=w, freeze_backbone=w == "early-only",
                                 epochs=max(1, math.ceil(STAGE_TWO_FRACTION * epochs)) if w == "early-only" else epochs,
                                 **_SPEECH) for w in self.schedule)


SPEECH_RECIPES: dict[str, SpeechRecipe] = {r.name: r for r in [
    SpeechRecipe("A", "scratch", "from scratch, every exit trained jointly (uniform loss weights)", ("uniform",)),
    SpeechRecipe("B", "scratch", "from scratch, final exit only (single-exit baseline)", ("final-only",)),
    SpeechRecipe("C", "ssl", "SSL encoder, joint fine-tuning: final loss + sum of the exit losses (HuBERT-EE joint)",
                 ("uniform",)),
    SpeechRecipe("D", "ssl", "SSL encoder, two-stage: final CTC fine-tuning, then the exit heads on the frozen "
                 "backbone (HuBERT-EE two-stage)", ("final-only", "early-only")),
    SpeechRecipe("E", "ssl", "SSL encoder, final exit only (single-exit pre-trained baseline)", ("final-only",)),
]}

# Cells that reuse a shipped zoo model instead of training again: (zoo name, why it is this cell).
REUSED = {
    "A-all": ("speech-fsdd", "the zoo's speech-fsdd is recipe A on all labels (15 epochs)"),
    "B-all": ("speech-fsdd-two-stage", "phase 1 of speech-fsdd-two-stage (final exit only, 15 epochs) is recipe B on "
              "all labels; its phase 2 trains only the early heads on the frozen backbone, so the final exit is "
              "unchanged, and recipe B's early heads are not used"),
}


def cell_name(recipe: str, labels) -> str:
    """``"C-250"``, ``"A-all"``; checks both parts."""
    recipe = validate.one_of("recipe", recipe, tuple(SPEECH_RECIPES))
    return f"{recipe}-{_labels(labels)}"


def _labels(labels):
    """250, 1000 or "all" (strings of numbers are accepted: the CLI passes text)."""
    if isinstance(labels, str) and labels.isdigit():
        labels = int(labels)
    return validate.one_of("labels (labelled training utterances)", labels, LABELS)


def cells() -> list[tuple[str, object]]:
    """Every cell in training priority: all recipes at 250 labels, then 1,000, then all (E before D)."""
    return [(r, n) for n in LABELS for r in ("A", "B", "C", "E", "D")]  # E before D: D's first stage is E


# ---------------------------------------------------------------------------------------------------- test sets


@lru_cache(maxsize=4)
def test_set(name: str) -> data.DigitStrings:
    """One of :data:`TESTS` as connected-digit utterances: the clean test takes (300), the same mixed with the
    shipped noises at 10 dB (round-robin, seeded), FSDD's held-out speaker (300), and the unseen voices: the 240
    Speech Commands digit clips of 118 new speakers, each a one-digit string."""
    name = validate.one_of("test set", name, TESTS)
    if name == "clean":
        return data.load_digit_strings("test")
    if name == "snr10":
        return data.load_digit_strings("test").with_noise(10)
    if name == "held_out_speaker":
        return data.load_digit_strings("held_out")
    clips = data.load_speech_commands("digits")
    return data.DigitStrings(list(clips.waveforms), [str(data.SC_DIGITS.index(w)) for w in clips.words],
                             list(clips.speakers), clips.sample_rate)


# -------------------------------------------------------------------------------------------------------- cells


def encoder_fingerprint(state: dict) -> str:
    """sha256 over the encoder tensors (``frontend.*``, ``subsample.*``, ``layers.*``, sorted by name): which
    pre-trained encoder an SSL cell started from, checkable against the shipped ``ssl-hubert``."""
    h = hashlib.sha256()
    for key in sorted(k for k in state if k.startswith(ENCODER_PREFIXES)):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def shipped_encoder_fingerprint() -> str:
    """:func:`encoder_fingerprint` of the shipped ``ssl-hubert`` encoder (checksum-verified)."""
    return encoder_fingerprint(load_encoder(NAME)[0].encoder_state())


def _ssl_encoder_state(checkpoint: str | Path | None, name: str = NAME) -> tuple[dict, str]:
    """The SSL encoder's weights (``SpeechEarlyExit`` names) and where they came from: the shipped encoder ``name``
    (checksum-verified; ``ssl-hubert`` unless told), or a pretraining checkpoint (``.resume.pt``): the
    utterance-mixing phase's last epoch holds the same encoder as the shipped file (DAISY's heads are fitted
    afterwards on the frozen encoder), every other one is for development only. The card's
    ``ssl_encoder_fingerprint`` says which encoder it was."""
    if checkpoint is None:
        encoder, _ = load_encoder(name)
        return encoder.encoder_state(), f"{name}.pt (shipped)"
    state = data.read_torch(checkpoint)
    encoder = {k: v for k, v in state["model"].items() if k.startswith(ENCODER_PREFIXES)}
    config = state["config"]
    mixing = "codebook" not in state  # the utterance-mixing phase's checkpoint (iterations keep their codebook)
    total = config["mix_epochs"] if mixing else config["epochs"]
    final = state["epoch"] == total and (mixing or not config.get("mix_epochs"))
    return encoder, (f"pretraining checkpoint{' (utterance mixing)' if mixing else ''}, epoch {state['epoch']} of "
                     f"{total}" + ("" if final else " (PROVISIONAL: development only, never ship)"))


def build_cell(recipe: str, ssl_checkpoint: str | Path | None = None) -> tuple[SpeechEarlyExit, str]:
    """A seeded ``conformer_ctc()``; SSL recipes load the pre-trained encoder into it (heads stay at their seeded
    init). Returns the model and where its initial weights came from."""
    r = SPEECH_RECIPES[validate.one_of("recipe", recipe, tuple(SPEECH_RECIPES))]
    torch.manual_seed(SEED)
    model = conformer_ctc()
    if r.init == "scratch":
        return model, f"scratch (torch.manual_seed({SEED}))"
    state, source = _ssl_encoder_state(ssl_checkpoint)
    source += f"; encoder fingerprint {encoder_fingerprint(state)}"
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("exits.") for k in missing):
        raise ValueError(f"the SSL encoder does not fit conformer_ctc(): missing {missing}, unexpected {unexpected}")
    return model, source


def _files(name: str, out_dir: Path) -> list[Path]:
    return [out_dir / f"{name}.json", out_dir / f"{name}.pt"] + [out_dir / f"{name}.{t}.profile.npz" for t in TESTS]


def _out_dir(out_dir: str | Path | None) -> Path:
    return data.DATA_DIR / OUT_DIR if out_dir is None else Path(out_dir)


def _half(model: SpeechEarlyExit) -> dict:
    """fp16 copy of the weights (integer buffers such as BatchNorm's counter stay as they are)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}


def _from_half(state: dict, alphabet: str = DIGITS) -> SpeechEarlyExit:
    """The fp16 weights back as a float model in eval mode: what ships is what gets evaluated."""
    model = conformer_ctc(alphabet=alphabet)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.eval()


def _profiles(model: SpeechEarlyExit, name: str, progress: bool) -> dict[str, ExitProfile]:
    return {t: profile_speech(model, test_set(t), progress=progress, meta={"cell": name, "test": t}) for t in TESTS}


def train_cell(recipe: str, labels, out_dir: str | Path | None = None, force: bool = False, progress: bool = True,
               device: str | None = None, ssl_checkpoint: str | Path | None = None) -> dict:
    """Train one cell (or, for ``A-all`` / ``B-all``, evaluate the shipped zoo model it reuses), profile every exit
    on the four test sets, write card, fp16 weights and profiles; returns the card. ``python -m eekit train
    speech-recipe --recipe C --labels 250``. ``ssl_checkpoint`` starts SSL recipes from a pretraining checkpoint
    instead of the shipped encoder (the card records the encoder's fingerprint; tests check that shipped cells
    match the shipped ``ssl-hubert``)."""
    name = cell_name(recipe, labels)
    labels = _labels(labels)
    out = validate.writable_dir("output folder", _out_dir(out_dir))
    validate.no_overwrite(_files(name, out), force)
    with claim_folder(out):  # a second command writing this folder is refused now, not after training
        validate.no_overwrite(_files(name, out), force)
        return _train_cell(recipe, labels, name, out, progress, device, ssl_checkpoint)


def _train_cell(recipe: str, labels, name: str, out: Path, progress: bool, device, ssl_checkpoint) -> dict:
    r = SPEECH_RECIPES[recipe]
    writers = {}
    card = {"cell": name, "recipe": recipe, "labels": labels, "init": r.init, "description": r.description,
            "single_exit": r.single_exit, "tests": list(TESTS)}
    if name in REUSED:
        zoo_name, why = REUSED[name]
        model = load_pretrained(zoo_name)
        zoo_card = load_card(zoo_name)
        phase_epochs = [p["epochs"] for p in zoo_card["recipe"]["phases"]]
        share = phase_epochs[0] / sum(phase_epochs) if recipe == "B" else 1.0
        card.update(weights=f"../{zoo_name}.pt", reused=zoo_name, reused_why=why,
                    phases=zoo_card["recipe"]["phases"][:1], train_samples=zoo_card["dataset"]["train_samples"],
                    loss_per_epoch=zoo_card["recipe"]["loss_per_epoch"][:1],
                    training_seconds=round(zoo_card["training_seconds"] * share, 1),
                    training_seconds_note="from the zoo card" + (
                        f" (its phase-1 share by epochs: {phase_epochs[0]} of {sum(phase_epochs)}, an estimate)"
                        if recipe == "B" else ""),
                    init_from=f"scratch (torch.manual_seed({SEED}))", machine=zoo_card["machine"])
    else:
        device = check_device(device)
        model, source = build_cell(recipe, ssl_checkpoint)
        train_set = data.load_digit_strings("train")
        if labels != "all":
            train_set = train_set.subset(labels)
        phases = r.phases(labels)
        history, seconds = [], 0.0
        if recipe == "D":  # stage one is recipe E exactly: reuse E's cell when it started from the same encoder
            model, stage_one = _stage_one(model, source, labels, out, train_set, phases[0], progress, device)
            history, seconds = [stage_one["loss_per_epoch"]], stage_one["training_seconds"]
            card["stage_one"] = stage_one["from"]
            phases_to_run = phases[1:]
        else:
            phases_to_run = phases
        start = time.perf_counter()
        history += [[h["loss"] for h in train(model, train_set, cfg, progress=progress, device=device)]
                    for cfg in phases_to_run]
        seconds += time.perf_counter() - start
        model.cpu()
        state = _half(model)
        writers[out / f"{name}.pt"] = lambda p: torch.save(state, p)
        model = _from_half(state)  # evaluate what ships
        if r.init == "ssl":
            card["ssl_encoder_fingerprint"] = source.rsplit(" ", 1)[-1]
        card.update(weights=f"{name}.pt (fp16)", init_from=source, phases=[p.__dict__ for p in phases],
                    train_samples=len(train_set), loss_per_epoch=[[round(x, 4) for x in hist] for hist in history],
                    training_seconds=round(seconds, 1), machine={**machine(), "device": str(device)})
    profiles = _profiles(model, name, progress)
    writers.update({out / f"{name}.{t}.profile.npz": p.write for t, p in profiles.items()})
    card["exit_der"] = {t: [round(1 - float(a), 4) for a in p.exit_accuracy] for t, p in profiles.items()}
    card["command"] = f"python -m eekit train speech-recipe --recipe {recipe} --labels {labels}"
    card["trained_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    writers[out / f"{name}.json"] = lambda p: p.write_text(json.dumps(card, indent=2) + "\n")  # the card last
    data.write_run(out, writers)
    return card


def _stage_one(model, source: str, labels, out: Path, train_set, config: TrainConfig, progress: bool, device
               ) -> tuple[SpeechEarlyExit, dict]:
    """Recipe D's first stage (final CTC fine-tuning) is recipe E: the same seed, encoder, labels and phase. Load E's
    cell from ``out`` when it started from the same encoder (same fingerprint), else train that phase here; either way the backbone
    continues from fp16-rounded weights, as E ships them, so both routes give the same model."""
    e_name = cell_name("E", labels)
    card_file, weights = out / f"{e_name}.json", out / f"{e_name}.pt"
    if card_file.is_file() and weights.is_file():
        e_card = data.read_json(card_file)
        if e_card.get("ssl_encoder_fingerprint") == source.rsplit(" ", 1)[-1]:
            model = _from_half(data.read_torch(weights))
            return model.train(), {"from": f"recipe E's cell {e_name} (its shipped fp16 weights)",
                                   "loss_per_epoch": e_card["loss_per_epoch"][0],
                                   "training_seconds": e_card["training_seconds"]}
    start = time.perf_counter()
    hist = train(model, train_set, config, progress=progress, device=device)
    seconds = time.perf_counter() - start
    model = _from_half(_half(model.cpu()))
    return model.train(), {"from": "trained here (the same phase as recipe E), weights rounded to fp16",
                           "loss_per_epoch": [h["loss"] for h in hist], "training_seconds": seconds}


def train_grid(labels=None, recipes=None, out_dir: str | Path | None = None, force: bool = False,
               progress: bool = True, device: str | None = None, ssl_checkpoint: str | Path | None = None) -> list[dict]:
    """Every cell not yet written, in priority order (``python -m eekit train speech-recipes``); ``force``
    retrains the written ones too. ``labels`` / ``recipes`` restrict the grid."""
    want_labels = LABELS if labels is None else tuple(_labels(n) for n in labels)
    want = tuple(SPEECH_RECIPES) if recipes is None else tuple(validate.one_of("recipe", r, tuple(SPEECH_RECIPES))
                                                                for r in recipes)
    out = _out_dir(out_dir)
    cards = []
    for recipe, n in cells():
        if n in want_labels and recipe in want and (force or not (out / f"{cell_name(recipe, n)}.json").exists()):
            cards.append(train_cell(recipe, n, out_dir, force, progress, device, ssl_checkpoint))
    return cards


# -------------------------------------------------------------------------------------------------- shipped results


def _cell_path(name: str, suffix: str, out_dir: str | Path | None) -> Path:
    recipe, labels = name.split("-")
    return data.checkpoint_file(f"{CELL_DIR}/{name}{suffix}", out_dir,
                                f"python -m eekit train speech-recipe --recipe {recipe} --labels {labels}")


def load_cell_card(recipe: str, labels, out_dir: str | Path | None = None) -> dict:
    """The card of a trained cell."""
    return data.read_json(_cell_path(cell_name(recipe, labels), ".json", out_dir))


def load_cell_profile(recipe: str, labels, test: str, out_dir: str | Path | None = None) -> ExitProfile:
    """A trained cell's exit profile on one of :data:`TESTS`."""
    test = validate.one_of("test set", test, TESTS)
    return ExitProfile.load(_cell_path(cell_name(recipe, labels), f".{test}.profile.npz", out_dir))


def load_cell_model(recipe: str, labels, out_dir: str | Path | None = None) -> SpeechEarlyExit:
    """A trained cell's model (fp16 weights back in fp32, eval mode); A-all / B-all are the zoo models they reuse."""
    name = cell_name(recipe, labels)
    if name in REUSED:
        return load_pretrained(REUSED[name][0])
    return _from_half(data.read_torch(_cell_path(name, ".pt", out_dir)))


def trained_cells(out_dir: str | Path | None = None) -> list[tuple[str, object]]:
    """The cells whose card is there (shipped, or in ``out_dir``), in grid order."""
    found = []
    for recipe, n in cells():
        name = cell_name(recipe, n)
        folder = _out_dir(out_dir)
        if (folder / f"{name}.json").is_file():
            found.append((recipe, n))
    return found


def _rounded(values) -> list:
    return [None if v is None else round(float(v), 4) for v in values]


def cell_results(recipe: str, labels, test: str, criterion: str, out_dir: str | Path | None = None) -> dict:
    """One row of the report: per-exit DER (``None`` for the untrained heads of single-exit recipes), final DER,
    and the early-exit point of ``criterion`` at the cheapest threshold within :data:`MAX_DROP` of the final exit
    on that test set (single-exit recipes cannot exit early: ``layers_saved`` 0, ``ee_der`` = final)."""
    criterion = validate.one_of("criterion", criterion, CRITERIA)
    card = load_cell_card(recipe, labels, out_dir)
    profile = load_cell_profile(recipe, labels, test, out_dir)
    der = 1 - profile.exit_accuracy
    final = 1 - profile.final_accuracy
    row = {"recipe": recipe, "labels": card["labels"], "test": test, "criterion": criterion}
    if card["single_exit"]:
        row.update(exit_der=_rounded([None] * (len(der) - 1) + [final]), final_der=round(final, 4),
                   layers_saved=0.0, ee_der=round(final, 4), threshold=None)
    else:
        point = profile.calibrate(criterion, max_drop=MAX_DROP)
        row.update(exit_der=_rounded(der), final_der=round(final, 4), layers_saved=round(point.savings, 4),
                   ee_der=round(1 - point.accuracy, 4), threshold=round(point.threshold, 4))
    row["training_seconds"] = card["training_seconds"]
    return row


def comparisons(out_dir: str | Path | None = None) -> dict[str, dict]:
    """The papers' comparisons on the trained cells (DER differences, fractions; negative = the first wins):

    * ``joint_vs_two_stage_shallow``: C minus D, mean DER of exits 1-3 (HuBERT-EE: joint far better);
    * ``joint_vs_two_stage_final``: C minus D at the final exit (HuBERT-EE: about equal);
    * ``scratch_multi_vs_single_final``: A minus B at the final exit (2309.09546: multi-exit no worse);
    * ``ssl_exits_vs_single_final``: C minus E at the final exit (2309.09546: adding exits costs a little);
    * ``ssl_vs_scratch_250_unseen``: best SSL recipe minus best scratch recipe at 250 labels, final exit, unseen
      voices (expected: pre-training helps a lot).

    Each compares on the clean test set (the last on unseen voices), at every label budget where both cells exist.
    """
    have = set(trained_cells(out_dir))

    def final(r, n, t="clean"):
        return 1 - load_cell_profile(r, n, t, out_dir).final_accuracy

    def shallow(r, n, t="clean"):
        return float(np.mean(1 - load_cell_profile(r, n, t, out_dir).exit_accuracy[:3]))

    out = {}
    pairs = {"joint_vs_two_stage_shallow": ("C", "D", shallow), "joint_vs_two_stage_final": ("C", "D", final),
             "scratch_multi_vs_single_final": ("A", "B", final), "ssl_exits_vs_single_final": ("C", "E", final)}
    for key, (a, b, fn) in pairs.items():
        out[key] = {str(n): round(fn(a, n) - fn(b, n), 4) for n in LABELS if (a, n) in have and (b, n) in have}
    ssl = [r for r in ("C", "D", "E") if (r, 250) in have]
    scratch = [r for r in ("A", "B") if (r, 250) in have]
    if ssl and scratch:
        best_ssl = min(final(r, 250, "unseen_voices") for r in ssl)
        best_scratch = min(final(r, 250, "unseen_voices") for r in scratch)
        out["ssl_vs_scratch_250_unseen"] = {"250": round(best_ssl - best_scratch, 4)}
    return out


# What each paper reports, as a test on a measured difference d (first recipe's DER minus the second's).
CLAIMS = {
    "joint_vs_two_stage_shallow": ("HuBERT-EE", "joint fine-tuning makes the shallow exits far better than two-stage",
                                   lambda d: d < -0.05),
    "joint_vs_two_stage_final": ("HuBERT-EE", "joint and two-stage are about equal at the final exit",
                                 lambda d: abs(d) <= 0.01),
    "scratch_multi_vs_single_final": ("2309.09546", "from scratch, the multi-exit model is no worse at the final exit "
                                      "than its single-exit twin", lambda d: d <= 0.01),
    "ssl_exits_vs_single_final": ("2309.09546", "adding exits to a pre-trained model costs a little at the final "
                                  "exit", lambda d: 0 < d <= 0.05),
    "ssl_vs_scratch_250_unseen": ("expected", "with 250 labels, pre-training gives a large gain on unseen voices",
                                  lambda d: d < -0.10),
}


def _neither_learned(key: str, labels: str, out_dir) -> bool:
    """Both cells of a comparison decode (almost) nothing at the exits compared (the final exit, or exits 1-3 for
    the shallow comparison): the difference says nothing about the claim."""
    pair = {"joint_vs_two_stage_shallow": "CD", "joint_vs_two_stage_final": "CD",
            "scratch_multi_vs_single_final": "AB", "ssl_exits_vs_single_final": "CE"}.get(key)
    if pair is None:
        return False
    exits = slice(0, 3) if key.endswith("shallow") else slice(-1, None)
    return all(float(np.mean(1 - load_cell_profile(r, labels, "clean", out_dir).exit_accuracy[exits])) >= 0.95
               for r in pair)


def claims(out_dir: str | Path | None = None) -> list[dict]:
    """The papers' claims beside this kit's measurement, one row per comparison and label budget: ``matches`` is
    True / False, or None where neither model of the pair learned (DER >= 95 % at the exits compared), so the sign
    means nothing."""
    rows = []
    for key, by_labels in comparisons(out_dir).items():
        paper, claim, holds = CLAIMS[key]
        for labels, d in by_labels.items():
            rows.append({"comparison": key, "paper": paper, "claim": claim, "labels": labels, "difference": d,
                         "matches": None if _neither_learned(key, labels, out_dir) else bool(holds(d))})
    return rows


def report(out_dir: str | Path | None = None) -> dict:
    """``python -m eekit report speech-recipes --json``: every trained cell x test set x criterion, computed from the
    shipped profiles and cards (no model run), the comparisons, and the cells not trained yet."""
    done = trained_cells(out_dir)
    rows = [cell_results(r, n, t, c, out_dir) for r, n in done for t in TESTS for c in CRITERIA]
    return {"cells": rows,
            "training_seconds": {cell_name(r, n): load_cell_card(r, n, out_dir)["training_seconds"] for r, n in done},
            "comparisons": comparisons(out_dir), "claims": claims(out_dir),
            "missing": [cell_name(r, n) for r, n in cells() if (r, n) not in done],
            "epochs": {str(k): v for k, v in EPOCHS.items()}, "max_drop": MAX_DROP}


# ------------------------------------------------------------------------------------ registry and command line


def _cell_entry(recipe: str, labels) -> Entry:
    name = cell_name(recipe, labels)
    return Entry(f"speech-recipe-{name}", "speech-grid", partial(load_cell_model, recipe, labels),
                 partial(load_cell_card, recipe, labels), partial(load_cell_profile, recipe, labels),
                 f"python -m eekit train speech-recipe --recipe {recipe} --labels {labels}", TESTS)


for _recipe, _labels_ in cells():
    register(_cell_entry(_recipe, _labels_))


def _cli_train(args) -> str:
    """``python -m eekit train speech-recipe --recipe R --labels N`` (one cell) or ``train speech-recipes`` (the
    grid, or the cells of one ``--recipe`` / ``--labels``)."""
    common = dict(out_dir=args.out, force=args.force, progress=not args.quiet, device=args.device)
    if args.model == "speech-recipe":
        if args.recipe is None or args.labels is None:
            raise ValueError(f"train speech-recipe needs --recipe (one of {list(SPEECH_RECIPES)}) and --labels "
                             f"(one of {list(LABELS)})")
        trained = [train_cell(args.recipe, args.labels, **common)]
    else:
        trained = train_grid(labels=[args.labels] if args.labels else None,
                             recipes=[args.recipe] if args.recipe else None, **common)
    return json.dumps([{k: c[k] for k in ("cell", "exit_der", "training_seconds")} for c in trained], indent=2)


def _cli_report(args) -> str:
    result = report()
    return json.dumps(result, indent=2) if args.json else json.dumps(result)


for _command in ("speech-recipe", "speech-recipes"):
    register_runner(Runner("train", _command, _cli_train, takes(
        TRAIN_ALWAYS | {"device", "recipe", "labels"}, f"train {_command} (its recipes fix the epochs and label "
        "budgets)")))
register_runner(Runner("report", "speech-recipes", _cli_report, takes(
    {"json"}, "report speech-recipes (its rule is fixed: no DER increase on clean speech)")))
