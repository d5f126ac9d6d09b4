"""FreeML's SparseComp on a shipped early-exit model, end to end: low-rank -> prune with retraining -> int8.

``python -m eekit compress cnn-mnist-shared`` reruns it and writes the shipped results (see :func:`compress`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .. import data, files, validate, zoo
from ..data import ImageDataset
from ..evaluate import collect_logits
from ..profile import ExitProfile
from ..train import TrainConfig, train
from .export_c import CFLAGS, compile_and_run, export_c, find_compiler
from .lowrank import apply_ranks, lowrank
from .memory import (FRAM_BYTES, SRAM_BYTES, activation_plan, activation_trace, buffer_plan, fp32_bytes, head_bytes,
                     layer_mcu_bytes, model_bytes, nonzero_macs, qmodel_bytes)
from .payoff import compressed_workload, energy_payoff, energy_per_exit
from .prune import Mask, prunable_layers, prune_to_target, PruneStep, strip_masks
from .quantize import (dequantized_logits, early_exit, exit_scales, fold_batchnorm, int_forward,
                       load_quantized_weights, quantize, quantize_exit_heads, quantize_weights)

__all__ = ["compress", "ship", "ship_weights_only", "write_compressed", "export", "run", "exit_accuracy", "split_validation", "c_check", "int_profile", "choose_margin",
           "ship_integer", "requantize", "load_integer", "calibration_split"]


def exit_accuracy(model, dataset) -> list[float]:
    """Every exit's accuracy (fraction) on ``dataset``."""
    logits, labels = collect_logits(model, dataset)
    return [round(float(a), 4) for a in (logits.argmax(-1) == labels).float().mean(1)]


def final_tune(model, train_all: ImageDataset, n_val: int, epochs: int, lr: float, batch_size: int,
               loss_weights: str, progress: bool = True) -> None:
    """Retrain a pruned ``model`` for ``epochs`` on the whole training split except the validation images, every
    pruned weight held at zero."""
    from torch.nn.utils import parametrize

    for layer in prunable_layers(model).values():
        if not parametrize.is_parametrized(layer, "weight"):
            parametrize.register_parametrization(layer, "weight", Mask((layer.weight.detach() != 0).float()))
    train(model, split_validation(train_all, n_val)[0], TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr,
          weight_decay=5e-4, loss_weights=loss_weights, seed=999), progress=progress)
    strip_masks(model)


def validation_indices(n: int, n_val: int, seed: int = 0) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:n_val].sort().values


def split_validation(train_set: ImageDataset, n_val: int, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """(training part, validation part) of a training split: pruning decisions never look at the test split."""
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed))
    val, rest = order[:n_val].sort().values, order[n_val:].sort().values
    part = lambda idx, t: ImageDataset(train_set.images[idx], train_set.labels[idx], train_set.classes, t)
    return part(rest, train_set.transform), part(val, None)


