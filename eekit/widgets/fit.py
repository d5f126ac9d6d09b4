"""Lesson 31's "make it fit" dashboard: a byte-target slider over the shipped compression steps.

For a target, the step shown is the one where the compression run would have stopped: the first kept step whose
MCU bytes fit the target. Bars show every exit's accuracy there, and how full the FRAM (weights) and the SRAM
(activations, with and without fusing) would be. Everything comes from the shipped card: nothing is recomputed.
"""

from __future__ import annotations

import re

import ipywidgets as W
import plotly.graph_objects as go
from torch import nn

from .. import validate, zoo
from ..compress.lowrank import apply_ranks
from ..compress.memory import FRAM_BYTES, SRAM_BYTES
from .base import Dashboard
from .style import figure_widget, update_figure

__all__ = ["FitExplorer", "step_for_target", "readable_action"]

CARD_KEYS = ("source", "steps", "ranks", "accuracy_per_exit_before", "static_activation_bytes",
             "peak_activation_bytes_unfused")


def _layer_name(model: nn.Module, path: str, ranks: dict) -> str:
    """``stages.2.1.0`` -> "stage 3's fully connected layer 1568 x 128 (low-rank factor 1 of 2)"."""
    layer = model.get_submodule(path)
    parent, _, index = path.rpartition(".")
    if path in ranks:  # the factorized pair as a whole
        factors, part = layer, ""
    elif parent in ranks:  # one factor of it
        factors, part = model.get_submodule(parent), f" (low-rank factor {int(index) + 1} of 2)"
    else:
        factors, part = [layer], ""
    first, last = factors[0], factors[-1]
    if isinstance(first, nn.Linear):
        kind = f"fully connected layer {first.in_features} x {last.out_features}"
    else:
        kind = f"{first.kernel_size[0]}x{first.kernel_size[1]} conv {first.in_channels} -> {last.out_channels} channels"
    where = path.split(".")
    if "body" in where:  # a residual block's convolutions
        kind = f"residual block's conv {int(where[where.index('body') + 1]) + 1} ({kind})"
    owner = f"stage {int(where[1]) + 1}'s" if where[0] == "stages" else f"exit {int(where[2]) + 1}'s head's"
    return f"{owner} {kind}{part}"


def readable_action(action: str, card: dict) -> str:
    """A compression step's action with module paths (``stages.2.1.0``) replaced by what the layers are."""
    model = apply_ranks(zoo.RECIPES[card["source"]].build(), card["ranks"])
    if isinstance(card["ranks"], dict) and action.startswith("low-rank"):
        return "low-rank: " + ", ".join(f"{_layer_name(model, p, card['ranks'])} to rank {r}" for p, r in card["ranks"].items()) + \
            action[action.rfind(" ("):]
    return re.sub(r"\b(?:stages|exits)(?:\.\w+)+", lambda m: _layer_name(model, m.group(0), card["ranks"]), action)


def step_for_target(card: dict, target_bytes: int) -> dict | None:
    """The first kept compression step of ``card`` whose MCU bytes fit ``target_bytes`` (None: none does)."""
    for step in card["steps"]:
        if step.get("kept", True) and step["bytes_mcu"] <= target_bytes:
            return step
    return None


