"""Early-exit character CTC on English sentences: from scratch, or on the self-supervised encoder.

Wright et al. 2023 (arXiv 2309.09546) ask, for large-vocabulary recognition, whether early-exit models trained
*from scratch* do as well as exits added to a *pre-trained* encoder; HuBERT-EE adds CTC exits to a pre-trained
encoder jointly or in two stages. This module repeats both in miniature on Mini LibriSpeech
(:mod:`eekit.librispeech`): eekit's conformer (``conformer_ctc``, 6 layers, d=64, a CTC exit after every layer)
spells the 28-symbol :data:`~eekit.librispeech.ALPHABET`; training speakers only; character and word error rates
(torchaudio's edit distance) per exit on the 8 held-out speakers, clean and at 10 dB.

====================== ======= =============================================================================
model                  init    training
====================== ======= =============================================================================
``sentences-scratch``  scratch every exit jointly (uniform loss weights, as 2309.09546)
``sentences-ssl``      SSL     :data:`ENCODER`, every exit jointly (HuBERT-EE joint fine-tuning)
``sentences-ssl-2st``  SSL     two-stage: the final exit fine-tuned, then the early heads on the frozen backbone
====================== ======= =============================================================================

Each at two label budgets: ``-30min`` (30 minutes of transcribed speech, 1.5 per training speaker) and all
(2.1 hours). ``--speed-perturb`` plays each training sentence at 0.9, 1.0 or 1.1 times its speed
(:class:`~eekit.data.SpeedPerturbed`), ``--no-speed-perturb`` never; the recipe's is :data:`SPEED_PERTURB`.
``--epochs``, ``--batch-size``, ``--lr``, ``--optimizer`` and ``--weight-decay`` try another schedule
(:data:`TUNABLE`), ``--encoder`` another pre-trained start (:data:`ENCODERS`); the card records both. Files:
``data/checkpoints/sentences/<name>.{json,pt}`` (card, fp16 weights) and ``<name>.<test>.profile.npz`` for ``test``
in :data:`TESTS`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio.functional as AF

from . import data, librispeech, validate
from .evaluate import profile_speech
from .files import claim_folder
from .intervals import group_bootstrap
from .models.speech import SpeechEarlyExit, conformer_ctc
from .profile import ExitProfile
from .report_format import table
from .runtime import check_device
from .ssl.pretraining import ENCODERS as _PRETRAINED, NAME
from .ssl.adaptivity import random_same_cost, static_same_cost
from .train import TrainConfig, machine, train
from .zoo.registry import TRAIN_ALWAYS, Entry, Runner, register, register_runner, takes
from .zoo.speech_grid import _from_half, _half, _ssl_encoder_state, encoder_fingerprint

__all__ = ["RECIPES", "BUDGETS", "TESTS", "CRITERIA", "TUNABLE", "MAX_DROP", "OUT_DIR", "model_name", "names",
           "build", "train_model", "report_model", "load_model", "load_card", "load_profile", "test_set", "word_errors",
           "speaker_interval", "results", "comparison", "report", "cli_phases", "ENCODER", "ENCODERS"]

RECIPES = ("scratch", "ssl", "ssl-2st")
BUDGETS = ("30min", "all")
TESTS = ("clean", "snr10")  # held-out speakers, clean and mixed with the shipped noises at 10 dB
CRITERIA = ("ctc_entropy", "ctc_posterior")  # HuBERT-EE's frame-averaged entropy; 2309.09546's posterior
MAX_DROP = 0.01  # the exit rule's threshold: the cheapest within 1 CER point of the final exit
FOLDER = "sentences"  # inside data/checkpoints/
OUT_DIR = f"checkpoints/{FOLDER}"  # inside data/
SEED = 0
# One thread of a 2-core CPU, beside other runs, trains an epoch over the 2.1 hours in about two minutes
# (length-bucketed batches of 8 sentences): 30 epochs (~2,280 steps) took 58 minutes; the 30-minute budget gets 50
# epochs (~900 steps, 16 minutes). Batches of 16 (half the steps) left the loss on CTC's blank plateau for six epochs
# and ended 4 CER points worse. The loss was still falling at the end: more steps would help.
EPOCHS = {"30min": 50, "all": 30}
SPEED_PERTURB = False  # the recipe trains on the sentences as recorded
STAGE_TWO_FRACTION = 0.4  # two-stage: the frozen-backbone head phase runs this share of the epochs
_SPEECH = dict(batch_size=8, lr=2e-3, optimizer="adam", weight_decay=0.0, seed=SEED, length_batches=True,
               clip_norm=5.0, loss_weights="uniform")
# what a run may change to try another schedule (``--epochs --batch-size --lr --optimizer --weight-decay``); the
# card's phases and command record it, and the comparison block says when compared models trained differently
TUNABLE = ("epochs", "batch_size", "lr", "optimizer", "weight_decay")
# the shipped self-supervised encoders an SSL recipe may start from (``--encoder``): ssl-hubert, pre-trained on
# one-second words, or ssl-hubert-clean, which also heard the 20 training speakers' sentences (no transcripts)
ENCODERS = tuple(_PRETRAINED)
ENCODER = NAME  # the recipe's


def model_name(recipe: str, budget: str) -> str:
    recipe = validate.one_of("recipe", recipe, RECIPES)
    budget = validate.one_of("labels", budget, BUDGETS)
    return f"sentences-{recipe}" + ("" if budget == "all" else f"-{budget}")


def names() -> list[str]:
    return [model_name(r, b) for r in RECIPES for b in BUDGETS]


def _parse(name: str) -> tuple[str, str]:
    for r in RECIPES:
        for b in BUDGETS:
            if model_name(r, b) == name:
                return r, b
    raise ValueError(f"unknown sentence model {name!r}; known: {names()}")


def _overrides(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The :data:`TUNABLE` settings a run replaces (their values are checked by :class:`TrainConfig`)."""
    overrides = dict(validate.instance("overrides", overrides or {}, Mapping, f"a mapping with keys from {TUNABLE}"))
    for key in overrides:
        validate.one_of("training setting", key, TUNABLE)
    return overrides


