"""The shipped self-supervised encoders on top of the parts: their recipe (``python -m eekit train ssl-hubert``,
``python -m eekit train ssl-hubert-clean``: pretrain, DAISY's heads, every profile, the controls), the files it
writes, and the reports (``python -m eekit report ssl-daisy``; ``python -m eekit report ssl-hubert-clean``: the
clean encoder beside the old one), with :func:`thresholds` for a dashboard that needs only the thresholds.

It imports every other module of :mod:`eekit.ssl` and none imports it: the orchestrator sits on top.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from .. import data, files, validate
from ..train import machine
from . import adaptivity, daisy, probes
from .clips import calibration_clips, held_out_clips
from .daisy import CALIBRATION_BUDGET, TASK_MAX_DROP, mean_exit_by_snr
from .pretraining import (CLEAN_NAME, ENCODERS, NAME, RANDOM_NAME, PretrainConfig, UnitClips, _checkpoint,
                          _save_weights, build_encoder, load_ssl_profile, masked_unit_accuracy, pretrain,
                          pretraining_corpus, resume_files)
from .probes import TASK_METRICS, TASKS

__all__ = ["run_recipe", "output_files", "report", "encoder_numbers", "compare", "clean_report", "thresholds",
           "FINDINGS"]

CLEAN_DESCRIPTION = ("ssl-hubert's recipe (same architecture, seeds and configuration but the corpus and the epochs "
                     "that keep its optimizer steps) on a corpus with clean read sentences of many voices added: "
                     "the LibriSpeech training speakers' audio, no transcripts.")


def _stems(name: str) -> list[str]:
    """The encoders a recipe ships: ssl-hubert comes with its random twin, ssl-hubert-clean alone."""
    return [NAME, RANDOM_NAME] if name == NAME else [name]


def output_files(out_dir: str | Path, name: str = NAME) -> list[Path]:
    """Every file ``run_recipe`` writes for encoder ``name``: the weights (ssl-hubert's random twin's too), the
    card, the profiles, and the adaptivity controls (:mod:`eekit.adaptivity`)."""
    out_dir, stems = Path(out_dir), _stems(validate.one_of("encoder", name, ENCODERS))
    names = [f"{name}.pt", f"{name}.json"] + [f"{stem}.pt" for stem in stems[1:]]
    for stem in stems:
        names += [f"{stem}.profile.npz", f"{stem}-calibration.profile.npz", f"{stem}-noisy.profile.npz"] + [f"{stem}-{t}.profile.npz" for t in TASKS]
    names.append(adaptivity.result_file(name))
    return [out_dir / n for n in names]


def run_recipe(out_dir: str | Path, epochs: int | None = None, progress: bool = True, force: bool = False,
               name: str = NAME) -> dict:
    """``python -m eekit train <name>`` (``ssl-hubert`` or ``ssl-hubert-clean``, :data:`ENCODERS` holds each one's
    configuration): pretrain (resumable), then (ssl-hubert only) give the random twin its unit head, train DAISY's
    exit heads, profile clean and noisy held-out speech and the four tasks, measure the adaptivity controls, and
    write the weights, card and profiles (:func:`output_files`) into ``out_dir``. Returns the card."""
    config = ENCODERS[validate.one_of("encoder", name, ENCODERS)]
    if epochs is not None:
        config = replace(config, epochs=validate.whole("epochs", epochs, 1))
    out_dir = validate.writable_dir("output folder", out_dir)
    validate.no_overwrite(output_files(out_dir, name), force)
    with files.claim_folder(out_dir), files.temp_dir(out_dir, name) as staging:
        validate.no_overwrite(output_files(out_dir, name), force)  # the folder's last holder may have written
        return _run_recipe(out_dir, Path(staging), config, epochs, progress, name)


def _run_recipe(out_dir: Path, staging: Path, config: PretrainConfig, epochs: int | None, progress: bool,
                name: str = NAME) -> dict:
    """:func:`run_recipe` once ``out_dir`` is held: every output is made in ``staging`` (the report reads the
    profiles from there), then moved into ``out_dir`` as one set, the card last."""
    model, codebook, log = pretrain(out_dir, config, progress, name)
    start = time.perf_counter()
    waves, _ = pretraining_corpus(config.corpus)
    corpus = UnitClips(waves, [codebook.units(w) for w in waves])
    held = held_out_clips()
    held_units = UnitClips(held.waveforms, [codebook.units(w) for w in held.waveforms])
    encoders = {name: model}
    card = {"name": name, "description": __doc__.split("\n\n")[0] if name == NAME else CLEAN_DESCRIPTION,
            "heard": log["heard"], "pretraining": log}
    if name == NAME:
        twin = encoders[RANDOM_NAME] = build_encoder(config.num_units, config.seed)
        twin_head_loss = daisy.fit_unit_head(twin, corpus, config.unmasked_weight, seed=config.seed,
                                             progress=progress)
        card["random_twin"] = {"name": RANDOM_NAME, "init": f"build_encoder(seed={config.seed}), the pretraining "
                               "start", "unit_head_loss_per_epoch": twin_head_loss}
    card.update(masked_unit_accuracy={}, exit_head_loss_per_epoch={})
    for stem, encoder in encoders.items():
        card["masked_unit_accuracy"][stem] = round(masked_unit_accuracy(encoder, held_units, config), 4)
        card["exit_head_loss_per_epoch"][stem] = daisy.fit_exit_heads(encoder, corpus, seed=config.seed,
                                                                      progress=progress)
        _save_weights(encoder, codebook, staging / f"{stem}.pt")
        meta = {"model": stem, "clips": "Speech Commands test speakers, 320 evenly spaced clips"}
        daisy.unit_profile(encoder, held, meta=meta).save(staging / f"{stem}.profile.npz")
        daisy.unit_profile(encoder, calibration_clips(), meta={
            "model": stem, "clips": "Speech Commands test speakers, 320 evenly spaced clips not in the held-out "
                                    "profile (calibration, unlabelled)"}).save(
            staging / f"{stem}-calibration.profile.npz")
        daisy.noisy_unit_profile(encoder, held, progress, meta=meta).save(staging / f"{stem}-noisy.profile.npz")
        for task in probes.TASKS:
            probes.task_profile(encoder, task, progress, meta={"model": stem}).save(
                staging / f"{stem}-{task}.profile.npz")
    adaptivity.measure(staging, force=True, progress=progress, seed=config.seed, checkpoint_dir=staging, name=name)
    card["measurement_seconds"] = round(time.perf_counter() - start, 1)
    card["command"] = f"python -m eekit train {name}" + (f" --epochs {epochs}" if epochs else "")
    card["machine"] = machine()
    card["trained_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if name == NAME:
        card["report"] = report(staging, card["masked_unit_accuracy"])
    else:  # the old encoder's numbers, recomputed from its shipped files, beside the new ones
        card["report"] = encoder_numbers(name, staging, card["masked_unit_accuracy"][name])
        old = data.read_json(_checkpoint(f"{NAME}.json"))
        card["history"] = {NAME: {"pretraining_seconds": old["pretraining"]["pretraining_seconds"],
                                  "held_out_masked_accuracy_by_iteration": [
                                      it["held_out_masked_accuracy"] for it in old["pretraining"]["iterations"]],
                                  "report": encoder_numbers(NAME, None, old["masked_unit_accuracy"][NAME])}}
    (staging / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    moves = sorted(output_files(out_dir, name), key=lambda f: f.name == f"{name}.json")  # the card last
    data.write_run(out_dir, {f: lambda p, src=staging / f.name: os.replace(src, p) for f in moves})
    for resume in resume_files(out_dir, config, name):
        resume.unlink(missing_ok=True)
    return card


def _task_score(task: str):
    """A task's accuracy as the reports state it: DER (1 - accuracy) for connected digits, else accuracy."""
    return (lambda a: 1 - a) if TASK_METRICS[task] == "der" else (lambda a: a)


