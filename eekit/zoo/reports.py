"""The headline numbers of a shipped model (``python -m eekit report <name>``), recomputed from its test profile."""

from __future__ import annotations

from ..profile import ExitProfile
from ..report_format import table
from .noise import mean_exit_layer_by_snr
from .registry import RECIPES, Runner, load_profile, operating_point, register_runner, takes
from .registry import get_recipe as _recipe

__all__ = ["report"]


def report(name: str, criterion: str | None = None, max_drop: float | None = None) -> dict:
    """The headline numbers of a shipped model, recomputed from its test-split profile (fractions in [0, 1]).

    Speech recognizers (``speech-fsdd*``) report digit error rates, encoder layers saved, and the mean exit layer
    on the test takes mixed with noise at each of :data:`SNR_LEVELS` (see :func:`mean_exit_layer_by_snr`).
    """
    recipe = _recipe(name)
    criterion = criterion or recipe.criterion
    max_drop = recipe.max_drop if max_drop is None else max_drop
    profile = load_profile(name)
    point = operating_point(name, criterion, max_drop, profile)
    if profile.kind == "ctc":
        return {
            "model": name,
            "exit_names": profile.exit_names,
            "exit_der": [round(1 - float(a), 4) for a in profile.exit_accuracy],
            "final_der": round(1 - profile.final_accuracy, 4),
            "criterion": criterion,
            "max_drop": max_drop,
            "threshold": round(point.threshold, 4),
            "ee_der": round(1 - point.accuracy, 4),
            "layers_saved": round(point.savings, 4),
            "exit_fractions": [round(float(f), 4) for f in point.exit_fractions],
            "mean_exit_layer_by_snr": mean_exit_layer_by_snr(name, criterion, point.threshold),
        }
    unit = _unit_key(profile)
    return {
        "model": name,
        "exit_names": profile.exit_names,
        "exit_accuracy": [round(float(a), 4) for a in profile.exit_accuracy],
        f"exit_{unit}": [round(float(c), 4) for c in profile.cost],
        f"full_model_{unit}": round(profile.full_cost, 4),
        "final_accuracy": round(profile.final_accuracy, 4),
        "criterion": criterion,
        "max_drop": max_drop,
        "threshold": round(point.threshold, 4),
        "ee_accuracy": round(point.accuracy, 4),
        _saved_key(profile): round(point.savings, 4),
        "exit_fractions": [round(float(f), 4) for f in point.exit_fractions],
    }


def _unit_key(profile: ExitProfile) -> str:
    return profile.cost_unit.lower()  # "mflops" or "layers"


def _saved_key(profile: ExitProfile) -> str:
    return "flops_saved" if profile.cost_unit == "MFLOPs" else f"{_unit_key(profile)}_saved"


def _cli_report(args) -> str:
    return table(report(args.model, criterion=args.criterion, max_drop=args.max_drop), args.json)


for _name in RECIPES:
    register_runner(Runner("report", _name, _cli_report, takes({"criterion", "max_drop", "json"}, f"report {_name}")))
