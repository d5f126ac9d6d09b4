"""The shipped models: one registry of every shipped name (:func:`list_models`, :func:`get`), their recipes, loading,
reports, training and the noise runs.

* :mod:`eekit.zoo.registry` - the recipes (:data:`RECIPES`), loading shipped files, the one registry of entries;
* :mod:`eekit.zoo.reports` - ``python -m eekit report <name>``'s numbers;
* :mod:`eekit.zoo.training` - ``python -m eekit train <name>``: rerun a recipe, write weights, card, profile;
* :mod:`eekit.zoo.noise` - a shipped recognizer on noisy test utterances;
* :mod:`eekit.zoo.speech_grid` - five speech recipes x three label budgets.
"""

from . import speech_grid  # its cells register themselves
from .noise import SNR_LEVELS, mean_exit_layer_by_snr, noisy_profile, noisy_run
from .registry import (CHECKPOINT_DIR, RECIPES, Entry, Recipe, Runner, get, get_recipe, list_models, load_card,
                       load_pretrained, load_profile, operating_point, register, register_runner, runner)
from .reports import report
from .training import run_recipe

__all__ = ["list_models", "get", "register", "Entry", "Runner", "register_runner", "runner", "Recipe", "RECIPES",
           "get_recipe", "load_pretrained", "load_profile", "load_card", "operating_point", "report", "CHECKPOINT_DIR", "run_recipe",
           "noisy_run", "noisy_profile", "mean_exit_layer_by_snr", "SNR_LEVELS", "speech_grid"]