def encoder_numbers(name: str, checkpoint_dir=None, masked_unit_accuracy: float | None = None) -> dict:
    """The headline numbers of one pretrained encoder (``ssl-hubert`` or ``ssl-hubert-clean``), recomputed from its
    profiles and its stored adaptivity controls; the masked unit accuracy, which needs the model, comes from its
    card unless given."""
    name = validate.one_of("encoder", name, ENCODERS)
    if masked_unit_accuracy is None:
        masked_unit_accuracy = data.read_json(_checkpoint(f"{name}.json", checkpoint_dir))["masked_unit_accuracy"][name]
    load = lambda stem: load_ssl_profile(stem, checkpoint_dir)  # noqa: E731
    clean, noisy = load(name), load(f"{name}-noisy")
    threshold = load(f"{name}-calibration").calibrate("ssl_entropy", budget=CALIBRATION_BUDGET).threshold
    point = clean.at("ssl_entropy", threshold)
    tasks = {}
    for task in TASKS:
        profile = load(f"{name}-{task}")
        score = _task_score(task)
        at = profile.at("ssl_entropy", threshold)
        tasks[task] = {
            "metric": TASK_METRICS[task],
            "at_exit": round(score(at.accuracy), 4),
            "at_last_layer": round(score(profile.final_accuracy), 4),
            "at_exit_batch": round(score(profile.at("ssl_batch_entropy", threshold).accuracy), 4),
            "layers_saved_at_exit": round(at.savings, 4),
            "by_layer": [round(score(float(a)), 4) for a in profile.exit_accuracy],
            "task_threshold": round(profile.calibrate("ssl_entropy", max_drop=TASK_MAX_DROP).threshold, 4),
            "test_samples": profile.num_samples,
        }
    return {
        "masked_unit_accuracy": masked_unit_accuracy,
        "entropy_by_layer": [round(float(e), 4) for e in clean.scores_for("ssl_entropy").mean(0)],
        "mean_exit_layer_by_snr": mean_exit_by_snr(clean, noisy, "ssl_entropy", threshold),
        "mean_exit_layer_by_snr_batch": mean_exit_by_snr(clean, noisy, "ssl_batch_entropy", threshold),
        "threshold": round(threshold, 4),
        "threshold_rule": f"the ssl_entropy threshold whose exit units agree best with the last layer's while "
                          f"spending at most {CALIBRATION_BUDGET:.0%} of the layers, on 320 clean unlabelled clips of "
                          "unseen speakers that no held-out profile contains (no labels read)",
        "tasks": tasks,
        "layers_saved_clean": round(point.savings, 4),
        "unit_agreement_at_threshold": round(point.accuracy, 4),
        "adaptivity": {k: v for k, v in adaptivity.load(checkpoint_dir, name).items() if k not in ("clips", "machine")},
    }


