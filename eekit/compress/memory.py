"""What a model costs in memory on an MSP430FR5994: weight bytes (FRAM) and peak activation bytes (SRAM).

Weight bytes are counted two ways:

* **FreeML's formula** (``SparseComp``, as its released code does it): fp32 weights, a sparse layer costs
  ``min(1, 2 x density)`` of its dense bytes; biases fp32; 1 KB = 1000 B.
* **The MCU's real bytes**, as :mod:`eekit.compress.export_c` lays them out: each layer dense (``bits/8`` bytes a
  weight) or CSR (values + ``uint16`` column indices + ``uint16`` row pointers), whichever is smaller; plus per
  output channel an ``int32`` bias, an ``int16`` multiplier and a ``uint8`` shift (requantization); plus the
  256-byte input lookup table.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FRAM_BYTES", "SRAM_BYTES", "weight_storage", "layer_mcu_bytes", "layer_freeml_bytes", "model_bytes",
           "fp32_bytes", "CHANNEL_BYTES", "INPUT_LUT_BYTES", "activation_trace", "head_bytes", "op_shapes",
           "buffer_plan", "qmodel_bytes", "nonzero_macs", "schedule", "head_shapes",
           "activation_plan"]

FRAM_BYTES = 256 * 1024  # MSP430FR5994: 256 KB FRAM (weights, code) ...
SRAM_BYTES = 8 * 1024  # ... and 8 KB SRAM (activations, stack)
CHANNEL_BYTES = 4 + 2 + 1  # per output channel: int32 bias, int16 multiplier, uint8 shift
INPUT_LUT_BYTES = 256  # uint8 pixel -> normalized int8 input


def weight_storage(weight: torch.Tensor, bits: int = 8) -> tuple[str, int]:
    """``("dense" | "csr", bytes)``: the cheaper way to store ``weight`` (rows = output channels)."""
    rows, numel = weight.shape[0], weight.numel()
    nnz = int((weight != 0).sum())
    dense = numel * bits // 8
    csr = nnz * (bits // 8 + 2) + (rows + 1) * 2
    return ("csr", csr) if csr < dense else ("dense", dense)


def layer_mcu_bytes(layer: nn.Module, bits: int = 8) -> int:
    """FRAM bytes of one Linear / Conv2d on the MCU: weights (dense or CSR) + per-channel bias and requantization."""
    weight = layer.weight.detach()
    return weight_storage(weight, bits)[1] + weight.shape[0] * CHANNEL_BYTES


def layer_freeml_bytes(layer: nn.Module) -> int:
    """FreeML's formula for one layer: fp32, ``min(1, 2 x density)`` of the dense bytes, plus fp32 biases."""
    weight = layer.weight.detach()
    d = float((weight != 0).float().mean())
    bias = layer.bias.numel() if getattr(layer, "bias", None) is not None else 0
    return int(round(4 * weight.numel() * min(1.0, 2 * d))) + 4 * bias


def _layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def model_bytes(model: nn.Module, bits: int = 8) -> tuple[int, int]:
    """(MCU bytes, FreeML bytes) of every Linear / Conv2d of ``model`` (heads included)."""
    layers = _layers(model)
    return (sum(layer_mcu_bytes(m, bits) for m in layers) + INPUT_LUT_BYTES,
            sum(layer_freeml_bytes(m) for m in layers))


def fp32_bytes(model: nn.Module) -> int:
    """Every parameter as a 4-byte float: the uncompressed model."""
    return 4 * sum(p.numel() for p in model.parameters())


def head_bytes(model: nn.Module, bits: int = 8) -> dict[str, int]:
    """MCU bytes of the early exits' heads: one shared head (FreeML's gNet) or one head per exit."""
    exits = model.exits
    early = exits.shared if hasattr(exits, "shared") else exits.heads[:-1]
    return {"fp32": fp32_bytes(early), "mcu": sum(layer_mcu_bytes(m, bits) for m in _layers(early))}


