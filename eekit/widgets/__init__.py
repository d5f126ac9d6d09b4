"""Dashboards for the notebooks: ipywidgets controls + plotly ``FigureWidget`` plots, each a small class that
can be driven from Python (and therefore tested in plain pytest)."""

from .style import PALETTE
from .threshold import ThresholdExplorer

__all__ = ["PALETTE", "ThresholdExplorer"]