def report(checkpoint_dir=None, masked_unit_accuracy: dict | None = None) -> dict:
    """``python -m eekit report ssl-daisy``: every headline number of ``ssl-hubert`` (:func:`encoder_numbers`) with
    its random twin's beside them, recomputed from the shipped profiles (the masked unit accuracies, which need the
    model, come from the card). Fractions in [0, 1]; DER for connected digits. ``adaptivity``: the stored controls
    of :mod:`eekit.adaptivity` (speech-frame exit score, equal-cost baselines, noise grid, placement, padding,
    transfer)."""
    if masked_unit_accuracy is None:
        masked_unit_accuracy = data.read_json(_checkpoint(f"{NAME}.json", checkpoint_dir))["masked_unit_accuracy"]
    numbers = encoder_numbers(NAME, checkpoint_dir, masked_unit_accuracy[NAME])
    load = lambda stem: load_ssl_profile(stem, checkpoint_dir)  # noqa: E731
    clean_random, noisy_random = load(RANDOM_NAME), load(f"{RANDOM_NAME}-noisy")
    random_threshold = load(f"{RANDOM_NAME}-calibration").calibrate("ssl_entropy", budget=CALIBRATION_BUDGET).threshold
    for task, t in numbers["tasks"].items():
        twin = load(f"{RANDOM_NAME}-{task}")
        score = _task_score(task)
        t["random_at_last_layer"] = round(score(twin.final_accuracy), 4)
        t["random_by_layer"] = [round(score(float(a)), 4) for a in twin.exit_accuracy]
    return {**numbers,
            "masked_unit_accuracy_random": masked_unit_accuracy[RANDOM_NAME],
            "entropy_by_layer_random": [round(float(e), 4) for e in clean_random.scores_for("ssl_entropy").mean(0)],
            "threshold_random": round(random_threshold, 4),
            "mean_exit_layer_by_snr_random": mean_exit_by_snr(clean_random, noisy_random, "ssl_entropy",
                                                              random_threshold)}


# each finding of the label-free exit: how to read it from encoder_numbers, and the change that counts as a move
FINDINGS = {
    "threshold": ("the clean-calibrated ssl_entropy threshold (DAISY's all-frames score)", 0.02),
    "layers_saved_clean": ("layers saved on the clean held-out clips at that threshold", 0.03),
    "unit_agreement_at_threshold": ("unit agreement with the last layer there", 0.03),
    "noise_rise_speech": ("mean exit layer at 0 dB minus clean, averaged over the 10 noises (kit score)", 0.25),
    "noise_rise_all_frames": ("the same for DAISY's all-frames score", 0.25),
    "noises_deepening_speech": ("noises whose 0 dB clips leave later than the clean ones (kit score)", 0),
    "noises_deepening_all_frames": ("the same for DAISY's all-frames score", 0),
    "speech_share_r": ("Pearson r of the clean exit layer with the clip's speech share (kit score)", 0.11),
    "speech_share_r_all_frames": ("the same for DAISY's all-frames score", 0.11),
    "placement_speech_minus_silence": ("0 dB noise on the speech only minus in the silence only: mean exit layers "
                                       "(kit score; positive: noise on the words sends clips deeper)", 0.25),
    "padding_2s_shift": ("mean absolute exit shift when 2 s of room tone pads each clip (kit score)", 0.25),
    "fsdd_layers_saved": ("layers saved on FSDD's unseen takes at the same threshold (transfer)", 0.05),
}
TASK_TOLERANCE_POINTS = 1.0  # an equal-cost gain moves when it changes by more than a point


