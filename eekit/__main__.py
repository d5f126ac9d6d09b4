"""Command line: ``python -m eekit train | report | compress | export-c | bench ...`` (``--help`` on each).

Each subcommand is one ``add_<command>(sub)`` function that builds its own parser (so an option exists only where it
is used) and names its handler with ``set_defaults(func=...)``. Where an option applies to some model names only,
the handler refuses it for the others (:func:`_only`): every option is either honoured or refused, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from .onnx_export import add_command as add_export_onnx

ZOO_OPTIONS = {"subset", "epochs", "device"}  # train options of the zoo recipes (eekit.recipes)
SPEECH_GRID = ("speech-recipe", "speech-recipes")


def _only(args, allowed: set[str], who: str) -> None:
    """Refuse every option the user gave (not at its default) that ``who`` does not use, naming what it takes."""
    parser = args.parser
    given = [a for a in parser._actions
             if a.option_strings and a.dest != "help" and a.dest not in allowed and getattr(args, a.dest) != a.default]
    if given:
        takes = [a.option_strings[0] for a in parser._actions if a.option_strings and a.dest in allowed]
        raise ValueError(f"{', '.join(a.option_strings[0] for a in given)} does not apply to {who}; it takes "
                         f"{', '.join(takes) if takes else 'no options'}")


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")


# --------------------------------------------------------------------------------------------------------- train

def _train(args) -> int:
    always = {"out", "force", "quiet"}
    if args.model == "ssl-hubert":  # self-supervised pretraining, then DAISY's measurements (eekit.ssl)
        from .ssl import run_recipe as run_ssl  # why: moves to the registry next

        _only(args, always | {"epochs", "device"}, "train ssl-hubert")
        if args.device not in (None, "cpu"):
            raise ValueError(f"train ssl-hubert trains on the CPU; --device {args.device!r} is not accepted "
                             "(accepted: cpu, or leave it out)")
        card = run_ssl(args.out, epochs=args.epochs, progress=not args.quiet, force=args.force)
        print(json.dumps({"name": card["name"], "pretraining_seconds": card["pretraining"]["pretraining_seconds"],
                          "measurement_seconds": card["measurement_seconds"], **card["report"]}, indent=2))
        return 0
    if args.model in SPEECH_GRID:  # the recipe x label-budget grid (eekit.speech_recipes)
        _only(args, always | {"device", "recipe", "labels"}, f"train {args.model} (its recipes fix the epochs "
              "and label budgets)")
        return _train_speech_recipes(args)
    from .zoo import RECIPES, run_recipe

    if args.model not in RECIPES:
        raise ValueError(f"unknown model {args.model!r}; known: {sorted(RECIPES) + ['ssl-hubert', *SPEECH_GRID]}")
    _only(args, always | ZOO_OPTIONS, f"train {args.model}")
    card = run_recipe(args.model, args.out, subset=args.subset, epochs=args.epochs, progress=not args.quiet,
                      force=args.force, device=args.device)
    keys = ("name", "exit_accuracy", "exit_mflops", "exit_layers", "final_accuracy", "early_exit", "training_seconds")
    print(json.dumps({k: card[k] for k in keys if k in card}, indent=2))
    return 0


def _train_speech_recipes(args) -> int:
    from . import speech_recipes as sr

    common = dict(out_dir=args.out, force=args.force, progress=not args.quiet, device=args.device)
    if args.model == "speech-recipe":
        if args.recipe is None or args.labels is None:
            raise ValueError(f"train speech-recipe needs --recipe (one of {list(sr.SPEECH_RECIPES)}) and --labels "
                             f"(one of {list(sr.LABELS)})")
        cards = [sr.train_cell(args.recipe, args.labels, **common)]
    else:
        cards = sr.train_grid(labels=[args.labels] if args.labels else None,
                              recipes=[args.recipe] if args.recipe else None, **common)
    print(json.dumps([{k: c[k] for k in ("cell", "exit_der", "training_seconds")} for c in cards], indent=2))
    return 0


def add_train(sub) -> None:
    p = sub.add_parser("train", help="rerun a shipped model's training recipe",
                       description="Rerun a shipped recipe. Seeded: the same torch version and thread count "
                       "(the card's machine.torch_threads; set OMP_NUM_THREADS) give the shipped card bit for bit.")
    p.add_argument("model", help="recipe name, e.g. cnn-mnist, cnn-mnist-two-stage, cnn-cifar10, ssl-hubert, "
                   "speech-recipe, speech-recipes")
    p.add_argument("--out", default="eekit-runs", help="output folder, created if its parent exists (data/checkpoints "
                   "replaces the shipped files, with --force); one command at a time may write it")
    p.add_argument("--subset", type=int, default=None, help="zoo recipes only: train on this many samples (quick demo)")
    p.add_argument("--epochs", type=int, default=None, help="zoo recipes and ssl-hubert: override the recipe's epochs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="replace existing weights, card and profile in --out")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available, else cpu; ssl-hubert: "
                   "cpu only)")
    p.add_argument("--recipe", default=None, help="speech-recipe(s) only: A, B, C, D or E (eekit.speech_recipes)")
    p.add_argument("--labels", default=None, help="speech-recipe(s) only: 250, 1000 or all labelled utterances")
    p.set_defaults(func=_train, parser=p)


# -------------------------------------------------------------------------------------------------------- report

def _report(args) -> int:
    if args.model == "ssl-daisy":  # the self-supervised encoder and DAISY's exit signal (eekit.daisy)
        from .ssl import report as daisy_report  # why: moves to the registry next

        if args.measure:  # rerun the label-free exit's controls (eekit.adaptivity), minutes
            from .ssl.adaptivity import measure  # why: moves to the registry next

            _only(args, {"measure", "out", "force", "quiet"}, "report ssl-daisy --measure")
            result = measure(args.out, force=args.force, progress=not args.quiet)
            _print({k: v for k, v in result.items() if k != "clips"}, True)
            return 0
        _only(args, {"json"}, "report ssl-daisy (one criterion, ssl_entropy, and a label-free calibration rule)")
        _print(daisy_report(), args.json)
        return 0
    if args.model == "compress":  # the compressed models' shipped results (eekit.compress)
        from .compress import report as compress_report

        _only(args, {"json"}, "report compress (its integer thresholds are fixed in the shipped models)")
        result = compress_report()
        print(json.dumps(result, indent=2) if args.json else json.dumps(result))
        return 0
    if args.model == "speech-recipes":  # the recipe x label-budget grid, from its shipped profiles
        from .speech_recipes import report as speech_recipes_report

        _only(args, {"json"}, "report speech-recipes (its rule is fixed: no DER increase on clean speech)")
        result = speech_recipes_report()
        print(json.dumps(result, indent=2) if args.json else json.dumps(result))
        return 0
    from .zoo import report

    _only(args, {"criterion", "max_drop", "json"}, f"report {args.model}")
    _print(report(args.model, criterion=args.criterion, max_drop=args.max_drop), args.json)
    return 0


def add_report(sub) -> None:
    p = sub.add_parser("report", help="numbers of a shipped checkpoint, from its test-split profile")
    p.add_argument("model", help="e.g. cnn-mnist, cnn-cifar10; `compress` for the compressed models, `ssl-daisy` "
                   "for the self-supervised encoder and DAISY's exit signal, `speech-recipes` for the recipe grid")
    p.add_argument("--criterion", default=None, help="zoo models only: exit criterion, e.g. max_prob, entropy, "
                   "margin, patience (default: the model card's)")
    p.add_argument("--max-drop", type=float, default=None, help="zoo models only: allowed accuracy drop below the "
                   "final exit, a fraction: 0.01 = 1 point (default: the model card's)")
    p.add_argument("--json", action="store_true", help="print JSON (indented)")
    p.add_argument("--measure", action="store_true", help="ssl-daisy only: rerun the label-free exit's controls "
                   "(eekit.adaptivity, minutes) and write ssl-hubert-adaptivity.json into --out")
    p.add_argument("--out", default="eekit-runs", help="--measure's output folder (data/checkpoints replaces the "
                   "shipped file, with --force)")
    p.add_argument("--force", action="store_true", help="--measure: replace an existing result file")
    p.add_argument("--quiet", action="store_true", help="--measure: no progress bars")
    p.set_defaults(func=_report, parser=p)


# ------------------------------------------------------------------------------------------- compress, export-c

def _compress(args) -> int:
    from .compress.pipeline import REPORT_KEYS, run

    card = run(args.model, args.out, target_bytes=args.target_bytes, force=args.force, progress=not args.quiet)
    print(json.dumps({k: card[k] for k in REPORT_KEYS + ("c_export",)}, indent=2))
    return 0


def add_compress(sub) -> None:
    p = sub.add_parser("compress", help="FreeML-style compression until the model fits a byte target, int8, C "
                       "export checked against the integer reference (minutes)")
    p.add_argument("model", help="e.g. cnn-mnist-shared")
    p.add_argument("--target-bytes", type=int, default=None, help="MCU bytes to fit, a whole number >= 1 (default: "
                   "the shipped run's, 32000 for cnn-mnist-shared)")
    p.add_argument("--out", default="eekit-runs", help="output folder (data/checkpoints replaces the shipped files); "
                   "one command at a time may write it")
    p.add_argument("--force", action="store_true", help="replace existing files in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_compress, parser=p)


def _export_c(args) -> int:
    from .compress.pipeline import export

    result = export(args.model, args.out, force=args.force)
    print(json.dumps({"files": result["files"], "bytes": result["bytes"], **result["plan"]}, indent=2))
    return 0


def add_export_c(sub) -> None:
    p = sub.add_parser("export-c", help="write a shipped compressed model as C99 (integer only, no malloc)")
    p.add_argument("model", help="e.g. cnn-mnist-shared (its shipped compressed version)")
    p.add_argument("--out", required=True, help="folder for eekit_model.h, eekit_model.c, main.c")
    p.add_argument("--force", action="store_true", help="replace those files if --out already has them")
    p.set_defaults(func=_export_c, parser=p)


# --------------------------------------------------------------------------------------------------------- bench

def _bench(args) -> int:
    from . import bench

    if args.what == "speedup":
        result = bench.bench_speedup(args.model, device=args.device, threads=args.threads,
                                     keep_freed_memory=not args.default_malloc)
    elif args.what == "stages":
        result = bench.bench_stages(args.model, batch=args.batch, device=args.device, threads=args.threads,
                                    keep_freed_memory=not args.default_malloc)
    elif args.what == "notebooks":
        result = bench.bench_notebooks()
    elif args.what == "energy":
        result = bench.bench_energy()
    elif args.what == "speech-encoder":
        result = bench.bench_speech_encoder()
    else:
        result = bench.bench_widgets()
    _print(result, args.json)
    return 0


def add_bench(sub) -> None:
    """``bench <what>``: one sub-parser per measurement, each with only the options that measurement uses."""
    p = sub.add_parser("bench", help="measure on this machine: speedup of real early exit and where its time goes "
                       "(stages), dashboard latency, notebook time and memory, energy simulator speed and balance, "
                       "time to bring your own speech encoder")
    kinds = p.add_subparsers(dest="what", required=True, parser_class=_Parser)
    helps = {"speedup": "ideal vs realized speedup of real early exit", "stages": "where the time goes, stage by "
             "stage", "widgets": "dashboard slider latency", "notebooks": "every lesson's time and peak memory",
             "energy": "energy simulator speed and energy balance",
             "speech-encoder": "seconds to wrap, train, profile and run a small wav2vec 2.0 with exits"}
    for what, text in helps.items():
        q = kinds.add_parser(what, help=text)
        if what in ("speedup", "stages"):
            q.add_argument("--model", default=None, help="shipped model (default: cnn-cifar10, else cnn-mnist)")
            q.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available, else cpu)")
            q.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
            q.add_argument("--default-malloc", action="store_true", help="time with glibc's default policy, big "
                           "buffers returned to the OS after every call and page-faulted back in (default: kept)")
        if what == "stages":
            q.add_argument("--batch", type=int, default=1, help="batch size (default: 1)")
        q.add_argument("--json", action="store_true", help="print JSON")
        q.set_defaults(func=_bench, parser=q)


# ---------------------------------------------------------------------------------------------------------- main

class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, like every other CLI error here (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


COMMANDS = [add_train, add_report, add_compress, add_export_c, add_export_onnx, add_bench]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m eekit", description="eekit: early-exit networks, hands-on")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add_command in COMMANDS:
        add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError, OSError) as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)  # one line
        return 2


if __name__ == "__main__":
    sys.exit(main())
