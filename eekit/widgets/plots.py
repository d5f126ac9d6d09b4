"""Static figures for the lessons (plain plotly ``Figure``s built from a profile)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import validate
from ..criteria import get_criterion
from ..profile import ExitProfile
from .style import PALETTE

__all__ = ["exits_figure", "pareto_figure"]


def _style(fig: go.Figure, title: str, height: int = 380) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0.02}, template="plotly_white", colorway=PALETTE, height=height,
                      margin={"l": 60, "r": 60, "t": 50, "b": 50}, legend={"orientation": "h", "y": -0.2})
    return fig


def exits_figure(profile: ExitProfile, title: str = "Accuracy and cost of each exit") -> go.Figure:
    """Per-exit accuracy (bars) and cumulative cost (line, right axis): the anatomy of an early-exit network."""
    validate.instance("profile", profile, ExitProfile, "an ExitProfile (e.g. zoo.load_profile('cnn-mnist'))")
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_bar(x=profile.exit_names, y=100 * profile.exit_accuracy, name="accuracy if every sample left here",
                marker_color=PALETTE[0], text=[f"{100 * a:.1f}%" for a in profile.exit_accuracy],
                textposition="outside")
    fig.add_scatter(x=profile.exit_names, y=profile.cost, name=f"cumulative cost ({profile.cost_unit})",
                    mode="lines+markers", marker_color=PALETTE[1], secondary_y=True)
    fig.update_yaxes(title_text="accuracy (%)", range=[0, 105], secondary_y=False)
    fig.update_yaxes(title_text=f"cost per sample ({profile.cost_unit})", rangemode="tozero", secondary_y=True)
    fig.update_xaxes(title_text="exit")
    return _style(fig, title)


def pareto_figure(profile: ExitProfile, criteria: Sequence[str] = ("max_prob", "entropy", "margin", "patience"),
                  title: str = "Accuracy vs. compute: exit criteria compared") -> go.Figure:
    """Each criterion's Pareto front over its thresholds, the single exits, the full model and the oracle bound."""
    validate.instance("profile", profile, ExitProfile, "an ExitProfile (e.g. zoo.load_profile('cnn-mnist'))")
    criteria = validate.names("criteria", criteria, example="max_prob")
    fig = go.Figure()
    for i, name in enumerate(criteria):
        sw = profile.sweep(name)
        keep = sw.pareto_mask()
        order = np.argsort(sw.mean_cost[keep])
        fig.add_scatter(x=sw.mean_cost[keep][order], y=100 * sw.accuracy[keep][order], name=name,
                        mode="lines+markers" if get_criterion(name).integer else "lines",
                        line={"color": PALETTE[i % len(PALETTE)]})
    fig.add_scatter(x=profile.cost, y=100 * profile.exit_accuracy, mode="markers", name="single exit (static)",
                    marker={"color": PALETTE[6], "size": 9, "line": {"color": "black", "width": 1}})
    if profile.labels is not None or "oracle" in profile.scores:
        oracle = profile.at("oracle", 0.5)
        fig.add_scatter(x=[oracle.mean_cost], y=[100 * oracle.accuracy], mode="markers",
                        name="oracle (upper bound)", marker={"color": PALETTE[7], "symbol": "star", "size": 14})
    fig.add_scatter(x=[profile.full_cost], y=[100 * profile.final_accuracy], mode="markers", name="full model",
                    marker={"color": PALETTE[5], "symbol": "x", "size": 11})
    fig.update_xaxes(title_text=f"mean cost per sample ({profile.cost_unit})")
    fig.update_yaxes(title_text="accuracy (%)")
    return _style(fig, title, height=430)