def compress(name: str, out_dir: str | Path, target_bytes: int = 32_000, explore_bytes: int | None = 12_000,
             energy: float = 0.6, retrain_epochs: int = 2, lr: float = 0.01, fragile_drop: float = 0.01,
             step: float = 0.1, n_val: int = 1000, train_subset: int | None = None, test_subset: int | None = None,
             batch_size: int = 64, loss_weights: str = "uniform", final_epochs: int = 0, progress: bool = True
             ) -> tuple[torch.nn.Module, dict]:
    """Compress shipped model ``name`` until its int8 MCU bytes fit ``target_bytes``; returns the float compressed
    model (masks baked in) and its history (one row per step: action, bytes, test accuracy per exit). The history
    goes on, on a copy, down to ``explore_bytes`` (rows marked ``beyond_target``): where accuracy breaks.
    ``train_subset`` / ``test_subset`` retrain and record on that many images only (the CIFAR-10 budget)."""
    recipe = zoo.RECIPES[name]
    model = zoo.load_pretrained(name)
    train_all, test_set = recipe.datasets()
    train_set, val_set = split_validation(train_all, n_val)
    if train_subset:
        train_set = train_set.subset(train_subset)
    if test_subset:
        test_set = test_set.subset(test_subset)
    torch.manual_seed(0)

    def retrain(m, r):
        cfg = TrainConfig(epochs=retrain_epochs, batch_size=batch_size, lr=lr, weight_decay=5e-4,
                          loss_weights=loss_weights, seed=r)
        train(m, train_set, cfg, progress=progress)

    validate = lambda m: exit_accuracy(m, val_set)[-1]
    evaluate = lambda m: exit_accuracy(m, test_set)
    start = time.perf_counter()
    before = evaluate(model)
    mcu, freeml = model_bytes(model)
    history = [PruneStep(0, "uncompressed", mcu, freeml, before)]
    ranks = lowrank(model, energy=energy)
    mcu, freeml = model_bytes(model)
    history.append(PruneStep(1, f"low-rank {ranks} (energy {energy})", mcu, freeml, evaluate(model)))
    retrain(model, 1)
    history.append(PruneStep(2, "retrain after low-rank", mcu, freeml, evaluate(model)))
    history += prune_to_target(model, target_bytes, layer_mcu_bytes, model_bytes, retrain, validate, evaluate,
                               step=step, fragile_drop=fragile_drop, first_step=3, progress=progress)
    if final_epochs:  # a longer recovery fine-tune on the whole training split, masks held
        final_tune(model, train_all, n_val, final_epochs, lr, batch_size, loss_weights, progress)
        mcu, freeml = model_bytes(model)
        history.append(PruneStep(len(history), f"final fine-tune: {final_epochs} epochs on the whole training split",
                                 mcu, freeml, evaluate(model)))
    extra = []
    if explore_bytes:
        beyond = copy.deepcopy(model)
        extra = prune_to_target(beyond, explore_bytes, layer_mcu_bytes, model_bytes, retrain, validate, evaluate,
                                step=step, fragile_drop=fragile_drop, first_step=len(history), progress=progress)
    rows = [h.as_dict() for h in history] + [{**h.as_dict(), "beyond_target": True} for h in extra]
    strip_masks(model)
    result = {"source": name, "target_bytes": target_bytes, "ranks": ranks, "energy": energy,
              "bytes_fp32_source": fp32_bytes(zoo.load_pretrained(name)),
              "accuracy_per_exit_before": before,
              "recipe": {"retrain_epochs": retrain_epochs, "lr": lr, "fragile_drop": fragile_drop, "step": step,
                         "n_val": n_val, "loss_weights": loss_weights, "batch_size": batch_size,
                         "train_subset": train_subset, "test_subset": test_subset, "final_epochs": final_epochs},
              "steps": rows, "seconds": round(time.perf_counter() - start, 1)}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {"source": name, "ranks": ranks, "state_dict": model.state_dict()}
    data.write_run(out_dir, {out_dir / f"{name}{SUFFIX}.float.pt": lambda p: torch.save(state, p),
                             out_dir / f"{name}{SUFFIX}.history.json": _json_writer(result)})
    return model, result


def _json_writer(obj: dict):
    return lambda p: p.write_text(json.dumps(obj, indent=1) + "\n")


def write_compressed(name: str, out_dir: str | Path, qmodel: dict, card: dict, profile: ExitProfile | None = None
                     ) -> list[Path]:
    """Write a compressed model's integer weights, profile (when there is one) and card into ``out_dir`` as one set,
    the card last, and record them in the folder's checksum list (:func:`eekit.data.write_run`)."""
    out_dir = Path(out_dir)
    writers = {out_dir / f"{name}{SUFFIX}.pt": lambda p: torch.save(qmodel, p)}
    if profile is not None:
        writers[out_dir / f"{name}{SUFFIX}.profile.npz"] = profile.write
    writers[out_dir / f"{name}{SUFFIX}.json"] = _json_writer(card)
    return data.write_run(out_dir, writers)


# ------------------------------------------------------------------------------------------ shipped results

SUFFIX = "-compressed"
C_CHECK_INPUTS = 200