class FitExplorer(Dashboard):
    """``FitExplorer(card).widget``: slider ``.slider`` (KB), accuracy figure ``.accuracy``, memory figure
    ``.memory``, readout ``.readout``; ``.state`` is what is shown now (tests read it)."""

    def __init__(self, card: dict, target_kb: int = 32):
        validate.instance("card", card, dict, "a compressed model's card, e.g. "
                          "eekit.compress.load_compressed_card('cnn-mnist-shared')")
        missing = [k for k in CARD_KEYS if k not in card]
        if missing or not card["steps"]:
            raise ValueError(f"card must be a compressed model's card (from eekit.compress.load_compressed_card) with "
                             f"compression steps; this one lacks {missing or ['steps']}")
        validate.one_of("card source", card["source"], sorted(zoo.RECIPES))
        target_kb = validate.whole("target_kb (the byte target in KB, 1 KB = 1000 bytes)", target_kb, 1)
        self.card = card
        self.actions = {s["step"]: readable_action(s["action"], card) for s in card["steps"]}
        self.exit_names = ["exit 1", "exit 2", "exit 3 (final)"][: len(card["accuracy_per_exit_before"])]
        smallest = min(s["bytes_mcu"] for s in card["steps"]) // 1000
        largest = card["steps"][0]["bytes_mcu"] // 1000 + 1
        self.slider = W.IntSlider(value=target_kb, min=max(1, smallest - 1), max=largest, step=1,
                                  description="target (KB)", continuous_update=True,
                                  style={"description_width": "initial"}, layout=W.Layout(width="600px"))
        before = [a * 100 for a in card["accuracy_per_exit_before"]]
        self.accuracy = figure_widget("Accuracy per exit at the step that fits", "exit", "test accuracy (%)",
                                      traces=[go.Bar(x=self.exit_names, y=before, name="uncompressed"),
                                              go.Bar(x=self.exit_names, y=before, name="compressed (float)")],
                                      height=320, width=480)
        self.accuracy.update_yaxes(range=[0, 100])
        self.memory = figure_widget("Memory of the MSP430FR5994", "used (% of the memory)", "memory",
                                    traces=[go.Bar(y=["FRAM (weights)", "SRAM (fused)", "SRAM (layer by layer)"],
                                                   x=[0, 0, 0], orientation="h", name="used")],
                                    height=320, width=480)
        self.memory.add_vline(x=100, line_dash="dash", annotation_text="full")
        self._make_readout()
        self.state: dict = {}
        self.slider.observe(lambda change: self.update(change["new"]), names="value")
        self.widget = W.VBox([self.slider, self.readout, W.HBox([self.accuracy, self.memory])])
        self.update(target_kb)

    def set(self, target_kb: int) -> dict:
        """Move the slider from Python, as a user would; returns what is shown now (:attr:`state`)."""
        self.slider.value = target_kb
        self.update(target_kb)
        return self.state

    def update(self, target_kb: int) -> None:
        card = self.card
        step = step_for_target(card, int(target_kb) * 1000)
        sram = [card["static_activation_bytes"], card["peak_activation_bytes_unfused"]]
        if step is None:
            self.state = {"target_kb": int(target_kb), "step": None, "fits": False}
            self.readout.value = (f"<b>No step fits {target_kb} KB</b>: the run stopped at "
                                  f"{min(s['bytes_mcu'] for s in card['steps']):,} bytes.")
            update_figure(self.accuracy, {1: {"y": [0] * len(self.exit_names)}})
            return
        used = [step["bytes_mcu"] / FRAM_BYTES * 100] + [b / SRAM_BYTES * 100 for b in sram]
        self.state = {"target_kb": int(target_kb), "step": step["step"], "action": self.actions[step["step"]],
                      "bytes_mcu": step["bytes_mcu"], "accuracy_per_exit": step["accuracy_per_exit"],
                      "fram_percent": round(used[0], 1), "sram_percent": [round(u, 1) for u in used[1:]],
                      "beyond_target": bool(step.get("beyond_target"))}
        update_figure(self.accuracy, {1: {"y": [a * 100 for a in step["accuracy_per_exit"]]}})
        update_figure(self.memory, {0: {"x": used}})
        acc = ", ".join(f"{a:.1%}" for a in step["accuracy_per_exit"])
        self.readout.value = (f"step {step['step']} ({self.actions[step['step']]}): <b>{step['bytes_mcu']:,} bytes</b> "
                              f"(FreeML's formula: {step['bytes_freeml']:,}), accuracy per exit {acc}")
