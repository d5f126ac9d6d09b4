"""The shipped self-supervised encoder ``ssl-hubert`` on top of the parts: its recipe (``python -m eekit train
ssl-hubert``: pretrain, DAISY's heads, every profile, the controls), the files it writes, and its report
(``python -m eekit report ssl-daisy``), with :func:`thresholds` for a dashboard that needs only the thresholds.

It imports every other module of :mod:`eekit.ssl` and none imports it: the orchestrator sits on top.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from .. import data, files, validate
from ..train import machine
from . import adaptivity, daisy, probes
from .adaptivity import RESULT_FILE as ADAPTIVITY_FILE
from .clips import calibration_clips, held_out_clips
from .daisy import CALIBRATION_BUDGET, TASK_MAX_DROP, mean_exit_by_snr
from .pretraining import (NAME, RANDOM_NAME, PretrainConfig, UnitClips, _checkpoint, _save_weights, build_encoder,
                       load_ssl_profile, masked_unit_accuracy, pretrain, pretraining_corpus, resume_files)
from .probes import TASK_METRICS, TASKS

__all__ = ["run_recipe", "output_files", "report", "thresholds"]


def output_files(out_dir: str | Path) -> list[Path]:
    """Every file ``run_recipe`` writes: weights of both encoders, the card, their profiles, and the adaptivity
    controls (:mod:`eekit.adaptivity`)."""
    out_dir = Path(out_dir)
    names = [f"{NAME}.pt", f"{NAME}.json", f"{RANDOM_NAME}.pt"]
    for stem in (NAME, RANDOM_NAME):
        names += [f"{stem}.profile.npz", f"{stem}-calibration.profile.npz", f"{stem}-noisy.profile.npz"] + [f"{stem}-{t}.profile.npz" for t in TASKS]
    names.append(ADAPTIVITY_FILE)
    return [out_dir / n for n in names]


def run_recipe(out_dir: str | Path, epochs: int | None = None, progress: bool = True, force: bool = False) -> dict:
    """``python -m eekit train ssl-hubert``: pretrain (resumable), then give the random twin its unit head, train
    DAISY's exit heads on both encoders, profile clean and noisy held-out speech and the four tasks, and write the
    weights, card and profiles (:func:`output_files`) into ``out_dir``. Returns the card."""
    config = PretrainConfig(**({"epochs": validate.whole("epochs", epochs, 1)} if epochs is not None else {}))
    out_dir = validate.writable_dir("output folder", out_dir)
    validate.no_overwrite(output_files(out_dir), force)
    with files.claim_folder(out_dir), files.temp_dir(out_dir, NAME) as staging:
        validate.no_overwrite(output_files(out_dir), force)  # the folder's last holder may have written
        return _run_recipe(out_dir, Path(staging), config, epochs, progress)


def _run_recipe(out_dir: Path, staging: Path, config: PretrainConfig, epochs: int | None, progress: bool) -> dict:
    """:func:`run_recipe` once ``out_dir`` is held: every output is made in ``staging`` (the report reads the
    profiles from there), then moved into ``out_dir`` as one set, the card last."""
    model, codebook, log = pretrain(out_dir, config, progress)
    start = time.perf_counter()
    waves, _ = pretraining_corpus()
    corpus = UnitClips(waves, [codebook.units(w) for w in waves])
    held = held_out_clips()
    held_units = UnitClips(held.waveforms, [codebook.units(w) for w in held.waveforms])
    twin = build_encoder(config.num_units, config.seed)
    twin_head_loss = daisy.fit_unit_head(twin, corpus, config.unmasked_weight, seed=config.seed, progress=progress)
    encoders = {NAME: model, RANDOM_NAME: twin}
    card = {"name": NAME, "description": __doc__.split("\n\n")[0], "heard": log["heard"], "pretraining": log,
            "random_twin": {"name": RANDOM_NAME, "init": f"build_encoder(seed={config.seed}), the pretraining start",
                            "unit_head_loss_per_epoch": twin_head_loss},
            "masked_unit_accuracy": {}, "exit_head_loss_per_epoch": {}}
    for name, encoder in encoders.items():
        card["masked_unit_accuracy"][name] = round(masked_unit_accuracy(encoder, held_units, config), 4)
        card["exit_head_loss_per_epoch"][name] = daisy.fit_exit_heads(encoder, corpus, seed=config.seed,
                                                                      progress=progress)
        _save_weights(encoder, codebook, staging / f"{name}.pt")
        meta = {"model": name, "clips": "Speech Commands test speakers, 320 evenly spaced clips"}
        daisy.unit_profile(encoder, held, meta=meta).save(staging / f"{name}.profile.npz")
        daisy.unit_profile(encoder, calibration_clips(), meta={
            "model": name, "clips": "Speech Commands test speakers, 320 evenly spaced clips not in the held-out "
                                    "profile (calibration, unlabelled)"}).save(
            staging / f"{name}-calibration.profile.npz")
        daisy.noisy_unit_profile(encoder, held, progress, meta=meta).save(staging / f"{name}-noisy.profile.npz")
        for task in probes.TASKS:
            probes.task_profile(encoder, task, progress, meta={"model": name}).save(
                staging / f"{name}-{task}.profile.npz")
    adaptivity.measure(staging, force=True, progress=progress, seed=config.seed, checkpoint_dir=staging)
    card["measurement_seconds"] = round(time.perf_counter() - start, 1)
    card["command"] = f"python -m eekit train {NAME}" + (f" --epochs {epochs}" if epochs else "")
    card["machine"] = machine()
    card["trained_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    card["report"] = daisy.report(staging, card["masked_unit_accuracy"])
    (staging / f"{NAME}.json").write_text(json.dumps(card, indent=2) + "\n")
    moves = sorted(output_files(out_dir), key=lambda f: f.name == f"{NAME}.json")  # the card last
    data.write_run(out_dir, {f: lambda p, src=staging / f.name: os.replace(src, p) for f in moves})
    for resume in resume_files(out_dir, config):
        resume.unlink(missing_ok=True)
    return card


def report(checkpoint_dir=None, masked_unit_accuracy: dict | None = None) -> dict:
    """``python -m eekit report ssl-daisy``: every headline number recomputed from the shipped profiles (the masked
    unit accuracies, which need the model, come from the card). Fractions in [0, 1]; DER for connected digits.
    ``adaptivity``: the stored controls of :mod:`eekit.adaptivity` (speech-frame exit score, equal-cost baselines,
    noise grid, placement, padding, transfer)."""
    if masked_unit_accuracy is None:
        masked_unit_accuracy = data.read_json(_checkpoint(f"{NAME}.json", checkpoint_dir))["masked_unit_accuracy"]
    load = lambda stem: load_ssl_profile(stem, checkpoint_dir)  # noqa: E731
    clean, clean_random = load(NAME), load(RANDOM_NAME)
    noisy, noisy_random = load(f"{NAME}-noisy"), load(f"{RANDOM_NAME}-noisy")
    threshold = load(f"{NAME}-calibration").calibrate("ssl_entropy", budget=CALIBRATION_BUDGET).threshold
    random_threshold = load(f"{RANDOM_NAME}-calibration").calibrate("ssl_entropy", budget=CALIBRATION_BUDGET).threshold
    point = clean.at("ssl_entropy", threshold)
    tasks = {}
    for task in TASKS:
        profile, twin = load(f"{NAME}-{task}"), load(f"{RANDOM_NAME}-{task}")
        score = (lambda a: 1 - a) if TASK_METRICS[task] == "der" else (lambda a: a)
        at = profile.at("ssl_entropy", threshold)
        tasks[task] = {
            "metric": TASK_METRICS[task],
            "at_exit": round(score(at.accuracy), 4),
            "at_last_layer": round(score(profile.final_accuracy), 4),
            "random_at_last_layer": round(score(twin.final_accuracy), 4),
            "at_exit_batch": round(score(profile.at("ssl_batch_entropy", threshold).accuracy), 4),
            "layers_saved_at_exit": round(at.savings, 4),
            "by_layer": [round(score(float(a)), 4) for a in profile.exit_accuracy],
            "random_by_layer": [round(score(float(a)), 4) for a in twin.exit_accuracy],
            "task_threshold": round(profile.calibrate("ssl_entropy", max_drop=TASK_MAX_DROP).threshold, 4),
            "test_samples": profile.num_samples,
        }
    return {
        "masked_unit_accuracy": masked_unit_accuracy[NAME],
        "masked_unit_accuracy_random": masked_unit_accuracy[RANDOM_NAME],
        "entropy_by_layer": [round(float(e), 4) for e in clean.scores_for("ssl_entropy").mean(0)],
        "entropy_by_layer_random": [round(float(e), 4) for e in clean_random.scores_for("ssl_entropy").mean(0)],
        "mean_exit_layer_by_snr": mean_exit_by_snr(clean, noisy, "ssl_entropy", threshold),
        "mean_exit_layer_by_snr_batch": mean_exit_by_snr(clean, noisy, "ssl_batch_entropy", threshold),
        "threshold": round(threshold, 4),
        "threshold_rule": f"the ssl_entropy threshold whose exit units agree best with the last layer's while "
                          f"spending at most {CALIBRATION_BUDGET:.0%} of the layers, on 320 clean unlabelled clips of "
                          "unseen speakers that no held-out profile contains (no labels read)",
        "tasks": tasks,
        "layers_saved_clean": round(point.savings, 4),
        "unit_agreement_at_threshold": round(point.accuracy, 4),
        "threshold_random": round(random_threshold, 4),
        "mean_exit_layer_by_snr_random": mean_exit_by_snr(clean_random, noisy_random, "ssl_entropy",
                                                          random_threshold),
        "adaptivity": {k: v for k, v in adaptivity.load(checkpoint_dir).items() if k not in ("clips", "machine")},
    }


def thresholds(checkpoint_dir=None) -> dict[str, float]:
    """Each encoder's clean-calibrated ``ssl_entropy`` threshold, as the card's report stored them: what a dashboard
    needs, without recomputing the whole :func:`report`."""
    numbers = data.read_json(_checkpoint(f"{NAME}.json", checkpoint_dir))["report"]
    return {NAME: numbers["threshold"], RANDOM_NAME: numbers["threshold_random"]}
