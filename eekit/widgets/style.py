"""Shared look of the dashboards: a colour-blind-safe palette (Okabe & Ito 2008) and figure defaults."""

from __future__ import annotations

import html
from copy import deepcopy

import numpy as np
import plotly.graph_objects as go

from ..criteria import get_criterion

__all__ = ["PALETTE", "figure_widget", "update_figure", "rename_trace", "error_html", "clear_figure",
           "threshold_slider_settings", "snap_threshold"]

# Okabe-Ito: distinguishable with the common colour-vision deficiencies
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]


def figure_widget(title: str, x_title: str, y_title: str, traces=(), height: int = 330, width: int | None = None
                  ) -> go.FigureWidget:
    """A plotly ``FigureWidget`` holding ``traces``, with a title, labelled axes (units in the labels) and the kit's
    style. Traces are passed at construction: traces added to a live FigureWidget later lose their legend names in
    JupyterLab (seen with plotly 7.1 + anywidget 0.11)."""
    fig = go.FigureWidget(data=list(traces))
    fig.update_layout(
        title={"text": title, "x": 0.02},
        xaxis_title=x_title,
        yaxis_title=y_title,
        height=height,
        width=width,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        template="plotly_white",
        colorway=PALETTE,
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def update_figure(fig: go.FigureWidget, traces: dict[int, dict], layout: dict | None = None) -> None:
    """Set ``traces`` (trace index -> {property: value}) and ``layout`` (``"yaxis.range": [...]``) in one message
    to the browser, with every value spelled out. Use it instead of ``batch_update``: a batch that changes a
    property on one trace but finds it unchanged on another sends a placeholder for the unchanged one, which the
    browser takes as "unset" - a marker whose accuracy stayed put drops to y = 0, a figure can render empty.
    Afterwards the widget's saved state is brought up to date, so a saved notebook reopens with this picture."""
    indexes = sorted(traces)
    names = sorted({name for props in traces.values() for name in props})
    # numpy arrays travel to the browser as binary buffers, which must be contiguous (a strided view is refused)
    restyle = {name: [_contiguous(traces[i][name] if name in traces[i] else fig.data[i][name]) for i in indexes]
               for name in names}
    fig.plotly_update(restyle_data=restyle, relayout_data=dict(layout or {}), trace_indexes=indexes)
    sync_state(fig)


def _contiguous(value):
    return np.ascontiguousarray(value) if isinstance(value, np.ndarray) else value


def sync_state(fig: go.FigureWidget) -> None:
    """Copy the figure into the widget state a browser draws a new view from (plotly refreshes it only when the
    figure itself is displayed, never when it sits inside a ``VBox``): the first render after Run All and a
    saved, reopened notebook then show the current data rather than the empty figure the dashboard began with."""
    fig._widget_layout = deepcopy(fig._layout_obj._props)
    fig._widget_data = deepcopy(fig._data)


def rename_trace(fig: go.FigureWidget, index: int, name: str) -> None:
    """Set trace ``index``'s legend name. Call it outside ``batch_update``: a batched restyle that names one trace
    while it moves another blanks the other's name in the browser (its legend then says "trace N")."""
    fig.data[index].name = name
    sync_state(fig)


def error_html(what: str, err: Exception | str) -> str:
    """The readout a dashboard shows instead of raising in a callback: ``what`` failed, and why (escaped)."""
    why = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    return f"<b style='color:{PALETTE[5]}'>{html.escape(what)}: {html.escape(why)}</b>"


def clear_figure(fig: go.FigureWidget, traces: list[int] | None = None) -> None:
    """Empty the data of ``traces`` (default: all; bars keep their categories), so a failed update never leaves
    the previous setting's numbers on screen under an error readout."""
    updates = {}
    for i, trace in enumerate(fig.data):
        if traces is not None and i not in traces:
            continue
        if trace.type == "bar":
            updates[i] = {"y": [0] * len(trace.x or ())}
        elif hasattr(trace, "x") and hasattr(trace, "y"):
            updates[i] = {"x": [], "y": []}
    update_figure(fig, updates)


def threshold_slider_settings(profile, criterion) -> dict:
    """``min``, ``max``, ``step`` and ``readout_format`` of a threshold slider for ``criterion`` on ``profile``:
    whole steps for the integer criteria (patience, fixed), 200 steps otherwise. One place for every dashboard."""
    c = get_criterion(criterion)
    low, high = profile.threshold_range(c)
    if c.integer:
        return {"min": low, "max": high, "step": 1.0, "readout_format": ".0f"}
    return {"min": low, "max": high, "step": (high - low) / 200, "readout_format": ".3f"}


def snap_threshold(criterion, value: float) -> float:
    """A slider value as the criterion takes it: a whole number for the integer criteria (a slider can sit between
    steps when set from Python)."""
    return float(round(value)) if get_criterion(criterion).integer else float(value)