def _phases(recipe: str, budget: str, speed_perturb: bool | None = None,
            overrides: Mapping[str, Any] | None = None) -> list[TrainConfig]:
    settings = _overrides(overrides)
    epochs = settings.pop("epochs", EPOCHS[budget])
    speed = SPEED_PERTURB if speed_perturb is None else speed_perturb
    speech = {**_SPEECH, **settings, "speed_perturb": data.SPEED_FACTORS if speed else ()}
    if recipe != "ssl-2st":
        return [TrainConfig(epochs=epochs, **speech)]
    validate.whole("epochs (two-stage: at least one per stage)", epochs, 2)
    two = max(1, round(epochs * STAGE_TWO_FRACTION))
    return [TrainConfig(epochs=epochs - two, **{**speech, "loss_weights": "final-only"}),
            TrainConfig(epochs=two, **{**speech, "loss_weights": "early-only", "freeze_backbone": True})]


def build(recipe: str, encoder: str | None = None) -> tuple[SpeechEarlyExit, str]:
    """A seeded ``conformer_ctc`` spelling :data:`~eekit.librispeech.ALPHABET`; SSL recipes load ``encoder``
    (one of :data:`ENCODERS`, :data:`ENCODER` unless told; the heads stay at their seeded init). Returns the model and
    where its weights came from."""
    encoder = _encoder(recipe, encoder)
    torch.manual_seed(SEED)
    model = conformer_ctc(alphabet=librispeech.ALPHABET)
    if encoder is None:
        return model, f"scratch (torch.manual_seed({SEED}))"
    state, source = _ssl_encoder_state(None, encoder)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("exits.") for k in missing):
        raise ValueError(f"the SSL encoder does not fit conformer_ctc(): missing {missing}, unexpected {unexpected}")
    return model, f"{source}; encoder fingerprint {encoder_fingerprint(state)}"