def _findings(numbers: dict) -> dict:
    """The scalar findings of :data:`FINDINGS` (and each task's equal-cost gains) from :func:`encoder_numbers`."""
    a = numbers["adaptivity"]
    rise = {s: {n: row["0"] - row["clean"] for n, row in a[key].items()}
            for s, key in (("speech", "noise_grid"), ("all_frames", "noise_grid_all_frames"))}
    out = {"threshold": numbers["threshold"], "layers_saved_clean": numbers["layers_saved_clean"],
           "unit_agreement_at_threshold": numbers["unit_agreement_at_threshold"],
           "speech_share_r": a["speech_share_r"], "speech_share_r_all_frames": a["speech_share_r_all_frames"],
           "placement_speech_minus_silence": a["placement"]["speech_only"] - a["placement"]["silence_only"],
           "padding_2s_shift": a["padding"]["2"]["mean_abs_shift"],
           "fsdd_layers_saved": a["transfer"]["fsdd_unseen_takes"]["layers_saved"]}
    for s, r in rise.items():
        out[f"noise_rise_{s}"] = sum(r.values()) / len(r)
        out[f"noises_deepening_{s}"] = sum(v > 0 for v in r.values())
    for task, t in a["tasks"].items():
        for versus in ("static", "random"):
            out[f"{task}_gain_vs_{versus}_points"] = t[f"gain_vs_{versus}_points"]
    return out


def compare(old: dict, new: dict) -> dict:
    """Each finding of the label-free exit for two encoders (:func:`encoder_numbers` of ``ssl-hubert`` and
    ``ssl-hubert-clean``) side by side: ``{finding: {"ssl-hubert", "ssl-hubert-clean", "change", "tolerance",
    "moved"}}``; a finding moved when it changed by more than its tolerance (:data:`FINDINGS`; equal-cost task
    gains: :data:`TASK_TOLERANCE_POINTS`)."""
    before, after = _findings(old), _findings(new)
    out = {}
    for key, value in before.items():
        tolerance = FINDINGS[key][1] if key in FINDINGS else TASK_TOLERANCE_POINTS
        change = after[key] - value
        out[key] = {NAME: round(value, 4), CLEAN_NAME: round(after[key], 4), "change": round(change, 4),
                    "tolerance": tolerance, "moved": bool(abs(change) > tolerance)}
    return out


def clean_report(checkpoint_dir=None) -> dict:
    """``python -m eekit report ssl-hubert-clean``: the clean encoder's numbers (recomputed from its files), the old
    ``ssl-hubert``'s (from the clean card's ``history``, stored when it was trained) and every finding side by side
    (:func:`compare`), with the list of those that moved."""
    card = data.read_json(_checkpoint(f"{CLEAN_NAME}.json", checkpoint_dir))
    old, new = card["history"][NAME]["report"], encoder_numbers(CLEAN_NAME, checkpoint_dir)
    findings = compare(old, new)
    return {"masked_unit_accuracy": {NAME: old["masked_unit_accuracy"], CLEAN_NAME: new["masked_unit_accuracy"]},
            "masked_unit_accuracy_note": "each encoder on its own units (its own k-means codebook): not the same "
                                         "targets, so not a like-for-like comparison",
            "mean_exit_layer_by_snr": {NAME: old["mean_exit_layer_by_snr"], CLEAN_NAME: new["mean_exit_layer_by_snr"]},
            "findings": findings, "moved": [k for k, v in findings.items() if v["moved"]],
            "did_not_move": [k for k, v in findings.items() if not v["moved"]],
            "descriptions": {k: d for k, (d, _) in FINDINGS.items()}}


def thresholds(checkpoint_dir=None) -> dict[str, float]:
    """Each encoder's clean-calibrated ``ssl_entropy`` threshold, as the card's report stored them: what a dashboard
    needs, without recomputing the whole :func:`report`."""
    numbers = data.read_json(_checkpoint(f"{NAME}.json", checkpoint_dir))["report"]
    return {NAME: numbers["threshold"], RANDOM_NAME: numbers["threshold_random"]}
