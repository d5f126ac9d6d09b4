"""The speech-recipe grid as a heat map: one row per (recipe, label budget), one column per exit, colour = digit
error rate; dropdowns pick the test set and the exit criterion (lesson 23)."""

from __future__ import annotations

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from .. import validate
from .base import Dashboard
from .style import figure_widget, update_figure
from ..zoo import speech_grid as sr

__all__ = ["RecipeGrid", "grid_matrix"]


def grid_matrix(test: str, criterion: str, out_dir=None) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """Rows (``"A · 250"``), columns (layers 1-6 and the early-exit point), DER in % (NaN: an exit never trained),
    and each row's early-exit readout (threshold, layers saved), from the trained cells' shipped profiles."""
    rows, values, notes = [], [], []
    for recipe, labels in sr.trained_cells(out_dir):
        r = sr.cell_results(recipe, labels, test, criterion, out_dir)
        rows.append(f"{recipe} · {labels}")
        values.append([np.nan if d is None else 100 * d for d in r["exit_der"]] + [100 * r["ee_der"]])
        notes.append("single exit: no early exit" if r["threshold"] is None else
                     f"threshold {r['threshold']:g}, {r['layers_saved']:.0%} of layers saved")
    K = len(values[0]) - 1 if values else 6
    columns = [f"layer {k + 1}" for k in range(K)] + ["early exit"]
    return rows, columns, np.array(values, dtype=float).reshape(len(rows), K + 1), notes


class RecipeGrid(Dashboard):
    """Test-set and criterion dropdowns -> heat map of every trained cell's per-exit DER and its early-exit DER
    (the cheapest threshold within 1 point of that cell's final exit on that test set)."""

    def __init__(self, test: str = "clean", criterion: str = "ctc_entropy", out_dir=None):
        test, criterion = validate.one_of("test", test, sr.TESTS), validate.one_of("criterion", criterion, sr.CRITERIA)
        self.out_dir = out_dir
        style = {"description_width": "initial"}
        self.test_dropdown = W.Dropdown(options=list(sr.TESTS), value=test, description="test set", style=style)
        self.criterion_dropdown = W.Dropdown(options=list(sr.CRITERIA), value=criterion, description="criterion",
                                             style=style)
        self._make_readout()
        self.figure = figure_widget("Digit error rate of every exit (%)", "exit", "recipe · labelled utterances",
                                    height=420, width=760, traces=[go.Heatmap(
                                        z=[[0]], x=["layer 1"], y=["A · 250"], colorscale="Viridis", zmin=0, zmax=100,
                                        colorbar={"title": {"text": "DER (%)"}}, texttemplate="%{z:.1f}",
                                        hovertemplate="%{y}, %{x}: DER %{z:.2f} %<extra></extra>", name="DER")])
        self.figure.update_yaxes(autorange="reversed")
        self.rows: list[str] = []
        self.matrix = np.zeros((0, 7))
        self.test_dropdown.observe(self._on_change, names="value")
        self.criterion_dropdown.observe(self._on_change, names="value")
        self._update()
        self.widget = W.VBox([W.HBox([self.test_dropdown, self.criterion_dropdown]), self.figure, self.readout])

    def set(self, test: str | None = None, criterion: str | None = None) -> np.ndarray:
        """Move the dropdowns from Python; returns the DER matrix now shown (%)."""
        if test is not None:
            self.test_dropdown.value = validate.one_of("test", test, self.test_dropdown.options)
        if criterion is not None:
            self.criterion_dropdown.value = validate.one_of("criterion", criterion, self.criterion_dropdown.options)
        return self.matrix

    def _on_change(self, _change) -> None:
        self._update()

    def _update(self) -> None:
        test, criterion = self.test_dropdown.value, self.criterion_dropdown.value
        found = self._guarded("could not read the grid", lambda: grid_matrix(test, criterion, self.out_dir))
        if found is None:
            return
        self.rows, columns, self.matrix, notes = found
        # DER can pass 100 % (insertions): the colour saturates there; untrained exits are gaps (None, not NaN)
        z = [[None if np.isnan(v) else float(min(v, 100.0)) for v in row] for row in self.matrix]
        update_figure(self.figure, {0: {
            "z": z, "x": columns, "y": self.rows, "texttemplate": "%{text}",
            "text": [["untrained" if np.isnan(v) else f"{v:.1f}" for v in row] for row in self.matrix]}})
        self.readout.value = "<br>".join(f"<b>{r}</b>: {n}" for r, n in zip(self.rows, notes))