def _encoder(recipe: str, encoder: str | None) -> str | None:
    """The encoder a recipe starts from: none for scratch (which refuses one), else ``encoder`` or :data:`ENCODER`."""
    recipe = validate.one_of("recipe", recipe, RECIPES)
    if encoder is None:
        return None if recipe == "scratch" else ENCODER
    encoder = validate.one_of("encoder", encoder, ENCODERS)
    if recipe == "scratch":
        raise ValueError(f"--encoder does not apply to the scratch recipe (it starts from random weights); it "
                         f"takes one of {list(ENCODERS)} for the pre-trained recipes {list(RECIPES[1:])}")
    return encoder


@lru_cache(maxsize=2)
def test_set(test: str) -> data.Transcripts:
    """The 8 held-out speakers' sentences, clean or with the shipped noises (round-robin, seeded) at 10 dB."""
    clean = librispeech.load_librispeech("test")
    return clean if validate.one_of("test", test, TESTS) == "clean" else clean.with_noise(10.0)


def _out_dir(out_dir: str | Path | None) -> Path:
    return data.DATA_DIR / OUT_DIR if out_dir is None else Path(out_dir)


def _files(name: str, out: Path) -> list[Path]:
    return [out / f"{name}.json", out / f"{name}.pt"] + [out / f"{name}.{t}.profile.npz" for t in TESTS]


def train_model(recipe: str, budget: str, out_dir: str | Path | None = None, force: bool = False,
                progress: bool = True, device: str | None = None, resume: bool = False,
                speed_perturb: bool | None = None, overrides: Mapping[str, Any] | None = None,
                encoder: str | None = None) -> dict:
    """Train one sentence model, profile every exit on :data:`TESTS`, write card, fp16 weights and profiles;
    returns the card. ``python -m eekit train sentences --recipe scratch --labels all``. ``device``: where to train
    (default: cuda when available, else cpu, as the other recipes); profiles are measured on the CPU.

    The run saves its state after every epoch (``<name>.resume-<phase>.pt`` in the output folder, removed when the
    model is written); ``resume`` continues a stopped run from there, ``force`` starts it over. ``speed_perturb``:
    train on speed-perturbed sentences or not (None: :data:`SPEED_PERTURB`; the card's phases list the speeds).
    ``overrides``: other values for the :data:`TUNABLE` settings, e.g. ``{"epochs": 120, "optimizer": "adamw",
    "weight_decay": 0.05}``. ``encoder``: the pre-trained start of an SSL recipe (:func:`build`)."""
    name = model_name(recipe, budget)
    if speed_perturb is not None:
        speed_perturb = validate.instance("speed_perturb", speed_perturb, bool, "True, False or None")
    overrides = _overrides(overrides)
    _phases(recipe, budget, speed_perturb, overrides)  # bad settings are refused before any work
    _encoder(recipe, encoder)
    device = check_device(device)
    out = validate.writable_dir("output folder", _out_dir(out_dir))
    validate.no_overwrite(_files(name, out), force)
    with claim_folder(out):
        validate.no_overwrite(_files(name, out), force)
        left = [p for p in _checkpoints(recipe, budget, out) if p.exists()]
        if left and not (resume or force):
            raise ValueError(f"a stopped run of {name} left its state in {left[-1]}; pass --resume to continue it, "
                             "or --force to start over")
        return _train(recipe, budget, name, out, progress, device, resume, speed_perturb, overrides, encoder)


def _checkpoints(recipe: str, budget: str, out: Path) -> list[Path]:
    """Where each training phase of a run keeps its state between epochs."""
    return [out / f"{model_name(recipe, budget)}.resume-{i}.pt" for i in range(len(_phases(recipe, budget)))]


