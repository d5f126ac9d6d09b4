"""Figures for the sentence lesson: error rates layer by layer, one line per model or test set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from .style import figure_widget

__all__ = ["error_by_exit_figure"]


def error_by_exit_figure(series: Mapping[str, Sequence[float]], title: str, y_title: str = "character error rate (%)",
                         exit_names: Sequence[str] | None = None) -> go.FigureWidget:
    """One line per entry of ``series`` (name -> error rate per exit, fractions), exits on the x axis."""
    traces = []
    for name, values in series.items():
        x = list(exit_names or [f"layer {k + 1}" for k in range(len(values))])
        traces.append(go.Scatter(x=x, y=[100 * float(v) for v in values], mode="lines+markers", name=name))
    return figure_widget(title, "exit (encoder layer)", y_title, traces=traces, width=620)