def activation_trace(model: nn.Module, example: torch.Tensor, bytes_per_value: int = 1) -> list[dict]:
    """Run ``example`` (batch 1) through ``model`` with forward hooks on every leaf module of the backbone and
    record each one's input and output bytes: the memory a plain layer-by-layer (unfused) schedule needs."""
    rows: list[dict] = []
    hooks = []
    for name, module in model.stages.named_modules():
        if len(list(module.children())) == 0:
            def hook(mod, inputs, output, name=name):
                rows.append({"layer": f"stages.{name}", "kind": type(mod).__name__,
                             "in_bytes": inputs[0].numel() * bytes_per_value,
                             "out_bytes": output.numel() * bytes_per_value})
            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    return rows


# ------------------------------------------------------------------------------------------ a quantized model


def _shapes(ops: list[dict], shape: tuple) -> list[tuple[dict, tuple, tuple]]:
    """Each op with its input and output shape ``(C, H, W)``."""
    rows = []
    for op in ops:
        c, h, w = shape
        if op["kind"] == "conv":
            k = op["weight"].shape[-1]
            h, w = h + 2 * op["pad"] - k + 1, w + 2 * op["pad"] - k + 1
            if op.get("pool"):
                h, w = h // 2, w // 2
            out = (op["weight"].shape[0], h, w)
        elif op["kind"] == "linear":
            if op["weight"].shape[1] != c * h * w:
                raise ValueError(f"a linear layer expects {op['weight'].shape[1]} inputs, gets {c * h * w}")
            out = (op["weight"].shape[0], 1, 1)
        elif op["kind"] == "maxpool":
            out = (c, op["size"], op["size"])
        else:  # save, add: the shape stays
            out = shape
        rows.append((op, shape, out))
        shape = out
    return rows


def op_shapes(qmodel: dict) -> list[list[tuple[dict, tuple, tuple]]]:
    """Per stage, each quantized op with its input and output shape (``(C, H, W)``; a linear layer is a 1x1 conv
    over a 1x1 image, which is what flattening a C-order array costs: nothing)."""
    shape = tuple(qmodel["input_shape"])
    stages = []
    for ops in qmodel["stages"]:
        stages.append(_shapes(ops, shape))
        shape = stages[-1][-1][2]
    return stages


def head_shapes(qmodel: dict) -> list[list[tuple[dict, tuple, tuple]]]:
    """Per exit, each op of its own head (format 2) with its input and output shape."""
    return [_shapes(head, rows[-1][2]) for head, rows in zip(qmodel["heads"], op_shapes(qmodel))]


