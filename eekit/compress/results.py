"""``python -m eekit report compress``: the shipped compressed models' numbers, from their cards (the pipeline's)
and the emulated-MCU results (:mod:`eekit.compress.mcu`), which themselves read the pipeline's files."""

from __future__ import annotations

import json
from functools import partial

from ..zoo.registry import Entry, Runner, register, register_runner, takes
from .mcu import load_mcu_results
from .pipeline import COMPRESSED, REPORT_KEYS, SUFFIX, load_compressed, load_compressed_card, load_compressed_profile

__all__ = ["report"]


def report() -> dict:
    """``python -m eekit report compress``: the shipped compressed models' headline numbers (read, not rerun)."""
    cards = {n + SUFFIX: load_compressed_card(n) for n in COMPRESSED}
    exported = {name: c["c_export"] for name, c in cards.items() if c["c_export"]["inputs_checked"]}
    mcu = load_mcu_results()["models"]  # the emulated Cortex-M run and the power-failure test, shipped
    out = {"models": {name: {k: card[k] for k in REPORT_KEYS} | {"energy": card.get("energy"),
                                                                  "accuracy_per_exit_int8": card.get(
                                                                      "accuracy_per_exit_int8"),
                                                                  "activation_plan": card.get("activation_plan"),
                                                                  "deployment": card.get("deployment", "integer C"),
                                                                  "mcu_run": mcu.get(name, {}).get("mcu_run"),
                                                                  "power_failure": mcu.get(name, {}).get("power_failure")}
                      for name, card in cards.items()},
           "c_export": {"compiled": bool(exported) and all(c["compiled"] for c in exported.values()),
                        "inputs_checked": sum(c["inputs_checked"] for c in exported.values()),
                        "mismatches": sum(c["mismatches"] for c in exported.values()),
                        "models": sorted(exported)}}
    return out


def _profile(name: str, split: str):
    return load_compressed_profile(name)  # the test split is the one shipped


for _source in COMPRESSED:  # the shipped compressed models, in the one registry (eekit.zoo)
    register(Entry(_source + SUFFIX, "compressed", partial(load_compressed, _source),
                   partial(load_compressed_card, _source), partial(_profile, _source),
                   f"python -m eekit compress {_source}"))


def _cli_report(args) -> str:
    result = report()
    return json.dumps(result, indent=2) if args.json else json.dumps(result)


register_runner(Runner("report", "compress", _cli_report, takes(
    {"json"}, "report compress (its integer thresholds are fixed in the shipped models)")))
