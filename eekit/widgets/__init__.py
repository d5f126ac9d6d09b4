"""Dashboards for the notebooks: ipywidgets controls + plotly ``FigureWidget`` plots, each a small class that
can be driven from Python (and therefore tested in plain pytest), plus the lessons' static figures."""

from .energy import EnergyDashboard
from .gallery import ExitGallery
from .plots import exits_figure, pareto_figure
from .sentences import error_by_exit_figure
from .speech import NoiseExplorer, audio_player, ctc_layers_figure
from .style import PALETTE
from .threshold import ThresholdExplorer

__all__ = ["PALETTE", "ThresholdExplorer", "ExitGallery", "EnergyDashboard", "NoiseExplorer", "audio_player",
           "ctc_layers_figure", "exits_figure", "pareto_figure", "error_by_exit_figure"]