def _train(recipe: str, budget: str, name: str, out: Path, progress: bool, device: torch.device,
           resume: bool, speed_perturb: bool | None, overrides: dict[str, Any], encoder: str | None) -> dict:
    model, source = build(recipe, encoder)
    train_set = librispeech.load_librispeech("train", minutes=None if budget == "all" else 30)
    phases = _phases(recipe, budget, speed_perturb, overrides)
    checkpoints = _checkpoints(recipe, budget, out)
    if not resume:
        for path in checkpoints:
            path.unlink(missing_ok=True)
    epochs = [train(model, train_set, cfg, progress=progress, device=device, checkpoint=path)
              for cfg, path in zip(phases, checkpoints)]
    history = [[round(h["loss"], 4) for h in phase] for phase in epochs]
    seconds = sum(h["seconds"] for phase in epochs for h in phase)  # a resumed run's earlier epochs count too
    state = _half(model.cpu())
    model = _from_half(state, librispeech.ALPHABET)  # evaluate what ships
    profiles = {t: profile_speech(model, test_set(t), progress=progress, meta={"model": name, "test": t})
                for t in TESTS}
    card = {"name": name, "recipe": recipe, "labels": budget, "init_from": source,
            "description": __doc__.split("\n\n")[0],
            "phases": [p.__dict__ for p in phases], "train_speakers": librispeech.speakers("train"),
            "test_speakers": list(librispeech.TEST_SPEAKERS), "train_utterances": len(train_set),
            "train_hours": round(sum(len(w) for w in train_set.waveforms) / librispeech.SAMPLE_RATE / 3600, 3),
            "loss_per_epoch": history, "training_seconds": round(seconds, 1),
            "machine": {**machine(), "device": str(device)},
            "cer_by_exit": {t: _rounded(1 - p.exit_accuracy) for t, p in profiles.items()},
            "wer_by_exit": {t: _rounded(word_errors(p)) for t, p in profiles.items()},
            "command": f"python -m eekit train sentences --recipe {recipe} --labels {budget}"
                       + ("" if speed_perturb is None else " --speed-perturb" if speed_perturb else " --no-speed-perturb")
                       + "".join(f" --{k.replace('_', '-')} {v}" for k, v in overrides.items())
                       + (f" --encoder {encoder}" if encoder else ""),
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    writers = {out / f"{name}.pt": lambda p: torch.save(state, p)}
    writers.update({out / f"{name}.{t}.profile.npz": p.write for t, p in profiles.items()})
    writers[out / f"{name}.json"] = lambda p: p.write_text(json.dumps(card, indent=2) + "\n")  # the card last
    data.write_run(out, writers)
    for path in checkpoints:
        path.unlink()
    return card


def _rounded(values) -> list[float]:
    return [round(float(v), 4) for v in values]


def _path(name: str, suffix: str, out_dir: str | Path | None) -> Path:
    _parse(name)
    return _out_dir(out_dir) / f"{name}{suffix}"


def load_model(name: str, out_dir: str | Path | None = None) -> SpeechEarlyExit:
    """A trained sentence model (fp16 weights, checksum-verified, loaded into fp32), in eval mode."""
    return _from_half(data.read_torch(_path(name, ".pt", out_dir)), librispeech.ALPHABET)


def load_card(name: str, out_dir: str | Path | None = None) -> dict:
    return data.read_json(_path(name, ".json", out_dir))


def load_profile(name: str, test: str = "clean", out_dir: str | Path | None = None) -> ExitProfile:
    """The shipped exit profile of ``name`` on the held-out speakers (``test``: one of :data:`TESTS`)."""
    test = validate.one_of("test", test, TESTS)
    return ExitProfile.load(data.data_path(f"{OUT_DIR}/{name}.{test}.profile.npz") if out_dir is None
                            else _path(name, f".{test}.profile.npz", out_dir))


def word_errors(profile: ExitProfile) -> np.ndarray:
    """Word error rate per exit: word edits (torchaudio's edit distance) over reference words, pooled over all
    utterances, from the transcripts a profile keeps."""
    refs = [str(r).split() for r in profile.labels]
    total = sum(len(r) for r in refs)
    return np.array([sum(AF.edit_distance(ref, str(hyp).split()) for ref, hyp in zip(refs, profile.predictions[:, k]))
                     / total for k in range(profile.num_exits)])


def _speakers(profile: ExitProfile) -> list[str]:
    """Each profiled sentence's speaker, once the profile is checked to hold the held-out sentences in order."""
    test = librispeech.rows("test")
    if profile.labels is None or [r["transcript"] for r in test] != [str(label) for label in profile.labels]:
        raise ValueError(f"the profile's {profile.num_samples} references are not the held-out speakers' "
                         f"{len(test)} sentences in manifest order; profile them with sentences.test_set")
    return [r["speaker"] for r in test]


def speaker_interval(profile: ExitProfile, minus: ExitProfile | None = None) -> list[float]:
    """The 95 % interval of the final exit's CER when the 8 held-out voices are redrawn
    (:func:`~eekit.intervals.group_bootstrap`): how far the rate could move on another 8 speakers. With ``minus``
    (another model's profile of the same sentences): the interval of the difference of their CERs, paired."""
    speakers, other = _speakers(profile), None
    if minus is not None:
        _speakers(minus)  # the same held-out sentences, in the same order
        other = minus.errors[:, -1]
    low, high = group_bootstrap(profile.errors[:, -1], profile.totals, speakers, minus=other)
    return [round(low, 4), round(high, 4)]


def results(name: str, criterion: str, out_dir: str | Path | None = None) -> dict:
    """One model's per-exit CER and WER (clean, 10 dB) and the exit rule on clean speech: the cheapest threshold of
    ``criterion`` within :data:`MAX_DROP` of the final exit's CER, the layers it saves, the CER at 10 dB with
    that same threshold, its controls at the same cost, and the oracle bound: what any rule could save within the
    same loss. ``final_cer_interval``: how much the final exit's CER depends on which 8 voices were held out."""
    criterion = validate.one_of("criterion", criterion, CRITERIA)
    profiles = {t: load_profile(name, t, out_dir) for t in TESTS}
    clean = profiles["clean"]
    threshold = float(clean.calibrate(criterion, max_drop=MAX_DROP).threshold)
    at = {t: p.at(criterion, threshold) for t, p in profiles.items()}
    exits = clean.exit_index(criterion, threshold)
    oracle = clean.oracle_bound(MAX_DROP)
    return {
        "cer_by_exit": {t: _rounded(1 - p.exit_accuracy) for t, p in profiles.items()},
        "wer_by_exit": {t: _rounded(word_errors(p)) for t, p in profiles.items()},
        # the final exit's CER if another 8 voices had been held out: a 95 % speaker-bootstrap interval
        "final_cer_interval": {t: speaker_interval(p) for t, p in profiles.items()},
        "criterion": criterion, "threshold": round(threshold, 4),
        "cer": {t: round(1 - a.accuracy, 4) for t, a in at.items()},
        "layers_used": {t: round(float(a.mean_cost), 3) for t, a in at.items()},
        "layers_saved": {t: round(float(a.savings), 4) for t, a in at.items()},
        # controls on clean speech: a fixed depth, and exits shuffled across sentences, at the same mean cost
        "static_same_cost_cer": round(1 - static_same_cost(clean.exit_accuracy, at["clean"].mean_exit + 1), 4),
        "random_same_cost_cer": round(1 - random_same_cost(clean.errors, clean.totals, exits), 4),
        # the ceiling: each sentence's exit chosen knowing its errors, within the same loss
        "oracle_bound": {"cer": round(1 - oracle.accuracy, 4), "layers_saved": round(oracle.savings, 4)},
    }


def report_model(name: str, criterion: str | None = None, out_dir: str | Path | None = None) -> dict:
    """``python -m eekit report <name>``: one sentence model's :func:`results` (``ctc_entropy`` unless
    ``criterion``), its card's training facts and the pretrained-vs-scratch comparison of its label budget."""
    recipe, budget = _parse(name)
    card = load_card(name, out_dir)
    return {"name": name, "recipe": recipe, "labels": budget, "train_hours": card["train_hours"],
            "training_seconds": card["training_seconds"], **results(name, criterion or CRITERIA[0], out_dir),
            "comparison": comparison(out_dir).get(budget)}


def report(out_dir: str | Path | None = None) -> dict:
    """Every trained sentence model's results under both criteria, and the comparison 2309.09546 asks about:
    the from-scratch model's final-exit CER against the pre-trained ones at each label budget."""
    trained = [n for n in names() if _path(n, ".json", out_dir).is_file()]
    models = {n: {c: results(n, c, out_dir) for c in CRITERIA} for n in trained}
    return {"models": models, "comparison": comparison(out_dir), "max_drop": MAX_DROP}


def _training(card: dict) -> dict:
    """What must match for two recipes' numbers to be compared: the epochs (two-stage splits them into its phases),
    the batches, optimizer and weight decay, and the speed perturbation (cards from before it existed ran without)."""
    first = card["phases"][0]
    return {"epochs": sum(p["epochs"] for p in card["phases"]),
            **{k: first[k] for k in ("batch_size", "lr", "optimizer", "weight_decay", "length_batches")},
            "speed_perturb": list(first.get("speed_perturb", []))}


def comparison(out_dir: str | Path | None = None) -> dict:
    """2309.09546's question per label budget: the from-scratch model's final-exit CER (clean) against the
    pre-trained ones' (read from the cards, whose ``cer_by_exit`` a test checks against the profiles), and the 95 %
    speaker-bootstrap interval of its gap to the best of them (from the clean profiles, paired). ``same_training``
    says whether the compared models trained alike (``differs`` names what did not): a recipe retrained alone with
    other settings makes the gap unfair."""
    cards = {n: load_card(n, out_dir) for n in names() if _path(n, ".json", out_dir).is_file()}
    blocks = {}
    for budget in BUDGETS:
        compared = {r: cards[model_name(r, budget)] for r in RECIPES if model_name(r, budget) in cards}
        if "scratch" in compared and len(compared) > 1:
            by_recipe = {r: c["cer_by_exit"]["clean"][-1] for r, c in compared.items()}
            best = min((r for r in by_recipe if r != "scratch"), key=by_recipe.__getitem__)
            settings = [_training(c) for c in compared.values()]
            differs = sorted(k for k in settings[0] if any(s[k] != settings[0][k] for s in settings))
            scratch, pretrained = (load_profile(model_name(r, budget), "clean", out_dir) for r in ("scratch", best))
            blocks[budget] = {"final_exit_cer": by_recipe,
                              "scratch_minus_best_pretrained": round(by_recipe["scratch"] - by_recipe[best], 4),
                              # paired over the same redrawn voices: holding 0 means these 8 cannot tell them apart
                              "scratch_minus_best_pretrained_interval": speaker_interval(scratch, minus=pretrained),
                              "same_training": not differs, **({"differs": differs} if differs else {})}
    return blocks


# ------------------------------------------------------------------------------------ registry and command line

def cli_phases(args) -> list[TrainConfig]:
    """The training phases a parsed ``train sentences`` command runs: what its saved state must hold for
    ``--resume`` to continue it (``tests/test_unfinished_runs.py`` checks the kept states against their commands)."""
    return _phases(args.recipe, args.labels, args.speed_perturb, _cli_overrides(args))


def _cli_overrides(args) -> dict[str, Any]:
    if args.recipe is None or args.labels is None:
        raise ValueError(f"train sentences needs --recipe (must be one of {list(RECIPES)}) and --labels (one of "
                         f"{list(BUDGETS)})")
    return {k: getattr(args, k) for k in TUNABLE if getattr(args, k) is not None}


def _cli_train(args) -> str:
    """``python -m eekit train sentences --recipe R --labels B``."""
    card = train_model(args.recipe, args.labels, args.out, force=args.force, progress=not args.quiet,
                       device=args.device, resume=args.resume, speed_perturb=args.speed_perturb,
                       overrides=_cli_overrides(args), encoder=args.encoder)
    return json.dumps({k: card[k] for k in ("name", "cer_by_exit", "wer_by_exit", "training_seconds")}, indent=2)


def _cli_report(args) -> str:
    return table(report_model(args.model, criterion=args.criterion), args.json)


register_runner(Runner("train", "sentences", _cli_train, takes(
    TRAIN_ALWAYS | {"recipe", "labels", "device", "resume", "speed_perturb", "encoder", *TUNABLE}, "train sentences")))
for _recipe in RECIPES:
    for _budget in BUDGETS:
        _name = model_name(_recipe, _budget)
        register(Entry(_name, "sentences", partial(load_model, _name), partial(load_card, _name),
                       partial(load_profile, _name), f"python -m eekit train sentences --recipe {_recipe} --labels "
                       f"{_budget}", TESTS))
        register_runner(Runner("report", _name, _cli_report, takes(
            {"criterion", "json"}, f"report {_name} (its rule is fixed: within 1 CER point)")))
