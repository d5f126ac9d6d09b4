"""Command line: ``python -m eekit train | report | compress | export-c | bench ...`` (``--help`` on each).

Each subcommand is one ``add_<command>(sub)`` function that builds its own parser (so an option exists only where it
is used) and names its handler with ``set_defaults(func=...)``. Where an option applies to some model names only,
the handler refuses it for the others (:func:`_only`): every option is either honoured or refused, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import bench, cli, zoo
from .compress import pipeline
from .onnx_export import add_command as add_export_onnx
from .report_format import table


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
    print(table(result, as_json))


# ---------------------------------------------------------------------------------------------- train, report

def _run(args) -> int:
    """``train <name>`` / ``report <name>``: the run the registry holds for that name (eekit.zoo.runner), after
    refusing every option it does not take."""
    run = zoo.runner(args.command, args.model)
    allowed, who = run.accepts(args)
    _only(args, allowed, who)
    print(run.run(args))
    return 0


def add_train(sub) -> None:
    p = sub.add_parser("train", help="rerun a shipped model's training recipe",
                       description="Rerun a shipped recipe. Seeded: the same torch version and thread count "
                       "(the card's machine.torch_threads; set OMP_NUM_THREADS) give the shipped card bit for bit.")
    p.add_argument("model", help="recipe name, e.g. cnn-mnist, cnn-mnist-two-stage, cnn-cifar10, ssl-hubert, "
                   "ssl-hubert-clean, speech-recipe, speech-recipes")
    p.add_argument("--out", default="eekit-runs", help="output folder, created if its parent exists (data/checkpoints "
                   "replaces the shipped files, with --force); one command at a time may write it")
    p.add_argument("--subset", type=int, default=None, help="zoo recipes only: train on this many samples (quick demo)")
    p.add_argument("--epochs", type=int, default=None, help="zoo recipes, ssl-hubert(-clean) and sentences: override "
                   "the recipe's epochs")
    p.add_argument("--batch-size", type=int, default=None, help="sentences: override the recipe's batch size (8)")
    p.add_argument("--lr", type=float, default=None, help="sentences: override the peak learning rate (2e-3)")
    p.add_argument("--optimizer", default=None, help="sentences: sgd, adam or adamw (the recipe's: adam)")
    p.add_argument("--weight-decay", type=float, default=None, help="sentences: override the weight decay (0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="replace existing weights, card and profile in --out")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available, else cpu; ssl-hubert(-clean): "
                   "cpu only)")
    p.add_argument("--resume", action="store_true", help="sentences: continue a stopped run from the state it saved "
                   "after its last epoch")
    p.add_argument("--speed-perturb", action=argparse.BooleanOptionalAction, default=None, help="sentences: play each "
                   "training sentence at 0.9, 1.0 or 1.1 times its speed, or never (the recipe's: never)")
    p.add_argument("--encoder", default=None, help="sentences, pre-trained recipes: the self-supervised encoder to "
                   "start from, ssl-hubert or ssl-hubert-clean (the recipe's: ssl-hubert)")
    p.add_argument("--recipe", default=None, help="speech-recipe(s): A, B, C, D or E (eekit.speech_recipes); "
                   "sentences: scratch, ssl or ssl-2st (eekit.sentences)")
    p.add_argument("--labels", default=None, help="speech-recipe(s): 250, 1000 or all labelled utterances; "
                   "sentences: 30min or all")
    p.set_defaults(func=_run, parser=p)


# -------------------------------------------------------------------------------------------------------- report

def add_report(sub) -> None:
    p = sub.add_parser("report", help="numbers of a shipped checkpoint, from its test-split profile")
    p.add_argument("model", help="e.g. cnn-mnist, cnn-cifar10; `compress` for the compressed models, `ssl-daisy` "
                   "for the self-supervised encoder and DAISY's exit signal, `ssl-hubert-clean` for the clean-corpus "
                   "encoder beside it, `speech-recipes` for the recipe grid")
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
    p.set_defaults(func=_run, parser=p)


# ------------------------------------------------------------------------------------------- compress, export-c

def _compress(args) -> int:
    card = pipeline.run(args.model, args.out, target_bytes=args.target_bytes, force=args.force, progress=not args.quiet)
    print(json.dumps({k: card[k] for k in pipeline.REPORT_KEYS + ("c_export",)}, indent=2))
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
    result = pipeline.export(args.model, args.out, force=args.force)
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
    if args.what == "speedup":
        result = bench.bench_speedup(args.model, device=args.device, threads=args.threads,
                                     keep_freed_memory=not args.default_malloc)
    elif args.what == "stages":
        result = bench.bench_stages(args.model, batch=args.batch, device=args.device, threads=args.threads,
                                    keep_freed_memory=not args.default_malloc)
    elif args.what == "notebooks":
        result = bench.bench_notebooks(only=args.only)
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
    kinds = p.add_subparsers(dest="what", required=True, parser_class=cli.Parser)
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
        if what == "notebooks":
            q.add_argument("--only", nargs="+", default=None, metavar="PREFIX", help="just the notebooks whose "
                           "file names start with these (e.g. --only 10 21; default: every notebook)")
        if what == "stages":
            q.add_argument("--batch", type=int, default=1, help="batch size (default: 1)")
        q.add_argument("--json", action="store_true", help="print JSON")
        q.set_defaults(func=_bench, parser=q)


# ---------------------------------------------------------------------------------------------------------- main

COMMANDS = [add_train, add_report, add_compress, add_export_c, add_export_onnx, add_bench]


def build_parser() -> argparse.ArgumentParser:
    parser = cli.Parser(prog="python -m eekit", description="eekit: early-exit networks, hands-on")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=cli.Parser)
    for add_command in COMMANDS:
        add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.run(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
