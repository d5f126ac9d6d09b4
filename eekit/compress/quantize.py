"""Post-training quantization by hand, and the pure-integer reference forward that the C export must equal.

* Weights: symmetric, per output channel, int8 (``bits=8``) or Q15 int16 (``bits=16``).
* Activations: int8 with one calibrated scale per tensor (max |value| over calibration images); the input image
  goes through a 256-entry lookup table (uint8 pixel -> normalized int8), so zero padding stays exact.
* Arithmetic: int32 accumulators, int32 bias, then *requantization* by an integer multiplier ``m`` (15 bits)
  and a right shift: ``y = floor((acc * m + 2^(s-1)) / 2^s)``, clamped (and ReLU'd). No float anywhere.
* Exits answer int16 logits; the integer confidence is the top-1 minus top-2 logit margin, compared with a
  per-exit integer threshold. The shared head (FreeML's gNet) keeps a running int32 accumulator: exit ``k`` adds
  exit point ``k``'s pooled features to it, so no exit recomputes an earlier one.
* Models with one head per exit and residual blocks (the CIFAR-10 ResNet, :func:`quantize_exit_heads`, format 2):
  a residual add brings its two int8 inputs to a common scale, ``y = floor((skip * m1 + body * m2 + 2^(s-1)) /
  2^s)`` with one shift ``s``; an exit head max-pools int8 features (max commutes with the scale) and runs its
  linear layers; colour images go through one lookup table per channel into one shared input scale.

A quantized model is a plain dict of tensors and numbers (:func:`quantize`), saved with ``torch.save`` and read
with ``weights_only=True``. :func:`int_forward` runs it with integer tensors only (int64 holding int32 values;
convolutions and matmuls in float64, which is exact for these sizes and checked).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import validate
from ..models.cnn import Normalize, Residual
from ..models.exits import EarlyExitNet, ExitHeads

__all__ = ["quantize", "quantize_exit_heads", "int_forward", "early_exit", "requantize", "multiplier_shift", "lower", "dequantized_logits", "exit_scales",
           "fold_batchnorm", "quantize_weights", "load_quantized_weights"]

ACT_MAX = 127  # int8 activations
LOGIT_MAX = 32767  # int16 logits
INT32_MAX = 2**31 - 1


def multiplier_shift(scale: float) -> tuple[int, int]:
    """``scale ~= m / 2^shift`` with a 15-bit ``m`` (so ``acc * m`` fits easily in 64 bits)."""
    if not scale > 0 or not math.isfinite(scale):
        raise ValueError(f"a requantization scale must be a positive number, got {scale}")
    shift = 14 - math.floor(math.log2(scale))
    m = round(scale * 2.0**shift)
    if m >= 2**15:
        m, shift = round(m / 2), shift - 1
    if not 1 <= shift <= 62:
        raise ValueError(f"requantization scale {scale} is out of range (shift {shift})")
    return m, shift


def requantize(acc: torch.Tensor, m: torch.Tensor, shift: torch.Tensor, qmax: int, relu: bool,
               channel_dim: int = 1) -> torch.Tensor:
    """``clamp(floor((acc * m + 2^(shift-1)) / 2^shift))`` per channel, in int64 (``>>`` floors negatives)."""
    shape = [1] * acc.ndim
    shape[channel_dim] = -1
    m, shift = m.view(shape).long(), shift.view(shape).long()
    y = (acc * m + (1 << (shift - 1))) >> shift
    return y.clamp(0 if relu else -qmax, qmax)


# ------------------------------------------------------------------------------------------ float model -> ops


def _leaves(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _leaves(child)]
    return [module]


def lower(stage: nn.Module) -> list[dict]:
    """A backbone stage as fused float ops: ``{"kind": conv|linear, "weight", "bias", "pad", "relu", "pool"}``
    (BatchNorm folded, ReLU and 2x2 max-pool fused into the layer before). ``Normalize`` becomes the input op."""
    ops: list[dict] = []
    for leaf in _leaves(stage):
        if isinstance(leaf, Residual):  # x + body(x): keep x, run the body, add
            ops += [{"kind": "save"}, *lower(leaf.body), {"kind": "add", "relu": False, "pool": 0}]
        elif isinstance(leaf, nn.AdaptiveMaxPool2d):  # an exit head's pooling
            size = leaf.output_size
            ops.append({"kind": "maxpool", "size": int(size if isinstance(size, int) else size[0])})
        elif isinstance(leaf, Normalize):
            if ops:
                raise ValueError("Normalize must come first")
            ops.append({"kind": "input", "mean": leaf.mean.flatten().tolist(), "std": leaf.std.flatten().tolist()})
        elif isinstance(leaf, nn.Conv2d):
            if leaf.stride != (1, 1) or leaf.groups != 1 or leaf.dilation != (1, 1) or leaf.padding_mode != "zeros":
                raise ValueError(f"only stride-1 zero-padded convs are exported, got {leaf}")
            bias = leaf.bias if leaf.bias is not None else torch.zeros(leaf.out_channels)
            ops.append({"kind": "conv", "weight": leaf.weight.detach(), "bias": bias.detach(),
                        "pad": leaf.padding[0], "relu": False, "pool": 0})
        elif isinstance(leaf, nn.BatchNorm2d):
            conv = ops[-1]  # fold the batch norm into the conv before it
            scale = leaf.weight / torch.sqrt(leaf.running_var + leaf.eps)
            conv["weight"] = (conv["weight"] * scale.view(-1, 1, 1, 1)).detach()
            conv["bias"] = ((conv["bias"] - leaf.running_mean) * scale + leaf.bias).detach()
        elif isinstance(leaf, nn.Linear):
            bias = leaf.bias if leaf.bias is not None else torch.zeros(leaf.out_features)
            ops.append({"kind": "linear", "weight": leaf.weight.detach(), "bias": bias.detach(), "relu": False})
        elif isinstance(leaf, nn.ReLU):
            ops[-1]["relu"] = True
        elif isinstance(leaf, nn.MaxPool2d):
            if leaf.kernel_size not in (2, (2, 2)) or leaf.stride not in (2, (2, 2)) or leaf.padding not in (0, (0, 0)):
                raise ValueError(f"only 2x2 max-pooling is exported, got {leaf}")
            ops[-1]["pool"] = 2
        elif isinstance(leaf, (nn.Flatten, nn.Dropout, nn.Identity)):
            continue  # C arrays are already flat (C, H, W order)
        else:
            raise ValueError(f"cannot export layer {type(leaf).__name__}; exportable: Normalize, Conv2d, "
                             "BatchNorm2d, Linear, ReLU, MaxPool2d(2), AdaptiveMaxPool2d, Residual, Flatten, "
                             "Dropout")
    return ops


def _float_op(op: dict, x: torch.Tensor) -> torch.Tensor:
    if op["kind"] == "conv":
        y = F.conv2d(x, op["weight"], op["bias"], padding=op["pad"])
    else:
        y = F.linear(x.flatten(1), op["weight"], op["bias"])
    if op["relu"]:
        y = y.clamp(min=0)
    if op.get("pool"):
        y = F.max_pool2d(y, 2)
    return y


def _quantize_op(op: dict, in_scale: float, out_scale: float, bits: int, out_max: int) -> dict:
    w = op["weight"].double()
    qmax = 2 ** (bits - 1) - 1
    w_scale = w.flatten(1).abs().amax(1) / qmax
    w_scale = torch.where(w_scale > 0, w_scale, torch.ones_like(w_scale))  # a fully pruned channel
    shape = (-1,) + (1,) * (w.ndim - 1)
    wq = torch.round(w / w_scale.view(shape)).to(torch.int8 if bits == 8 else torch.int16)
    bq = torch.round(op["bias"].double() / (w_scale * in_scale)).long()
    if bq.abs().max() > INT32_MAX:
        raise OverflowError("a bias does not fit int32")
    ms = [multiplier_shift(float(s) * in_scale / out_scale) for s in w_scale]
    q = {k: v for k, v in op.items() if k not in ("weight", "bias")}
    q.update(weight=wq, bias=bq.int(), m=torch.tensor([a for a, _ in ms], dtype=torch.int32),
             shift=torch.tensor([b for _, b in ms], dtype=torch.int32), in_scale=in_scale, out_scale=out_scale,
             out_max=out_max)
    return q


def quantize(model: EarlyExitNet, calibration: torch.Tensor, bits: int = 8, source: str = "") -> dict:
    """Quantize ``model`` (a backbone of conv / linear stages with a shared head, FreeML's gNet) with activation
    scales calibrated on ``calibration`` images ``[N, C, H, W]`` in ``[0, 1]``."""
    if bits not in (8, 16):
        raise ValueError(f"weights are quantized to 8 (int8) or 16 (Q15) bits, got {bits}")
    validate.image_batch("calibration images", calibration)  # 0..255 pixels would give a 12 % model, silently
    if not model.shared_head:
        raise ValueError("the C export handles models with a shared exit head (FreeML's gNet), like "
                         "cnn-mnist-shared")
    model = model.eval()
    stages = [lower(s) for s in model.stages]
    first = stages[0].pop(0)
    if first["kind"] != "input":
        raise ValueError("the first stage must start with Normalize (the model normalizes its own input)")
    mean, std = torch.tensor(first["mean"]), torch.tensor(first["std"])
    if len(mean) != 1:
        raise ValueError("the shared-head export takes one input channel (one lookup table)")
    lut, in_scale = _input_lut(first)
    lut = lut.view(-1)

    with torch.no_grad():
        x = (calibration.double() - mean.double().view(1, -1, 1, 1)) / std.double().view(1, -1, 1, 1)
        qstages, features, feature_scales, s = [], [], [], in_scale
        for ops in stages:
            qops = []
            for op in ops:
                op = {**op, "weight": op["weight"].double(), "bias": op["bias"].double()}
                x = _float_op(op, x)
                out_scale = float(x.abs().max()) / ACT_MAX or 1.0
                qops.append(_quantize_op(op, s, out_scale, bits, ACT_MAX))
                s = out_scale
            qstages.append(qops)
            features.append(x)
            feature_scales.append(s)
        shared = model.exits.shared
        pooled = [F.adaptive_max_pool2d(f, shared.pool.output_size).flatten(1) for f in features[:-1]]
        head_scale = float(torch.cat(pooled, 1).abs().max()) / ACT_MAX
        w, b = shared.linear.weight.detach().double(), shared.linear.bias.detach().double()
        partial = torch.zeros(len(pooled[0]), w.shape[0], dtype=torch.float64)
        offsets = [0]
        logit_max = 0.0
        for p in pooled:
            partial = partial + p @ w[:, offsets[-1]:offsets[-1] + p.shape[1]].T
            offsets.append(offsets[-1] + p.shape[1])
            logit_max = max(logit_max, float((partial + b).abs().max()))
        head = _quantize_op({"kind": "linear", "weight": w, "bias": b, "relu": False}, head_scale,
                            logit_max / LOGIT_MAX, bits, LOGIT_MAX)
        blocks = [multiplier_shift(fs / head_scale) for fs in feature_scales[:-1]]
        head.update(pool=int(shared.pool.output_size), block_sizes=offsets[1:],
                    block_m=torch.tensor([a for a, _ in blocks], dtype=torch.int32),
                    block_shift=torch.tensor([c for _, c in blocks], dtype=torch.int32),
                    channels=[int(f.shape[1]) for f in features[:-1]])
        final_layers = _leaves(model.exits.final)
        if len(final_layers) != 1 or not isinstance(final_layers[0], nn.Linear):
            raise ValueError("the final exit must be one Linear layer")
        fl = final_layers[0]
        fop = {"kind": "linear", "weight": fl.weight.detach().double(), "bias": fl.bias.detach().double(),
               "relu": False}
        final_scale = float(_float_op(fop, features[-1]).abs().max()) / LOGIT_MAX
        final = _quantize_op(fop, feature_scales[-1], final_scale, bits, LOGIT_MAX)
    K = model.num_exits
    return {"format": 1, "source": source, "weight_bits": bits, "input_shape": list(calibration.shape[1:]),
            "exit_names": list(model.exit_names), "num_classes": int(fl.out_features),
            "input": {"lut": lut, "scale": in_scale}, "stages": qstages, "head": head, "final": final,
            "thresholds": torch.full((K - 1,), LOGIT_MAX, dtype=torch.int32)}


def _input_lut(first: dict) -> tuple[torch.Tensor, float]:
    """One 256-entry table per input channel (uint8 pixel -> normalized int8), all at one input scale."""
    mean, std = torch.tensor(first["mean"]).double(), torch.tensor(first["std"]).double()
    levels = (torch.arange(256, dtype=torch.float64) / 255 - mean.view(-1, 1)) / std.view(-1, 1)
    scale = float(levels.abs().max()) / ACT_MAX
    return torch.round(levels / scale).clamp(-ACT_MAX, ACT_MAX).to(torch.int8), scale


def _add_multipliers(skip_scale: float, body_scale: float, out_scale: float) -> tuple[list[int], int]:
    """Two 15-bit multipliers and one shift bringing a residual add's inputs to the output scale."""
    ratios = (skip_scale / out_scale, body_scale / out_scale)
    _, shift = multiplier_shift(max(ratios))
    return [round(r * 2.0**shift) for r in ratios], shift


def _calibrate(ops: list[dict], x: torch.Tensor, scale: float, bits: int, last_max: int = ACT_MAX
               ) -> tuple[list[dict], torch.Tensor, float]:
    """Quantize ``ops`` in order, each output scale = max |value| of its float output on the calibration batch
    ``x`` (at ``scale``); the last op answers up to ``last_max``. Returns the integer ops, the output, its scale."""
    qops, saved = [], []
    for i, op in enumerate(ops):
        qmax = last_max if i == len(ops) - 1 else ACT_MAX
        if op["kind"] == "save":
            saved.append((x, scale))
            qops.append({"kind": "save"})
            continue
        if op["kind"] == "maxpool":
            x = F.adaptive_max_pool2d(x, op["size"])
            qops.append(dict(op))
            continue
        if op["kind"] == "add":
            skip, skip_scale = saved.pop()
            x = skip + x
            x = x.clamp(min=0) if op["relu"] else x
            out_scale = float(x.abs().max()) / qmax or 1.0
            m, shift = _add_multipliers(skip_scale, scale, out_scale)
            qops.append({**op, "m": torch.tensor(m, dtype=torch.int32), "shift": shift, "out_scale": out_scale,
                         "out_max": qmax})
        else:
            op = {**op, "weight": op["weight"].double(), "bias": op["bias"].double()}
            x = _float_op(op, x)
            out_scale = float(x.abs().max()) / qmax or 1.0
            qops.append(_quantize_op(op, scale, out_scale, bits, qmax))
        scale = out_scale
    return qops, x, scale


def quantize_exit_heads(model: EarlyExitNet, calibration: torch.Tensor, bits: int = 8, source: str = "") -> dict:
    """Quantize ``model`` (conv / residual stages, one head per exit: the CIFAR-10 ResNet) with int8 activations,
    each tensor's scale calibrated on ``calibration`` images ``[N, C, H, W]`` in ``[0, 1]`` (format 2)."""
    if bits not in (8, 16):
        raise ValueError(f"weights are quantized to 8 (int8) or 16 (Q15) bits, got {bits}")
    validate.image_batch("calibration images", calibration)
    if not isinstance(model.exits, ExitHeads):
        raise ValueError("quantize_exit_heads takes a model with one head per exit; a shared head: quantize()")
    model = model.eval()
    stages = [lower(s) for s in model.stages]
    first = stages[0].pop(0)
    if first["kind"] != "input":
        raise ValueError("the first stage must start with Normalize (the model normalizes its own input)")
    lut, in_scale = _input_lut(first)
    mean, std = torch.tensor(first["mean"]).double(), torch.tensor(first["std"]).double()
    with torch.no_grad():
        x = (calibration.double() - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
        s, qstages, qheads = in_scale, [], []
        for ops, head in zip(stages, model.exits.heads):
            qops, x, s = _calibrate(ops, x, s, bits)
            qstages.append(qops)
            qheads.append(_calibrate(lower(head), x, s, bits, LOGIT_MAX)[0])
    last = qheads[-1][-1]
    return {"format": 2, "source": source, "weight_bits": bits, "input_shape": list(calibration.shape[1:]),
            "exit_names": list(model.exit_names), "num_classes": int(last["weight"].shape[0]),
            "input": {"lut": lut, "scale": in_scale}, "stages": qstages, "heads": qheads,
            "thresholds": torch.full((model.num_exits - 1,), LOGIT_MAX, dtype=torch.int32)}


# ------------------------------------------------------------------------------------------ integer forward


def _check_int32(acc: torch.Tensor, where: str) -> torch.Tensor:
    if acc.abs().max() > INT32_MAX:
        raise OverflowError(f"an int32 accumulator overflows in {where}")
    return acc


def _int_op(op: dict, x: torch.Tensor) -> torch.Tensor:
    w = op["weight"].double()
    if op["kind"] == "conv":
        acc = F.conv2d(x.double(), w, padding=op["pad"]).round().long()
    else:
        acc = (x.flatten(1).double() @ w.T).round().long()
    acc = _check_int32(acc + op["bias"].long().view(1, -1, *([1] * (acc.ndim - 2))), op["kind"])
    y = requantize(acc, op["m"], op["shift"], op["out_max"], op["relu"])
    if op.get("pool"):
        y = F.max_pool2d(y.double(), 2).long()
    return y


def _int_ops(ops: list[dict], x: torch.Tensor) -> torch.Tensor:
    """Run integer ops (conv, linear, save, add, maxpool) on int8 values held in int64."""
    saved = []
    for op in ops:
        if op["kind"] == "save":
            saved.append(x)
        elif op["kind"] == "maxpool":
            x = F.adaptive_max_pool2d(x.double(), op["size"]).long()
        elif op["kind"] == "add":
            m = op["m"].long()
            acc = _check_int32(saved.pop() * m[0] + x * m[1], "a residual add")
            shift = op["shift"]
            x = ((acc + (1 << (shift - 1))) >> shift).clamp(0 if op["relu"] else -op["out_max"], op["out_max"])
        else:
            x = _int_op(op, x)
    return x


def _input(qmodel: dict, images: torch.Tensor) -> torch.Tensor:
    """The int8 input: each channel's pixels through that channel's lookup table."""
    if images.dtype != torch.uint8 or list(images.shape[1:]) != qmodel["input_shape"]:
        raise ValueError(f"expected uint8 images [N, {', '.join(map(str, qmodel['input_shape']))}], got "
                         f"{images.dtype} {tuple(images.shape)}")
    lut = qmodel["input"]["lut"].long().view(-1, 256)
    channel = torch.arange(images.shape[1]).view(1, -1, 1, 1) * 256
    return lut.flatten()[channel + images.long()]


def int_forward(qmodel: dict, images: torch.Tensor) -> list[torch.Tensor]:
    """Every exit's int16 logits (as int64 tensors ``[N, classes]``) for uint8 ``images`` ``[N, C, H, W]``."""
    x = _input(qmodel, images)
    if qmodel.get("format") == 2:  # one head per exit
        outputs = []
        for ops, head in zip(qmodel["stages"], qmodel["heads"]):
            x = _int_ops(ops, x)
            outputs.append(_int_ops(head, x))
        return outputs
    head = qmodel["head"]
    acc = head["bias"].long().expand(len(images), -1).clone()
    outputs, start = [], 0
    w = head["weight"].long()
    for k, ops in enumerate(qmodel["stages"]):
        for op in ops:
            x = _int_op(op, x)
        if k == len(qmodel["stages"]) - 1:
            outputs.append(_int_op(qmodel["final"], x))
            break
        pooled = F.adaptive_max_pool2d(x.double(), head["pool"]).flatten(1).long()
        pooled = requantize(pooled, head["block_m"][k:k + 1], head["block_shift"][k:k + 1], ACT_MAX, False)
        end = head["block_sizes"][k]
        acc = _check_int32(acc + (pooled.double() @ w[:, start:end].double().T).round().long(), "the shared head")
        start = end
        outputs.append(requantize(acc, head["m"], head["shift"], LOGIT_MAX, False))
    return outputs


def early_exit(qmodel: dict, logits: list[torch.Tensor]) -> torch.Tensor:
    """The exit each input takes: the first whose integer margin (top-1 minus top-2 logit) reaches its threshold."""
    K = len(logits)
    taken = torch.full((len(logits[0]),), K - 1, dtype=torch.long)
    decided = torch.zeros(len(logits[0]), dtype=torch.bool)
    for k in range(K - 1):
        top = logits[k].topk(2, dim=1).values
        stop = ~decided & (top[:, 0] - top[:, 1] >= int(qmodel["thresholds"][k]))
        taken[stop] = k
        decided |= stop
    return taken


def exit_scales(qmodel: dict) -> list[float]:
    """The real value of one int16 logit unit, exit by exit."""
    if qmodel.get("format") == 2:
        return [head[-1]["out_scale"] for head in qmodel["heads"]]
    return [qmodel["head"]["out_scale"]] * (len(qmodel["stages"]) - 1) + [qmodel["final"]["out_scale"]]


def dequantized_logits(qmodel: dict, logits: list[torch.Tensor]) -> torch.Tensor:
    """``[K, N, classes]`` float logits (int16 logits times their scale), for exit profiles and criteria."""
    scales = exit_scales(qmodel)
    return torch.stack([l.double() * s for l, s in zip(logits, scales)]).float()


# ------------------------------------------------------------------------------------------ weights only


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every ``Conv2d -> BatchNorm2d`` pair of ``model`` (in place, eval statistics) into the conv, which gains
    a bias; the BatchNorm becomes an Identity. This is what a microcontroller runs."""
    for module in model.modules():
        children = list(module.named_children())
        for (_, first), (bn_name, second) in zip(children, children[1:]):
            if isinstance(first, nn.Sequential) and len(first) and isinstance(first[-1], nn.Conv2d):
                first = first[-1]  # a low-rank conv (k x k to r, then 1 x 1): fold into the 1 x 1
            if isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d):
                scale = second.weight / torch.sqrt(second.running_var + second.eps)
                bias = first.bias if first.bias is not None else torch.zeros_like(second.running_mean)
                with torch.no_grad():
                    first.weight.mul_(scale.view(-1, 1, 1, 1))
                    first.bias = nn.Parameter((bias - second.running_mean) * scale + second.bias)
                setattr(module, bn_name, nn.Identity())
    return model


def quantize_weights(model: nn.Module, bits: int = 8) -> dict:
    """Symmetric per-output-channel integer weights of every Linear / Conv2d (after :func:`fold_batchnorm`):
    ``{layer: {"weight": int8/int16, "scale": float32 [out], "bias": float32}}`` - what the MCU stores."""
    qmax = 2 ** (bits - 1) - 1
    out = {}
    for name, layer in model.named_modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            w = layer.weight.detach()
            scale = w.flatten(1).abs().amax(1) / qmax
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            q = torch.round(w / scale.view(-1, *([1] * (w.ndim - 1))))
            bias = layer.bias.detach() if layer.bias is not None else torch.zeros(w.shape[0])
            out[name] = {"weight": q.to(torch.int8 if bits == 8 else torch.int16), "scale": scale.float(),
                         "bias": bias.float()}
    return out


def load_quantized_weights(model: nn.Module, qweights: dict) -> nn.Module:
    """Put integer weights back into a float model (``weight = q * scale``): the int8-weight model, for accuracy."""
    for name, q in qweights.items():
        layer = model.get_submodule(name)
        with torch.no_grad():
            layer.weight.copy_(q["weight"].float() * q["scale"].view(-1, *([1] * (q["weight"].ndim - 1))))
            if layer.bias is None:
                layer.bias = nn.Parameter(q["bias"].clone())
            else:
                layer.bias.copy_(q["bias"])
    return model