def schedule(qmodel: dict) -> dict:
    """The C export's steps for a model with one head per exit (format 2): which buffer each op reads and writes.
    Every tensor still needed (the current one, a residual block's saved input, the stage output an exit head
    reads) keeps its buffer; a new tensor takes the first buffer holding nothing live, which grows to fit. No op
    writes a buffer it reads, so a step redone after a power failure finds its inputs intact. Returns the steps
    (``kind``, ``op``, ``reads``, ``writes``, shapes, ``exit``) and the buffer sizes (int8 values)."""
    sizes: list[int] = []

    def alloc(live: set, n: int) -> int:
        free = next((b for b in range(len(sizes)) if b not in live), len(sizes))
        if free == len(sizes):
            sizes.append(0)
        sizes[free] = max(sizes[free], n)
        return free

    cur = alloc(set(), _numel(qmodel["input_shape"]))
    steps = [{"kind": "input", "op": None, "reads": [], "writes": cur, "shape_in": tuple(qmodel["input_shape"]),
              "shape_out": tuple(qmodel["input_shape"]), "exit": None, "stage": 0, "head": False}]
    for k, (rows, head) in enumerate(zip(op_shapes(qmodel), head_shapes(qmodel))):
        saved: list[int] = []
        for op, shape_in, shape_out in rows:
            if op["kind"] == "save":
                saved.append(cur)
                continue
            reads = [saved.pop(), cur] if op["kind"] == "add" else [cur]
            out = alloc({cur, *saved, *reads}, _numel(shape_out))
            steps.append({"kind": op["kind"], "op": op, "reads": reads, "writes": out, "shape_in": shape_in,
                          "shape_out": shape_out, "exit": None, "stage": k, "head": False})
            cur = out
        h = cur
        for i, (op, shape_in, shape_out) in enumerate(head):
            last = i == len(head) - 1
            out = "logits" if last else alloc({cur, h}, _numel(shape_out))
            steps.append({"kind": op["kind"], "op": op, "reads": [h], "writes": out, "shape_in": shape_in,
                          "shape_out": shape_out, "exit": k if last else None, "stage": k, "head": True})
            h = out
    return {"steps": steps, "buffers": sizes}


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def buffer_plan(qmodel: dict) -> dict:
    """The two-buffer (ping-pong) schedule of the C export: the input image sits in buffer A, op ``i`` reads one
    buffer and writes the other, ReLU and 2x2 max-pooling are fused into the op before them (so a conv's full-size
    output never exists). Returns both buffers' sizes, the shared head's scratch, and the peak bytes per exit
    (int8 activations; the head keeps ``classes`` int32 accumulators and the int16 logits). A model with one head
    per exit (format 2) uses the buffers of :func:`schedule` instead."""
    if qmodel.get("format") == 2:
        return _exit_heads_plan(qmodel)
    sizes = [_numel(qmodel["input_shape"]), 0]
    current = 0
    peaks, running = [], 0
    head = qmodel["head"]
    classes = qmodel["num_classes"]
    blocks = [b - a for a, b in zip([0] + head["block_sizes"][:-1], head["block_sizes"])]
    K = len(qmodel["stages"])
    head_scratch = max(blocks) + 4 * classes + 2 * classes * K
    for rows in op_shapes(qmodel):
        for _op, shape_in, shape_out in rows:
            running = max(running, _numel(shape_in) + _numel(shape_out))
            current = 1 - current
            sizes[current] = max(sizes[current], _numel(shape_out))
        peaks.append(running + head_scratch)
    return {"buffer_a": sizes[0], "buffer_b": sizes[1], "head_scratch": head_scratch,
            "static_bytes": sizes[0] + sizes[1] + head_scratch, "peak_per_exit": peaks}


def _exit_heads_plan(qmodel: dict) -> dict:
    """Buffers of :func:`schedule`; the peak per exit counts the buffers in use up to that exit's logits."""
    sched = schedule(qmodel)
    logits = 2 * qmodel["num_classes"] * len(qmodel["stages"])
    peaks, running = [], 0
    for st in sched["steps"][1:]:
        live = sum(_numel(st["shape_in"]) for _ in st["reads"][:1]) + _numel(st["shape_out"])
        if st["kind"] == "add":
            live += _numel(st["shape_in"])
        running = max(running, live)
        if st["exit"] is not None:
            peaks.append(running + logits)
    return {"buffers": sched["buffers"], "head_scratch": logits,
            "static_bytes": sum(sched["buffers"]) + logits, "peak_per_exit": peaks}


def qmodel_bytes(qmodel: dict) -> dict:
    """MCU bytes of a quantized model, layer by layer, as the C export stores them (and the total)."""
    bits = qmodel["weight_bits"]
    layers = {}
    for k, ops in enumerate(qmodel["stages"]):
        for i, op in enumerate(ops):
            layers[f"stage{k}.{op['kind']}{i}"] = op
    if qmodel.get("format") == 2:
        for k, ops in enumerate(qmodel["heads"]):
            for i, op in enumerate(ops):
                layers[f"exit{k}.{op['kind']}{i}"] = op
    else:
        layers["shared head"], layers["final exit"] = qmodel["head"], qmodel["final"]
    layers = {name: op for name, op in layers.items() if "weight" in op}
    rows = {}
    for name, op in layers.items():
        fmt, nbytes = weight_storage(op["weight"], bits)
        rows[name] = {"format": fmt, "weights": nbytes, "nonzero": int((op["weight"] != 0).sum()),
                      "numel": op["weight"].numel(), "bytes": nbytes + op["weight"].shape[0] * CHANNEL_BYTES}
    extra = qmodel["input"]["lut"].numel() + 2 * len(qmodel["thresholds"])
    if qmodel.get("format") != 2:
        extra += len(qmodel["head"]["block_m"]) * 3
    return {"layers": rows, "total": sum(r["bytes"] for r in rows.values()) + extra}