def choose_margin(qmodel: dict, logits: list[torch.Tensor], labels: torch.Tensor, costs, max_drop: float = 0.01
                  ) -> int:
    """The smallest integer logit margin (shared by the early exits) whose early-exit accuracy stays within
    ``max_drop`` of the final exit's, on validation images: the cheapest safe threshold. Exits whose logits have
    different scales (one head each) get the same real margin, in their own integer units."""
    final = float((logits[-1].argmax(1) == labels).float().mean())
    scales = torch.tensor(exit_scales(qmodel)[:-1], dtype=torch.float64)
    per_unit = scales.min() / scales  # one margin in the finest exit's units, the same real margin at every exit
    thresholds = lambda margin: (margin * per_unit).round().clamp(max=32767).to(torch.int32)
    best = 32767
    for margin in sorted({int(v) for v in torch.linspace(0, 32767, 400).round()}, reverse=True):
        qmodel["thresholds"] = thresholds(margin)
        taken = early_exit(qmodel, logits)
        preds = torch.stack([l.argmax(1) for l in logits])[taken, torch.arange(len(labels))]
        if float((preds == labels).float().mean()) >= final - max_drop:
            best = margin
    qmodel["thresholds"] = thresholds(best)
    return best


CALIBRATION_IMAGES = 1000


