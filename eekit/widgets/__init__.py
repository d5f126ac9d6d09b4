"""Dashboards for the notebooks: ipywidgets controls + plotly ``FigureWidget`` plots, each a small class that
can be driven from Python (and therefore tested in plain pytest), plus the lessons' static figures."""

from .energy import EnergyDashboard
from .fit import FitExplorer
from .gallery import ExitGallery
from .plots import exits_figure, pareto_figure
from .sentences import error_by_exit_figure
from .recipes import RecipeGrid
from .speech import NoiseExplorer, audio_player, ctc_layers_figure
from .ssl import ExitSignalExplorer, UnitExitExplorer
from .style import PALETTE
from .threshold import ThresholdExplorer

__all__ = ["PALETTE", "ThresholdExplorer", "ExitGallery", "EnergyDashboard", "NoiseExplorer", "FitExplorer",
           "RecipeGrid", "UnitExitExplorer", "ExitSignalExplorer", "audio_player", "ctc_layers_figure", "exits_figure",
           "pareto_figure", "error_by_exit_figure"]