def nonzero_macs(qmodel: dict) -> dict:
    """MACs of one inference counting only non-zero weights (what a sparse kernel does): per stage and per exit
    head (the shared head only adds its new block at each exit)."""
    stage_macs = [_rows_macs(rows) for rows in op_shapes(qmodel)]
    if qmodel.get("format") == 2:
        return {"stage_macs": stage_macs, "head_macs": [_rows_macs(rows) for rows in head_shapes(qmodel)]}
    head = qmodel["head"]
    w = head["weight"]
    starts = [0] + head["block_sizes"][:-1]
    head_macs = [int((w[:, a:b] != 0).sum()) for a, b in zip(starts, head["block_sizes"])]
    head_macs.append(int((qmodel["final"]["weight"] != 0).sum()))
    return {"stage_macs": stage_macs, "head_macs": head_macs}


def _rows_macs(rows: list) -> int:
    macs = 0
    for op, _shape_in, shape_out in rows:
        if op["kind"] == "conv":  # every output pixel (before pooling) uses all of the layer's non-zeros
            macs += _conv_macs(op, shape_out)
        elif op["kind"] == "linear":
            macs += int((op["weight"] != 0).sum())
    return macs


def _conv_macs(op: dict, shape_out: tuple) -> int:
    pixels = shape_out[1] * shape_out[2] * (4 if op.get("pool") else 1)
    return int((op["weight"] != 0).sum()) * pixels


def activation_plan(qmodel: dict, sram_bytes: int = SRAM_BYTES) -> dict:
    """Where the activation buffers of a model with one head per exit (:func:`schedule`) live on the MSP430FR5994,
    and the FRAM traffic that costs. The policy is **spill** (no tiling): a buffer that fits what is left of SRAM
    stays there, the others live in FRAM. Every buffer is in the exported runtime's persistent struct anyway (it
    must survive a power failure), so on the device that struct is in FRAM.

    Traffic is counted per stage and per exit head, in bytes (int8 activations): a step streams each FRAM input
    once (a DMA of row bands through SRAM, halo rows not counted) and writes its FRAM output once; the exported C
    kernel, which reads its input on every multiply-accumulate, is counted too (``kernel_reads``)."""
    sched = schedule(qmodel)
    where, left = [], sram_bytes - 2 * qmodel["num_classes"] * len(qmodel["stages"])  # the logits stay in SRAM
    for size in sched["buffers"]:
        fits = size <= left
        where.append("sram" if fits else "fram")
        left -= size if fits else 0
    K = len(qmodel["stages"])
    traffic = {key: [[0, 0] for _ in range(K)] for key in ("reads", "writes", "kernel_reads")}
    for st in sched["steps"][1:]:
        col = int(st["head"])
        for b in st["reads"]:
            if where[b] == "fram":
                traffic["reads"][st["stage"]][col] += _numel(st["shape_in"])
                macs = _rows_macs([(st["op"], st["shape_in"], st["shape_out"])])
                traffic["kernel_reads"][st["stage"]][col] += macs or _numel(st["shape_in"])
        if st["writes"] != "logits" and where[st["writes"]] == "fram":
            traffic["writes"][st["stage"]][col] += _numel(st["shape_out"])
    return {"policy": "spill", "sram_bytes": sram_bytes, "buffers": sched["buffers"], "memory": where,
            "fram_activation_bytes": sum(n for n, w in zip(sched["buffers"], where) if w == "fram"),
            "sram_activation_bytes": sum(n for n, w in zip(sched["buffers"], where) if w == "sram"),
            **{f"fram_{key}_per_stage_and_head": value for key, value in traffic.items()}}