def calibration_split(train_all: ImageDataset, n_val: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(validation indices, calibration images in [0, 1]): activation scales come from the first training images
    outside the validation part; the test split is never looked at."""
    val_idx = validation_indices(len(train_all), n_val)
    calib_idx = torch.tensor(sorted(set(range(len(train_all))) - set(val_idx.tolist())))[:CALIBRATION_IMAGES]
    return val_idx, train_all.images[calib_idx].float() / 255


def int_profile(qmodel: dict, images: torch.Tensor, labels: torch.Tensor, name: str,
                logits: list[torch.Tensor] | None = None) -> ExitProfile:
    """The exit profile of the integer model (dequantized logits, cost = MFLOPs of its non-zero weights);
    ``logits``: its integer logits on ``images`` when already computed."""
    logits = dequantized_logits(qmodel, logits if logits is not None else int_forward(qmodel, images))
    macs = nonzero_macs(qmodel)
    stage, head = np.array(macs["stage_macs"], float), np.array(macs["head_macs"], float)
    predictions = logits.argmax(-1).T.numpy()
    return ExitProfile(predictions=predictions, errors=(predictions != labels.numpy()[:, None]).astype(np.float32),
                       totals=np.ones(len(labels), dtype=np.float32), cost=np.cumsum(stage + head) * 2 / 1e6,
                       full_cost=float(stage.sum() + head[-1]) * 2 / 1e6, exit_names=qmodel["exit_names"],
                       logits=logits.numpy(), labels=labels.numpy(), meta={"model": name, "split": "test"})


def ship(name: str, model: torch.nn.Module, result: dict, out_dir: str | Path, bits: int = 8) -> dict:
    """Quantize the compressed model, pick its exit thresholds, check the C export (when a compiler exists),
    measure the energy payoff, and write ``<name>-compressed.pt`` (integer model), ``.json`` (card) and
    ``.profile.npz`` into ``out_dir``; returns the card."""
    recipe = zoo.RECIPES[name]
    train_all, test_set = recipe.datasets()
    val_idx, calibration = calibration_split(train_all, result["recipe"]["n_val"])
    qmodel = quantize(model, calibration, bits=bits, source=name)
    val_logits = int_forward(qmodel, train_all.images[val_idx])
    margin = choose_margin(qmodel, val_logits, train_all.labels[val_idx], None)
    test_logits = int_forward(qmodel, test_set.images)
    acc = lambda outs: [round(float((o.argmax(1) == test_set.labels).float().mean()), 4) for o in outs]
    q15 = quantize(model, calibration, bits=16, source=name)
    taken = early_exit(qmodel, test_logits)
    preds = torch.stack([l.argmax(1) for l in test_logits])[taken, torch.arange(len(taken))]
    plan, nbytes = buffer_plan(qmodel), qmodel_bytes(qmodel)
    source_model = zoo.load_pretrained(name)
    trace = activation_trace(source_model, test_set.images[:1].float() / 255)
    bytes_fp32 = fp32_bytes(source_model)
    card = {
        "name": name + SUFFIX, "source": name, "target_bytes": result["target_bytes"],
        "bytes_fp32": bytes_fp32, "bytes_mcu": nbytes["total"], "bytes_freeml": model_bytes(model)[1],
        "ratio": round(bytes_fp32 / nbytes["total"], 2),
        "accuracy_per_exit_before": result["accuracy_per_exit_before"],
        "accuracy_per_exit_after": acc(test_logits),
        "accuracy_per_exit_float": exit_accuracy(model, test_set),
        "accuracy_per_exit_q15": acc(int_forward(q15, test_set.images)),
        "peak_activation_bytes": plan["peak_per_exit"], "static_activation_bytes": plan["static_bytes"],
        "peak_activation_bytes_unfused": max(r["in_bytes"] + r["out_bytes"] for r in trace
                                             if r["kind"] not in ("ReLU",)),
        "fits_fram": nbytes["total"] <= FRAM_BYTES, "fits_sram": plan["static_bytes"] <= SRAM_BYTES,
        "fram_bytes": FRAM_BYTES, "sram_bytes": SRAM_BYTES, "weight_bits": bits,
        "layers": nbytes["layers"], "buffer_plan": plan,
        "head_memory": {"shared (" + name + ")": head_bytes(source_model)},
        "early_exit": {"rule": "top-1 minus top-2 int16 logit >= threshold", "thresholds": [margin] * 2,
                       "chosen_on": "validation images (1 point below the final exit)",
                       "accuracy": round(float((preds == test_set.labels).float().mean()), 4),
                       "exit_fractions": [round(float((taken == k).float().mean()), 4)
                                          for k in range(len(test_logits))]},
        "macs": nonzero_macs(qmodel), "ranks": result["ranks"], "energy_knob": result["energy"],
        "recipe": {**result["recipe"], "command": f"python -m eekit compress {name} --target-bytes "
                   f"{result['target_bytes']}", "seconds": result["seconds"]},
        "steps": result["steps"],
    }
    per_layer = name.replace("-shared", "")
    if per_layer in zoo.RECIPES and per_layer != name:
        card["head_memory"]["per-layer heads (" + per_layer + ")"] = head_bytes(zoo.load_pretrained(per_layer))
    with tempfile.TemporaryDirectory() as tmp:
        card["c_export"] = c_check(qmodel, test_set.images[:C_CHECK_INPUTS], test_set.labels[:C_CHECK_INPUTS],
                                   Path(tmp))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    profile = int_profile(qmodel, test_set.images, test_set.labels, name + SUFFIX)
    card["energy"] = energy_payoff(name, compressed_workload(qmodel, profile))
    write_compressed(name, out_dir, qmodel, card, profile)
    return card


def c_check(qmodel: dict, images: torch.Tensor, labels: torch.Tensor, c_dir: Path) -> dict:
    """Export, compile, run on ``images`` and compare with :func:`int_forward`, exit by exit."""
    if find_compiler() is None:
        return {"compiled": False, "inputs_checked": 0, "mismatches": None}
    export_c(qmodel, c_dir, qmodel["source"] + SUFFIX)
    K, C = len(qmodel["stages"]), qmodel["num_classes"]
    got = compile_and_run(c_dir, images, K, C)
    ref = int_forward(qmodel, images)
    taken = early_exit(qmodel, ref)
    per_exit = [int((got["logits"][k] != ref[k]).any(1).sum()) for k in range(K)]
    return {"compiled": True, "compiler_flags": " ".join(CFLAGS), "inputs_checked": len(images),
            "mismatches": sum(per_exit), "mismatches_per_exit": per_exit,
            "exit_mismatches": int((got["taken"] != taken).sum() + (got["stopped"] != taken).sum()),
            "accuracy_per_exit_c": [round(float((got["logits"][k].argmax(1) == labels).float().mean()), 4)
                                    for k in range(K)],
            "accuracy_per_exit_reference": [round(float((ref[k].argmax(1) == labels).float().mean()), 4)
                                            for k in range(K)]}


# ------------------------------------------------------------------------------------------ reading results

# the shipped compressed models, by source name, and the settings that made them (`python -m eekit compress`)
SETTINGS = {
    "cnn-mnist-shared": dict(target_bytes=32_000, explore_bytes=12_000, energy=0.6, retrain_epochs=2, lr=0.01,
                             fragile_drop=0.01),
    # CIFAR-10 on a shared 2-core CPU: one epoch on 10k training images per round, steps recorded on 2k test images
    "cnn-cifar10": dict(target_bytes=250_000, explore_bytes=None, energy=0.7, retrain_epochs=1, lr=0.02,
                        fragile_drop=0.03, train_subset=10_000, test_subset=2000, batch_size=128,
                        loss_weights="increasing", final_epochs=2),
}
COMPRESSED = ("cnn-mnist-shared", "cnn-cifar10")  # shipped in data/checkpoints


def _source(name: str) -> str:
    source = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    if source not in COMPRESSED:
        raise ValueError(f"no compressed version of {name!r} is shipped; choose from "
                         f"{[n + SUFFIX for n in COMPRESSED]} (or their sources {list(COMPRESSED)})")
    return source


def _path(name: str, suffix: str) -> Path:
    return data.data_path(f"{zoo.CHECKPOINT_DIR}/{_source(name)}{SUFFIX}{suffix}")


def load_compressed(name: str) -> dict:
    """The shipped integer model of ``name`` (``cnn-mnist-shared`` or ``cnn-mnist-shared-compressed``)."""
    return data.read_torch(_path(name, ".pt"))


def load_compressed_card(name: str) -> dict:
    """The shipped card of a compressed model: bytes, accuracy per exit, memory plan, every compression step."""
    return data.read_json(_path(name, ".json"))


def load_compressed_profile(name: str) -> ExitProfile:
    return ExitProfile.load(_path(name, ".profile.npz"))


REPORT_KEYS = ("source", "target_bytes", "bytes_fp32", "bytes_mcu", "ratio", "accuracy_per_exit_before",
               "accuracy_per_exit_after", "peak_activation_bytes", "fits_fram", "fits_sram")


def run(name: str, out_dir: str | Path, target_bytes: int | None = None, force: bool = False, progress: bool = True
        ) -> dict:
    """``python -m eekit compress``: compress, quantize, export and check, write the results; refuses to replace
    shipped files unless ``force``."""
    if name not in SETTINGS:
        raise ValueError(f"no compression settings for {name!r}; known: {sorted(SETTINGS)}")
    if target_bytes is not None:  # 0 or a negative target used to fall back to the default or prune 60 rounds
        target_bytes = validate.whole("target_bytes (MCU bytes to fit)", target_bytes, 1)
    out_dir = validate.writable_dir("output folder", out_dir)
    outputs = [out_dir / f"{name}{SUFFIX}{s}" for s in (".pt", ".json", ".profile.npz", INTEGER)]
    validate.no_overwrite(outputs, force)
    shipped = out_dir.resolve() == (data.DATA_DIR / zoo.CHECKPOINT_DIR).resolve()
    settings = {**SETTINGS[name], **({"target_bytes": target_bytes} if target_bytes is not None else {})}
    work = Path("eekit-runs") if shipped else out_dir  # the float model stays out of data/
    with files.claim_folder(out_dir), files.claim_folder(work) if work != out_dir else contextlib.nullcontext():
        validate.no_overwrite(outputs, force)  # again: the folder's last holder may have written
        model, result = compress(name, work, progress=progress, **settings)
        if model.shared_head:
            return ship(name, model, result, out_dir)
        return ship_weights_only(name, model, result, out_dir)


CHECK_PREDICTIONS = 500  # a card keeps the first test images' predictions, so a test can rerun them quickly


def build_weights_only(name: str, shipped: dict) -> torch.nn.Module:
    """The float model with the shipped integer weights of a weights-only compressed model (see
    :func:`ship_weights_only`)."""
    model = apply_ranks(zoo.RECIPES[name].build(), shipped["ranks"])
    fold_batchnorm(model)
    return load_quantized_weights(model, shipped["weights"]).eval()


def ship_weights_only(name: str, model: torch.nn.Module, result: dict, out_dir: str | Path, bits: int = 8) -> dict:
    """Ship a compressed model with one head per exit and residual blocks (the CIFAR-10 ResNet): BatchNorm folded,
    int8 per-channel weights stored (``<name>-compressed.pt``), accuracy measured with those integer weights and
    float activations, bytes as the MCU would store them, SRAM from forward hooks; then :func:`ship_integer` adds
    the integer model with int8 activations (``<name>-compressed.int8.pt``) that the C export runs."""
    recipe = zoo.RECIPES[name]
    test_set = recipe.test_set()
    folded = fold_batchnorm(copy.deepcopy(model).eval())
    weights = quantize_weights(folded, bits)
    shipped = {"source": name, "ranks": result["ranks"], "weights": weights, "weight_bits": bits}
    deployed = build_weights_only(name, shipped)
    logits, labels = collect_logits(deployed, test_set)
    after = [round(float(a), 4) for a in (logits.argmax(-1) == labels).float().mean(1)]
    source_model = zoo.load_pretrained(name)
    bytes_fp32 = fp32_bytes(source_model)
    mcu = model_bytes(folded, bits)[0]
    trace = activation_trace(deployed, test_set[0][0].unsqueeze(0))
    peaks = []
    for k in range(deployed.num_exits):  # layer by layer (unfused), int8, up to the end of stage k
        rows = [r for r in trace if int(r["layer"].split(".")[1]) <= k and r["kind"] not in ("ReLU", "Identity")]
        peaks.append(max(r["in_bytes"] + r["out_bytes"] for r in rows))
    card = {
        "name": name + SUFFIX, "source": name, "target_bytes": result["target_bytes"], "bytes_fp32": bytes_fp32,
        "bytes_mcu": mcu, "bytes_freeml": model_bytes(model)[1], "ratio": round(bytes_fp32 / mcu, 2),
        "accuracy_per_exit_before": zoo.load_card(name)["exit_accuracy"],
        "accuracy_per_exit_after": after, "accuracy_per_exit_float": exit_accuracy(model, test_set),
        "peak_activation_bytes": peaks, "fits_fram": mcu <= FRAM_BYTES, "fits_sram": max(peaks) <= SRAM_BYTES,
        "fram_bytes": FRAM_BYTES, "sram_bytes": SRAM_BYTES, "weight_bits": bits,
        "deployment": "int8 per-channel weights (BatchNorm folded), float activations: the integer C export "
                      "does not handle residual blocks and per-exit heads yet; SRAM peaks are layer by layer",
        "predictions_first_test_images": logits[:, :CHECK_PREDICTIONS].argmax(-1).tolist(),
        "ranks": result["ranks"], "energy_knob": result["energy"],
        "recipe": {**result["recipe"], "seconds": result["seconds"]},
        "steps": result["steps"],
        "c_export": {"compiled": False, "inputs_checked": 0, "mismatches": None, "why": "not exported (see deployment)"},
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return ship_integer(name, shipped, card, out_dir, result["recipe"]["n_val"])


INTEGER = ".int8.pt"  # the integer model (int8 activations) of a weights-only compressed model


def ship_integer(name: str, shipped: dict, card: dict, out_dir: str | Path, n_val: int = 1000,
                 write_weights: bool = True) -> dict:
    """Deploy a weights-only compressed model (``shipped``: its int8 weights, :func:`ship_weights_only`) with int8
    activations too: calibrate every activation scale on training images, quantize (:func:`quantize_exit_heads`),
    pick the exit thresholds on the validation images, measure every exit on the whole test split, check the C
    export on the first test images, and write the weights, the integer model, its profile and the card (with the
    new figures) into ``out_dir`` as one set (the weights only with ``write_weights``)."""
    train_all, test_set = zoo.RECIPES[name].datasets()
    val_idx, calibration = calibration_split(train_all, n_val)
    qmodel = quantize_exit_heads(build_weights_only(name, shipped), calibration, source=name)
    choose_margin(qmodel, int_forward(qmodel, train_all.images[val_idx]), train_all.labels[val_idx], None)
    logits = [torch.cat(parts) for parts in zip(*(int_forward(qmodel, test_set.images[i:i + 500])
                                                   for i in range(0, len(test_set), 500)))]
    taken = early_exit(qmodel, logits)
    preds = torch.stack([l.argmax(1) for l in logits])[taken, torch.arange(len(taken))]
    plan, nbytes = buffer_plan(qmodel), qmodel_bytes(qmodel)
    card = {**card, "accuracy_per_exit_int8": [round(float((l.argmax(1) == test_set.labels).float().mean()), 4)
                                                for l in logits],
            "bytes_mcu_integer": nbytes["total"], "static_activation_bytes": plan["static_bytes"],
            "peak_activation_bytes_integer": plan["peak_per_exit"], "buffer_plan": plan,
            "activation_plan": activation_plan(qmodel), "fits_fram_with_activations":
                nbytes["total"] + activation_plan(qmodel)["fram_activation_bytes"] <= FRAM_BYTES,
            "deployment": "integer C: int8 weights (BatchNorm folded) and int8 activations, one scale per tensor "
                          f"calibrated on {CALIBRATION_IMAGES} training images; residual adds bring both inputs to a "
                          "common scale; one head per exit; activations that do not fit SRAM spill to FRAM",
            "early_exit": {"rule": "top-1 minus top-2 int16 logit >= threshold (the same real margin at every exit)",
                           "thresholds": qmodel["thresholds"].tolist(),
                           "chosen_on": "validation images (1 point below the final exit)",
                           "accuracy": round(float((preds == test_set.labels).float().mean()), 4),
                           "exit_fractions": [round(float((taken == k).float().mean()), 4)
                                              for k in range(len(logits))]},
            "macs": nonzero_macs(qmodel)}
    with tempfile.TemporaryDirectory() as tmp:
        card["c_export"] = c_check(qmodel, test_set.images[:C_CHECK_INPUTS], test_set.labels[:C_CHECK_INPUTS],
                                   Path(tmp))
    profile = int_profile(qmodel, test_set.images, test_set.labels, name + SUFFIX, logits)
    card["energy"] = energy_per_exit(compressed_workload(qmodel, profile))
    out_dir = Path(out_dir)
    weights = {out_dir / f"{name}{SUFFIX}.pt": lambda p: torch.save(shipped, p)} if write_weights else {}
    data.write_run(out_dir, {**weights, out_dir / f"{name}{SUFFIX}{INTEGER}": lambda p: torch.save(qmodel, p),
                             out_dir / f"{name}{SUFFIX}.profile.npz": profile.write,
                             out_dir / f"{name}{SUFFIX}.json": _json_writer(card)})
    return card


def requantize(name: str, out_dir: str | Path, force: bool = False) -> dict:
    """``python -m eekit.compress.requantize cnn-cifar10 --out data/checkpoints --force``: redo
    :func:`ship_integer` from the shipped int8 weights and card (minutes, no retraining)."""
    source = _source(name)
    shipped, card = load_compressed(source), load_compressed_card(source)
    if "weights" not in shipped:
        raise ValueError(f"{name} is quantized with its activations already; requantize takes a weights-only model")
    out_dir = validate.writable_dir("output folder", out_dir)
    outputs = [out_dir / f"{source}{SUFFIX}{s}" for s in (INTEGER, ".profile.npz", ".json")]
    with files.claim_folder(out_dir):
        validate.no_overwrite(outputs, force)
        return ship_integer(source, shipped, card, out_dir, card["recipe"]["n_val"], write_weights=False)


def load_integer(name: str) -> dict:
    """The shipped integer model (int8 activations) of ``name``, the one the C export runs."""
    shipped = load_compressed(name)
    return shipped if "stages" in shipped else data.read_torch(_path(name, INTEGER))


def export(name: str, out_dir: str | Path, force: bool = False) -> dict:
    """``python -m eekit export-c``: write the shipped integer model of ``name`` as C99 into ``out_dir`` (existing
    files are replaced only with ``force``)."""
    return export_c(load_integer(name), out_dir, _source(name) + SUFFIX, force=force)

